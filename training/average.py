"""Weighted average of decoder weight files (a "model soup", Wortsman et al. 2022).

    python -m training.average --out runs/soup.weights.npz runs/a/epoch02.weights.npz:0.3 runs/b/epoch01.weights.npz:0.7

Each input is a ``*.weights.npz`` of the same decoder (``Trainer.save_weights``: one array per
variable, the same names and shapes), optionally followed by ``:WEIGHT`` (default 1); the weights
are normalised to sum to 1. Runs fine-tuned from one cross-entropy run stay close enough in weight
space for their average to be a model of its own, between them in behaviour: the shipped model is
such a mix of two SCST runs (see its model card). The result is written as float16, the bundle's
format, ready for ``training.train --export --export-weights``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def parse_input(spec: str) -> tuple[Path, float]:
    """``"PATH"`` or ``"PATH:WEIGHT"`` -> ``(path, weight)``."""
    path, sep, weight = spec.rpartition(":")
    if sep and path and not weight.startswith(("/", "\\")):
        try:
            return Path(path), float(weight)
        except ValueError:
            pass
    return Path(spec), 1.0


def average_weights(inputs: Sequence[tuple[Path, float]]) -> dict[str, np.ndarray]:
    """The weighted mean (float32) of the weight files ``inputs``.

    Raises:
        ValueError: no input, a weight that is below 0 or not finite, all weights 0, files whose
            variables differ, or a value that is not finite in the result.
    """
    if not inputs:
        raise ValueError("nothing to average")
    weights = np.asarray([w for _, w in inputs], np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0 or not np.isfinite(weights.sum()):
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
    weights = weights / weights.sum()
    total: dict[str, np.ndarray] = {}
    for (path, _), share in zip(inputs, weights):
        stored = np.load(path)
        if not isinstance(stored, np.lib.npyio.NpzFile):  # one .npy array: not a run's weights
            raise ValueError(f"{path} holds one array, not a decoder's weights (.npz, as the runs write them)")
        with stored:
            arrays = {name: stored[name].astype(np.float64) for name in stored.files}
        if total and {n: a.shape for n, a in arrays.items()} != {n: a.shape for n, a in total.items()}:
            raise ValueError(f"{path} and {inputs[0][0]} hold different variables: not the same decoder")
        for name, array in arrays.items():
            total[name] = total.get(name, 0.0) + share * array
    broken = [name for name, array in total.items() if not np.isfinite(array).all()]
    if broken:
        raise ValueError(f"the mean is not finite in {', '.join(broken[:3])}: an input holds NaN or inf")
    return {name: array.astype(np.float32) for name, array in total.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.average", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="weight files, each PATH or PATH:WEIGHT")
    parser.add_argument("--out", type=Path, required=True, help="the averaged weights (.npz, float16)")
    args = parser.parse_args(argv)
    inputs = [parse_input(spec) for spec in args.inputs]
    try:
        averaged = average_weights(inputs)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    too_big = [name for name, array in averaged.items() if np.abs(array).max(initial=0) > np.finfo(np.float16).max]
    if too_big:
        parser.error(f"{', '.join(too_big[:3])}: values beyond float16's range, which the result is written in")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **{name: array.astype(np.float16) for name, array in averaged.items()})
    print(f"{args.out}: {len(averaged)} arrays, the mean of " + ", ".join(f"{p} x{w:g}" for p, w in inputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
