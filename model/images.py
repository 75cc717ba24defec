"""Photo loading shared by every caller: the CLI, the app, training and evaluation.

Every photo goes through :func:`open_oriented`, so EXIF orientation, colour modes and hostile files
are handled once, the same way everywhere.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

try:  # HEIC/HEIF photos (every iPhone's default): pillow-heif is a dependency, but stay usable without it
    from pillow_heif import register_heif_opener

    register_heif_opener()
    _HEIF = True
except (ImportError, OSError):  # pragma: no cover - a build without the plugin or its library
    _HEIF = False

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
    | ({".heic", ".heif"} if _HEIF else set())
)

# Pillow's own default (about 89 megapixels) warns; twice that is an error. We refuse anything above
# this many pixels outright: no real photo is that large, and a decompression bomb is.
MAX_PIXELS = 200_000_000
# Pillow's own limit would refuse a genuine 100-megapixel photo; ours is the one that applies.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Above this many pixels a photo loaded for a small size is shrunk right after decoding, before any
# copy (rotation, colour conversion) is made, so a 200-megapixel PNG peaks near its decoded size.
# Below it, the usual resize does the same work and gives the pixels training saw.
REDUCE_ABOVE_PIXELS = 24_000_000


def is_regular_file(path: str | Path) -> bool:
    """Whether ``path`` is a regular file (after links): the only kind imgcap opens, since opening
    a FIFO blocks until someone writes to it, and a device may never end."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def file_identity(path: str | Path) -> tuple[int, int, int, int] | None:
    """``(device, inode, size, modification time in ns)`` of the file at ``path`` (after links), or
    None where it cannot be looked at: what tells that a photo is still the file that was captioned,
    not another one saved under its name since."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def broken_link_reason(path: str | Path) -> str | None:
    """Why a photo cannot be reached when ``path`` is a symbolic link that leads nowhere: its target
    (at the end of a chain of links) is gone, naming it (a folder of links into a drive that is not
    mounted, say), or the links loop. None for anything else, a working link included."""
    try:
        if not os.path.islink(path):
            return None
        os.stat(path)
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno != errno.ENOENT:
            return None
    except ValueError:
        return None
    return f"broken link: its target {os.path.realpath(path)} is missing"


class ImageLoadError(Exception):
    """A photo could not be read. ``str(error)`` is a message fit to show the user."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason}")


