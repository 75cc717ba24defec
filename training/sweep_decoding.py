"""Try decoding settings on one model: encode the photos once, decode them with each setting, score.

    python -m training.sweep_decoding --variants sweep.json --data ../shared/data/flickr8k --split dev
    python -m training.sweep_decoding --variants sweep.json --images DIR --tokens FILE [--bundle DIR]
    python -m training.sweep_decoding --variants sweep.json --weights runs/x/epoch08.weights.npz --data ...
    python -m training.sweep_decoding --variants sweep.json --weights A --ensemble-weights B --data ...

``sweep.json`` names each setting by the changes it makes to the bundle's ``"decoding"`` entry::

    {"as shipped": {},
     "shorter": {"length_penalty": 0.6},
     "no preference": {"prefer_tags_above": null},
     "cats too": {"absent+": [{"tags": ["cat"], "below": 0.15, "words": ["cat", "cats"]}]}}

A key replaces the entry, ``null`` removes it and ``"absent+"`` adds rules to the bundle's absence
rules. Each setting is scored like :mod:`training.evaluate` but without Java (BLEU, ROUGE-L and CIDEr
on Python-tokenised captions, and the concept metrics), so a sweep over a thousand photos takes seconds
a setting; confirm the chosen one with ``training.evaluate``. This is how the shipped decoding was
chosen on Flickr8k dev and coco-mini-dev (see the model card).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Item, load_dataset, load_items
from training.evaluate import score_outcomes


def patched(decoding: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``decoding`` with ``patch`` applied (see the module docstring)."""
    out = copy.deepcopy(decoding)
    for key, value in patch.items():
        if key == "absent+":
            out["absent"] = [*out.get("absent", ()), *value]
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def encode_items(captioner, items: Sequence[Item],
                 batch_size: int = 16) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """``(sources, grids, logits)`` of the photos that load (the others are reported and left out)."""
    sources, grids, logits = [], [], []
    for start in range(0, len(items), batch_size):
        loaded = captioner._load_chunk([path for path, _ in items[start:start + batch_size]], start)
        good = [(source, pixels) for source, pixels, _ in loaded if isinstance(pixels, np.ndarray)]
        for source, reason, _ in loaded:
            if not isinstance(reason, np.ndarray):
                print(f"skipped {source}: {reason}", file=sys.stderr)
        if good:
            g, lo = captioner.model.encode(np.stack([p for _, p in good]).astype(np.float32))
            sources += [s for s, _ in good]
            grids.append(g)
            logits.append(lo)
    no_logits = any(lo is None for lo in logits)
    return sources, np.concatenate(grids), None if no_logits else np.concatenate(logits)


def sweep(captioner, items: Sequence[Item], variants: dict[str, dict], beam: int = 3,
          batch_size: int = 32) -> dict[str, dict[str, Any]]:
    """Score each variant's captions of ``items``; returns ``{name: score_outcomes report}``, each with
    ``decoding`` (the settings used) and ``seconds``. The captioner's decoding is restored afterwards."""
    sources, grids, logits = encode_items(captioner, items)
    kept = {str(path) for path in sources}
    items = [item for item in items if str(item[0]) in kept]
    base = copy.deepcopy(captioner.bundle.config.get("decoding", {}))
    reports = {}
    try:
        for name, patch in variants.items():
            decoding = patched(base, patch)
            captioner.set_decoding(decoding)
            started = time.perf_counter()
            outcomes = []
            for i in range(0, len(sources), batch_size):
                outcomes += captioner.caption_encoded(sources[i:i + batch_size], grids[i:i + batch_size],
                                                      None if logits is None else logits[i:i + batch_size], beam)
            report = score_outcomes(items, outcomes, use_java=False)
            report.update(decoding=decoding, seconds=round(time.perf_counter() - started, 2))
            reports[name] = report
    finally:
        captioner.set_decoding(base)
    return reports


COLUMNS = ("BLEU-4", "CIDEr", "concept-P", "concept-R", "concept-F1", "hallucination")


def format_sweep(reports: dict[str, dict[str, Any]]) -> str:
    width = max([len(name) for name in reports] + [7])
    lines = [f"{'setting':{width}s}  " + "  ".join(f"{c:>13s}" for c in COLUMNS) + "  mean length"]
    for name, report in reports.items():
        values = [report["metrics"].get(c) for c in COLUMNS]
        cells = "  ".join(f"{v:13.3f}" if v is not None else f"{'-':>13s}" for v in values)
        lines.append(f"{name:{width}s}  {cells}  {report['guards']['mean_length']:11.2f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.sweep_decoding", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=Path, required=True, help="JSON: setting name -> changes to 'decoding'")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="a run's decoder weights in place of the bundle's (TensorFlow runtime; "
                             "see training.run_weights)")
    parser.add_argument("--ensemble-weights", type=Path, nargs="+", default=None, metavar="WEIGHTS",
                        help="decode with more decoders, log-probabilities averaged (TensorFlow runtime; "
                             "see training.ensemble)")
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--runtime", choices=["auto", "onnx", "tf"], default="auto")
    parser.add_argument("--json", type=Path, default=None, help="write every setting's report here")
    source = parser.add_argument_group("what to score (--data with --split, or --images with --tokens)")
    source.add_argument("--data", type=Path)
    source.add_argument("--split", choices=["dev", "test", "train"], default="dev")
    source.add_argument("--images", type=Path)
    source.add_argument("--tokens", type=Path)
    source.add_argument("--limit", type=int, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.data is None) == (args.images is None) or (args.images is not None and args.tokens is None):
        print("give --data (with --split) or --images with --tokens", file=sys.stderr)
        return 2
    try:
        variants = json.loads(args.variants.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.variants}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        print(f"{args.variants}: expected an object of setting name -> object of changes", file=sys.stderr)
        return 2
    from training.run_weights import captioner_to_score, runtime_refusal

    refusal = runtime_refusal(args.weights, args.ensemble_weights, args.runtime)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    try:  # a mistyped --data or --tokens: said in a line, as training.evaluate does
        items = (load_dataset(args.data, args.split)[0] if args.data is not None
                 else load_items(args.images, args.tokens)[0])[: args.limit]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from model.bundle import BundleError

    try:
        captioner = captioner_to_score(args.bundle, args.weights, args.ensemble_weights or (), device="cpu",
                                       runtime=args.runtime)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    reports = sweep(captioner, items, variants, beam=args.beam)
    print(f"{len(items)} photos, beam {args.beam}, model {captioner.name} (no Java: Python tokenizer, no METEOR)")
    print(format_sweep(reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
