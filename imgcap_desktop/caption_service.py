"""The long-lived service that owns the captioning model on a worker thread.

The model (ONNX Runtime, or TensorFlow with ``--runtime tf`` or a bundle without graphs) is loaded
lazily on the worker the first time photos are captioned, so the window shows before either is
imported; it is reused while the bundle and device stay the same. Workers get plain data (paths,
options, the session's thread-safe store callable) and give back plain results; errors cross
threads as exception objects.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal
from shiboken6 import isValid

from model.errors import ModelSetupError

log = logging.getLogger(__name__)

CaptionerFactory = Callable[[str | None, str], object]
GIL_SWITCH_INTERVAL_S = 0.001
#: How much lower than the GUI thread the worker runs (Linux nice steps; 10 is about a tenth of the CPU
#: share when both want it, and all of it when the GUI is idle).
WORKER_NICENESS = 10
#: Stores one batch's outcomes (on the worker thread) and returns a status per outcome.
StoreBatch = Callable[..., list]

# Strong references: a running thread must outlive whoever started it (a QThread destroyed while
# running aborts the process), so the service's thread is kept here until it has stopped.
_THREADS: set[_JobThread] = set()
_THREADS_LOCK = threading.Lock()


def running_threads() -> list[QThread]:
    """Worker threads of any service that are still running (tests fail when one is left)."""
    with _THREADS_LOCK:
        return [thread for thread in _THREADS if thread.isRunning()]


def stop_all_threads(timeout_ms: int = 30000) -> None:
    """Stop every service's worker thread (at exit: none may still run when Python finalises Qt)."""
    with _THREADS_LOCK:
        threads = list(_THREADS)
    for thread in threads:
        thread.stop(timeout_ms)


atexit.register(stop_all_threads)


def load_captioner(bundle: str | None, device: str):
    """The real factory: imports the model's runtime (via ``model.captioner``), so call it on the worker only."""
    from model.captioner import Captioner

    return Captioner.from_bundle(bundle, device=device)


@dataclass(frozen=True)
class CaptionJob:
    """One request: which photos, and how to caption and store them.

    Attributes:
        photos: the photos, in order.
        beam_size, batch_size, device: how to caption them.
        store: called on the worker with each batch's outcomes (and ``model_name=``); returns a
            status per outcome (the app passes its session's ``apply_outcomes``). None: nothing
            is stored and the statuses list is empty.
        texts: the photos' captions, to compute their attention maps instead of captioning
            (``Captioner.attend_batches``); None to caption.
    """

    photos: tuple[Path, ...]
    beam_size: int = 3
    batch_size: int = 8
    device: str = "auto"
    store: StoreBatch | None = None
    texts: tuple[str, ...] | None = None


class CaptionSignals(QObject):
    """What a captioning job reports, declared once: the worker emits these, the service re-emits them.

    Signals:
        model_loading(): the model is being loaded (the engine imported on first use).
        model_loaded(str name, str device): the model is ready; device is ``"CPU"`` or ``"GPU: <name>"``.
        model_failed(object exception): the model could not be loaded; the job ends.
        caption_generated(list outcomes, list statuses): one batch's
            :class:`~model.results.CaptionOutcome` list and what the job's ``store`` made of them.
        progress(int done, int total): photos done so far in the running job.
        batch_failed(object exception): the engine raised; the job ends, earlier batches are kept.
        finished(bool cancelled): the job is over.
    """

    model_loading = Signal()
    model_loaded = Signal(str, str)
    model_failed = Signal(object)
    caption_generated = Signal(list, list)
    progress = Signal(int, int)
    batch_failed = Signal(object)
    finished = Signal(bool)


