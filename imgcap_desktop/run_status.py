"""The status bar's part in a captioning run: the model, progress with an ETA, Cancel, and how it ended."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from PySide6 import QtGui
from PySide6.QtCore import QObject
from PySide6.QtGui import QAccessible
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from imgcap_desktop.caption_service import CaptionService
from imgcap_desktop.metadata.printable import count
from model.errors import ModelSetupError


class RunStatus(QObject):
    """Shows a :class:`CaptionService`'s runs in a status bar.

    At the end of a run the message says how many photos were captioned, how many failed, and why
    the run stopped when it did (the model failed to load, the engine raised): it is not replaced
    by a plain count.
    """

    def __init__(self, service: CaptionService, status_bar: QStatusBar, parent=None, *,
                 focus_after: QWidget | None = None):
        super().__init__(parent)
        self._focus_after = focus_after  # takes the focus when Cancel, focused, is hidden at a run's end
        self._service, self._bar = service, status_bar
        self._run: dict = {}
        self.model_label = QLabel("Model: not loaded")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setFormat("%v / %m")
        self.progress_bar.setVisible(False)
        self.progress_bar.setAccessibleName("Captioning progress")
        self.eta_label = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.setAccessibleName("Cancel captioning")
        self.cancel_button.clicked.connect(service.cancel)
        for widget in (self.progress_bar, self.eta_label, self.cancel_button, self.model_label):
            status_bar.addPermanentWidget(widget)
        service.model_loading.connect(self._on_service_model_loading)
        service.model_loaded.connect(self._on_service_model_loaded)
        service.model_failed.connect(self._on_service_model_failed)
        service.caption_generated.connect(self._on_service_caption_generated)
        service.progress.connect(self._on_service_progress)
        service.batch_failed.connect(self._on_service_batch_failed)
        service.finished.connect(self._on_service_finished)

    def start(self, total: int, left_out: Sequence[str] = (), *, verb: str = "Captioned") -> None:
        """A run of ``total`` photos has started; ``left_out``: why each photo that could not be
        captioned at all was left out (two photos that would share a base-style sidecar); ``verb``
        what the summary says was done ("Captioned 3 of 4 photos")."""
        self._run = {"total": total, "done": 0, **dict.fromkeys(_COUNTED, 0), "error": None,
                     "left_out": list(left_out), "verb": verb}
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.eta_label.setText("starting…")

    def progress(self) -> tuple[int, int, str]:
        """``(photos done, photos in the run, its verb)`` of the run under way (or the last one)."""
        return self._run.get("done", 0), self._run.get("total", 0), self._run.get("verb", "Captioned")

    def _on_service_model_loading(self) -> None:
        self.model_label.setText("Model: loading…")

    def _on_service_model_loaded(self, name: str, device: str) -> None:
        self.model_label.setText(f"Model: {name} · {device}")

    def _on_service_model_failed(self, exc: BaseException) -> None:
        self.model_label.setText("Model: failed to load")
        self.model_label.setToolTip(describe_error(exc))  # the status bar's message goes; this stays
        self._run["error"] = f"the model could not be loaded: {describe_error(exc)}"

    def _on_service_caption_generated(self, outcomes: list, statuses: list) -> None:
        self._run["done"] = self._run.get("done", 0) + len(outcomes)
        statuses_seen = Counter(status.status for status in statuses)
        for key, status in _COUNTED.items():
            self._run[key] = self._run.get(key, 0) + statuses_seen[status]
        if "first_failure" not in self._run:  # said with the count: which photo, and why
            failure = next((status.message for status in statuses if status.status == "failed"), None)
            if failure:
                self._run["first_failure"] = failure

    def _on_service_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        elapsed = time.monotonic() - self._service.started_at
        if done and done < total:
            self.eta_label.setText(f"about {duration(elapsed / done * (total - done))} left")

    def _on_service_batch_failed(self, exc: BaseException) -> None:
        self._run["error"] = f"captioning stopped: {describe_error(exc)}"

    def _on_service_finished(self, cancelled: bool) -> None:
        if self.cancel_button.hasFocus() and self._focus_after is not None:  # else it goes to whatever is next
            self._focus_after.setFocus()
        self.progress_bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self.eta_label.setText("")
        summary = run_summary(self._run, cancelled)
        self._bar.showMessage(summary)  # until the next message: read when the person comes back to it
        announce(self._bar, summary)


#: What a run's summary counts apart from the photos done: its key, and the status counted.
_COUNTED = {"failed": "failed", "edited": "kept_edit", "kept": "kept_human", "gone": "gone"}


def run_summary(run: dict, cancelled: bool) -> str:
    """The status line at the end of a run: counts, failures, and why it stopped if it did."""
    done, total, failed = run.get("done", 0), run.get("total", 0), run.get("failed", 0)
    verb = "Cancelled after" if cancelled else run.get("verb", "Captioned")
    edited, kept, gone = run.get("edited", 0), run.get("kept", 0), run.get("gone", 0)
    text = f"{verb} {done - failed - edited - kept - gone} of {count(total, 'photo')}"
    if failed:
        text += f", {failed} failed"
    if edited:  # the person's edit beat the result
        text += f", {edited} edited meanwhile (the edit kept)"
    if kept:  # a person's caption found at the write (another program's meanwhile): kept, as the policy says
        text += f", {kept} kept a person's caption"
    if gone:
        text += f", {gone} deleted or moved away meanwhile"
    if failed and run.get("first_failure"):  # which photo, and why: not to be looked for in the grid
        text += f"; {'first: ' if failed > 1 else ''}{run['first_failure']}"
    if run.get("left_out"):
        left_out = run["left_out"]
        text += f"; {count(len(left_out), 'other')} left out: {left_out[0]}"
    if run.get("error"):
        text += f" — {run['error'][0].upper()}{run['error'][1:]}"
    return text


def announce(widget: QWidget, text: str) -> None:
    """Have a screen reader say ``text`` now, wherever the focus is (Qt 6.8 and later)."""
    event_type = getattr(QtGui, "QAccessibleAnnouncementEvent", None)
    if event_type is not None:
        QAccessible.updateAccessibility(event_type(widget, text))


def describe_error(exc: BaseException) -> str:
    """An exception as one line for the user (one that explains itself without its type's name)."""
    if isinstance(exc, ModelSetupError) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def duration(seconds: float) -> str:
    """A remaining time for people: ``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
