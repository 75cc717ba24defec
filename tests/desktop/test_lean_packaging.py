"""Packaging for the lean runtime: no TensorFlow in the app's dependencies or in the frozen build,
the shipped resources inside a wheel, and the build-time encoder graph."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements):
    return {re.split(r"[<>=!\[;~ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_pip_install_brings_no_tensorflow():
    project = _pyproject()["project"]
    assert not _names(project["dependencies"]) & {"tensorflow", "keras", "tf2onnx", "tensorflow-cpu", "torch"}
    assert "onnxruntime" in _names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert "onnxruntime-gpu" in _names(extras["gpu"])
    assert {"tensorflow", "tf2onnx"} <= _names(extras["train"])
    assert {"tensorflow", "tf2onnx"} <= _names(extras["test"])  # the parity tests compare with TensorFlow


def test_every_shipped_resource_folder_reaches_the_wheel():
    data_files = _pyproject()["tool"]["setuptools"]["data-files"]
    shipped = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "resources").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    listed = {pattern.rsplit("/", 1)[0] for patterns in data_files.values() for pattern in patterns}
    assert shipped <= listed, f"resource folders missing from [tool.setuptools.data-files]: {sorted(shipped - listed)}"
    for destination, patterns in data_files.items():
        for pattern in patterns:
            assert destination == "share/imgcap/" + pattern.rsplit("/", 1)[0], (destination, pattern)


def test_build_spec_ships_the_encoder_graph_and_no_tensorflow():
    text = (ROOT / "build.spec").read_text()
    assert '.onnx"), "resources/encoders")' in text
    for excluded in ('"tensorflow"', '"keras"', '"tf2onnx"', '"onnx"', '"model.decoder"', '"model.decoding"'):
        assert excluded in text.split("excludes = [", 1)[1].split("]", 1)[0], excluded
    assert '"onnxruntime"' in text and '"model.runtime"' in text


def test_convert_encoder_writes_a_graph_onnxruntime_loads(tmp_path, capsys):
    import sys

    import onnxruntime as ort

    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import convert_encoder
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    assert convert_encoder.main([str(tmp_path), "tiny_test"]) == 0
    session = ort.InferenceSession(str(tmp_path / "tiny_test.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["grid"]
    assert "tiny_test.onnx" in capsys.readouterr().out


def test_a_shipped_encoder_graph_wins_over_the_cache(tmp_path, monkeypatch):
    """What the frozen app relies on: resources/encoders/NAME.onnx, with no cache and no weight package."""
    import shutil

    from model import encoder_graphs

    resources = tmp_path / "resources"
    shutil.copytree(ROOT / "resources" / "models", resources / "models")
    (resources / "encoders").mkdir()
    (resources / "encoders" / "efficientnet_lite2.onnx").write_bytes(b"stand-in")
    monkeypatch.setenv("IMGCAP_RESOURCES", str(resources))
    monkeypatch.setattr(encoder_graphs, "cached_encoder_graph", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert encoder_graphs.encoder_graph_path("efficientnet_lite2") == resources / "encoders" / "efficientnet_lite2.onnx"


def test_lean_bundle_script_drops_only_the_keras_weights(tmp_path, capsys):
    import sys

    from model.bundle import WEIGHTS_FILE, load_bundle
    from model.resources import resource_path

    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import lean_bundle
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    assert lean_bundle.main([str(tmp_path)]) == 0
    shipped = resource_path("models", "flickr8k-lite2")
    lean = tmp_path / "flickr8k-lite2"
    assert {p.name for p in lean.iterdir()} == {p.name for p in shipped.iterdir()} - {WEIGHTS_FILE}
    bundle = load_bundle(lean)
    assert bundle.graphs == load_bundle(shipped).graphs and bundle.weights == {}
