"""The caption service with a real (tiny, random-weight) model bundle, and TensorFlow kept off the GUI thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from imgcap_desktop import selftest
from model.bundle import load_bundle
from imgcap_desktop.caption_service import CaptionJob, CaptionService, running_threads
from imgcap_desktop.caption_view import upsample_map
from imgcap_desktop.main_window import MainWindow
from imgcap_desktop.session import CaptionState
from imgcap_desktop.settings import AppSettings
from tests.desktop.conftest import make_photos

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def real_window(qtbot, no_threads_left, tiny_bundle):
    service = CaptionService(bundle=tiny_bundle)
    window = MainWindow(service=service, settings=AppSettings(device="cpu", batch_size=4, beam_size=2))
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


def test_caption_a_folder_with_a_tiny_bundle(qtbot, real_window, photo_folder):
    window = real_window
    with qtbot.waitSignal(window.reader.finished, timeout=10_000):
        window.open_folder(photo_folder)
    with qtbot.waitSignal(window.service.finished, timeout=120_000), \
            qtbot.waitSignal(window.service.model_loaded, timeout=120_000) as loaded:
        assert window.caption_all()
    assert loaded.args[0] == "tiny-test" and loaded.args[1].startswith("CPU")  # "CPU (ONNX Runtime)"
    assert "tiny-test" in window.model_label.text()

    items = {item.path.name: item for item in window.photos.items()}
    broken = items.pop("broken.jpg")
    assert broken.state is CaptionState.ERROR and broken.error
    for item in items.values():
        # Random weights: a caption, or (an empty one) an error saying so; never left untouched.
        assert item.state is CaptionState.AUTOMATIC or "empty caption" in item.error
    captioned = [item for item in items.values() if item.state is CaptionState.AUTOMATIC]
    for item in captioned:
        assert item.result.attention.shape == (len(item.result.words), 4, 4) or item.result.attention.ndim == 3
    if captioned:
        item = captioned[0]
        row = window.photos.row_of(item.path)
        window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
        qtbot.waitUntil(lambda: window.view._photo is not None, timeout=10_000)
        window.view.select_word(0)
        np.testing.assert_allclose(window.view.overlay_map,
                                   upsample_map(item.result.attention[0], window.view._photo.shape[:2]))


def test_cancel_before_the_model_loads_keeps_the_service_usable(qtbot, no_threads_left, tiny_bundle, tmp_path):
    photos = make_photos(tmp_path / "p", count=3, corrupt=False)
    service = CaptionService(bundle=tiny_bundle)
    try:
        with qtbot.waitSignal(service.finished, timeout=120_000) as finished:
            assert service.caption(CaptionJob(tuple(photos), batch_size=1, device="cpu"))
            assert not service.caption(CaptionJob(tuple(photos)))  # one job at a time
            service.cancel()
        assert finished.args == [True]
        with qtbot.waitSignal(service.finished, timeout=120_000) as finished, \
                qtbot.waitSignal(service.progress, timeout=120_000, check_params_cb=lambda d, t: d == t == 4):
            assert service.caption(CaptionJob(tuple(photos), batch_size=2, device="cpu"))
        assert finished.args == [False]
    finally:
        service.shutdown()
    assert running_threads() == []


def test_model_failure_is_reported_not_raised(qtbot, no_threads_left, tmp_path, caplog):
    service = CaptionService(bundle=tmp_path / "no-such-bundle")
    try:
        with qtbot.waitSignal(service.model_failed, timeout=120_000) as failed, \
                qtbot.waitSignal(service.finished, timeout=120_000):
            service.caption(CaptionJob((tmp_path / "a.jpg",), device="cpu"))
        assert failed.args[0]
        assert not service.busy
    finally:
        service.shutdown()
    # A bundle that is not there says so in one line: no traceback in the log.
    logged = [r for r in caplog.records if r.getMessage().startswith("loading the model failed")]
    assert len(logged) == 1 and logged[0].exc_info is None and "model bundle not found" in logged[0].getMessage()


def test_window_shows_and_opens_a_folder_without_importing_tensorflow(tmp_path):
    make_photos(tmp_path / "p", count=2)
    script = textwrap.dedent(f"""
        import sys
        from PySide6.QtCore import QSettings, QThreadPool
        from PySide6.QtWidgets import QApplication
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, {str(tmp_path / 's')!r})
        app = QApplication([])
        from imgcap_desktop.main_window import MainWindow
        window = MainWindow()
        window.show()
        window.open_folder({str(tmp_path / 'p')!r})
        QThreadPool.globalInstance().waitForDone(10000)
        app.processEvents()
        assert window.photos.rowCount() == 4
        assert "tensorflow" not in sys.modules, "TensorFlow imported on the GUI thread"
        window.close()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["auto", "tf"])
