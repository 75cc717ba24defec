"""Storing a captioning run's results: which photos to caption, sidecars to write, the CSV report.

The CLI (``imgcap caption --write-sidecars --csv ...``) and the app's batch worker both go through
these functions, so ``--skip-captioned`` and ``--overwrite-human`` mean the same thing everywhere.
Every problem is a per-photo status; nothing here raises for one bad photo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from imgcap_desktop.metadata.csvio import make_row, write_csv
from imgcap_desktop.metadata.folder import base_style_collisions
from imgcap_desktop.metadata.sidecar import (
    SidecarError,
    SidecarStyle,
    StoredCaption,
    find_sidecar,
    read_caption,
    write_caption,
)
from model.results import CaptionOutcome

log = logging.getLogger(__name__)

Status = Literal["written", "captioned", "skipped", "kept_human", "failed"]


@dataclass(frozen=True)
class StoreOptions:
    """What to do with captions once they exist.

    Attributes:
        write_sidecars: write each caption to the photo's XMP sidecar.
        sidecar_style: ``"ext"`` (``photo.jpg.xmp``) or ``"base"`` (``photo.xmp``) for new sidecars.
        skip_captioned: do not caption photos that already have a caption (in the sidecar or
            embedded in the photo).
        overwrite_human: replace captions a person wrote or edited, and captions embedded in the
            photo (by default they are kept).
        keywords: store the model's keywords with the caption (merged into ``dc:subject``).
    """

    write_sidecars: bool = False
    sidecar_style: SidecarStyle = "ext"
    skip_captioned: bool = False
    overwrite_human: bool = False
    keywords: bool = True


@dataclass(frozen=True)
class PhotoStatus:
    """What happened to one photo.

    Attributes:
        photo: the photo.
        status: ``"written"`` (caption stored in the sidecar), ``"captioned"`` (captioned, no sidecar
            asked for), ``"skipped"`` (already captioned, not captioned again), ``"kept_human"``
            (a person's caption was kept), ``"failed"`` (see ``message``).
        caption: the caption now stored for the photo, or the new one where nothing is stored.
        sidecar: the photo's sidecar, where it has one.
        message: why it failed or was skipped, fit to show the user.
    """

    photo: Path
    status: Status
    caption: StoredCaption | None = None
    sidecar: Path | None = None
    message: str = ""


def select_photos(photos: Sequence[str | Path], options: StoreOptions) -> tuple[list[Path], list[PhotoStatus]]:
    """Decide which photos need captioning.

    Returns:
        ``(to_caption, settled)``: the photos to caption, in order, and a status for each of the
        others: ``"skipped"`` (``skip_captioned`` and a caption is stored) or ``"failed"`` (its
        sidecar cannot be read, or in base style it would share a sidecar with another photo).
    """
    photos = [Path(p) for p in photos]
    settled: dict[Path, PhotoStatus] = {}
    if options.write_sidecars and options.sidecar_style == "base":
        for sidecar, members in base_style_collisions(photos).items():
            names = ", ".join(p.name for p in members)
            for photo in members:
                settled[photo] = PhotoStatus(
                    photo, "failed", message=f"{names} would share the sidecar {sidecar.name}; use the ext style"
                )
    if options.skip_captioned:
        for photo in photos:
            if photo in settled:
                continue
            try:
                stored = read_caption(photo)
            except SidecarError as exc:
                if options.write_sidecars:
                    settled[photo] = PhotoStatus(photo, "failed", message=str(exc))
                continue
            if stored is not None:
                settled[photo] = PhotoStatus(photo, "skipped", stored, _sidecar_or_none(photo), "already captioned")
    to_caption = [p for p in photos if p not in settled]
    return to_caption, [settled[p] for p in photos if p in settled]


def store_outcomes(
    outcomes: Iterable[CaptionOutcome],
    options: StoreOptions,
    *,
    model_name: str,
    captioned_at: str | None = None,
) -> list[PhotoStatus]:
    """Store the engine's captions as the options ask, one status per outcome, in order.

    Args:
        outcomes: what ``Captioner.caption`` returned; each ``source`` is the photo's path.
        options: whether to write sidecars, and whether a person's caption may be replaced.
        model_name: recorded as the captions' provenance.
        captioned_at: ISO 8601 time recorded with the captions; now (UTC) by default.
    """
    captioned_at = captioned_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    statuses = []
    for outcome in outcomes:
        photo = Path(outcome.source)
        if not outcome.ok:
            statuses.append(PhotoStatus(photo, "failed", message=f"{photo.name}: {outcome.reason}"))
            continue
        # No tags at all (a bundle whose encoder has no classifier): leave the keywords alone.
        tagged = options.keywords and getattr(outcome, "tags", ())
        keywords = tuple(getattr(outcome, "keywords", ())) if tagged else None
        caption = StoredCaption(outcome.text, "automatic", model_name, outcome.score, captioned_at, keywords)
        statuses.append(_store(photo, caption, options))
    return statuses


def store_caption(photo: str | Path, caption: StoredCaption, options: StoreOptions) -> PhotoStatus:
    """Store one caption as the options ask: the rule :func:`store_outcomes` applies to each photo
    (``imgcap archive export --apply-sidecars`` stores captions computed earlier with it)."""
    return _store(Path(photo), caption, options)


def _store(photo: Path, caption: StoredCaption, options: StoreOptions) -> PhotoStatus:
    if options.write_sidecars:
        try:
            stored = read_caption(photo)
        except SidecarError as exc:
            return PhotoStatus(photo, "failed", message=str(exc))
        # A caption embedded in the photo is a person's too, unless our own provenance came with it.
        if stored is not None and stored.source in ("human", "embedded") and not options.overwrite_human:
            where = "embedded in the photo " if stored.source == "embedded" else ""
            return PhotoStatus(
                photo, "kept_human", stored, _sidecar_or_none(photo),
                f"a person's caption {where}is kept (--overwrite-human)",
            )  # fmt: skip
    if not caption.text:
        # Never store it: an empty caption would erase the description already there.
        return PhotoStatus(photo, "failed", message=f"{photo.name}: the model gave an empty caption")
    if not options.write_sidecars:
        return PhotoStatus(photo, "captioned", caption, _sidecar_or_none(photo))
    try:
        sidecar = write_caption(photo, caption, style=options.sidecar_style)
        # What is stored now: the keywords that are ours after the merge (not another tool's, not
        # one a person removed), so the CSV shows them and imports back as unchanged.
        caption = read_caption(photo, embedded=False) or caption
    except SidecarError as exc:
        return PhotoStatus(photo, "failed", message=str(exc))
    return PhotoStatus(photo, "written", caption, sidecar)


def _sidecar_or_none(photo: Path) -> Path | None:
    try:
        return find_sidecar(photo)
    except SidecarError:
        return None


def write_report_csv(csv_file: str | Path, root: str | Path, statuses: Iterable[PhotoStatus]) -> None:
    """Write the CSV for a run: one row per photo; a failed photo shows what is stored for it, if any.

    Raises:
        OSError: the CSV file cannot be written.
    """
    rows = []
    for s in statuses:
        if s.caption is None:
            rows.append(make_row(s.photo, root, _stored_or_none(s.photo), sidecar=_sidecar_or_none(s.photo)))
        else:
            rows.append(make_row(s.photo, root, s.caption, sidecar=s.sidecar))
    write_csv(csv_file, rows)


def _stored_or_none(photo: Path) -> StoredCaption | None:
    try:
        return read_caption(photo)
    except SidecarError:
        return None