def open_oriented(path: str | Path, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open a photo as an RGB PIL image, upright according to its EXIF orientation.

    Args:
        path: the photo.
        draft_size: when given, the photo is decoded at a reduced scale no smaller than about three
            times this (JPEG: Pillow's ``draft``, decoded at 1/2, 1/4 or 1/8; other formats above
            :data:`REDUCE_ABOVE_PIXELS`: ``reduce`` right after decoding), so a huge photo never
            holds more than its decoded size in memory; the result may still be larger than
            ``draft_size``.

    Raises:
        ImageLoadError: the file is missing, empty, not a regular file (a FIFO would block),
            truncated, not an image, or absurdly large.
    """
    path = Path(path)
    try:
        problem = _not_a_photo_file(path)
        if problem:
            raise ImageLoadError(path, problem)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageLoadError(path, f"image too large ({img.width}x{img.height} pixels)")
                if draft_size is not None and img.format == "JPEG":
                    img.draft("RGB", draft_size)
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)  # animated GIF/WebP: the first frame (a flat PSD has none to seek)
                img.load()
                orientation = exif_orientation(img)  # read here: a reduced copy has no EXIF of its own
                small = _reduced(img, draft_size)
                if small is not img:
                    img.close()  # frees the full-size pixels now, not when the with block ends
                if orientation in _UPRIGHT:
                    small = small.transpose(_UPRIGHT[orientation])
                return _to_rgb(small)
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            *MALFORMED_IMAGE_ERRORS) as exc:
        raise ImageLoadError(path, _reason(exc, path)) from None


def header_problem(path: str | Path) -> str | None:
    """Why a photo cannot be read, found from its header alone (no pixels decoded), in the words
    :func:`open_oriented` would use; None where the header reads (a huge photo's too)."""
    path = Path(path)
    try:
        problem = _not_a_photo_file(path)
        if problem:
            return problem
        with Image.open(path) as img:
            img.size  # noqa: B018 - the header is parsed on open; size proves it
    except Image.DecompressionBombError:
        return None  # large, not broken: decoding says how large
    except (OSError, SyntaxError, ValueError, EOFError, *MALFORMED_IMAGE_ERRORS) as exc:
        return _reason(exc, path)
    return None


def _not_a_photo_file(path: Path) -> str | None:
    """Why ``path`` is no photo file before it is opened (a folder; a FIFO, whose opening would block
    until someone writes to it; an empty file), or None.

    Raises:
        OSError: it cannot be looked at (missing, no permission).
    """
    status = os.stat(path)
    if stat.S_ISDIR(status.st_mode):
        return "is a folder, not a photo"
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    return "the file is empty" if status.st_size == 0 else None


def _reason(exc: BaseException, path: Path) -> str:
    """What a failure to read a photo means, for the person whose photo it is."""
    if isinstance(exc, FileNotFoundError):
        return broken_link_reason(path) or "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a photo"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "not a photo imgcap can read (unknown or corrupt format)"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "image too large (decompression bomb limit)"
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"corrupt or truncated image ({exc or type(exc).__name__})"


# What Pillow's parsers raise, beside OSError and ValueError, on a file whose tags hold values of the
# wrong type (a rational where an offset goes, text in a number tag), of a kind it does not decode (a
# DDS texture's compression: NotImplementedError, also under a .jpg name) or with a damaged container
# (an AVIF's item table: RuntimeError): only Pillow runs where these are caught, so they are the
# file's fault, and one such photo must not stop a batch.
MALFORMED_IMAGE_ERRORS = (struct.error, TypeError, IndexError, KeyError, ZeroDivisionError, NotImplementedError,
                          RuntimeError)
#: Everything Pillow raises on a file it cannot read (for code that opens a photo for its header or
#: metadata and goes on without them).
UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                           *MALFORMED_IMAGE_ERRORS)

# EXIF orientation -> the turn that makes the photo upright (as ImageOps.exif_transpose does it).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(img: Image.Image) -> int:
    """An open photo's EXIF orientation (1-8; 5-8 turn it a quarter), or 1 where its EXIF cannot be
    read: the pixels are still the photo's, shown as stored."""
    try:
        value = img.getexif().get(0x0112, 1)
    except UNREADABLE_IMAGE_ERRORS:
        return 1
    return value if isinstance(value, int) else 1


def _reduced(img: Image.Image, draft_size: tuple[int, int] | None) -> Image.Image:
    """A decoded huge image shrunk by whole factors to no less than three times ``draft_size``."""
    if draft_size is None or img.width * img.height <= REDUCE_ABOVE_PIXELS:
        return img
    factor_x = max(1, img.width // (3 * draft_size[0]))
    factor_y = max(1, img.height // (3 * draft_size[1]))
    if factor_x == factor_y == 1:
        return img
    if img.mode in _REDUCIBLE:
        return _reduce_in_strips(img, factor_x, factor_y)
    # Modes reduce() does not support (P, 1, I;16): every n-th pixel is enough at this scale.
    size = (max(1, img.width // factor_x), max(1, img.height // factor_y))
    return img.resize(size, Image.Resampling.NEAREST)


# reduce() works on these; for LA/RGBA it makes a premultiplied full-size copy first, which is why
# a huge image is reduced a strip at a time.
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"})
_STRIP_BLOCKS = 32  # output rows per strip


def _reduce_in_strips(img: Image.Image, factor_x: int, factor_y: int) -> Image.Image:
    """``img.reduce((factor_x, factor_y))`` a band of rows at a time: the same pixels, without a
    second full-size copy of the image in memory."""
    width, height = -(-img.width // factor_x), -(-img.height // factor_y)  # reduce() keeps partial blocks
    out = Image.new(img.mode, (width, height))
    rows = factor_y * _STRIP_BLOCKS
    for top in range(0, img.height, rows):
        band = img.crop((0, top, img.width, min(img.height, top + rows)))
        out.paste(band.reduce((factor_x, factor_y)), (0, top // factor_y))
    return out


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, PA, RGBA, CMYK, I;16, I, F, YCbCr…) to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) or 1.0
        scale = 255.0 / (65535.0 if img.mode.startswith("I;16") or hi > 255 else max(hi, 1.0))
        if img.mode == "F":
            scale = 255.0 / hi
        gray = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Load a photo as an ``(H, W, 3)`` uint8 RGB array, optionally squashed to ``size x size``.

    The squash (no crop, aspect ratio not kept) matches how the training photos were prepared, so
    the encoder sees every part of the photo, as the attention maps assume.
    """
    img = open_oriented(path, draft_size=(size, size) if size else None)
    if size is not None:
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)


def resize_array(image: np.ndarray, size: int) -> np.ndarray:
    """Squash an in-memory ``(H, W, 3)`` image to ``size x size`` the same way :func:`load_image` does."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    img = _to_rgb(Image.fromarray(arr))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)
