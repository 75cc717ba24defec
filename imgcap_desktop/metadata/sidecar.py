"""Captions in XMP sidecars: read and write them safely, and never touch the photos themselves.

The caption is ``dc:description`` (lang-alt, ``x-default``); every other property and language already
in the sidecar is kept. Provenance lives in ``xmp:CreatorTool`` and in the ``imgcap`` namespace
(model name, score, automatic or human, time captioned, and a digest of the text we wrote, so a caption
edited later in another tool reads back as human).

Exiv2 (through pyexiv2) does the XMP work, but only ever on bytes in memory: Exiv2 truncates a file
before rewriting it, so the new sidecar is written by us to a temporary file in the same folder,
fsynced and moved over the old one with ``os.replace``. A sidecar is never handed to Exiv2 before it
has passed :func:`_parse_packet` (size limit, UTF-8, no DOCTYPE or entity declarations, well-formed
XMP), so no entity is ever expanded.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Literal

import pyexiv2

from model.images import SUPPORTED_EXTENSIONS

log = logging.getLogger(__name__)

NAMESPACE = "http://ns.imgcap.app/1.0/"
PREFIX = "imgcap"
SOURCES = ("automatic", "human", "embedded")
STYLES = ("ext", "base")

# Real sidecars are kilobytes; digiKam's with hundreds of face regions stay well under a megabyte.
MAX_SIDECAR_BYTES = 8 * 1024 * 1024

SidecarStyle = Literal["ext", "base"]
CaptionSource = Literal["automatic", "human", "embedded"]

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_DC = "http://purl.org/dc/elements/1.1/"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_X_DEFAULT = "x-default"

_EMPTY_PACKET = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>'
    b'</x:xmpmeta><?xpacket end="w"?>'
)

# XML 1.0 cannot hold these characters at all, and the XMP toolkit turns DEL into a space: refuse
# them rather than store something else than the caption.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

# The XMP toolkit inside Exiv2 keeps a process-wide namespace registry that is not thread-safe.
_EXIV2_LOCK = threading.Lock()
with _EXIV2_LOCK:
    pyexiv2.registerNs(NAMESPACE, PREFIX)


def _creator_tool() -> str:
    try:
        return f"imgcap {importlib_metadata.version('imgcap')}"
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "imgcap"


CREATOR_TOOL = _creator_tool()


@dataclass(frozen=True)
class StoredCaption:
    """A caption as it is stored beside a photo (or embedded in it).

    Attributes:
        text: the caption.
        source: ``"automatic"`` (written by the model), ``"human"`` (typed or edited by a person,
            here or in another tool) or ``"embedded"`` (read from the photo itself; never written).
        model: the name of the model that wrote it, for automatic captions.
        score: the model's length-normalised log-probability, for automatic captions.
        captioned_at: when it was written, ISO 8601 (UTC), if known.
    """

    text: str
    source: CaptionSource = "automatic"
    model: str | None = None
    score: float | None = None
    captioned_at: str | None = None


class SidecarError(Exception):
    """One photo's sidecar could not be read or written. ``str(error)`` is fit to show the user.

    Attributes:
        path: the file the error is about: the photo, or its sidecar when that is the problem.
        reason: what went wrong, without the file name.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class SidecarCollisionError(SidecarError):
    """In ``base`` style, two photos (``a.jpg``, ``a.png``) would share one sidecar (``a.xmp``)."""


def sidecar_path(photo: str | Path, style: SidecarStyle = "ext") -> Path:
    """The sidecar a photo gets in a naming style.

    Args:
        photo: the photo.
        style: ``"ext"`` gives ``photo.jpg.xmp`` (digiKam, darktable); ``"base"`` gives ``photo.xmp``
            (Lightroom, Bridge).
    """
    photo = Path(photo)
    if style == "ext":
        return photo.with_name(photo.name + ".xmp")
    if style == "base":
        return photo.with_suffix(".xmp")
    raise ValueError(f"unknown sidecar style {style!r} (expected 'ext' or 'base')")


def base_style_siblings(photo: str | Path) -> list[Path]:
    """Other photos in the same folder that would share ``photo``'s base-style sidecar."""
    photo = Path(photo)
    # Compared by file identity: on a case-insensitive disk ``a.JPG`` is ``a.jpg`` itself.
    seen = set()
    try:
        seen.add(_identity(photo))
    except OSError:
        pass
    siblings = []
    for ext in sorted(SUPPORTED_EXTENSIONS):
        for candidate in (photo.with_suffix(ext), photo.with_suffix(ext.upper())):
            try:
                identity = _identity(candidate)
            except OSError:
                continue
            if identity not in seen:
                seen.add(identity)
                siblings.append(candidate)
    return siblings


def _identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):
        raise IsADirectoryError(path)
    return status.st_dev, status.st_ino


