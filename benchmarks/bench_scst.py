"""Self-critical training speed: seconds per 1,000 training photos, and what the compiled, vectorised
path buys over the obvious one.

    python benchmarks/bench_scst.py --init runs/tagaware --data ../shared/data/flickr8k [--photos 500]
    python benchmarks/bench_scst.py            # a random-weight decoder of the shipped size, made-up data

With ``--init`` the cross-entropy run's model (weights, vocabulary, tags) and the cached grids and
references of the first ``--photos`` training photos are used, as ``training.train --scst`` uses them;
without it, a random-weight decoder of the shipped model's size and random grids (its samples run
longer than a trained model's, so the figures are pessimistic). Printed, each measured in this run:

- one SCST step per 1,000 photos (``--samples`` captions each, ``--candidates`` beam or sample): the
  candidates' decode (one compiled graph per batch of ``--batch-size`` photos), the reward (vectorised
  CIDEr-D and guard penalties) and the policy-gradient update; the best of ``--repeats`` passes after
  a warm-up (tracing) pass;
- the sampled decode against an eager Python loop over time steps, one photo's samples at a time
  (the same decoder calls), on ``--eager-photos`` photos: the speed-up ratio;
- the vectorised reward against pycocoevalcap's ``CiderScorer`` on the same captions: the ratio.
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


def _random_setup(args, out: Path):
    import numpy as np

    from model.vocab import Vocabulary
    from training.train import TrainConfig

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2531)]
    vocab = Vocabulary(words)
    config = TrainConfig(data="", out=str(out), encoder="efficientnet_lite2", max_words=30)
    features = rng.normal(size=(args.photos, 81, 1280)).astype(np.float16)
    references = [[list(rng.choice(words[:300], size=int(rng.integers(6, 16)))) for _ in range(5)]
                  for _ in range(args.photos)]
    return config, vocab, features, None, references, None


def _run_setup(args, out: Path):
    import dataclasses
    import json

    from training.train import TrainConfig, _tag_setup, prepare_split

    init = Path(args.init)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in json.loads((init / "train_config.json").read_text()).items() if k in known}
    config = TrainConfig(**(values | {"data": args.data, "out": str(out), "limit": args.photos}))
    from model.vocab import Vocabulary

    vocab = Vocabulary.load(init / "vocab.json")
    tag_map, tagger = _tag_setup(config)
    split, _ = prepare_split(config, "train", vocab, limit=args.photos, tagger=tagger)
    return config, vocab, split.features, split.tags, split.references, tag_map


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", default=None, help="a cross-entropy run folder (default: random weights)")
    parser.add_argument("--data", default=None, help="the Flickr8k-layout folder (with --init)")
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--candidates", choices=("beam", "sample"), default="beam",
                        help="the captions scored per photo in the timed steps (as training.train --scst-candidates)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--eager-photos", type=int, default=10)
    args = parser.parse_args(argv)
    if args.init and not args.data:
        parser.error("--init needs --data")

    import numpy as np
    import tensorflow as tf
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    from model.bundle import assign_variables
    from training.cider import CiderD
    from training.scst import SCSTConfig, SCSTTrainer
    from training.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        setup = _run_setup if args.init else _random_setup
        config, vocab, features, tags, references, tag_map = setup(args, out)
        trainer = Trainer(config, vocab, channels=features.shape[-1],
                          tag_words=tag_map.words if tag_map is not None else ())
        if args.init:
            with np.load(Path(args.init) / "best.weights.npz") as npz:
                assign_variables(trainer.decoder, {k: npz[k] for k in npz.files})
        started = time.perf_counter()
        cider = CiderD(references)
        build_s = time.perf_counter() - started
        lengths = np.asarray([np.mean([len(r) for r in refs]) for refs in references])
        scst = SCSTTrainer(trainer, vocab, cider, lengths,
                           SCSTConfig(data="", out=str(out), samples=args.samples, batch_size=args.batch_size,
                                      candidates=args.candidates))
        n = len(features)
        batches = [np.arange(i, min(i + args.batch_size, n)) for i in range(0, n, args.batch_size)]
        print(f"{n} photos, batches of {args.batch_size}, {args.samples} {args.candidates} candidates each; "
              f"{'model ' + args.init if args.init else 'random-weight decoder'}; "
              f"CIDEr-D tables for {n} photos built in {build_s:.2f} s")

        def tags_of(photos):
            return None if tags is None else tags[photos]

        passes = []
        for _ in range(args.repeats + 1):  # the first pass traces the graphs
            figures = [scst.train_step(photos, features[photos], tags_of(photos)) for photos in batches]
            passes.append({key: sum(f[key] for f in figures) for key in ("sample_s", "reward_s", "update_s")})
        best = min(passes[1:], key=lambda p: sum(p.values()))
        per_1000 = {key: value * 1000.0 / n for key, value in best.items()}
        total = sum(per_1000.values())
        print(f"SCST step per 1,000 photos: {total:.1f} s = "
              f"{args.candidates} candidates {per_1000['sample_s']:.1f} s + "
              f"reward {per_1000['reward_s']:.2f} s + update {per_1000['update_s']:.1f} s "
              f"(mean candidate length {np.mean([f['length'] for f in figures]):.1f} words)")

        # Sampled decode: the compiled batch graph against an eager loop, one photo's samples at a time.
        photos = batches[0][:args.eager_photos]
        feats = tf.constant(features[photos], tf.float32)
        tag_rows = None if tags is None else tf.constant(tags[photos])
        scst._sample(feats, tag_rows)  # traced already for full batches; retrace for this size
        started = time.perf_counter()
        scst._sample(feats, tag_rows)
        compiled_s = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(len(photos)):
            scst._decode_graph(feats[i:i + 1], None if tag_rows is None else tag_rows[i:i + 1], args.samples,
                               greedy=False)
        eager_s = time.perf_counter() - started
        print(f"sampled decode of {len(photos)} photos: compiled batch {compiled_s:.2f} s, eager per-photo loop "
              f"{eager_s:.2f} s: {eager_s / compiled_s:.1f}x")

        # Reward: vectorised CIDEr-D against pycocoevalcap's CiderScorer on the same sampled captions.
        photos = batches[0]
        tokens, lengths_s, finished = (x.numpy() for x in scst._sample(features[photos], tags_of(photos)))
        repeated = np.repeat(photos, args.samples)
        started = time.perf_counter()
        scst.rewards(repeated, tokens, lengths_s, finished)
        vector_s = time.perf_counter() - started
        words = [[vocab.word_of(int(t)) for t in row[:m]] for row, m in zip(tokens, lengths_s)]
        started = time.perf_counter()
        scorer = CiderScorer(n=4, sigma=6.0)
        for photo, caption in zip(repeated, words):
            scorer += (" ".join(caption), [" ".join(r) for r in references[photo]])
        scorer.compute_score()
        coco_s = time.perf_counter() - started
        print(f"reward of {len(words)} captions: vectorised {vector_s * 1000:.1f} ms, pycocoevalcap CiderScorer "
              f"{coco_s * 1000:.1f} ms: {coco_s / vector_s:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
