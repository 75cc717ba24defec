"""Captions in XMP sidecars: read and write them safely, and never touch the photos themselves.

The caption is ``dc:description`` (lang-alt, ``x-default``); imgcap's keywords are entries of
``dc:subject``. Provenance lives in the ``imgcap`` namespace (model name, score, automatic or human,
time captioned, a digest of the text we wrote, so a caption edited later in another tool reads back
as human, and which keywords are ours, and which of those a person added).

The sidecar is edited, not rewritten: :mod:`imgcap_desktop.metadata.xmp_edit` splices our values
into the bytes and copies every other byte through, so other tools' values, prefixes and layout stay
exactly as they were (docs/METADATA.md has the measurements that chose this over Exiv2, Exempi and
exiftool). Before the new bytes replace the file they are parsed back: the caption, our provenance,
every other property's value and the other tools' keywords must all be as intended, or nothing is
written. The new sidecar is written to a temporary file in the same folder, fsynced and moved over
the old one with ``os.replace``. A sidecar is refused, and left alone, unless it is a regular file
of at most 8 MiB of UTF-8 XML with an ``rdf:RDF``, no DOCTYPE and no entity declarations.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Literal, NamedTuple

from imgcap_desktop.metadata import xmp_edit
from imgcap_desktop.metadata.folder import RAW_EXTENSIONS, VIDEO_EXTENSIONS
from model.images import SUPPORTED_EXTENSIONS

log = logging.getLogger(__name__)

NAMESPACE = xmp_edit.IMGCAP
PREFIX = "imgcap"
SOURCES = ("automatic", "human", "embedded")
STYLES = ("ext", "base")

# Real sidecars are kilobytes; digiKam's with hundreds of face regions stay well under a megabyte.
MAX_SIDECAR_BYTES = 8 * 1024 * 1024
#: How many times a write starts again when another program changes the sidecar meanwhile.
WRITE_ATTEMPTS = 5
#: How long to wait before reading again a sidecar that could not be parsed (it may be half-written).
CHANGING_PAUSE_S = 0.05
# A temporary file of ours this old was left by a writer that was killed; the next write removes it.
STALE_TEMP_SECONDS = 60

SidecarStyle = Literal["ext", "base"]
CaptionSource = Literal["automatic", "human", "embedded"]

_RDF = xmp_edit.RDF
_DC = xmp_edit.DC
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_X_DEFAULT = xmp_edit.X_DEFAULT

# XML 1.0 cannot hold these characters at all, and the XMP toolkit turns DEL into a space: refuse
# them rather than store something else than the caption.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_UTF16 = re.compile(rb"^(\xff\xfe|\xfe\xff|\s*<\x00|\x00<)")
_DECLARED_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# What tempfile.mkstemp names our temporary sidecars: ".photo.jpg.xmp.k2j4_8zq.tmp".
_OUR_TEMP = re.compile(r"^\.(?P<target>.+\.xmp)\.[A-Za-z0-9_]{8}\.tmp$", re.IGNORECASE)


def _creator_tool() -> str:
    try:
        return f"imgcap {importlib_metadata.version('imgcap')}"
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "imgcap"


CREATOR_TOOL = _creator_tool()
_XMP = "http://ns.adobe.com/xap/1.0/"


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
        keywords: imgcap's keywords for the photo, in ``dc:subject`` order. Read: those imgcap
            wrote that are still there (None where imgcap never wrote keywords). Written: what
            imgcap's keywords become; None leaves every keyword as it is. Other tools' keywords
            are never part of it and never removed or reordered.
        language: read from a sidecar whose caption is another language's item (no x-default one):
            that language. Written back (an edit of it undone), it takes out an x-default item
            written since, so that the item shows again, instead of becoming an x-default copy of
            it. Not part of a caption's equality.
    """

    text: str
    source: CaptionSource = "automatic"
    model: str | None = None
    score: float | None = None
    captioned_at: str | None = None
    keywords: tuple[str, ...] | None = None
    language: str | None = field(default=None, compare=False)


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


class _NameTooLong(SidecarError):
    """The sidecar's name would be longer than the file system allows."""


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


#: Files imgcap does not read that own the base-style sidecar beside them (``IMG_2.xmp`` is the
#: raw ``IMG_2.CR2``'s in Lightroom and Bridge, also where a JPEG ``IMG_2.JPG`` lies beside it): raw
#: formats, layered and newer image formats, and the videos that photo managers keep sidecars for.
SIDECAR_OWNER_EXTENSIONS: frozenset[str] = (
    RAW_EXTENSIONS | VIDEO_EXTENSIONS | frozenset(".psd .psb .heic .heif .avif .jxl".split())) - SUPPORTED_EXTENSIONS
#: How a sidecar says which file type it belongs to (Lightroom and Bridge write it for raw files).
_SIDECAR_FOR = re.compile(rb"SidecarForExtension(?:\s*=\s*[\"']|\s*>\s*)([A-Za-z0-9]{1,8})")


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
        for candidate in _in_cases(photo, ext):
            try:
                identity = _identity(candidate)
            except OSError:
                continue
            if identity not in seen:
                seen.add(identity)
                siblings.append(candidate)
    return siblings


def _in_cases(photo: Path, ext: str) -> tuple[Path, ...]:
    """``photo`` with the extension ``ext`` (lower case) as cameras and systems spell it: ``.cr2``,
    ``.CR2`` and ``.Cr2`` (a case-insensitive disk finds every spelling through the first)."""
    spellings = dict.fromkeys((ext, ext.upper(), ext[:2].upper() + ext[2:]))
    return tuple(photo.with_suffix(spelling) for spelling in spellings)


