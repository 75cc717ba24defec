"""The runtime decision, measured: ONNX Runtime vs LiteRT vs TensorFlow on the shipped model's encoder.

    python benchmarks/compare_runtimes.py [--photos 8] [--repeats 5]

Needs TensorFlow and, for the LiteRT column, ``pip install ai-edge-litert`` (not an imgcap
dependency). For each runtime: conversion time, graph size, model load time, encoder time for a batch
of real photos, and the largest difference from the Keras model's feature grid. The LiteRT encoder is
converted the way that works with Keras 3 (``Model.export`` to a SavedModel, then TF's converter);
converting a ``tf.function`` over Keras 3 layers directly (as for the decoder step) drops the weights
and gives NaN, which the script also shows. See docs/RUNTIME.md for the figures and the decision.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _best(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np

    from bench_caption import make_photos
    from model.encoder_graphs import encoder_graph_path  # first: the engine turns ONNX Runtime's telemetry off
    from model.encoders import build_efficientnet_lite_classifier
    from model.images import load_image

    import onnxruntime as ort
    import tensorflow as tf

    tmp = Path(tempfile.mkdtemp(prefix="imgcap-runtimes-"))
    pixels = np.stack([load_image(p, 260) for p in make_photos(tmp, args.photos)]).astype(np.float32)
    keras_model = build_efficientnet_lite_classifier("efficientnet_lite2")
    encode = tf.function(lambda x: keras_model(x, training=False))
    want = encode(pixels)[0].numpy()
    rows = []

    t = _best(lambda: encode(pixels), args.repeats)
    rows.append(("TensorFlow (Keras, tf.function)", "-", "-", "-", t, 0.0))

    start = time.perf_counter()
    graph = encoder_graph_path("efficientnet_lite2")
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - start
    got = session.run(["grid"], {"pixels": pixels})[0]
    t = _best(lambda: session.run(None, {"pixels": pixels}), args.repeats)
    rows.append((f"ONNX Runtime {ort.__version__} (graph from numpy)", f"{build_s:.1f} s (cached)",
                 f"{graph.stat().st_size / 1e6:.1f} MB", f"{load_s:.2f} s", t, float(np.abs(got - want).max())))

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("ai-edge-litert is not installed: no LiteRT column")
        Interpreter = None
    if Interpreter is not None:
        start = time.perf_counter()
        keras_model.export(str(tmp / "saved"), format="tf_saved_model", verbose=False)
        blob = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved")).convert()
        convert_s = time.perf_counter() - start
        (tmp / "enc.tflite").write_bytes(blob)
        start = time.perf_counter()
        interpreter = Interpreter(model_path=str(tmp / "enc.tflite"), num_threads=os.cpu_count())
        runner = interpreter.get_signature_runner()
        load_s = time.perf_counter() - start
        outputs = runner(**{runner.get_input_details().popitem()[0]: pixels})
        got = max((v for v in outputs.values() if v.ndim == 4), key=lambda v: v.size)
        t = _best(lambda: runner(**{runner.get_input_details().popitem()[0]: pixels}), args.repeats)
        rows.append((f"LiteRT (XNNPACK, {os.cpu_count()} threads)", f"{convert_s:.1f} s", f"{len(blob) / 1e6:.1f} MB",
                     f"{load_s:.2f} s", t, float(np.abs(got - want).max())))

        # The direct route, as the decoder step would need it: a tf.function over Keras 3 layers.
        module = tf.Module()
        module.model = keras_model
        concrete = tf.function(lambda x: keras_model(x, training=False)[0],
                               input_signature=[tf.TensorSpec([None, 260, 260, 3], tf.float32)]).get_concrete_function()
        direct = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module).convert()
        (tmp / "direct.tflite").write_bytes(direct)
        interpreter = Interpreter(model_path=str(tmp / "direct.tflite"))
        runner = interpreter.get_signature_runner()
        out = list(runner(**{runner.get_input_details().popitem()[0]: pixels[:1]}).values())[0]
        print(f"LiteRT from a tf.function over Keras 3 layers: {len(direct) / 1e6:.2f} MB, "
              f"output finite: {bool(np.isfinite(out).all())} (weights kept: {len(direct) > 1e6})")

    print(f"\nencoder efficientnet_lite2, batch {len(pixels)} photos 260x260, best of {args.repeats}:")
    print(f"{'runtime':44s} {'convert':>16s} {'size':>9s} {'load':>7s} {'photos/s':>9s} {'max |diff|':>11s}")
    base = rows[0][4]
    for name, convert, size, load, t, diff in rows:
        print(f"{name:44s} {convert:>16s} {size:>9s} {load:>7s} {len(pixels) / t:9.2f} "
              f"{diff:11.2e}   ({base / t:.2f}x TF)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