def find_sidecar(photo: str | Path) -> Path | None:
    """The existing sidecar of a photo: ``photo.jpg.xmp`` if there is one, else ``photo.xmp``.

    Raises:
        SidecarCollisionError: only ``photo.xmp`` exists and another photo shares its name stem, so
            it is unclear whose sidecar it is.
    """
    photo = Path(photo)
    ext_style = sidecar_path(photo, "ext")
    if ext_style.is_file():
        return ext_style
    base_style = sidecar_path(photo, "base")
    if base_style.is_file():
        _refuse_shared(photo, base_style)
        return base_style
    return None


def _refuse_shared(photo: Path, base_style: Path) -> None:
    siblings = base_style_siblings(photo)
    if siblings:
        names = ", ".join(p.name for p in [photo, *siblings])
        raise SidecarCollisionError(
            photo,
            f"{names} would share the sidecar {base_style.name}; use the photo.jpg.xmp naming "
            "style or rename one of them",
        )


def read_caption(photo: str | Path, *, embedded: bool = True) -> StoredCaption | None:
    """The caption stored for a photo: from its sidecar, else (optionally) embedded in the photo.

    Args:
        photo: the photo.
        embedded: where no sidecar holds a caption, look for a description inside the photo
            (read-only) and return it with source ``"embedded"``.

    Returns:
        The caption, or None where there is none.

    Raises:
        SidecarError: the sidecar exists but cannot be read (malformed, binary, too large,
            entity declarations, unreadable), or is shared by two photos in base style.
    """
    photo = Path(photo)
    path = find_sidecar(photo)
    if path is not None:
        caption = _caption_from_root(_parse_packet(_read_limited(path, photo), path))
        if caption is not None:
            return caption
    if embedded:
        from imgcap_desktop.metadata.embedded import read_embedded_description

        text = read_embedded_description(photo)
        if text:
            return StoredCaption(text=text, source="embedded")
    return None


def write_caption(photo: str | Path, caption: StoredCaption, *, style: SidecarStyle = "ext") -> Path:
    """Store a caption in the photo's sidecar, keeping everything else already there.

    An existing sidecar (of either naming style) is updated; otherwise one is created in ``style``.
    The photo itself is never opened.

    Args:
        photo: the photo.
        caption: the caption; its source must be ``"automatic"`` or ``"human"``. An empty text
            removes the ``x-default`` description (and the whole field if no language is left).
        style: naming style for a new sidecar.

    Returns:
        The sidecar's path.

    Raises:
        SidecarError: the existing sidecar cannot be parsed (it is left untouched), the caption
            holds characters XML cannot store, or the folder is read-only or the disk is full.
        SidecarCollisionError: in base style another photo would share the sidecar.
        ValueError: ``caption.source`` is not ``"automatic"`` or ``"human"``.
    """
    photo = Path(photo)
    if caption.source not in ("automatic", "human"):
        raise ValueError(f"only automatic or human captions are written, not {caption.source!r}")
    bad = _UNSTORABLE.search(caption.text) or _UNSTORABLE.search(caption.model or "")
    if bad:
        code = f"U+{ord(bad.group()):04X}"
        raise SidecarError(photo, f"the caption holds a control character ({code}) that XMP cannot store")

    target = find_sidecar(photo)
    if target is None:
        target = sidecar_path(photo, style)
        if style == "base":
            _refuse_shared(photo, target)
    if target.exists():
        packet = _read_limited(target, photo)
        languages = _descriptions(_parse_packet(packet, target))
    else:
        packet, languages = _EMPTY_PACKET, {}

    languages.pop(_X_DEFAULT, None)
    if caption.text:
        languages = {_X_DEFAULT: caption.text, **languages}
    changes = {
        # Exiv2 also mirrors the sidecar into Exif/IPTC when it reads it and copies those back into any
        # XMP property that is missing when it writes, so deleting ``Xmp.dc.description`` (None)
        # would bring the old caption back; an empty lang-alt is kept as the key and never written.
        "Xmp.dc.description": {f'lang="{lang}"': text for lang, text in languages.items()},
        "Xmp.xmp.CreatorTool": CREATOR_TOOL,
        f"Xmp.{PREFIX}.source": caption.source,
        f"Xmp.{PREFIX}.model": caption.model or None,
        f"Xmp.{PREFIX}.score": repr(float(caption.score)) if caption.score is not None else None,
        f"Xmp.{PREFIX}.captionedAt": caption.captioned_at or None,
        f"Xmp.{PREFIX}.textDigest": _digest(caption.text) if caption.text else None,
    }
    updated = _modify(packet, changes, target)
    updated_root = _parse_packet(updated, target)

    # Read our own output back before it replaces anything: the caption must survive exactly, and
    # so must every property another tool stored.
    if _descriptions(updated_root).get(_X_DEFAULT, "") != caption.text:
        raise SidecarError(photo, "the caption did not survive the XMP round trip; nothing was written")
    if target.exists():
        lost = _property_names(_parse_packet(packet, target)) - _property_names(updated_root)
        if lost:
            raise SidecarError(
                photo, f"Exiv2 would drop {', '.join(sorted(lost))} from {target.name}; left as it is"
            )
    _replace_atomically(target, updated, photo)
    return target