def _owned_elsewhere(photo: Path, base_style: Path) -> str | None:
    """Why ``base_style`` (the existing or future ``photo.xmp``) is another file's sidecar and not
    ``photo``'s, or None: the sidecar's own ``photoshop:SidecarForExtension`` names another file
    type (also once that file has moved), or, where it names none, a raw (or video, …) of the same
    name lies beside the photo. Where it names the photo's own type it is the photo's (a Live
    Photo's ``IMG_1.xmp``, written for ``IMG_1.HEIC`` beside ``IMG_1.MOV``). First of all, a file
    named as the sidecar less ``.xmp`` owns it in the other style: ``a.jpg.xmp`` is the photo
    ``a.jpg``'s, not the base-style one of ``a.jpg.jpg`` beside it (an export's copy, ``IMG_1.HEIC.jpg``)."""
    named = base_style.with_name(base_style.name[:-len(".xmp")]) if base_style.name.lower().endswith(".xmp") else None
    if named is not None and named.suffix and named != photo:
        try:
            if stat.S_ISREG(os.stat(named).st_mode) and not os.path.samefile(named, photo):
                return f"{base_style.name} is the sidecar of {named.name}"
        except (OSError, ValueError):  # not there (or not to be looked at): no such owner
            pass
    kind = _declared_for(base_style)
    if kind is not None:
        if kind.lower() == photo.suffix.lstrip(".").lower():
            return None
        return f"{base_style.name} is the sidecar of a .{kind.upper()} file (its photoshop:SidecarForExtension says so)"
    for ext in sorted(SIDECAR_OWNER_EXTENSIONS - {photo.suffix.lower()}):  # an .avif given by name owns its own
        for candidate in _in_cases(photo, ext):
            try:
                if stat.S_ISREG(os.stat(candidate).st_mode):
                    return f"{base_style.name} is the sidecar of {candidate.name}"
            except (OSError, ValueError):  # not there, or a name too long for the disk (no such file either)
                continue
    return None


def _declared_for(base_style: Path) -> str | None:
    """The file type a base-style sidecar's ``photoshop:SidecarForExtension`` names ("CR2"), if any."""
    try:
        with open(base_style, "rb") as handle:
            declared = _SIDECAR_FOR.search(handle.read(256 * 1024))
    except OSError:
        return None
    return declared.group(1).decode("ascii") if declared else None


def _declared_own(photo: Path, base_style: Path) -> bool:
    """Whether the sidecar says it is this photo's (its declared type is the photo's own): then no
    other photo of the name shares it (a Live Photo's IMG_1.xmp for IMG_1.HEIC beside IMG_1.JPG)."""
    kind = _declared_for(base_style)
    return kind is not None and kind.lower() == photo.suffix.lstrip(".").lower()


def _identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):
        raise IsADirectoryError(path)
    return status.st_dev, status.st_ino


def find_sidecar(photo: str | Path) -> Path | None:
    """The existing sidecar of a photo: ``photo.jpg.xmp`` if there is one, else ``photo.xmp`` (either
    also spelled with its extensions in other cases, ``PHOTO.JPG.XMP``).

    Raises:
        SidecarCollisionError: only ``photo.xmp`` exists and another photo shares its name stem, so
            it is unclear whose sidecar it is.
        SidecarError: the sidecar's name is too long for the file system, or something that is not
            a regular file (a folder, a FIFO, a symbolic link) has the sidecar's name.
    """
    photo = Path(photo)
    for ext_style in _spellings(photo, "ext"):
        try:
            if _sidecar_exists(ext_style, photo):
                return ext_style
        except _NameTooLong:
            break  # it cannot exist; photo.xmp may

    for base_style in _spellings(photo, "base"):
        if base_style != photo and _sidecar_exists(base_style, photo):
            if _owned_elsewhere(photo, base_style):
                return None  # a raw's beside its JPEG: the photo has no sidecar of its own yet
            _refuse_shared(photo, base_style, owner_checked=True)
            return base_style
    return None


def find_sidecar_or_none(photo: str | Path) -> Path | None:
    """:func:`find_sidecar`, or None where it cannot be told (a sidecar shared, or not a file)."""
    try:
        return find_sidecar(photo)
    except SidecarError:
        return None


def _caption_beside(photo: Path, sidecar: Path) -> StoredCaption | None:
    """The caption of the photo's ``photo.xmp`` beside its ``photo.jpg.xmp`` (``sidecar``), if any
    (see :func:`_base_style_beside`); one that cannot be read is another program's to mend."""
    base_style, shared = _base_style_beside(photo, sidecar)
    if base_style is None:
        return None
    try:
        caption = caption_from_packet(_read_limited(base_style, photo), base_style)
    except SidecarError as exc:
        log.info("%s: not read beside %s: %s", base_style, sidecar.name, exc.reason)
        return None
    if caption is not None and shared is not None:  # whose caption it is cannot be told: said, not hidden
        raise shared
    return caption


def has_ext_style_sidecar(photo: str | Path) -> bool:
    """Whether the photo has a ``photo.jpg.xmp`` (in any case of its extensions), which every
    write goes to whatever the naming style (False where that cannot be told)."""
    photo = Path(photo)
    try:
        return any(_sidecar_exists(path, photo) for path in _spellings(photo, "ext"))
    except SidecarError:
        return False


def _base_style_beside(photo: Path, sidecar: Path) -> tuple[Path | None, SidecarCollisionError | None]:
    """The ``photo.xmp`` beside ``sidecar``, the photo's ``photo.jpg.xmp`` (a photo can have both:
    Lightroom's, and darktable's made on import), and why it may be another photo's too (None: the
    photo's alone). None for none, one owned elsewhere (a raw's), or one that cannot be looked at."""
    if sidecar.name.casefold() != f"{photo.name}.xmp".casefold():
        return None, None
    for base_style in _spellings(photo, "base"):
        try:
            if base_style != photo and _sidecar_exists(base_style, photo):
                if _owned_elsewhere(photo, base_style):
                    return None, None
                try:
                    _refuse_shared(photo, base_style, owner_checked=True)
                except SidecarCollisionError as shared:
                    return base_style, shared
                return base_style, None
        except SidecarError:
            return None, None
    return None, None


