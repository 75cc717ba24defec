"""Captioning speed: imgcap's batched, compiled path against the TensorFlow tutorial's way.

    python benchmarks/bench_caption.py [--photos 32] [--bundle DIR] [--batch-size 16]

Both paths caption the same folder of photos (scikit-image's real photos, cropped, flipped and
resized into ``--photos`` distinct JPEGs in a temporary folder) with the same bundle and weights:

(a) imgcap: ``Captioner.caption(paths, beam_size=1, batch_size=16)``: photos loaded on a helper
    thread, the encoder and the whole greedy search each run as one compiled graph per batch.
(b) the tutorial's way (TensorFlow's "Image captioning with visual attention"): one photo at a time,
    the encoder called eagerly, then an eager Python loop over time steps calling the same decoder
    layers (``decoder.prepare``, ``decoder.step``, ``decoder.logits``), argmax, stop at ``<end>``.

Also printed: encoder-only images/s (compiled, batched, photos already loaded) and the cost of beam-3
decoding relative to that encoder time. Targets: (a) >= 5x (b); beam-3 decoding <= 30% of encoding.
Warm-up runs (graph tracing) are excluded from every timing; each figure is the best of ``--repeats``
runs, as other work on a shared machine can only slow a run down.
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPEEDUP_TARGET = 5.0
BEAM_OVERHEAD_TARGET = 0.30
_SOURCES = ("chelsea", "coffee", "rocket", "astronaut", "cat", "camera", "horse", "immunohistochemistry")


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct JPEGs made from scikit-image's photos (random crop, flip, size)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = []
    for name in _SOURCES:
        image = getattr(data, name)()
        if image.dtype != np.uint8:
            image = (image * 255).astype(np.uint8) if image.max() <= 1 else image.astype(np.uint8)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        sources.append(image[..., :3])
    paths = []
    for i in range(count):
        image = sources[i % len(sources)]
        h, w = image.shape[:2]
        ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        width = int(rng.integers(480, 1025))
        photo = Image.fromarray(np.ascontiguousarray(crop)).resize((width, int(width * ch / cw)), Image.Resampling.BILINEAR)
        path = folder / f"photo{i:03d}.jpg"
        photo.save(path, quality=90)
        paths.append(path)
    return paths


def tutorial_caption(captioner, path: Path) -> list[str]:
    """One photo, the tutorial's way: eager encoder call, then an eager loop over time steps."""
    import tensorflow as tf

    from model.images import load_image

    bundle, decoder = captioner.bundle, captioner._decoder
    vocab = bundle.vocab
    max_length = int(bundle.config.get("decoding", {}).get("max_length", 30))
    ban = captioner._search._ban  # the same banned tokens as imgcap, so the captions can be compared

    image = load_image(path, captioner.spec.input_size)
    grid = captioner._encoder(tf.convert_to_tensor(image[None], tf.float32), training=False)  # (1, gh, gw, C)
    features = tf.reshape(grid, [1, -1, grid.shape[-1]])  # (1, locations, C)
    projected, keys, hidden = decoder.prepare(features)
    token = tf.constant([vocab.start_id])
    words = []
    for _ in range(max_length):
        hidden, context, embedded, _weights = decoder.step(token, hidden, projected, keys)
        logits = decoder.logits(hidden, context, embedded) + ban  # (1, vocab)
        predicted = int(tf.argmax(logits[0]).numpy())
        if predicted == vocab.end_id:
            break
        words.append(vocab.word_of(predicted))
        token = tf.constant([predicted])
    return words


REPEATS = 2


def _timed(fn, repeats: int = 1):
    """``(value, seconds)``: the best of ``repeats`` runs (the machine may be shared; noise only slows)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="time each path this many times, keep the best")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from model.captioner import Captioner
    from model.images import load_image

    with tempfile.TemporaryDirectory(prefix="imgcap-bench-") as tmp:
        paths = make_photos(Path(tmp), args.photos)
        (captioner, load_s) = _timed(lambda: Captioner.from_bundle(args.bundle, device="cpu"))
        n, bs = len(paths), args.batch_size
        print(f"model {captioner.name} ({captioner.spec.name}, {captioner.spec.input_size}px, grid {captioner.grid}), "
              f"device {captioner.device}, TensorFlow {tf.__version__}, {os.cpu_count()} CPUs")
        print(f"{n} photos in {tmp}, batch size {bs}; model loaded in {load_s:.1f} s")

        # Warm-up: trace every graph once (full and last-partial batch shapes), outside the timings.
        captioner.caption(paths[:bs], beam_size=1, batch_size=bs)
        captioner.caption(paths[:bs], beam_size=3, batch_size=bs)
        if n % bs:
            captioner.caption(paths[: n % bs], beam_size=1, batch_size=bs)
            captioner.caption(paths[: n % bs], beam_size=3, batch_size=bs)
        tutorial_caption(captioner, paths[0])

        ours, ours_s = _timed(lambda: captioner.caption(paths, beam_size=1, batch_size=bs), args.repeats)
        theirs, theirs_s = _timed(lambda: [tutorial_caption(captioner, p) for p in paths], args.repeats)
        same = sum(o.ok and list(o.words) == t for o, t in zip(ours, theirs))

        pixels = np.stack([load_image(p, captioner.spec.input_size) for p in paths])
        chunks = [pixels[i:i + bs] for i in range(0, n, bs)]
        features, encode_s = _timed(lambda: [captioner.encode(c) for c in chunks], args.repeats)
        _, greedy_s = _timed(lambda: [captioner._search.greedy(f) for f in features], args.repeats)
        _, beam3_s = _timed(lambda: [captioner._search.beam(f, 3) for f in features], args.repeats)
        _, full3_s = _timed(lambda: captioner.caption(paths, beam_size=3, batch_size=bs), args.repeats)

    speedup = theirs_s / ours_s
    overhead = beam3_s / encode_s
    print()
    print(f"(a) imgcap batched, compiled (beam 1, batch {bs}):  {n / ours_s:7.2f} images/s  ({ours_s:.2f} s)")
    print(f"(b) tutorial: one photo at a time, eager loop:     {n / theirs_s:7.2f} images/s  ({theirs_s:.2f} s)")
    print(f"    speed-up (a)/(b): {speedup:.1f}x   target >= {SPEEDUP_TARGET:.0f}x   "
          f"{'OK' if speedup >= SPEEDUP_TARGET else 'MISSED'}")
    print(f"    same caption from both paths: {same}/{n} photos")
    print()
    print(f"encoder only (compiled, batch {bs}, photos preloaded): {n / encode_s:7.2f} images/s  ({encode_s:.2f} s)")
    print(f"greedy decoding only:                                  {n / greedy_s:7.2f} images/s  "
          f"({greedy_s:.2f} s, {greedy_s / encode_s:.0%} of encoder time)")
    print(f"beam-3 decoding only:                                  {n / beam3_s:7.2f} images/s  ({beam3_s:.2f} s)")
    print(f"    beam-3 decoding overhead on top of the encoder: {overhead:.0%}   target <= {BEAM_OVERHEAD_TARGET:.0%}   "
          f"{'OK' if overhead <= BEAM_OVERHEAD_TARGET else 'MISSED'}")
    print(f"end to end with beam 3 (loading included):         {n / full3_s:7.2f} images/s  ({full3_s:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
