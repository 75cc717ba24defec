"""Fixtures for the GUI tests: fresh settings, a photo folder, a fake captioner, and no thread left behind."""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSettings, QThreadPool

from model.images import ImageLoadError, load_image
from model.results import Alternative, CaptionFailure, CaptionResult

_GUI_TESTS = ("test_app", "test_edits_and_failures", "test_folder_watch", "test_qt_binding", "test_caption_service",
              "test_caption_view", "test_keyword_chips", "test_main_window", "test_photo_model",
              "test_review_mode", "test_settings", "test_thumbnails")

WORDS = ("a", "dog", "cat", "runs", "on", "the", "grass", "beach", "red", "ball")


def pytest_collection_modifyitems(config, items):
    # The offscreen platform warns when a main window propagates size hints; it is not our warning.
    for item in items:
        if Path(str(item.fspath)).stem in _GUI_TESTS:
            item.add_marker(pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"))


@pytest.fixture(autouse=True)
def fresh_settings(tmp_path_factory):
    """Point QSettings at a temporary folder so tests never touch the user's settings."""
    folder = tmp_path_factory.mktemp("settings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(folder))
    return folder


@pytest.fixture(scope="session")
def gui_thread_collector(qapp):
    """As in the app, cyclic garbage (a test's window) is collected on the GUI thread alone, never by
    a worker thread that allocates: that deleted widgets the GUI thread was using (a segfault).
    From the first Qt test on, for the rest of the session."""
    from imgcap_desktop.gui_gc import collecting_on_gui_thread

    with collecting_on_gui_thread() as collector:
        yield collector


@pytest.fixture(autouse=True)
def collect_on_gui_thread(request):
    """A Qt test runs under the GUI thread's collector; after any test, what it left as garbage is
    collected as the automatic collector would have (a test without an event loop never runs the
    collector's timer). Tests without Qt make no Qt application (no display needed)."""
    from imgcap_desktop.gui_gc import collect_due

    if {"qtbot", "qapp"} & set(request.fixturenames):
        request.getfixturevalue("gui_thread_collector")
    yield
    if not gc.isenabled():
        collect_due(gc.get_threshold())


@pytest.fixture(autouse=True)
def no_threads_left(request):
    """Fail a GUI test that leaves a captioning thread or thread-pool work running."""
    from imgcap_desktop.caption_service import running_threads

    yield
    if Path(str(request.node.fspath)).stem not in _GUI_TESTS:
        return
    pool = QThreadPool.globalInstance()
    pool.waitForDone(5000)
    assert pool.activeThreadCount() == 0, "thread-pool work was left running"
    assert running_threads() == [], "a captioning thread was left running"


class FakeCaptioner:
    """Stands in for ``model.captioner.Captioner``: same interface, deterministic captions, no TensorFlow.

    Each word's attention map peaks on its own grid cell (word ``i`` on cell ``i``), so a test can
    tell which word's map is shown. Unreadable photos give a :class:`CaptionFailure`, as the engine does.
    """

    name = "fake-model"
    device = "CPU"
    provider = "CPUExecutionProvider"
    runtime = "onnx"
    grid = (4, 4)

    def __init__(self, delay: float = 0.0, gate: threading.Semaphore | None = None):
        self.delay = delay
        self.gate = gate  # when set, each batch waits for one release() (tests pace the worker)
        self.batches = 0

    def caption_batches(self, images, beam_size=3, batch_size=8):
        images = list(images)
        for start in range(0, len(images), batch_size):
            self._wait_for_release()
            self.batches += 1
            yield [self._one(image) for image in images[start:start + batch_size]]

    def _wait_for_release(self) -> None:
        if self.gate is not None and not self.gate.acquire(timeout=10):
            raise TimeoutError("the test never released this batch")
        time.sleep(self.delay)

    def attend_batches(self, images, texts, batch_size=8):
        """As ``Captioner.attend_batches``: the given captions' words, each with a map of its own."""
        images, texts = list(images), list(texts)
        for start in range(0, len(images), batch_size):
            self._wait_for_release()
            batch = []
            for image, text in zip(images[start:start + batch_size], texts[start:start + batch_size]):
                outcome = self._one(image)
                if outcome.ok:
                    words = tuple(text.split())
                    attention = np.full((len(words), *self.grid), 0.01, np.float32)
                    for i in range(len(words)):
                        attention[i].flat[i % attention[i].size] = 1.0
                    attention /= attention.sum(axis=(1, 2), keepdims=True)
                    outcome = CaptionResult(str(image), words, tuple(range(len(words))), -1.0, attention)
                batch.append(outcome)
            self.batches += 1
            yield batch

    def _one(self, path):
        try:
            load_image(path, 16)
        except ImageLoadError as exc:
            return CaptionFailure(str(path), exc.reason)
        return fake_result(str(path), self.grid)


def fake_result(source: str, grid=(4, 4)) -> CaptionResult:
    digest = hashlib.sha256(Path(source).name.encode()).digest()
    n = 3 + digest[0] % 3
    words = tuple(WORDS[b % len(WORDS)] for b in digest[1:1 + n])
    attention = np.full((n, *grid), 0.01, np.float32)
    for i in range(n):
        attention[i].flat[i % attention[i].size] = 1.0
    attention /= attention.sum(axis=(1, 2), keepdims=True)
    alternatives = (Alternative(words, -0.5), Alternative(words[::-1], -1.25))
    return CaptionResult(source, words, tuple(range(4, 4 + n)), -0.5, attention, alternatives)


def make_photos(folder: Path, count: int = 5, corrupt: bool = True) -> list[Path]:
    """Small JPEGs (one rotated by EXIF), a PNG, and optionally a corrupt JPEG, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        pixels[:, :, i % 3] = 200
        path = folder / f"photo{i + 1}.jpg"
        image = Image.fromarray(pixels)
        if i == 1:
            exif = Image.Exif()
            exif[0x0112] = 6  # rotated a quarter
            image.save(path, exif=exif)
        else:
            image.save(path)
        paths.append(path)
    png = folder / "drawing.png"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(png)
    paths.append(png)
    if corrupt:
        bad = folder / "broken.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        paths.append(bad)
    return paths


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    make_photos(folder)
    return folder


@pytest.fixture
def fake_captioner() -> FakeCaptioner:
    return FakeCaptioner()


@pytest.fixture
def service(no_threads_left, fake_captioner):
    from imgcap_desktop.caption_service import CaptionService

    service = CaptionService(factory=lambda bundle, device: fake_captioner)
    yield service
    service.shutdown()


@pytest.fixture
def window(qtbot, service):
    from PySide6.QtWidgets import QMessageBox

    from imgcap_desktop.main_window import MainWindow
    from imgcap_desktop.settings import AppSettings

    window = MainWindow(service=service, settings=AppSettings(batch_size=2))
    # Closing with held captions would ask (a modal question): tests that care replace this answer.
    window._ask_about_held = lambda count, before="closing": QMessageBox.StandardButton.Discard
    window._confirm_stop_run = lambda: True  # closing during a run: stop it
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    from model.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")
