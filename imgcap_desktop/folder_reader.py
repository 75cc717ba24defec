"""Reads the captions already stored for a folder's photos (sidecars, embedded descriptions) off the GUI thread."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from imgcap_desktop.metadata.sidecar import SidecarError, read_caption

log = logging.getLogger(__name__)

CHUNK = 64


class _Signals(QObject):
    read = Signal(int, list)  # generation, [(path, StoredCaption | None, error)]
    done = Signal(int)


class _ReadTask(QRunnable):
    def __init__(self, generation: int, photos: list[Path], signals: _Signals, stop: threading.Event):
        super().__init__()
        self._generation, self._photos, self._signals, self._stop = generation, photos, signals, stop

    def run(self) -> None:
        chunk = []
        for photo in self._photos:
            if self._stop.is_set():
                break
            try:
                chunk.append((photo, read_caption(photo), ""))
            except SidecarError as exc:
                chunk.append((photo, None, exc.reason))
            except Exception as exc:  # noqa: BLE001 - one unreadable photo is a per-photo error
                log.exception("reading the caption of %s failed", photo)
                chunk.append((photo, None, str(exc)))
            if len(chunk) >= CHUNK:
                self._signals.read.emit(self._generation, chunk)
                chunk = []
        if chunk:
            self._signals.read.emit(self._generation, chunk)
        self._signals.done.emit(self._generation)


class StoredCaptionReader(QObject):
    """Reads stored captions for a list of photos in the background, in chunks.

    Signals:
        captions_read(list rows): ``(path, StoredCaption | None, error)`` for some photos of the latest request.
        finished(): the latest request has been read completely (or stopped).
    """

    captions_read = Signal(list)
    finished = Signal()

    def __init__(self, pool: QThreadPool | None = None, parent=None):
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._generation = 0
        self._stop = threading.Event()
        self._signals = _Signals()
        self._signals.read.connect(self._on_task_read)
        self._signals.done.connect(self._on_task_done)

    def read(self, photos: list[Path]) -> None:
        """Start reading; any earlier request is stopped and its results dropped."""
        self.stop()
        self._generation += 1
        self._stop = threading.Event()
        self._pool.start(_ReadTask(self._generation, list(photos), self._signals, self._stop))

    def stop(self) -> None:
        self._stop.set()

    def _on_task_read(self, generation: int, rows: list) -> None:
        if generation == self._generation:
            self.captions_read.emit(rows)

    def _on_task_done(self, generation: int) -> None:
        if generation == self._generation:
            self.finished.emit()