def _spellings(photo: Path, style: SidecarStyle) -> list[Path]:
    """The names a photo's sidecar may have in a naming style: imgcap's own first, then the
    extensions' other cases that cameras and other systems write (``IMG_1.JPG.XMP``, ``IMG_1.XMP``,
    or ``img_1.JPG.xmp`` for ``img_1.jpg`` from a case-insensitive disk). On a case-sensitive disk
    these are other files; a spelling that names another photo's sidecar (``a.JPG.xmp`` where
    ``a.JPG`` is there too) is left to that photo."""
    own = sidecar_path(photo, style)
    suffixes = dict.fromkeys([photo.suffix, photo.suffix.lower(), photo.suffix.upper()])
    names = [f"{photo.stem}{suffix}" for suffix in suffixes] if style == "ext" else [photo.stem]
    spellings = [own]
    for name in names:
        if name != photo.name and _another_file(photo.with_name(name), photo):
            continue  # another photo's (a case-sensitive disk with both a.jpg and a.JPG)
        for xmp in (".xmp", ".XMP", ".Xmp"):
            candidate = photo.with_name(name + xmp)
            if candidate not in spellings:
                spellings.append(candidate)
    return spellings


def _another_file(path: Path, photo: Path) -> bool:
    """Whether ``path`` is there and is not ``photo`` itself (on a case-insensitive disk it is)."""
    try:
        return not os.path.samefile(path, photo)
    except OSError:  # not there (or the photo is not: then it cannot be told, and it is not ours)
        return path.exists() or path.is_symlink()


def _sidecar_exists(path: Path, photo: Path) -> bool:
    """Whether a sidecar is there, refusing anything but a regular file (never following a link)."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            hint = " (--sidecar-style base names it photo.xmp)" if path.name.endswith(f"{photo.name}.xmp") else ""
            raise _NameTooLong(photo, f"sidecar name too long for the file system{hint}") from None
        if exc.errno == errno.ENOTDIR:
            return False
        raise SidecarError(photo, f"cannot look for {path.name}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(status.st_mode):
        raise SidecarError(
            photo, f"{path.name} is a symbolic link; imgcap does not write through links (left as it is)"
        )
    if stat.S_ISDIR(status.st_mode):
        raise SidecarError(photo, f"{path.name} is a folder, not a sidecar")
    if not stat.S_ISREG(status.st_mode):
        raise SidecarError(photo, f"{path.name} is not a regular file; left as it is")
    return True


def _refuse_shared(photo: Path, base_style: Path, *, owner_checked: bool = False) -> None:
    owner = None if owner_checked else _owned_elsewhere(photo, base_style)
    if owner:
        raise SidecarCollisionError(photo, f"{owner}; use the photo.jpg.xmp naming style for {photo.name}")
    if os.path.lexists(base_style) and _declared_own(photo, base_style):
        return
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
            (read-only) and return it with source ``"embedded"`` (or ``"automatic"`` when imgcap's
            own provenance embedded with it says so).

    Returns:
        The caption, or None where there is none.

    Raises:
        SidecarError: the sidecar exists but cannot be read (malformed, binary, too large,
            entity declarations, unreadable, not a regular file), or is shared by two photos in
            base style.
    """
    photo = Path(photo)
    path = find_sidecar(photo)
    if path is not None:
        caption = caption_from_packet(_read_limited(path, photo), path)
        if caption is not None:
            return caption
        if (caption := _caption_beside(photo, path)) is not None:
            return caption
    if embedded:
        from imgcap_desktop.metadata.embedded import read_embedded_caption

        return read_embedded_caption(photo)
    return None


def _sidecar_rdf(photo: Path) -> xmp_edit.Node | None:
    """The ``rdf:RDF`` of the photo's sidecar, None without one.

    Raises:
        SidecarError: the sidecar cannot be read, or is not safe, well-formed XMP.
    """
    target = find_sidecar(photo)
    if target is None:
        return None
    packet = _read_limited(target, photo)
    _check_packet(packet, target)
    return _rdf(packet, target)


def keywords_as_written(photo: str | Path, keywords: Sequence[str]) -> tuple[str, ...]:
    """imgcap's keywords for the photo once an automatic caption with ``keywords`` is written: the
    merge with its sidecar's (a keyword a person removed stays out, one they added stays in, one
    another tool has is not imgcap's). What a caption held for review shows, so that Accept writes
    what was shown. Without a sidecar, or one that cannot be read: ``keywords``.
    """
    try:
        rdf = _sidecar_rdf(Path(photo))
    except SidecarError:
        rdf = None
    if rdf is None:
        return tuple(dict.fromkeys(keywords))
    merged = merge_keywords(
        xmp_edit.subject(rdf), _as_list(xmp_edit.imgcap_value(rdf, "keywords")) or [],
        _as_list(xmp_edit.imgcap_value(rdf, "rejectedKeywords")) or [], keywords, human=False,
        person=_as_list(xmp_edit.imgcap_value(rdf, "personKeywords")) or [])
    return tuple(merged.ours)


def other_tools_keywords(photo: str | Path) -> list[str]:
    """The keywords of the photo's sidecar (``dc:subject``) that are not imgcap's; [] without one.

    Raises:
        SidecarError: the sidecar cannot be read.
    """
    rdf = _sidecar_rdf(Path(photo))
    if rdf is None:
        return []
    ours = set(_as_list(xmp_edit.imgcap_value(rdf, "keywords")) or ())
    return [k for k in xmp_edit.subject(rdf) if k not in ours]


