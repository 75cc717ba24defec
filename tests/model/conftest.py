"""Shared fixtures for the engine tests: a private encoder cache, real photos, the Lite classifiers.

Every test here runs with ``IMGCAP_CACHE_DIR`` pointed at a temporary folder, so the user's real
cache of converted encoder weights is never read or written.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def private_encoder_cache(tmp_path_factory):
    """A session-wide, empty encoder cache (converted EfficientNet-Lite weights land here)."""
    folder = tmp_path_factory.mktemp("imgcap-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCAP_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def lite2_classifier(private_encoder_cache):
    """EfficientNet-Lite2 with its ImageNet head (outputs ``[features, logits]``), converted once."""
    from model.encoders import build_efficientnet_lite_classifier

    return build_efficientnet_lite_classifier("efficientnet_lite2")


@pytest.fixture(scope="session")
def lite0_classifier(private_encoder_cache):
    from model.encoders import build_efficientnet_lite_classifier

    return build_efficientnet_lite_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A random-weight bundle with the tiny test encoder (read-only: copy it before editing)."""
    from model.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def tiny_captioner(tiny_bundle):
    from model.captioner import Captioner

    return Captioner.from_bundle(tiny_bundle, device="cpu")


def skimage_photo(name: str) -> np.ndarray:
    """A real photo from scikit-image as ``(H, W, 3)`` uint8 RGB."""
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def without_package(monkeypatch, package: str) -> None:
    """Make ``import package`` fail for the rest of the test, as on a machine without it."""
    import builtins

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name == package:
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
