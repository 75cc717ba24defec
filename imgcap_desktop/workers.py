"""The one pattern for short background work (reading a folder's captions, thumbnails, export).

``run_in_background(fn, *args)`` runs ``fn`` on Qt's global thread pool and reports through a
:class:`TaskSignals` object: ``returned(object)`` with the result, or ``errored(object)`` with the
exception itself (never a string to parse back), then ``finished()``. Handlers are passed in
(``on_returned=``, ``on_errored=``, ``on_finished=``) so that they are connected before the work
starts: a queued signal reaches only the slots connected when it was emitted.

Captioning is different: the model needs one long-lived thread (TensorFlow keeps per-thread state; see
:class:`~imgcap_desktop.caption_service.CaptionService`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class TaskSignals(QObject):
    """What a background task reports.

    Signals:
        returned(object result): the function returned.
        errored(object exception): the function raised (the exception object).
        finished(): after either.
    """

    returned = Signal(object)
    errored = Signal(object)
    finished = Signal()


class _Task(QRunnable):
    def __init__(self, fn: Callable, args: tuple, kwargs: dict, signals: TaskSignals):
        super().__init__()
        self._fn, self._args, self._kwargs, self.signals = fn, args, kwargs, signals

    def run(self) -> None:
        # Every exception is caught: one escaping a QRunnable would end the process.
        try:
            result = self._fn(*self._args, **self._kwargs)
        except Exception as exc:  # noqa: BLE001 - handed to the caller as the exception object
            log.debug("background task %s raised", getattr(self._fn, "__name__", self._fn), exc_info=True)
            _emit(self.signals.errored, exc)
        else:
            _emit(self.signals.returned, result)
        finally:
            _emit(self.signals.finished)


def _emit(signal, *args) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:  # "Signal source has been deleted": the app is closing, no one is left to tell
        log.debug("a background task ended after its signals were deleted")


def run_in_background(fn: Callable, *args, pool: QThreadPool | None = None,
                      on_returned: Callable | None = None, on_errored: Callable | None = None,
                      on_finished: Callable | None = None, **kwargs) -> TaskSignals:
    """Run ``fn(*args, **kwargs)`` on a pool thread, with handlers connected before it starts."""
    signals = TaskSignals()
    for signal, handler in ((signals.returned, on_returned), (signals.errored, on_errored),
                            (signals.finished, on_finished)):
        if handler is not None:
            signal.connect(handler)
    task = _Task(fn, args, kwargs, signals)
    # The signals object must outlive the task's last emit: the finished handler drops it.
    _KEEP.add(signals)
    signals.finished.connect(lambda: _KEEP.discard(signals))
    (pool or QThreadPool.globalInstance()).start(task)
    return signals


_KEEP: set[TaskSignals] = set()
