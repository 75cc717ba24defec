"""Cyclic garbage holding Qt objects is freed on the GUI thread, never by a worker thread.

A test run in eight segfaulted in ``QObject::event`` on the GUI thread while the captioning thread
(reading a sidecar, loading the model) ran the cycle collector: it freed an earlier window, a job's
event loop or its timer, the Qt objects with it, while the GUI thread delivered an event to one.
The test suite's Qt tests run under such a collector (conftest): these tests turn automatic
collection on where they need it, and check that a block gives back what it found.
"""

from __future__ import annotations

import gc
import threading

import pytest
from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer

from imgcap_desktop.gui_gc import collect_due, collecting_on_gui_thread

# The offscreen platform warns when the app's main window propagates size hints: not our warning.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def qt_garbage(deleted_on: list[int]) -> None:
    """A Qt object that only the cycle collector frees (with enough other cyclic garbage to make
    a collection due), noting the thread it is deleted on."""
    obj = QObject()
    obj.itself = obj
    obj.destroyed.connect(lambda: deleted_on.append(threading.get_ident()), Qt.ConnectionType.DirectConnection)
    for _ in range(2 * gc.get_threshold()[0]):
        cycle: list = []
        cycle.append(cycle)


def allocate_on_a_worker_thread() -> None:
    def allocate():
        for _ in range(20):
            junk = [[] for _ in range(10_000)]  # noqa: F841 - allocated to cross the collector's threshold
    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()


def spin(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


@pytest.fixture
def automatic_collection():
    """Automatic collection on, as in a program without the collector."""
    was = gc.isenabled()
    gc.collect()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_without_it_a_worker_thread_that_allocates_frees_qt_objects_in_cycles(automatic_collection):
    """The hazard itself: CPython collects on whichever thread crosses the threshold."""
    deleted_on: list[int] = []
    qt_garbage(deleted_on)
    allocate_on_a_worker_thread()
    assert deleted_on and deleted_on[0] != threading.get_ident()


def test_with_it_the_gui_thread_frees_them(qapp, automatic_collection):
    deleted_on: list[int] = []
    with collecting_on_gui_thread(interval_ms=20):
        assert not gc.isenabled()
        qt_garbage(deleted_on)
        allocate_on_a_worker_thread()
        assert deleted_on == []  # the worker collected nothing
        spin(200)
        assert deleted_on == [threading.get_ident()]  # the GUI thread's timer did
    assert gc.isenabled()


def test_blocks_nest_and_what_is_garbage_at_the_end_is_freed_there(automatic_collection):
    deleted_on: list[int] = []
    with collecting_on_gui_thread():
        with collecting_on_gui_thread():
            pass
        assert not gc.isenabled()  # the outer block still holds
        qt_garbage(deleted_on)
    assert deleted_on == [threading.get_ident()] and gc.isenabled()


def test_a_collection_is_due_as_the_automatic_collector_would_make_it():
    with collecting_on_gui_thread():
        deleted_on: list[int] = []
        qt_garbage(deleted_on)
        assert collect_due((10**9, 10, 10)) == 0  # the youngest generation under its threshold: nothing
        assert collect_due((0, 10, 10)) == 0  # automatic collection turned off (threshold 0): nothing
        assert deleted_on == []
        assert collect_due(gc.get_threshold()) > 0 and deleted_on == [threading.get_ident()]


def test_the_app_and_the_selftest_run_with_it(qapp, automatic_collection, tmp_path):
    from imgcap_desktop import selftest
    from imgcap_desktop.app import main
    from tests.desktop.conftest import FakeCaptioner, make_photos

    in_event_loop: list[bool] = []
    QTimer.singleShot(0, lambda: in_event_loop.append(gc.isenabled()))
    assert main(["--exit-after-shown"]) == 0
    assert in_event_loop == [False] and gc.isenabled()

    on_worker: list[bool] = []

    def factory(bundle, device):  # called on the service's worker thread
        on_worker.append(gc.isenabled())
        return FakeCaptioner()

    photos = make_photos(tmp_path / "p", count=2, corrupt=False)
    assert selftest.run_service_sequence(photos, factory=factory, device="cpu") == 5
    assert on_worker == [False] and gc.isenabled()
