"""Export a bundle's decoder (and an encoder that only Keras can build) to ONNX graphs. Needs TensorFlow.

The decoder is exported as two graphs, traced from the decoder's own methods with tf2onnx, so
whatever decoder a bundle holds (the plain one, or the tag-aware one with a copy path) is exported
without this module knowing its insides:

``decoder_prepare.onnx``
    ``features (batch, locations, channels)`` [and ``tags (batch, num_tags)``] ->
    ``memory_0 … memory_{n-1}`` (the decoder's per-photo memory, batch first), ``hidden (batch, units)``
``decoder_step.onnx``
    ``tokens (batch,) int32``, ``hidden``, ``memory_0 … memory_{n-1}`` ->
    ``hidden_out (batch, units)``, ``scores (batch, vocab)``, ``attention (batch, locations)``

``scores`` are the decoder's word scores (logits for the plain decoder, normalised log-probabilities
for the tag-aware one); the search (:mod:`model.search`) applies ``log_softmax(scores + ban)`` to
either, as the TensorFlow search does. Weights are stored as float16 wherever that is lossless (the
bundle's weights are float16 already) and cast to float32 when the graph loads, so the graphs are
half the size and compute exactly what the float32 Keras decoder computes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

OPSET = 17
PREPARE_FILE = "decoder_prepare.onnx"
STEP_FILE = "decoder_step.onnx"


class ExportError(RuntimeError):
    """A graph could not be exported (a missing converter, or a graph that does not reproduce Keras)."""


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError:
        raise ExportError("exporting ONNX graphs needs tf2onnx: pip install 'imgcap[train]'") from None
    return tf2onnx


# -- the decoder's API, old and new ----------------------------------------------------------------

def _num_tags(decoder) -> int:
    return int(getattr(decoder, "num_tags", 0) or 0)


def decoder_functions(decoder):
    """``(prepare, step)`` plain functions over tensors with flat inputs and outputs.

    ``prepare(features[, tags]) -> (*memory, hidden)``; ``step(tokens, hidden, *memory) ->
    (hidden, scores, attention)``. Works with the decoder API of ``prepare/step/log_probs`` with a
    ``memory`` tuple, and with the older ``prepare/step/logits`` with ``(projected, keys)``.
    """
    if hasattr(decoder, "log_probs"):
        tagged = _num_tags(decoder) > 0

        def prepare(features, tags=None):
            memory, hidden = decoder.prepare(features, tags if tagged else None, training=False)
            return (*memory, hidden)

        def step(tokens, hidden, *memory):
            hidden, context, embedded, attention = decoder.step(tokens, hidden, tuple(memory), training=False)
            return hidden, decoder.log_probs(hidden, context, embedded, tuple(memory), training=False), attention

        return prepare, step

    def prepare_old(features):
        projected, keys, hidden = decoder.prepare(features)
        return projected, keys, hidden

    def step_old(tokens, hidden, projected, keys):
        hidden, context, embedded, attention = decoder.step(tokens, hidden, projected, keys)
        return hidden, decoder.logits(hidden, context, embedded), attention

    return prepare_old, step_old


def decoder_signatures(decoder, locations: int):
    """TensorSpecs of the two functions, the memory's shapes read off one traced ``prepare``."""
    import tensorflow as tf

    prepare, _ = decoder_functions(decoder)
    channels = decoder.encoder_channels
    num_tags = _num_tags(decoder)
    prepare_sig = [tf.TensorSpec([None, locations, channels], tf.float32, name="features")]
    example = [tf.zeros([1, locations, channels])]
    if num_tags:
        prepare_sig.append(tf.TensorSpec([None, num_tags], tf.float32, name="tags"))
        example.append(tf.zeros([1, num_tags]))
    outputs = prepare(*example)
    memory, hidden = outputs[:-1], outputs[-1]
    step_sig = [tf.TensorSpec([None], tf.int32, name="tokens"),
                tf.TensorSpec([None, hidden.shape[-1]], tf.float32, name="hidden")]
    step_sig += [tf.TensorSpec([None, *m.shape[1:]], m.dtype, name=f"memory_{i}") for i, m in enumerate(memory)]
    return prepare_sig, step_sig, len(memory)


# -- graph surgery ---------------------------------------------------------------------------------

def rename_outputs(model, names: list[str]) -> None:
    """Give a converted graph's outputs stable names (tf2onnx calls them ``Identity:0`` …)."""
    graph = model.graph
    if len(graph.output) != len(names):
        raise ExportError(f"expected {len(names)} outputs, the converted graph has {len(graph.output)}")
    for output, new in zip(graph.output, names):
        old = output.name
        for node in graph.node:
            node.output[:] = [new if o == old else o for o in node.output]
            node.input[:] = [new if i == old else i for i in node.input]
        output.name = new


