"""Same captions on both runtimes: ONNX Runtime against TensorFlow on real photos.

    python benchmarks/parity_runtimes.py --data ../shared/data/flickr8k [--split dev] [--limit 200] [--beam 3]
    python benchmarks/parity_runtimes.py --images FOLDER [--limit 200]

Captions the first ``--limit`` photos of a Flickr8k split (or of a folder) with
``Captioner(runtime="onnx")`` and ``Captioner(runtime="tf")`` (same bundle, CPU) and prints the share
of identical caption strings (target >= 99%), the largest attention-map difference over the photos
whose captions agree (target <= 1e-3), the largest score difference, and the photos that differ.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAME_TARGET = 0.99
ATTENTION_TARGET = 1e-3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a Flickr8k-layout folder")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--images", type=Path, help="any folder of photos instead of --data")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bundle", type=Path, default=None)
    args = parser.parse_args(argv)
    if (args.data is None) == (args.images is None):
        parser.error("give --data DIR or --images FOLDER")

    import numpy as np

    from model.captioner import Captioner

    if args.data is not None:
        from training.data import load_dataset

        items, _ = load_dataset(args.data, args.split)
        paths = [path for path, _ in items][: args.limit]
    else:
        from imgcap_desktop.metadata.folder import scan_folder

        paths = scan_folder(args.images)[: args.limit]
    results, seconds = {}, {}
    for runtime in ("onnx", "tf"):
        captioner = Captioner.from_bundle(args.bundle, device="cpu", runtime=runtime)
        start = time.perf_counter()
        results[runtime] = captioner.caption(paths, beam_size=args.beam, batch_size=args.batch_size)
        seconds[runtime] = time.perf_counter() - start
        print(f"{runtime}: {captioner.device}, {len(paths)} photos in {seconds[runtime]:.1f} s")

    same, worst_attention, worst_score, differ = 0, 0.0, 0.0, []
    for path, a, b in zip(paths, results["onnx"], results["tf"]):
        if not (a.ok and b.ok):
            differ.append((path, getattr(a, "reason", a.ok), getattr(b, "reason", b.ok)))
            continue
        worst_score = max(worst_score, abs(a.score - b.score))
        if a.words == b.words:
            same += 1
            worst_attention = max(worst_attention, float(np.abs(a.attention - b.attention).max()))
        else:
            differ.append((path, a.text, b.text))
    share = same / len(paths)
    print(f"\nidentical captions: {same}/{len(paths)} = {share:.1%}   target >= {SAME_TARGET:.0%}   "
          f"{'OK' if share >= SAME_TARGET else 'MISSED'}")
    print(f"largest attention difference (identical captions): {worst_attention:.2e}   "
          f"target <= {ATTENTION_TARGET:g}   "
          f"{'OK' if worst_attention <= ATTENTION_TARGET else 'MISSED'}")
    print(f"largest score difference: {worst_score:.2e}")
    for path, onnx_text, tf_text in differ:
        print(f"  differs: {Path(path).name}: onnx {onnx_text!r} / tf {tf_text!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
