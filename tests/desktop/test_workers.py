"""run_in_background: the one pattern for short background work."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThreadPool
from shiboken6 import Shiboken

from imgcap_desktop.workers import run_in_background


def test_a_task_that_outlives_its_signals_ends_quietly(qtbot, capfd):
    """Closing the window while previews decode: the app's teardown deleted a task's signals, and its
    last emits printed "RuntimeError: Signal source has been deleted" tracebacks at exit."""
    go = threading.Event()
    pool = QThreadPool()
    signals = run_in_background(lambda: go.wait(10) and "done", pool=pool)
    Shiboken.delete(signals)
    go.set()
    assert pool.waitForDone(10_000)
    assert "RuntimeError" not in capfd.readouterr().err


def test_a_task_reports_its_result_then_finished(qtbot):
    got = []
    run_in_background(lambda x: x * 2, 21, on_returned=got.append, on_finished=lambda: got.append("finished"))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=10_000)
    assert got == [42, "finished"]
