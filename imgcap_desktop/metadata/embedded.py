"""Descriptions embedded in a photo (XMP, IPTC, EXIF), read without ever writing to the photo.

Pillow opens the photo lazily (no pixels are decoded), and the embedded XMP packet goes through the
same checks as a sidecar before it is parsed, so a hostile photo cannot expand entities.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from pathlib import Path

from PIL import Image, IptcImagePlugin

from imgcap_desktop.metadata.sidecar import SidecarError, StoredCaption, caption_from_packet
from model.images import UNREADABLE_IMAGE_ERRORS, is_regular_file

log = logging.getLogger(__name__)

_EXIF_IMAGE_DESCRIPTION = 0x010E
_IPTC_CAPTION = (2, 120)
_IPTC_CHARSET = (1, 90)
_IPTC_UTF8 = b"\x1b%G"

# What cameras put in ImageDescription when nobody wrote one ("OLYMPUS DIGITAL CAMERA", "SONY DSC",
# "KODAK Digital Still Camera", "Exif_JPEG_PICTURE", "default"): not a caption, and not a person's.
# The maker's name is in capitals: "Vintage digital camera" or "Factory default" is a person's.
_CAMERA_PLACEHOLDER = re.compile(
    r"^\s*(?:[A-Z][A-Z0-9-]{1,19}\s+)?(?i:digital\s+(?:still\s+)?camera|dsc|exif_jpeg_picture|default)\s*$"
)


def read_embedded_caption(photo: str | Path) -> StoredCaption | None:
    """The caption stored inside a photo, or None.

    Its source is ``"embedded"`` (a person's, for every policy that protects human captions),
    unless the embedded XMP carries imgcap's own provenance for that very text, which makes it
    ``"automatic"``.
    """
    photo = Path(photo)
    if not is_regular_file(photo):
        return None
    try:
        with _quiet_about_size(), Image.open(photo) as img:
            caption = _caption_from_xmp(img, photo)
            if caption is not None:
                return caption
            text = _from_iptc(img) or _from_exif(img)
    except UNREADABLE_IMAGE_ERRORS as exc:
        log.debug("no embedded description read from %s: %s", photo, exc)
        return None
    return StoredCaption(text=text, source="embedded") if text else None


def _caption_from_xmp(img: Image.Image, photo: Path) -> StoredCaption | None:
    packet = _xmp_packet(img) or (_gif_xmp_packet(photo) if img.format == "GIF" else None)
    if not packet:
        return None
    try:
        caption = caption_from_packet(packet, photo)
    except SidecarError as exc:
        log.info("ignoring the XMP embedded in %s: %s", photo.name, exc.reason)
        return None
    if caption is None or _clean(caption.text) is None:
        return None
    if caption.source == "automatic":
        return caption
    return StoredCaption(text=_clean(caption.text), source="embedded", keywords=caption.keywords)


#: A GIF's XMP: an application extension "XMP DataXMP" holding the packet as it is, which ends with
#: the XMP specification's "magic trailer" (0x01, 0xFF ... 0x00, 0x00). exiftool writes it after the
#: image data, where Pillow, which reads up to the first frame, never looks.
_GIF_XMP = re.compile(rb"!\xff\x0bXMP DataXMP(.*?)\x01\xff\xfe", re.DOTALL)
_GIF_XMP_MAX_BYTES = 64 * 1024 * 1024


def _gif_xmp_packet(photo: Path) -> bytes | None:
    """The XMP packet of a GIF (see :data:`_GIF_XMP`), or None."""
    with open(photo, "rb") as handle:
        found = _GIF_XMP.search(handle.read(_GIF_XMP_MAX_BYTES))
    return found.group(1).rstrip(b"\x00") if found else None


def _xmp_packet(img: Image.Image) -> bytes | None:
    packet = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    return packet.rstrip(b"\x00") if packet else None


def read_embedded_description(photo: str | Path) -> str | None:
    """The description stored inside a photo, or None.

    Looks, in the order the Metadata Working Group recommends, at XMP ``dc:description``
    (``x-default``, else the first language), IPTC Caption-Abstract and EXIF ImageDescription.
    A photo that cannot be opened simply has no description here.
    """
    photo = Path(photo)
    if not is_regular_file(photo):
        return None
    try:
        with _quiet_about_size(), Image.open(photo) as img:
            return _from_xmp(img, photo) or _from_iptc(img) or _from_exif(img)
    except UNREADABLE_IMAGE_ERRORS as exc:
        log.debug("no embedded description read from %s: %s", photo, exc)
        return None


def _from_xmp(img: Image.Image, photo: Path) -> str | None:
    caption = _caption_from_xmp(img, photo)
    return caption.text if caption else None


def _from_iptc(img: Image.Image) -> str | None:
    try:
        info = IptcImagePlugin.getiptcinfo(img)
    except (OSError, SyntaxError, ValueError, IndexError):
        return None
    if not info or _IPTC_CAPTION not in info:
        return None
    value = info[_IPTC_CAPTION]
    if isinstance(value, list):
        value = value[0]
    if info.get(_IPTC_CHARSET) == _IPTC_UTF8:
        return _clean(value.decode("utf-8", errors="replace"))
    return _clean(_decode_legacy(value))


def _from_exif(img: Image.Image) -> str | None:
    try:
        value = img.getexif().get(_EXIF_IMAGE_DESCRIPTION)
    except UNREADABLE_IMAGE_ERRORS:  # tags of the wrong type too: none read
        return None
    if isinstance(value, bytes):
        return _clean(_decode_legacy(value))
    if isinstance(value, str):
        # Pillow decodes EXIF ASCII as Latin-1; most cameras and tools actually write UTF-8.
        try:
            return _clean(_decode_legacy(value.encode("latin-1")))
        except UnicodeEncodeError:
            return _clean(value)
    return None


def _decode_legacy(value: bytes) -> str:
    """Text in a legacy field with no charset said: UTF-8 where it is that, else Windows' cp1252,
    as exiftool reads it ("Latin", its default for IPTC) and Photoshop writes it; the five bytes
    cp1252 leaves undefined are read as Latin-1."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", errors="surrogateescape").translate(_UNDEFINED_IN_CP1252)


# surrogateescape leaves a byte cp1252 cannot decode as U+DC80..U+DCFF: its Latin-1 character instead.
_UNDEFINED_IN_CP1252 = {0xDC00 + byte: byte for byte in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}


def _clean(text: str | None) -> str | None:
    # EXIF strings are NUL-terminated, and cameras pad an unset description with spaces.
    if text is None:
        return None
    text = text.rstrip("\x00")
    if not text.strip() or _CAMERA_PLACEHOLDER.match(text) or _software_metadata(text):
        return None
    return text


# What imaging libraries write into a TIFF's ImageDescription: tifffile's (so scikit-image's and
# imageio's) JSON of the array's shape, ImageJ's "ImageJ=1.53t\nimages=...", OME-XML.
_SOFTWARE_DESCRIPTION = re.compile(r"^\s*(?:ImageJ=|<\?xml\b|<OME\b)")


def _software_metadata(text: str) -> bool:
    """Whether an embedded description is data a program stored, not words about the photo."""
    if _SOFTWARE_DESCRIPTION.match(text):
        return True
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return False
    try:
        return isinstance(json.loads(stripped), dict)
    except ValueError:
        return False


@contextlib.contextmanager
def _quiet_about_size():
    """No DecompressionBombWarning on stderr while a description is read: the photo loader reports
    a photo that large in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
