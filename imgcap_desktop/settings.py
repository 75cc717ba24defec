"""The app's settings: one typed dataclass, converted to and from QSettings here and nowhere else."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from PySide6.QtCore import QByteArray, QSettings

from imgcap_desktop.session import OVERWRITE_POLICIES, OverwritePolicy

log = logging.getLogger(__name__)

ORGANIZATION = "imgcap"
APPLICATION = "imgcap-desktop"
MAX_RECENT_FOLDERS = 8

SIDECAR_STYLES: dict[str, str] = {"ext": "photo.jpg.xmp (digiKam, darktable)", "base": "photo.xmp (Lightroom, Bridge)"}
DEVICES: dict[str, str] = {"auto": "Automatic (GPU when available)", "cpu": "CPU only"}


@dataclass(frozen=True)
class AppSettings:
    """Everything the user can set, with its default.

    Attributes:
        sidecar_style: ``"ext"`` (``photo.jpg.xmp``) or ``"base"`` (``photo.xmp``) for new sidecars.
        beam_size: beam width for decoding (1 is greedy).
        batch_size: photos per model batch; cancelling takes effect between batches.
        device: ``"auto"`` or ``"cpu"``.
        overwrite_policy: what "Caption all/selected" does with photos that already have a caption.
        auto_write: write captions to sidecars as soon as they are produced (else hold them until
            the user accepts them).
        include_subfolders: open folders recursively.
        overlay_opacity: attention overlay opacity, 0 to 100.
        recent_folders: most recent first.
    """

    sidecar_style: Literal["ext", "base"] = "ext"
    beam_size: int = 3
    batch_size: int = 8
    device: Literal["auto", "cpu"] = "auto"
    overwrite_policy: OverwritePolicy = "skip"
    auto_write: bool = True
    include_subfolders: bool = False
    overlay_opacity: int = 60
    recent_folders: tuple[str, ...] = field(default=())

    def with_recent_folder(self, folder: str) -> AppSettings:
        """A copy with ``folder`` first in the recent list (no duplicates, at most a few)."""
        recent = [folder, *(f for f in self.recent_folders if f != folder)]
        return replace(self, recent_folders=tuple(recent[:MAX_RECENT_FOLDERS]))


_CHOICES = {
    "sidecar_style": tuple(SIDECAR_STYLES),
    "device": tuple(DEVICES),
    "overwrite_policy": tuple(OVERWRITE_POLICIES),
}
#: The allowed range of each number setting (the settings dialog's spin boxes use these too).
RANGES = {"beam_size": (1, 20), "batch_size": (1, 256), "overlay_opacity": (0, 100)}


def qsettings() -> QSettings:
    """The app's QSettings store (tests redirect it with ``QSettings.setPath``)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def load_settings(store: QSettings | None = None, problems: list[str] | None = None) -> AppSettings:
    """Read the settings; a missing or invalid value falls back to its default (each invalid one,
    as ``name='value'``, is added to ``problems``: the window says which; the file keeps them)."""
    store = store if store is not None else qsettings()
    defaults = AppSettings()
    values = {}
    for f in fields(AppSettings):
        default = getattr(defaults, f.name)
        raw = store.value(f.name)
        if raw is None:
            continue
        try:
            values[f.name] = _convert(f.name, raw, default)
        except (TypeError, ValueError):
            log.info("ignoring invalid setting %s=%r", f.name, raw)
            if problems is not None:
                problems.append(f"{f.name}={raw!r}")
    loaded = replace(defaults, **values)
    # A list written by hand or by an older copy: no duplicates, no more than the menu shows.
    recent = tuple(dict.fromkeys(loaded.recent_folders))[:MAX_RECENT_FOLDERS]
    return replace(loaded, recent_folders=recent)


def save_settings(settings: AppSettings, store: QSettings | None = None, *,
                  names: Iterable[str] | None = None) -> bool:
    """Write the settings (only ``names``, where given: another running copy's other settings are
    left as it wrote them). False when they could not be written (a read-only or broken file)."""
    store = store if store is not None else qsettings()
    wanted = set(names) if names is not None else None
    for f in fields(AppSettings):
        if wanted is not None and f.name not in wanted:
            continue
        value = getattr(settings, f.name)
        store.setValue(f.name, [_storable(v) for v in value] if isinstance(value, tuple) else value)
    store.sync()
    return store.status() == QSettings.Status.NoError


def save_window_state(geometry: QByteArray, splitter: QByteArray, store: QSettings | None = None) -> None:
    """Remember the window's size and place and the splitter's position."""
    store = store if store is not None else qsettings()
    store.setValue("window/geometry", geometry)
    store.setValue("window/splitter", splitter)
    store.sync()


def load_window_state(store: QSettings | None = None) -> tuple[QByteArray | None, QByteArray | None]:
    """``(geometry, splitter state)`` as saved, or None for each one never saved."""
    store = store if store is not None else qsettings()
    values = []
    for key in ("window/geometry", "window/splitter"):
        value = store.value(key)
        values.append(value if isinstance(value, QByteArray) and not value.isEmpty() else None)
    return values[0], values[1]


def _storable(path: str) -> str | QByteArray:
    """A path as QSettings keeps it: a name with bytes that are not UTF-8 (an old disk's Latin-1
    one, held as surrogates, which a Qt string drops) as its bytes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return QByteArray(os.fsencode(path))
    return path


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _convert(name: str, raw, default):
    if isinstance(default, bool):
        if isinstance(raw, str):  # "1", "yes", "on" too, as other tools and hand edits write them
            if raw.strip().lower() not in _TRUE + _FALSE:
                raise ValueError(raw)
            return raw.strip().lower() in _TRUE
        return bool(raw)
    if isinstance(default, int):
        value = int(raw)
        low, high = RANGES[name]
        if not low <= value <= high:
            raise ValueError(value)
        return value
    if isinstance(default, tuple):
        if isinstance(raw, (str, QByteArray, bytes)):
            raw = [raw]
        items = (os.fsdecode(bytes(item)) if isinstance(item, (QByteArray, bytes)) else str(item) for item in raw)
        return tuple(item for item in items if item)
    value = str(raw)
    if value not in _CHOICES[name]:
        raise ValueError(value)
    return value
