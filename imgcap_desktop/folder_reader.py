"""Reads the captions already stored for a folder's photos (sidecars, embedded descriptions) off the GUI thread."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from imgcap_desktop.session import CaptionSession
from imgcap_desktop.workers import run_in_background


class StoredCaptionReader(QObject):
    """Fills a :class:`CaptionSession` with the photos' stored captions, in the background.

    The session reports each chunk of photos it read through its own ``changed`` event.

    Signals:
        finished(): the latest request has been read completely.
        failed(object exception): reading stopped on an unexpected error.

    A request stopped (:meth:`stop`, or another :meth:`read`) reports nothing more.
    """

    finished = Signal()
    failed = Signal(object)

    def __init__(self, session: CaptionSession, parent=None):
        super().__init__(parent)
        self._session = session
        self._generation = 0
        self._stop = threading.Event()

    def read(self) -> None:
        """Start reading the session's photos; any earlier request is stopped."""
        self.stop()
        self._stop = threading.Event()
        generation = self._generation
        run_in_background(self._session.read_stored, stop=self._stop,
                          on_errored=lambda exc: self._on_task_errored(generation, exc),
                          on_finished=lambda: self._on_task_finished(generation), owner=self)

    def stop(self) -> None:
        self._stop.set()
        self._generation += 1

    def _on_task_errored(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation:
            self.failed.emit(exc)

    def _on_task_finished(self, generation: int) -> None:
        if generation == self._generation:
            self.finished.emit()
