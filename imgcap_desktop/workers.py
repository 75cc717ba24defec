"""The one pattern for short background work (reading a folder's captions, thumbnails, export).

``run_in_background(fn, *args)`` runs ``fn`` on Qt's global thread pool and hands what became of it
to the handlers passed in, on the thread that started it: ``on_returned(result)``, or
``on_errored(exception)`` with the exception itself (never a string to parse back), then
``on_finished()``.

The reports travel through one long-lived :class:`_Relay` per starting thread, keyed by task: a
``QObject`` per task, kept alive until its last emit by a slot that referred to it, made a cycle
through C++ that Python's collector cannot see, and every task's object (with whatever its handlers
held) stayed for the life of the app.

Captioning is different: the model needs one long-lived thread (TensorFlow keeps per-thread state; see
:class:`~imgcap_desktop.caption_service.CaptionService`).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from shiboken6 import isValid

log = logging.getLogger(__name__)

RETURNED, ERRORED, FINISHED = range(3)


class _Handlers(NamedTuple):
    returned: Callable | None
    errored: Callable | None
    finished: Callable | None
    owner: QObject | None  # deleted (its window closed): the handlers are not called


class _Relay(QObject):
    """Hands the reports of the tasks started on its thread to their handlers, on that thread.

    Signals:
        report(int task, int what, object value): ``what`` is RETURNED, ERRORED or FINISHED.
    """

    report = Signal(int, int, object)

    def __init__(self) -> None:
        super().__init__()
        self._handlers: dict[int, _Handlers] = {}
        self.report.connect(self._on_report)  # queued from the pool's threads to this object's thread

    def add(self, task: int, handlers: _Handlers) -> None:
        self._handlers[task] = handlers

    def pending(self) -> int:
        """How many tasks have not finished yet (their handlers are still held)."""
        return len(self._handlers)

    @Slot(int, int, object)
    def _on_report(self, task: int, what: int, value: object) -> None:
        # A task's handlers go with its last report, before they run: one that raises leaks nothing.
        handlers = self._handlers.pop(task, None) if what == FINISHED else self._handlers.get(task)
        handler = handlers[what] if handlers is not None else None
        if handler is None or handlers.owner is not None and not isValid(handlers.owner):
            return
        if what == FINISHED:
            handler()
        else:
            handler(value)


_relays = threading.local()


def _relay() -> _Relay:
    """The calling thread's relay (made again if the app's teardown deleted it)."""
    relay = getattr(_relays, "relay", None)
    if relay is None or not isValid(relay):
        relay = _relays.relay = _Relay()
    return relay


class _Task(QRunnable):
    def __init__(self, fn: Callable, args: tuple, kwargs: dict, relay: _Relay, task: int):
        super().__init__()
        self._fn, self._args, self._kwargs, self._relay, self._task = fn, args, kwargs, relay, task

    def run(self) -> None:
        # Every exception is caught: one escaping a QRunnable would end the process.
        try:
            result = self._fn(*self._args, **self._kwargs)
        except Exception as exc:  # noqa: BLE001 - handed to the caller as the exception object
            log.debug("background task %s raised", getattr(self._fn, "__name__", self._fn), exc_info=True)
            self._report(ERRORED, exc)
        else:
            self._report(RETURNED, result)
        finally:
            self._report(FINISHED, None)

    def _report(self, what: int, value: object) -> None:
        try:
            self._relay.report.emit(self._task, what, value)
        except RuntimeError:  # "Signal source has been deleted": the app is closing, no one is left to tell
            log.debug("a background task ended after its relay was deleted")


_task_ids = itertools.count(1)


def run_in_background(fn: Callable, *args, pool: QThreadPool | None = None,
                      on_returned: Callable | None = None, on_errored: Callable | None = None,
                      on_finished: Callable | None = None, owner: QObject | None = None, **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` on a pool thread; the handlers run on the calling thread (which
    needs an event loop), and are let go of once the task has finished. With ``owner`` (the object
    the handlers work on), none runs once Qt has deleted it: a window closed while its task ran."""
    relay = _relay()
    task = next(_task_ids)
    relay.add(task, _Handlers(on_returned, on_errored, on_finished, owner))
    (pool or QThreadPool.globalInstance()).start(_Task(fn, args, kwargs, relay, task))


def pending_tasks() -> int:
    """How many tasks started on this thread have not reported their end yet."""
    return _relay().pending()