def _modify(packet: bytes, changes: dict, target: Path) -> bytes:
    # Deleting a property that is not there is an Exiv2 error, so only delete what exists.
    with _EXIV2_LOCK:
        try:
            image = pyexiv2.ImageData(packet)
        except RuntimeError as exc:
            raise SidecarError(target, f"Exiv2 cannot read the sidecar ({exc})") from None
        try:
            present = set(image.read_xmp())
            changes = {k: v for k, v in changes.items() if (v is not None and v != {}) or k in present}
            image.modify_xmp(changes)
            return image.get_bytes()
        except RuntimeError as exc:
            raise SidecarError(target, f"Exiv2 could not update the sidecar ({exc})") from None
        finally:
            image.close()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _read_limited(path: Path, photo: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIDECAR_BYTES + 1)
    except IsADirectoryError:
        raise SidecarError(photo, f"{path.name} is a folder, not a sidecar") from None
    except OSError as exc:
        raise SidecarError(photo, f"cannot read {path.name}: {exc.strerror or exc}") from None
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarError(
            photo,
            f"{path.name} is larger than {MAX_SIDECAR_BYTES // (1024 * 1024)} MiB; not a sidecar imgcap will read",
        )
    return data


def _parse_packet(data: bytes, path: Path) -> ET.Element:
    """Check a sidecar's bytes and parse them, refusing anything that is not plain, safe XMP."""
    if not data.strip():
        raise SidecarError(path, "empty file; left as it is")
    if b"\x00" in data:
        raise SidecarError(path, "binary data, not XMP text; left as it is")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SidecarError(path, "not UTF-8 text; left as it is") from None
    if _DECLARATION.search(data):
        raise SidecarError(path, "declares a DOCTYPE or entities, which imgcap refuses to read; left as it is")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SidecarError(path, f"not well-formed XML ({exc}); left as it is") from None
    if root.tag != f"{{{_RDF}}}RDF" and root.find(f".//{{{_RDF}}}RDF") is None:
        raise SidecarError(path, "XML but not XMP (no rdf:RDF); left as it is")
    return root


def _descriptions(root: ET.Element) -> dict[str, str]:
    """Every language of the first ``dc:description``, in document order."""
    element = root.find(f".//{{{_DC}}}description")
    if element is None:
        return {}
    languages: dict[str, str] = {}
    for item in element.iter(f"{{{_RDF}}}li"):
        languages.setdefault(item.get(_XML_LANG, _X_DEFAULT), item.text or "")
    return languages


_STRUCTURE_NAMESPACES = (_RDF, "adobe:ns:meta/", "http://www.w3.org/XML/1998/namespace", NAMESPACE)
_OURS = {f"{{{_DC}}}description", "{http://ns.adobe.com/xap/1.0/}CreatorTool"}


def _property_names(root: ET.Element) -> set[str]:
    """Every property and struct field named in a packet, as attribute or element, but our own."""
    names = set()
    for element in root.iter():
        for name in (element.tag, *element.attrib):
            if name.startswith("{") and name[1:].split("}")[0] not in _STRUCTURE_NAMESPACES:
                names.add(name)
    return names - _OURS


def _imgcap_property(root: ET.Element, name: str) -> str | None:
    qualified = f"{{{NAMESPACE}}}{name}"
    for description in root.iter(f"{{{_RDF}}}Description"):
        if qualified in description.attrib:
            return description.attrib[qualified]
        child = description.find(qualified)
        if child is not None:
            return child.text or ""
    return None


def _caption_from_root(root: ET.Element) -> StoredCaption | None:
    languages = _descriptions(root)
    text = languages.get(_X_DEFAULT) or next((t for t in languages.values() if t), "")
    if not text:
        return None
    source = _imgcap_property(root, "source")
    if source not in ("automatic", "human") or _imgcap_property(root, "textDigest") != _digest(text):
        # Written by another tool, or edited there after imgcap wrote it: a person's caption.
        return StoredCaption(text=text, source="human")
    score_text = _imgcap_property(root, "score")
    try:
        score = float(score_text) if score_text else None
    except ValueError:
        score = None
    return StoredCaption(
        text=text,
        source=source,
        model=_imgcap_property(root, "model") or None,
        score=score,
        captioned_at=_imgcap_property(root, "captionedAt") or None,
    )


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()


def _replace_atomically(target: Path, data: bytes, photo: Path) -> None:
    try:
        replace_atomically(target, data)
    except OSError as exc:
        raise SidecarError(photo, _write_failure(exc, target)) from None


def replace_atomically(target: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, fsync it, and move it over ``target``.

    Readers see the old file or the new one, never a partial one, even if the process is killed.

    Raises:
        OSError: the file cannot be written (read-only folder, full disk); ``target`` is unchanged.
    """
    target = Path(target)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _NEW_FILE_MODE
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
        tmp_name = None
        _fsync_folder(target.parent)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover - Windows cannot open a folder
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_failure(exc: OSError, target: Path) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {target.name}: the folder or sidecar is read-only"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {target.name}: the disk is full"
    return f"cannot write {target.name}: {exc.strerror or exc}"
