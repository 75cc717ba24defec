"""run_in_background: the one pattern for short background work."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtCore import QThreadPool
from shiboken6 import Shiboken

from imgcap_desktop import workers
from imgcap_desktop.workers import pending_tasks, run_in_background


def test_a_task_that_outlives_its_relay_ends_quietly(qtbot, capfd):
    """Closing the window while previews decode: the app's teardown deleted what a task reports
    through, and its last emits printed "RuntimeError: Signal source has been deleted" tracebacks at exit."""
    go = threading.Event()
    pool = QThreadPool()
    run_in_background(lambda: go.wait(10) and "done", pool=pool)
    Shiboken.delete(workers._relay())
    go.set()
    assert pool.waitForDone(10_000)
    assert "RuntimeError" not in capfd.readouterr().err
    got = []  # and the next task reports through a new one
    run_in_background(lambda: "again", on_returned=got.append)
    qtbot.waitUntil(lambda: got == ["again"], timeout=10_000)


def test_a_task_reports_its_result_then_finished(qtbot):
    got = []
    run_in_background(lambda x: x * 2, 21, on_returned=got.append, on_finished=lambda: got.append("finished"))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=10_000)
    assert got == [42, "finished"]


def test_a_task_that_raises_reports_the_exception_itself(qtbot):
    got = []

    def fails():
        raise ValueError("no such photo")

    run_in_background(fails, on_returned=got.append, on_errored=got.append, on_finished=lambda: got.append("end"))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=10_000)
    assert isinstance(got[0], ValueError) and str(got[0]) == "no such photo" and got[1] == "end"


class _Owner:
    """What a task's handlers hold: a thumbnail cache, a folder reader, the window."""

    def __init__(self):
        self.results = []

    def on_returned(self, value):
        self.results.append(value)


def test_a_finished_task_lets_go_of_its_handlers_and_what_they_hold(qtbot):
    """Each task's signals object stayed alive for good (a slot that referred to it made a cycle
    through C++), and with it its handlers and all they held: about 3.7 KB a thumbnail, for the life
    of the app, and a closed window's objects."""
    owners = [_Owner() for _ in range(20)]
    refs = [weakref.ref(owner) for owner in owners]
    got = []
    for n, owner in enumerate(owners):
        # A closure, as the app's handlers are (a bound method alone Qt would hold weakly).
        run_in_background(lambda n=n: n, on_returned=lambda value, owner=owner: got.append(owner.on_returned(value)))
    qtbot.waitUntil(lambda: len(got) == len(refs), timeout=10_000)
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=10_000)
    del owner, owners
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []


class _SlowSession:
    """A session whose stored captions take until ``go`` is set to read."""

    def __init__(self):
        self.go = threading.Event()

    def read_stored(self, stop=None):
        self.go.wait(10)
        return 0


def test_a_reader_deleted_while_it_reads_says_nothing(qtbot, capfd):
    """The window closed (and was deleted) while a folder's captions were read: the read's end was
    emitted on the deleted reader ("RuntimeError: Signal source has been deleted" on stderr)."""
    from imgcap_desktop.folder_reader import StoredCaptionReader

    session = _SlowSession()
    reader = StoredCaptionReader(session)
    reader.read()
    Shiboken.delete(reader)
    session.go.set()
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=10_000)
    assert "RuntimeError" not in capfd.readouterr().err


def test_an_export_that_ends_after_its_window_says_nothing(qtbot, service, tmp_path, capfd):
    from imgcap_desktop.main_window import MainWindow
    from imgcap_desktop.settings import AppSettings
    from tests.desktop.conftest import make_photos

    folder = tmp_path / "photos"
    make_photos(folder, count=1)
    window = MainWindow(service=service, settings=AppSettings())
    with qtbot.waitSignal(window.reader.finished, timeout=10_000):
        assert window.open_folder(folder)
    go, export = threading.Event(), window.session.export_csv
    window.session.export_csv = lambda *args, **kwargs: go.wait(10) and export(*args, **kwargs)
    assert window.export_csv(tmp_path / "captions.csv")
    window.session_signals.detach()
    Shiboken.delete(window)
    go.set()
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=10_000)
    assert (tmp_path / "captions.csv").exists()
    assert "RuntimeError" not in capfd.readouterr().err


def test_a_folder_watcher_deleted_while_it_looks_says_nothing(qtbot, capfd, tmp_path, monkeypatch):
    """The window closed (and was deleted) while the folder was looked at: the look's end touched the
    deleted watcher's timer and notices ("Internal C++ object (QTimer) already deleted" on stderr)."""
    from imgcap_desktop import folder_watcher

    go, look = threading.Event(), folder_watcher._look_at
    monkeypatch.setattr(folder_watcher, "_look_at", lambda *args: go.wait(10) and look(*args))
    watcher = folder_watcher.FolderWatcher()
    watcher.watch(tmp_path, [])
    assert watcher.looking
    Shiboken.delete(watcher)
    go.set()
    qtbot.waitUntil(lambda: pending_tasks() == 0, timeout=10_000)
    assert "RuntimeError" not in capfd.readouterr().err
