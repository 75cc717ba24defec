"""Photo thumbnails and previews, decoded off the GUI thread (scaled JPEG decoding, EXIF orientation) and cached."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QImage

from imgcap_desktop.workers import run_in_background
from model.images import ImageLoadError, open_oriented

log = logging.getLogger(__name__)


def decode_scaled(path: str | Path, size: int) -> QImage:
    """Decode a photo upright and no larger than ``size`` on either side.

    Raises:
        ImageLoadError: the photo cannot be read.
    """
    img = open_oriented(path, draft_size=(size, size))
    img.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return pil_to_qimage(img)


def pil_to_qimage(img: Image.Image) -> QImage:
    """An independent QImage copy of an RGB PIL image."""
    img = img.convert("RGB")
    data = img.tobytes("raw", "RGB")
    return QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()


class ThumbnailCache(QObject):
    """Decodes photos at a given size on a thread pool and keeps the most recent ones.

    Signals:
        image_ready(path, int size): ``image(path, size)`` now returns the decoded image.
        image_failed(path, int size, reason): the photo could not be decoded (path and reason: str).

    The paths travel as Python objects: a file name that is not UTF-8 (an old disk's Latin-1 one,
    held as surrogates) would lose those bytes as a Qt string, and match no photo.
    """

    image_ready = Signal(object, int)
    image_failed = Signal(object, int, object)

    def __init__(self, capacity: int = 2000, pool: QThreadPool | None = None, parent: QObject | None = None, *,
                 large_capacity: int = 16, large_above: int = 400):
        """``capacity`` images of at most ``large_above`` pixels a side (thumbnails) are kept, and
        ``large_capacity`` larger ones (previews, a few MB each: counted apart, so that stepping
        through a big folder's previews neither grows memory by gigabytes nor evicts the grid's
        thumbnails)."""
        super().__init__(parent)
        self._capacity, self._large_capacity, self._large_above = capacity, large_capacity, large_above
        self._pool = pool or QThreadPool.globalInstance()
        self._images: OrderedDict[tuple[str, int], QImage] = OrderedDict()
        self._large: OrderedDict[tuple[str, int], QImage] = OrderedDict()
        self._failed: dict[tuple[str, int], str] = {}
        self._pending: set[tuple[str, int]] = set()

    def image(self, path: str, size: int) -> QImage | None:
        """The cached image, or None (after queueing a decode unless one is queued or failed)."""
        key = (path, size)
        kept = self._kept(size)
        image = kept.get(key)
        if image is not None:
            kept.move_to_end(key)
            return image
        if key not in self._pending and key not in self._failed:
            self._pending.add(key)
            run_in_background(decode_scaled, path, size, pool=self._pool,
                              on_returned=lambda image: self._on_task_decoded(path, size, image),
                              on_errored=lambda exc: self._on_task_failed(path, size, _reason(exc)), owner=self)
        return None

    def failure(self, path: str, size: int) -> str | None:
        """Why the photo could not be decoded at that size, if it could not."""
        return self._failed.get((path, size))

    def forget(self, paths: Collection[str]) -> None:
        """Forget these photos' images at every size (their files changed): asked for, they are
        decoded again. One pass over the cache, however many photos."""
        for store in (self._images, self._large, self._failed):
            for key in [key for key in store if key[0] in paths]:
                del store[key]

    def clear(self) -> None:
        """Forget every image (decodes still queued complete into the fresh cache)."""
        self._images.clear()
        self._large.clear()
        self._failed.clear()

    def _kept(self, size: int) -> OrderedDict[tuple[str, int], QImage]:
        return self._large if size > self._large_above else self._images

    def _on_task_decoded(self, path: str, size: int, image: QImage) -> None:
        key = (path, size)
        self._pending.discard(key)
        kept = self._kept(size)
        kept[key] = image
        while len(kept) > (self._large_capacity if kept is self._large else self._capacity):
            kept.popitem(last=False)
        self.image_ready.emit(path, size)

    def _on_task_failed(self, path: str, size: int, reason: str) -> None:
        key = (path, size)
        self._pending.discard(key)
        self._failed[key] = reason
        self.image_failed.emit(path, size, reason)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageLoadError):
        return exc.reason
    log.warning("decoding a photo failed: %r", exc)
    return str(exc) or type(exc).__name__
