"""Cross-entropy training step on Keras/JAX: batches cut after their longest caption against batches
padded to the full length, in one run.

    KERAS_BACKEND=jax python benchmarks/bench_train_step.py [--tokens ../shared/data/flickr8k/Flickr8k.token.txt]

``training.train_jax`` cuts each batch to its longest caption, rounded up to 4 columns
(:func:`training.train_jax.trimmed`); before, every batch ran over ``max_words + 2`` = 32 columns. A
decoder of the shipped model's size (512 units, 512-wide projection, 256-wide embedding, a
5,000-word vocabulary, 81 grid cells of 1,280 channels, random weights) takes ``--steps`` photo
steps of ``--batch-size`` random captions each way. The captions' lengths are drawn from
``--tokens`` (a Flickr8k-layout captions file) when given, else from a made-up spread (mean 12.8
words, like Flickr8k's). The two ways alternate step by step after each width has compiled, so that
other work on a shared machine slows both alike. Printed: seconds per step each way, their ratio and
the mean width of the cut batches.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def caption_lengths(tokens: Path | None, rng: np.random.Generator, max_words: int) -> np.ndarray:
    """Word counts of real captions (``tokens``), or a made-up spread like Flickr8k's."""
    if tokens is not None:
        lines = Path(tokens).read_text(encoding="utf-8").splitlines()
        return np.array([min(len(line.split("\t", 1)[-1].split()), max_words) for line in lines if line.strip()])
    return np.clip(np.rint(rng.gamma(6.0, 12.8 / 6.0, size=40_000)), 3, max_words).astype(int)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=None, help="a captions file whose lengths to draw")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps each way")
    parser.add_argument("--vocab-size", type=int, default=5000)
    args = parser.parse_args(argv)

    import jax

    from model.vocab import Vocabulary
    from training.train import TrainConfig
    from training.train_jax import JaxTrainer, trimmed

    rng = np.random.default_rng(0)
    config = TrainConfig(data="unused", out="unused", feature_dim=512, units=512, embedding_dim=256)
    vocab = Vocabulary([f"w{i}" for i in range(args.vocab_size - 4)], min_count=1)
    lengths = caption_lengths(args.tokens, rng, config.max_words)
    width = config.max_words + 2
    trainer = JaxTrainer(config, vocab, channels=1280, tag_words=(), steps_per_epoch=100)

    def batch() -> np.ndarray:
        seq = np.zeros((args.batch_size, width), np.int32)
        for row, n in zip(seq, rng.choice(lengths, args.batch_size)):
            row[:n + 2] = [vocab.start_id, *rng.integers(4, len(vocab), n), vocab.end_id]
        return seq

    feats = rng.normal(size=(args.batch_size, 81, 1280)).astype(np.float32)
    tags = np.zeros((args.batch_size, 0), np.float32)

    def step(seq: np.ndarray) -> float:
        started = time.perf_counter()
        trainer.state, xent = trainer._paired(trainer.state, feats, tags, seq, jax.random.PRNGKey(0), np.float32(0))
        float(xent)  # waits for the step
        return time.perf_counter() - started

    step(batch())  # compile the full width
    for w in range(4, width + 1, 4):  # and every cut width, outside the timing
        step(batch()[:, :w])
    full, cut, widths = [], [], []
    for _ in range(args.steps):
        seq = batch()
        short = trimmed(seq, vocab.pad_id)
        widths.append(short.shape[1])
        full.append(step(seq))
        cut.append(step(short))
    print(f"full width ({width} columns): {np.mean(full):.3f} s/step")
    print(f"cut batches (mean width {np.mean(widths):.1f}): {np.mean(cut):.3f} s/step")
    print(f"ratio cut/full: {np.mean(cut) / np.mean(full):.2f} (load average {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