class _Worker(CaptionSignals):
    """Runs jobs on the service's thread; every exception is caught and reported as a signal.

    A separate object from the service, owned by the thread: it may outlive the service.
    """

    def __init__(self, bundle: str | None, factory: CaptionerFactory, cancel: threading.Event):
        super().__init__()
        self._bundle = bundle
        self._factory = factory
        self._cancel = cancel
        self._captioner = None
        self._loaded_for: tuple | None = None
        self.idle = threading.Event()  # no job queued or running: every batch produced is stored
        self.idle.set()

    def run(self, job: CaptionJob) -> None:
        cancelled = False
        try:
            captioner = self._ensure_model(job.device)
            if captioner is None:
                return
            total = len(job.photos)
            done = 0
            self.progress.emit(0, total)
            if job.texts is not None:
                batches = captioner.attend_batches(list(job.photos), list(job.texts), batch_size=job.batch_size)
            else:
                batches = captioner.caption_batches(list(job.photos), beam_size=job.beam_size,
                                                    batch_size=job.batch_size)
            try:
                while True:
                    if self._cancel.is_set():
                        cancelled = True
                        break
                    try:
                        outcomes = next(batches)
                    except StopIteration:
                        break
                    except Exception as exc:  # noqa: BLE001 - reported; the job ends, earlier batches are kept
                        log.exception("captioning a batch failed")
                        self.batch_failed.emit(exc)
                        break
                    statuses = job.store(outcomes, model_name=str(captioner.name)) if job.store else []
                    done += len(outcomes)
                    self.caption_generated.emit(outcomes, statuses)
                    self.progress.emit(done, total)
            finally:
                if hasattr(batches, "close"):
                    batches.close()  # never leave the generator (and its loader thread) suspended across jobs
        except Exception as exc:  # noqa: BLE001
            log.exception("captioning failed")
            self.batch_failed.emit(exc)
        finally:
            self._cancel.clear()
            self.finished.emit(cancelled)
            self.idle.set()

    def _ensure_model(self, device: str):
        key = (self._bundle, device)
        if self._captioner is not None and self._loaded_for == key:
            return self._captioner
        self.model_loading.emit()
        try:
            self._captioner = self._factory(self._bundle, device)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            if isinstance(exc, ModelSetupError):  # says why itself: no traceback
                log.warning("loading the model failed: %s", exc)
            else:
                log.exception("loading the model failed")
            self._captioner = None
            self.model_failed.emit(exc)
            return None
        self._loaded_for = key
        self.model_loaded.emit(str(self._captioner.name), str(self._captioner.device))
        return self._captioner


class _JobThread(QThread):
    """The worker thread: runs queued jobs inside one long ``run()`` call, until it gets ``None``.

    Why not a worker ``QObject`` whose slot a signal calls: PySide gives each slot call on a
    ``QThread`` a fresh Python thread state and destroys it afterwards (a ``threading.local`` set in
    one call is gone in the next), while TensorFlow keeps per-OS-thread eager-context state in C++
    that outlives it. The second job then crashed (segfault) or hung waiting for the GIL inside
    TensorFlow's error handler. One ``run()`` call keeps one Python thread state for the thread's
    whole life, as a ``threading.Thread`` does.
    """

    def __init__(self, worker: _Worker, cancel: threading.Event):
        super().__init__()  # no parent: kept in _THREADS until it stops, whoever goes first
        self.setObjectName("imgcap-captioner")
        self._worker = worker
        self._cancel = cancel
        self._jobs: queue.SimpleQueue[CaptionJob | None] = queue.SimpleQueue()

    def submit(self, job: CaptionJob) -> None:
        """Queue a job, starting the thread if needed."""
        with _THREADS_LOCK:
            _THREADS.add(self)
        if not self.isRunning():
            self.start()
        self._jobs.put(job)

    def stop(self, timeout_ms: int = 30000, *, wait: bool = True) -> None:
        """Cancel the job under way and end the thread after it; wait for that unless ``wait`` is False."""
        if not isValid(self):  # Qt already deleted it (at exit): nothing runs
            with _THREADS_LOCK:
                _THREADS.discard(self)
            return
        if self.isRunning():
            self._cancel.set()
            self._jobs.put(None)
            if not wait:
                return  # it stays in _THREADS, so it outlives its owner; stop_all_threads() waits at exit
            if not self.wait(timeout_ms):
                log.warning("the captioning thread did not stop in time")
                return
        with _THREADS_LOCK:
            _THREADS.discard(self)

    def run(self) -> None:
        lower_thread_priority(WORKER_NICENESS)
        while (job := self._jobs.get()) is not None:
            self._worker.run(job)