def caption_taken_out(photo: str | Path, text: str) -> bool:
    """Whether the photo's sidecar holds no caption but still imgcap's record of having written
    ``text`` (its digest): another program took that caption out since.

    Raises:
        SidecarError: the sidecar cannot be read.
    """
    rdf = _sidecar_rdf(Path(photo))
    if rdf is None or _shown_text(_languages(rdf)):
        return False
    return xmp_edit.imgcap_value(rdf, "textDigest") == _digest(text)


def write_caption(photo: str | Path, caption: StoredCaption, *, style: SidecarStyle = "ext",
                  keywords_by_person: bool | None = None, rejected_keywords: Sequence[str] = (),
                  added_by_person: Sequence[str] = (), keep_persons: bool = False,
                  replacing: StoredCaption | None = None, keep_any: bool = False) -> Path:
    """Store a caption (and imgcap's keywords) in the photo's sidecar, changing nothing else there.

    An existing sidecar (of either naming style) is updated; otherwise one is created in ``style``.
    The photo itself is never opened.

    Keywords are merged into ``dc:subject``: other tools' keywords are never removed or reordered;
    imgcap's from an earlier run that ``caption.keywords`` no longer holds are removed, new ones are
    appended. A keyword of ours that a person removed (here, in the sidecar, or through a human
    caption) is remembered and not added again by an automatic caption.

    Args:
        photo: the photo.
        caption: the caption; its source must be ``"automatic"`` or ``"human"``. An empty text
            removes the ``x-default`` description (and the whole field if no language is left).
        style: naming style for a new sidecar.
        keywords_by_person: ``caption.keywords`` are a person's choice (a keyword removed in the
            app is then rejected: never added again automatically), whatever the caption's source;
            default: when the caption is a person's.
        rejected_keywords: keywords a person removed before this sidecar held them (a caption held
            for review): recorded as rejected too, unless ``caption.keywords`` holds them.
        added_by_person: keywords of ``caption.keywords`` that a person added (not the model):
            recorded in ``imgcap:personKeywords``, so that an automatic run keeps them.
        keep_persons: a caption a person wrote in the sidecar is kept (:class:`PersonsCaptionKept`
            is raised), decided on the very bytes the new caption would be merged into; all but
            ``replacing``, the one a person agreed to replace (same text), and one with the new
            caption's own text. ``keep_any``: a caption from any hand is kept so (a person's held
            typing meets what another program wrote since it was typed).

    Another program writing the sidecar meanwhile is not overwritten: the sidecar is replaced only
    if it still holds what was read, else the merge starts again on what is there now.

    Returns:
        The sidecar's path.

    Raises:
        SidecarError: the photo is not there, the existing sidecar cannot be parsed (it is left
            untouched), the new one would change another tool's value, the caption holds
            characters XML cannot store, or the folder is read-only or the disk is full.
        SidecarCollisionError: in base style another photo would share the sidecar.
        PersonsCaptionKept: with ``keep_persons``, the sidecar holds a person's caption.
        ValueError: ``caption.source`` is not ``"automatic"`` or ``"human"``, or the caption is white
            space alone.
    """
    photo = Path(photo)
    if caption.source not in ("automatic", "human"):
        raise ValueError(f"only automatic or human captions are written, not {caption.source!r}")
    if caption.text and is_blank(caption.text):  # read back, it is no caption: one "" takes it out
        raise ValueError("a caption of white space alone is no caption")
    for value in (caption.text, caption.model or "", *(caption.keywords or ())):
        bad = _UNSTORABLE.search(value)
        if bad:
            code = f"U+{ord(bad.group()):04X}"
            raise SidecarError(photo, f"the caption holds a control character ({code}) that XMP cannot store")

    if not os.path.lexists(photo):  # moved or deleted since it was listed: no orphan sidecar
        raise SidecarError(photo, "the photo is not there any more (moved or deleted); no sidecar written")
    # Another program may write the sidecar while this one is merged: the merge starts again on
    # what it wrote (see _replace_atomically), a few times at most.
    for _ in range(WRITE_ATTEMPTS):
        try:
            return _write_once(photo, caption, style, keywords_by_person, rejected_keywords, added_by_person,
                               keep_persons, replacing, keep_any)
        except _ChangedMeanwhile:
            continue
    raise SidecarError(photo, f"another program kept changing the sidecar while imgcap wrote it ({WRITE_ATTEMPTS} "
                              "tries); left as it is")