def test_real_model_runs_several_jobs_a_cancel_and_a_resume_in_one_session(tmp_path, runtime):
    # In a fresh process, as in the app: the engine first runs on the service's worker thread. With
    # TensorFlow the second job used to crash there (segfault) or hang; a process that had already
    # run TensorFlow on its main thread did not show it, so this cannot run inside the test process.
    script = textwrap.dedent(f"""
        import json, sys
        from imgcap_desktop.caption_service import CaptionJob, CaptionService
        from imgcap_desktop.selftest import _run_job, sample_photos
        from PySide6.QtCore import QCoreApplication
        app = QCoreApplication([])
        photos = tuple(sample_photos())

        def load(bundle, device):  # the shipped model, loaded on the worker thread
            from model.captioner import Captioner
            return Captioner.from_bundle(bundle, device=device, runtime={runtime!r})

        service = CaptionService(factory=load)
        runs = []
        try:
            runs.append(_run_job(service, CaptionJob(photos, batch_size=2, device="cpu")))
            runs.append(_run_job(service, CaptionJob(photos, batch_size=3, beam_size=1, device="cpu")))
            runs.append(_run_job(service, CaptionJob(photos, batch_size=1, device="cpu"), cancel=True))
            rest = tuple(p for p in photos if str(p) not in runs[-1][0])
            runs.append(_run_job(service, CaptionJob(rest, batch_size=2, device="cpu")))
            runs.append(_run_job(service, CaptionJob(photos[:1], batch_size=1, device="cpu")))
            typed = ("A cat, on the sofa!", "my espresso")  # the maps of captions it did not write
            runs.append(_run_job(service, CaptionJob(photos[:2], batch_size=2, device="cpu", texts=typed)))
            print(json.dumps({{"model": service.model_name, "runs": runs}}))
        finally:
            service.shutdown()
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["model"] == load_bundle().name == "flickr8k-lite2-scst4-probe2"
    first, greedy, cancelled, resumed, single, attended = report["runs"]
    photos = {str(p) for p in selftest.sample_photos()}
    assert set(first[0]) == set(greedy[0]) == photos and first[1] is greedy[1] is False
    assert all(first[0].values()) and all(greedy[0].values())
    assert cancelled[1] is True and len(cancelled[0]) < len(photos)
    assert set(cancelled[0]) | set(resumed[0]) == photos and resumed[1] is False
    assert {**cancelled[0], **resumed[0]} == first[0]  # same beam, same captions
    assert single[0] == {min(photos): first[0][min(photos)]}
    assert sorted(attended[0].values()) == ["A cat, on the sofa!", "my espresso"] and attended[1] is False


def test_selftest_runs_the_service_sequence(qtbot, tmp_path):
    from tests.desktop.conftest import FakeCaptioner

    fake = FakeCaptioner()
    photos = make_photos(tmp_path / "p", count=4, corrupt=False)
    assert selftest.run_service_sequence(photos, factory=lambda bundle, device: fake, device="cpu") == 5
    assert running_threads() == []