def lower_thread_priority(niceness: int) -> None:
    """Make the calling thread (and the threads it starts: the engine's pools) yield the CPU to the GUI.

    On Linux the nice value is per thread and new threads inherit it, so the GUI thread, at the
    normal priority, gets the CPU it needs for a frame while the worker takes the rest. Elsewhere
    this does nothing (nice is per process there).
    """
    if not sys.platform.startswith("linux") or niceness <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError as exc:  # not allowed (a sandbox): captioning works as before
        log.info("cannot lower the captioning thread's priority: %s", exc)


class CaptionService(CaptionSignals):
    """Owns the captioner on a worker thread and runs one captioning job at a time.

    Its signals are :class:`CaptionSignals`, delivered on the thread the service lives on.
    """

    def __init__(self, bundle: str | Path | None = None, factory: CaptionerFactory | None = None, parent=None):
        super().__init__(parent)
        # The worker runs Python (decoding, beam search) between the engine's native calls and holds
        # the GIL meanwhile; the GUI thread needs it for every slot. Python hands it over every
        # switch interval (5 ms by default): 1 ms bounds how long a GUI event waits for it.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        self._cancel = threading.Event()
        self._worker = _Worker(str(bundle) if bundle else None, factory or load_captioner, self._cancel)
        self._thread = _JobThread(self._worker, self._cancel)
        for signal, target in ((self._worker.model_loading, self.model_loading),
                               (self._worker.model_loaded, self._on_worker_model_loaded),
                               (self._worker.model_failed, self.model_failed),
                               (self._worker.caption_generated, self.caption_generated),
                               (self._worker.progress, self.progress),
                               (self._worker.batch_failed, self.batch_failed),
                               (self._worker.finished, self._on_worker_finished)):
            signal.connect(target)
        # Whichever way this service goes (its parent deleted, the app quitting), the thread stops.
        thread = self._thread
        self.destroyed.connect(lambda *_: thread.stop(wait=False))
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(thread.stop)
        self._busy = False
        self.model_name = ""
        self.device = ""
        self.started_at = 0.0

    @property
    def busy(self) -> bool:
        return self._busy

    def caption(self, job: CaptionJob) -> bool:
        """Start a job; False (and nothing happens) while another one runs or for no photos."""
        if self._busy or not job.photos:
            return False
        self._busy = True
        self._cancel.clear()
        self.started_at = time.monotonic()
        self._worker.idle.clear()
        self._thread.submit(job)
        return True

    def cancel(self) -> None:
        """Stop after the batch being captioned; every caption produced so far is kept."""
        if self._busy:
            self._cancel.set()

    def cancel_and_wait(self, timeout_ms: int = 30000) -> bool:
        """Cancel, and wait (blocking) until the batch under way is stored: then nothing of the job
        changes the session any more. True when so, False after ``timeout_ms``. The thread stays for
        the next job; ``finished`` still comes through the event loop."""
        self.cancel()
        return self._worker.idle.wait(timeout_ms / 1000)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel any job and stop the worker thread (called when the window closes)."""
        self._thread.stop(timeout_ms)

    def _on_worker_model_loaded(self, name: str, device: str) -> None:
        self.model_name, self.device = name, device
        self.model_loaded.emit(name, device)

    def _on_worker_finished(self, cancelled: bool) -> None:
        self._busy = False
        self.finished.emit(cancelled)