def _write_once(photo: Path, caption: StoredCaption, style: SidecarStyle, keywords_by_person: bool | None,
                rejected_keywords: Sequence[str], added_by_person: Sequence[str], keep_persons: bool,
                replacing: StoredCaption | None, keep_any: bool) -> Path:
    """One try of :func:`write_caption`, from reading the sidecar to replacing it.

    Raises:
        _ChangedMeanwhile: the sidecar changed after it was read (nothing was written).
    """
    target = find_sidecar(photo)
    existed = target is not None
    if target is None and not caption.text and not caption.keywords and not rejected_keywords:
        return sidecar_path(photo, style)  # nothing to store, and no sidecar to take a caption out of
    if target is None:
        target = sidecar_path(photo, style)
        if style == "base":
            _refuse_shared(photo, target)
        _sidecar_exists(target, photo)  # a name too long, or a link or FIFO where the sidecar goes
        packet, read = _new_packet(), None
    else:
        packet = read = _read_limited(target, photo)
        if not os.stat(target).st_mode & 0o222:  # the bits, not os.access: root may write anything
            # Made read-only on purpose (a locked edit, an archive copy): a rename could replace it.
            raise SidecarError(target, "read-only; left as it is")
    try:
        _check_packet(packet, target)
        before = _rdf(packet, target)
    except SidecarError:
        if read is not None and _changing(target, photo, read):  # caught half-written: read it again
            raise _ChangedMeanwhile() from None
        raise
    if keep_persons and existed:
        stored = caption_from_packet(packet, target)
        agreed = stored is not None and (stored.text == caption.text or replacing is not None and (
            stored.text, stored.source) == (replacing.text, replacing.source))
        kept = stored is not None and stored.text and (keep_any or stored.source == "human")
        if kept and not agreed:  # decided on the bytes merged below
            raise PersonsCaptionKept(photo, stored)
    beside = None  # a model's caption (a run's thousands of writes) never looks beside
    if existed and (not caption.text or caption.source == "human"):
        with contextlib.suppress(SidecarCollisionError):  # the photo.xmp beside may be another photo's
            beside = _caption_beside(photo, target)
    if caption.text and caption.source == "human" and beside is not None and beside.text == caption.text:
        if not _shown_text(_languages(before)):
            return target  # shown from the photo.xmp beside already: nothing to write
        caption = replace(caption, text="")  # the photo.xmp beside says it (an edit undone): no copy here
    shown = _languages(before)
    if caption.text and caption.language and shown.get(caption.language) == caption.text \
            and not is_blank(shown.get(_X_DEFAULT, "")):
        # A caption read from another language's item (an edit of it undone): the x-default item
        # written since goes, as it came, and that item shows again; no x-default copy of it.
        caption = replace(caption, text="")
    if not caption.text and existed and not _shown_text(shown):
        if beside is not None:  # the caption shown is there
            raise SidecarError(photo, f"the caption is in {photo.stem}.xmp, another program's sidecar beside "
                                      f"{target.name}, which imgcap leaves to it; nothing was written")
    _clean_once(target.parent)

    old_ours = _as_list(xmp_edit.imgcap_value(before, "keywords"))
    old_rejected = _as_list(xmp_edit.imgcap_value(before, "rejectedKeywords"))
    old_person = _as_list(xmp_edit.imgcap_value(before, "personKeywords"))
    subject = xmp_edit.subject(before)
    if caption.keywords is None:
        new_subject, ours, rejected, person = None, old_ours, old_rejected, old_person
    else:
        new_subject, ours, rejected, person = merge_keywords(
            subject, old_ours or [], old_rejected or [], caption.keywords,
            human=caption.source == "human" if keywords_by_person is None else keywords_by_person,
            person=old_person or [], added_by_person=added_by_person,
        )
        rejected = list(dict.fromkeys([*rejected, *(k for k in rejected_keywords if k not in caption.keywords)]))
    told = bool(caption.text)  # provenance is a caption's: none is left with a caption taken out
    # The caption shown is another language's item, and stays the caption (its keywords edited, say):
    # no x-default copy of it, which would hide that item's later edits in any other program.
    # A caption that was the x-default item's (a clear of it undone, where another language repeats
    # its words) goes back into it.
    kept_as_is = (told and caption.language is not None and not shown.get(_X_DEFAULT, "").strip()
                  and _shown_text(shown) == caption.text)
    # A description programs read differently (xmp_edit.ambiguity) is never written; its caption as
    # shown, unchanged, leaves it alone, so that keywords can still be edited.
    kept_as_is = kept_as_is or (told and _shown_text(shown) == caption.text
                                and xmp_edit.ambiguity(before, _DC, "description") is not None)
    changes = xmp_edit.Changes(
        caption=None if kept_as_is else caption.text,
        imgcap=[
            ("source", caption.source if told else None),
            ("model", caption.model or None if told else None),
            ("score", repr(float(caption.score)) if caption.score is not None and told else None),
            ("captionedAt", caption.captioned_at or None if told else None),
            ("textDigest", _digest(caption.text) if told else None),
            ("keywords", ours),
            ("rejectedKeywords", rejected or None),
            ("personKeywords", person or None),
        ],
        subject=new_subject,
    )
    declared = _DECLARED_ENCODING.match(packet)
    ours_written = [caption.text, caption.model or "", *(ours or ()), *(rejected or ()), *(person or ())]
    if (declared and declared[1].lower().replace(b"-", b"").replace(b"_", b"") != b"utf8"
            and not all(value.isascii() for value in ours_written)):
        raise SidecarError(target, f"it declares the {declared[1].decode('ascii')} encoding, and imgcap writes "
                                   f"UTF-8 only: letters outside ASCII cannot go in; left as it is")
    try:
        updated = xmp_edit.apply_changes(packet, changes)
    except xmp_edit.XmpError as exc:
        raise SidecarError(target, f"{exc}; left as it is") from None

    # Read our own output back before it replaces anything: the caption and our provenance must
    # survive exactly, and so must every value another tool stored.
    _check_packet(updated, target)
    after = _rdf(updated, target)
    owned = set(ours or ())
    expected_keywords = None if ours is None else tuple(k for k in dict.fromkeys(xmp_edit.subject(after))
                                                        if k in owned)
    expected = StoredCaption(
        caption.text, caption.source, caption.model or None, caption.score, caption.captioned_at or None,
        expected_keywords
    )
    stored = caption_from_packet(updated, target)
    if caption.text and stored != expected:
        raise SidecarError(photo, "the caption did not survive the XMP round trip; nothing was written")
    if not caption.text and _languages(after).get(_X_DEFAULT):
        raise SidecarError(photo, "the caption was not removed; nothing was written")
    shown_language = next((lang for lang, text in _languages(before).items() if text.strip()), None)
    if not caption.text and stored is not None and stored.text and not _languages(before).get(_X_DEFAULT):
        # The caption shown is another language's item (no x-default one): imgcap leaves those alone.
        raise SidecarError(photo, f"the caption is the sidecar's {shown_language} description, which imgcap "
                                  "leaves to the program that wrote it; nothing was written")
    if existed:
        changed = _first_difference(xmp_edit.foreign_properties(before), xmp_edit.foreign_properties(after))
        if changed is None:
            changed = _keywords_changed(subject, old_ours, xmp_edit.subject(after), new_subject)
        if changed is not None:
            raise SidecarError(photo, f"writing would change {changed} in {target.name}; left as it is")
        if not caption.text and _only_our_stub(updated):
            # Nothing anyone stored is left (a caption typed here and undone): no sidecar, as before.
            _remove(target, photo, read)
            return target
    _replace_atomically(target, updated, photo, read)
    return target