def float16_storage(model, min_elements: int = 1024) -> int:
    """Store float32 initializers as float16 where that loses nothing; a Cast restores float32.

    Returns the number of initializers converted. onnxruntime folds the casts when it loads the
    graph, so the arithmetic stays float32.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts, kept, converted = [], [], 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), value):
            kept.append(init)
            continue
        stored = numpy_helper.from_array(half, init.name + "__f16")
        kept.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
        converted += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return converted


def _convert(function, signature, output_names: list[str]):
    import tensorflow as tf

    tf2onnx = _tf2onnx()
    traced = tf.function(function, input_signature=signature)
    model, _ = tf2onnx.convert.from_function(traced, input_signature=signature, opset=OPSET)
    rename_outputs(model, output_names)
    return model


# -- the decoder -----------------------------------------------------------------------------------

def export_decoder_graphs(decoder, bundle_dir: str | Path, locations: int, *, check: bool = True) -> dict:
    """Write the decoder's prepare and step graphs into ``bundle_dir``; returns the config entry.

    With ``check``, both graphs are run with onnxruntime on random inputs and compared to Keras
    (tolerance 1e-4); a mismatch raises :class:`ExportError` and nothing is written.
    """
    bundle_dir = Path(bundle_dir)
    prepare_fn, step_fn = decoder_functions(decoder)
    prepare_sig, step_sig, n_memory = decoder_signatures(decoder, locations)
    memory_names = [f"memory_{i}" for i in range(n_memory)]
    prepare_model = _convert(prepare_fn, prepare_sig, memory_names + ["hidden"])
    step_model = _convert(step_fn, step_sig, ["hidden_out", "scores", "attention"])
    for model in (prepare_model, step_model):
        float16_storage(model)
    prepare_bytes, step_bytes = prepare_model.SerializeToString(), step_model.SerializeToString()
    if check:
        _check_decoder(decoder, prepare_bytes, step_bytes, locations)
    from model.bundle import write_atomically

    write_atomically(bundle_dir / PREPARE_FILE, prepare_bytes)
    write_atomically(bundle_dir / STEP_FILE, step_bytes)
    return {
        "format": "onnx",
        "opset": OPSET,
        "prepare": {"file": PREPARE_FILE, "sha256": hashlib.sha256(prepare_bytes).hexdigest()},
        "step": {"file": STEP_FILE, "sha256": hashlib.sha256(step_bytes).hexdigest()},
        "memory": n_memory,
        "num_tags": _num_tags(decoder),
        "scores": "log_probs" if hasattr(decoder, "log_probs") else "logits",
    }


def _check_decoder(decoder, prepare_bytes: bytes, step_bytes: bytes, locations: int, tolerance: float = 1e-4) -> None:
    import onnxruntime as ort

    prepare_fn, step_fn = decoder_functions(decoder)
    rng = np.random.default_rng(0)
    batch = 3
    features = (rng.random((batch, locations, decoder.encoder_channels)) * 2).astype(np.float32)
    feeds = {"features": features}
    args = [features]
    if _num_tags(decoder):
        tags = rng.random((batch, _num_tags(decoder))).astype(np.float32)
        feeds["tags"] = tags
        args.append(tags)
    prepare_session = ort.InferenceSession(prepare_bytes, providers=["CPUExecutionProvider"])
    step_session = ort.InferenceSession(step_bytes, providers=["CPUExecutionProvider"])
    got = prepare_session.run(None, feeds)
    want = [np.asarray(x) for x in prepare_fn(*args)]
    tokens = rng.integers(1, decoder.vocab_size, batch).astype(np.int32)
    step_feeds = {"tokens": tokens, "hidden": want[-1]} | {f"memory_{i}": m for i, m in enumerate(want[:-1])}
    got += step_session.run(None, step_feeds)
    want += [np.asarray(x) for x in step_fn(tokens, want[-1], *want[:-1])]
    for g, w in zip(got, want):
        if g.shape != w.shape or not np.allclose(g, w, atol=tolerance, rtol=tolerance):
            raise ExportError(f"the exported decoder does not reproduce Keras (max difference "
                              f"{float(np.max(np.abs(g - w))) if g.shape == w.shape else 'shape'})")


# -- encoders that only Keras can build --------------------------------------------------------------

def export_keras_encoder(name: str, destination: str | Path, *, weights: str | Path | None = None) -> Path:
    """Export a Keras encoder (InceptionV3, the tiny test encoder, or EfficientNet-Lite for
    comparison) to ONNX with tf2onnx: ``pixels -> grid`` [and ``logits``]."""
    import tensorflow as tf

    from model.encoders import build_encoder, get_encoder_spec

    spec = get_encoder_spec(name)
    encoder = build_encoder(name, weights=weights)
    signature = [tf.TensorSpec([None, spec.input_size, spec.input_size, 3], tf.float32, name="pixels")]
    outputs = encoder.outputs if isinstance(encoder.outputs, (list, tuple)) else [encoder.outputs]
    names = ["grid", "logits"][:len(outputs)]

    def encode(pixels):
        out = encoder(pixels, training=False)
        return tuple(out) if isinstance(out, (list, tuple)) else (out,)

    model = _convert(encode, signature, names)
    destination = Path(destination)
    from model.encoder_graphs import write_verified

    if not write_verified(destination, model.SerializeToString()):
        raise ExportError(f"cannot write {destination}")
    return destination
