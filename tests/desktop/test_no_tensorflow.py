"""The app, the CLI and the self-test run without TensorFlow: each runs in a subprocess in which
importing tensorflow, keras, tf2onnx or torch raises ImportError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    BLOCKED = ("tensorflow", "keras", "tf2onnx", "torch", "tf_keras")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())

    def check_clean():
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
""")


def _run(body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"IMGCAP_CACHE_DIR": str(tmp_path / "cache"), "QT_QPA_PLATFORM": "offscreen",
                        "PYTHONPATH": str(ROOT)}
    script = BLOCKER + textwrap.dedent(body) + "\ncheck_clean()\nprint('CLEAN')\n"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_blocker_blocks(tmp_path):
    result = _run("import tensorflow", tmp_path)
    assert result.returncode != 0 and "tensorflow is blocked" in result.stderr


def test_cli_captions_the_samples_without_tensorflow(tmp_path):
    result = _run("""
        from imgcap_desktop.cli import main
        code = main(["caption", "resources/samples", "--json", "--device", "cpu"])
        assert code == 0, code
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) >= 4 and all(r["caption"] for r in records)
    assert {r["device"] for r in records} == {"CPU (ONNX Runtime)"}
    assert {r["provider"] for r in records} == {"CPUExecutionProvider"}
    assert result.stdout.rstrip().endswith("CLEAN")


def test_selftest_without_tensorflow(tmp_path):
    result = _run("""
        from imgcap_desktop.selftest import main
        assert main() == 0
    """, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert ("model flickr8k-lite2-scst4-probe2 on CPU (ONNX Runtime)" in result.stdout
            and "self-test passed" in result.stdout)
    assert result.stdout.rstrip().endswith("CLEAN")


def test_app_modules_and_model_loading_without_tensorflow(tmp_path):
    """The window's modules import, and the service's model loader gives a working captioner."""
    result = _run("""
        import imgcap_desktop.app, imgcap_desktop.main_window, imgcap_desktop.caption_service
        from imgcap_desktop.caption_service import load_captioner
        from model.resources import resource_path
        captioner = load_captioner(None, "auto")
        outcome = captioner.caption([sorted(resource_path("samples").glob("*.jpg"))[0]])[0]
        assert outcome.ok and outcome.words, outcome
        print(captioner.runtime, captioner.device)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "onnx CPU (ONNX Runtime)" in result.stdout
    assert result.stdout.rstrip().endswith("CLEAN")


@pytest.mark.slow
def test_launcher_selftest_without_tensorflow(tmp_path):
    """What the frozen binary runs: packaging/launcher.py --selftest."""
    result = _run("""
        import runpy, sys
        sys.argv = ["imgcap", "--selftest"]
        try:
            runpy.run_path("packaging/launcher.py", run_name="__main__")
        except SystemExit as exit:
            assert exit.code == 0, exit.code
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "self-test passed" in result.stdout and result.stdout.rstrip().endswith("CLEAN")