def _only_our_stub(data: bytes) -> bool:
    """Whether a packet is nothing but what imgcap puts in a sidecar it creates: ``x:xmpmeta``,
    ``rdf:RDF`` and empty ``rdf:Description`` elements, one of them with imgcap's ``xmp:CreatorTool``;
    no other element, attribute, text, comment or processing instruction anywhere."""
    if b"<!--" in data or re.search(rb"<\?(?!xpacket)", data):
        return False
    root = xmp_edit.parse(data)
    rdf = xmp_edit.rdf_root(root)
    if rdf is None or (root is not rdf and (root.attrs or root.children != [rdf] or root.text.strip())):
        return False
    if rdf.attrs or rdf.text.strip() or any(not c.is_(_RDF, "Description") for c in rdf.children):
        return False
    creator = 0
    for desc in rdf.children:
        if desc.children or desc.text.strip():
            return False
        for uri, local, _, value in desc.attrs:
            if (uri, local) == (_XMP, "CreatorTool") and re.fullmatch(r"imgcap( \S+)?", value):
                creator += 1
            elif (uri, local) != (_RDF, "about") or value:
                return False
    return creator == 1


def _remove(target: Path, photo: Path, read: bytes) -> None:
    _still(target, read)
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SidecarError(photo, f"cannot remove {target.name}: {exc.strerror or exc}") from None


class KeywordMerge(NamedTuple):
    """``dc:subject`` and imgcap's keyword records after :func:`merge_keywords`."""

    subject: list[str]
    ours: list[str]
    rejected: list[str]
    person: list[str]


def merge_keywords(
    subject: Sequence[str], ours: Sequence[str], rejected: Sequence[str], wanted: Sequence[str], *, human: bool,
    person: Sequence[str] = (), added_by_person: Sequence[str] = (),
) -> KeywordMerge:
    """Merge imgcap's keywords into a ``dc:subject`` list without disturbing anyone else's.

    Args:
        subject: the keywords in the sidecar now, in order.
        ours: the keywords imgcap recorded as its own last time.
        rejected: keywords of ours that a person removed earlier.
        wanted: what imgcap's keywords should be now.
        human: the change is a person's: keywords of ours left out of ``wanted`` are rejected
            (never added again automatically), and a rejected keyword in ``wanted`` is allowed again.
        person: keywords of ours that a person added (through imgcap): an automatic change keeps
            them, as it keeps another tool's; only a person's change removes one.
        added_by_person: keywords of ``wanted`` that a person adds now (an edited CSV cell): they
            join ``person``. (The model's keywords a person kept, or put back, stay the model's.)

    Returns:
        After the merge: other tools' keywords keep their place and order, ours that are no longer
        wanted are gone (a person's stay unless the change is a person's), new ones are appended.
    """
    present = set(subject)
    ours_present = [k for k in dict.fromkeys(ours) if k in present]
    ours_there = set(ours_present)
    person_present = [k for k in dict.fromkeys(person) if k in ours_there]
    wanted = list(dict.fromkeys(wanted))
    if not human:
        listed = set(wanted)
        wanted += [k for k in person_present if k not in listed]
    wanting = set(wanted)
    # Ours that are gone from the sidecar were removed by a person, in this or another tool.
    rejected = list(dict.fromkeys([*rejected, *(k for k in ours if k not in present)]))
    if human:
        rejected = [k for k in dict.fromkeys([*rejected, *(k for k in ours_present if k not in wanting)])
                    if k not in wanting]
    refused = set(rejected)
    drop = {k for k in ours_present if k not in wanting}
    # A keyword another tool has in another case ("Cat") is there already: not added twice.
    theirs = {k.casefold() for k in subject if k not in ours_there}
    added = [k for k in wanted if k not in present and k.casefold() not in theirs and k not in refused]
    new_subject = [k for k in subject if k not in drop] + added
    owned = (ours_there - drop) | set(added)
    new_ours = [k for k in dict.fromkeys(new_subject) if k in owned]
    persons = set(person_present) | set(added_by_person)
    return KeywordMerge(new_subject, new_ours, rejected, [k for k in new_ours if k in persons])


def _keywords_changed(before: list[str], old_ours: list[str] | None, after: list[str],
                      wanted: list[str] | None) -> str | None:
    """What went wrong with ``dc:subject``, if anything: it must be exactly the merge's result, and
    every keyword that was not ours must still be there, in its order."""
    if wanted is None:
        return None if after == before else "the keywords (dc:subject)"
    if after != wanted:
        return "the keywords (dc:subject)"
    old = set(old_ours or ())
    theirs = [k for k in before if k not in old]
    kept = set(theirs)
    return None if [k for k in after if k in kept] == theirs else "another tool's keywords (dc:subject)"


def _first_difference(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> str | None:
    if before == after:
        return None
    for (path_b, value_b), (path_a, value_a) in zip(before, after):
        if path_b != path_a or value_b != value_a:
            return _readable(path_b)
    longer = before if len(before) > len(after) else after
    return _readable(longer[min(len(before), len(after))][0])


_KNOWN_PREFIXES = {
    _DC: "dc", "http://ns.adobe.com/xap/1.0/": "xmp", "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/tiff/1.0/": "tiff", "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/lightroom/1.0/": "lr", "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
}  # fmt: skip


def _readable(path: str) -> str:
    """``{http://ns.adobe.com/exif/1.0/}GPSLatitude/...`` -> ``exif:GPSLatitude`` for messages."""
    match = re.match(r"\{([^}]*)\}([^/\[]*)", path)
    if match is None:  # pragma: no cover - every path starts with a property name
        return path
    uri, local = match.groups()
    return f"{_KNOWN_PREFIXES.get(uri, uri)}:{local}" if uri in _KNOWN_PREFIXES else f"{local} ({uri})"


def _as_list(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # "" is how an empty list is written (<imgcap:keywords/>)
        return [value] if value else []
    return list(value)


def _new_packet() -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        f' xmp:CreatorTool="{xmp_edit.escape(CREATOR_TOOL)}"/>\n'
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    ).encode("utf-8")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _read_limited(path: Path, photo: Path) -> bytes:
    """A sidecar's bytes; refuses anything but a regular file and never blocks (FIFOs)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise SidecarError(photo, f"{path.name} is a folder, not a sidecar") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SidecarError(photo, f"{path.name} is a symbolic link; imgcap does not write through links") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise SidecarError(photo, "sidecar name too long for the file system") from None
        raise SidecarError(photo, f"cannot read {path.name}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise SidecarError(photo, f"{path.name} is a folder, not a sidecar")
            raise SidecarError(photo, f"{path.name} is not a regular file; left as it is")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise SidecarError(photo, f"cannot read {path.name}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarError(
            photo,
            f"{path.name} is larger than {MAX_SIDECAR_BYTES // (1024 * 1024)} MiB, more than a sidecar holds; "
            "left as it is",
        )
    return data


def _check_packet(data: bytes, path: Path) -> None:
    """Refuse anything that is not plain, safe XMP text (before any XML parser sees it)."""
    if not data.strip():
        raise SidecarError(path, "empty file; left as it is")
    if _UTF16.match(data):
        raise SidecarError(path, "UTF-16 XMP is not supported; left as it is")
    if b"\x00" in data:
        raise SidecarError(path, "binary data, not XMP text; left as it is")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SidecarError(path, "not UTF-8 text; left as it is") from None
    if _DECLARATION.search(data):
        raise SidecarError(path, "declares a DOCTYPE or entities, which imgcap refuses to read; left as it is")


def _rdf(data: bytes, path: Path) -> xmp_edit.Node:
    """The ``rdf:RDF`` element of a packet that passed :func:`_check_packet`."""
    try:
        rdf = xmp_edit.rdf_root(xmp_edit.parse(data))
    except xmp_edit.XmpError as exc:
        raise SidecarError(path, f"{exc}; left as it is") from None
    if rdf is None:
        raise SidecarError(path, "XML but not XMP (no rdf:RDF); left as it is")
    return rdf


def _languages(rdf: xmp_edit.Node) -> dict[str, str]:
    """Every language of the top-level ``dc:description``, in document order. Where the packet gives
    one twice (not valid XMP, see :func:`xmp_edit.ambiguity`) the last counts, as exiftool reads it."""
    for prop in reversed(xmp_edit.properties(rdf)):
        if (prop.uri, prop.local) == (_DC, "description"):
            if prop.element is None:
                return {_X_DEFAULT: prop.value}
            if not prop.element.children:  # <dc:description>text</dc:description>: exiftool reads it too
                return {_X_DEFAULT: prop.element.text} if prop.element.text.strip() else {}
            languages: dict[str, str] = {}
            for li in xmp_edit.items(prop.element):
                languages[xmp_edit.lang_of(li)] = li.text
            return languages
    return {}


#: Characters that show nothing and are not white space to ``str.strip``: zero-width ones, a BOM.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def is_blank(text: str) -> bool:
    """Whether a caption says nothing: white space and invisible characters alone (a tool's
    cleared field, a zero-width space pasted in) are no caption."""
    return not text.translate(_INVISIBLE).strip()


def _shown_text(languages: dict[str, str]) -> str:
    """The caption a description's languages give: its ``x-default`` item, else its first other one
    that says something ("" for none; see :func:`is_blank`)."""
    return next((t for t in (languages.get(_X_DEFAULT, ""), *languages.values()) if not is_blank(t)), "")


def caption_from_packet(data: bytes, path: Path) -> StoredCaption | None:
    """The caption (and imgcap's keywords) in an XMP packet, or None when it holds no description.

    Raises:
        SidecarError: the packet is not safe, well-formed XMP.
    """
    _check_packet(data, path)
    rdf = _rdf(data, path)
    languages = _languages(rdf)
    text = _shown_text(languages)
    if not text:
        return None
    language = None if not is_blank(languages.get(_X_DEFAULT, "")) else next(
        lang for lang, item in languages.items() if item == text)

    def value(name: str) -> str | None:
        found = xmp_edit.imgcap_value(rdf, name)
        return found if isinstance(found, str) else None

    ours = _as_list(xmp_edit.imgcap_value(rdf, "keywords"))
    owned = set(ours or ())
    keywords = None if ours is None else tuple(k for k in dict.fromkeys(xmp_edit.subject(rdf)) if k in owned)
    source = value("source")
    if source not in ("automatic", "human") or value("textDigest") != _digest(text):
        # Written by another tool, or edited there after imgcap wrote it: a person's caption.
        return StoredCaption(text=text, source="human", keywords=keywords, language=language)
    score_text = value("score")
    try:
        score = float(score_text) if score_text else None
    except ValueError:
        score = None
    return StoredCaption(
        text=text,
        source=source,
        model=value("model") or None,
        score=score,
        captioned_at=value("captionedAt") or None,
        keywords=keywords,
        language=language,
    )


def remove_stale_temp_files(folder: str | Path, *, sidecars: Collection[str] | None = None,
                            older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove temporary sidecars (``.photo.jpg.xmp.k2j4_8zq.tmp``) that a killed writer left behind.

    Only files named as imgcap names its own, and older than ``older_than`` seconds (so a write in
    progress elsewhere is never disturbed), are removed.

    Args:
        folder: the folder to clean.
        sidecars: where given, only the temporary files of these sidecar names (compared
            case-insensitively) are removed.

    Returns:
        The files removed.
    """
    wanted = None if sidecars is None else {name.casefold() for name in sidecars}
    removed = []
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _OUR_TEMP.match(entry.name)
        if match is None or wanted is not None and match["target"].casefold() not in wanted:
            continue
        try:
            status = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(status.st_mode) and status.st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError as exc:
            log.info("cannot remove the stale temporary sidecar %s: %s", entry.path, exc)
    if removed:
        log.info("removed %d stale temporary sidecar(s) in %s", len(removed), folder)
    return removed


def _clean_once(folder: Path) -> None:
    """Stale temporary sidecars removed from ``folder`` by the first write there in this process."""
    key = os.path.abspath(folder)
    if key not in _CLEANED:
        _CLEANED.add(key)
        remove_stale_temp_files(folder)


_CLEANED: set[str] = set()


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()


class _ChangedMeanwhile(Exception):
    """The sidecar is not what was read any more: another program wrote it meanwhile."""


class PersonsCaptionKept(SidecarError):
    """:func:`write_caption` with ``keep_persons``: the sidecar holds a person's caption, kept."""

    def __init__(self, photo: Path, stored: StoredCaption):
        super().__init__(photo, "a person's caption is kept")
        self.stored = stored


def _changing(target: Path, photo: Path, read: bytes) -> bool:
    """Whether a sidecar that could not be parsed is being written right now (a program that
    rewrites it in place: truncated, then filled), told by its bytes a moment later."""
    time.sleep(CHANGING_PAUSE_S)
    try:
        return _read_limited(target, photo) != read
    except SidecarError:
        return False


def _still(target: Path, read: bytes | None) -> None:
    """Raise :class:`_ChangedMeanwhile` unless ``target`` holds ``read`` (None: it is not there)."""
    if read is None:
        if os.path.lexists(target):
            raise _ChangedMeanwhile()
        return
    try:
        with open(target, "rb") as handle:
            now = handle.read(len(read) + 1)
    except FileNotFoundError:
        raise _ChangedMeanwhile() from None
    except OSError:  # unreadable now: the write reports why
        return
    if now != read:
        raise _ChangedMeanwhile()


def _replace_atomically(target: Path, data: bytes, photo: Path, read: bytes | None) -> None:
    """Replace the sidecar ``target`` with ``data``, if it still holds ``read`` (None: a new one,
    created only where no other program has created it meanwhile)."""
    try:
        replace_atomically(target, data, expected=read, check=True)
    except OSError as exc:
        raise SidecarError(photo, _write_failure(exc, target)) from None


def replace_atomically(target: str | Path, data: bytes, *, expected: bytes | None = None,
                       check: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``target``, fsync it, and move it over ``target``.

    Readers see the old file or the new one, never a partial one, even if the process is killed.
    With ``check``, ``target`` is replaced only if it holds ``expected`` at the last moment (None: it
    is created only if it is not there; exclusively, where the file system has hard links), else
    :class:`_ChangedMeanwhile` is raised and nothing is written. No lock keeps another program out,
    so the window left is the few microseconds between that look and the rename.

    Raises:
        OSError: the file cannot be written (read-only folder, full disk); ``target`` is unchanged.
    """
    target = Path(target)
    tmp_name = None
    try:
        name = target.name
        if len(os.fsencode(name)) > 200:  # room for ".", ".k2j4_8zq.tmp" within 255 bytes
            name = hashlib.sha256(os.fsencode(name)).hexdigest()[:16] + "".join(target.suffixes[-1:])
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            status = target.stat()
        except FileNotFoundError:
            mode = _NEW_FILE_MODE
        else:
            mode = status.st_mode & 0o7777
            _keep_ownership(target, status, tmp_name)
        os.chmod(tmp_name, mode)  # after the owner: a change of owner clears the set-id bits
        if check:
            _still(target, expected)
        if check and expected is None and _created_exclusively(tmp_name, target):
            with contextlib.suppress(OSError):  # written; the hidden name goes later, as a stale one
                os.unlink(tmp_name)
        else:
            os.replace(tmp_name, target)
        tmp_name = None
        _fsync_folder(target.parent)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _keep_ownership(target: Path, status: os.stat_result, tmp_name: str) -> None:
    """Give the new file the old one's (``status``) owner, group and extended attributes (tags,
    ACLs), as far as this user may: a sidecar replaced by root, or in a shared folder, stays its owner's."""
    if hasattr(os, "chown"):
        for uid in (status.st_uid, -1):  # another user's: only root may; the group, its members may
            try:
                os.chown(tmp_name, uid, status.st_gid)
                break
            except OSError:
                continue
    if hasattr(os, "listxattr"):
        try:
            names = os.listxattr(target)
        except OSError:  # none on this file system
            return
        for name in names:
            try:
                os.setxattr(tmp_name, name, os.getxattr(target, name))
            except OSError:
                log.debug("cannot keep the attribute %s of %s", name, target)


def _created_exclusively(tmp_name: str, target: Path) -> bool:
    """Link ``tmp_name`` as ``target`` where no file of that name exists: True when done. Raises
    :class:`_ChangedMeanwhile` when another program created it first; False where the file system
    has no hard links (FAT, some network shares: the caller renames instead)."""
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        raise _ChangedMeanwhile() from None
    except OSError:
        return False
    return True


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
