"""``imgcap-desktop --selftest``: load the model and caption the sample photos, without Qt.

Used by CI on the frozen build and by users checking an installation. Exit status 0 means the
model loaded, every sample got a non-empty caption, and every attention map sums to 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from model.images import SUPPORTED_EXTENSIONS
from model.resources import resource_path

#: How far an attention map's sum may stray from 1.
ATTENTION_TOLERANCE = 1e-3


class SelftestError(RuntimeError):
    """A check failed; the message is the reason shown to the user."""


@dataclass(frozen=True)
class SelftestReport:
    """What the self-test saw: per-photo captions and the time each stage took (seconds)."""

    model_name: str
    device: str
    captions: tuple[tuple[str, str], ...]  # (file name, caption)
    load_seconds: float
    caption_seconds: float


def sample_photos(folder: Path | None = None) -> list[Path]:
    """The photos in ``folder`` (default: the shipped ``resources/samples/``), sorted by name."""
    folder = resource_path("samples") if folder is None else Path(folder)
    if not folder.is_dir():
        raise SelftestError(f"sample folder not found: {folder}")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS)
    if not photos:
        raise SelftestError(f"no sample photos in {folder}")
    return photos


def run_selftest(bundle: Path | None = None, samples: Path | None = None, *, beam_size: int = 3,
                 device: str = "auto") -> SelftestReport:
    """Load the model, caption the samples and check the results.

    Raises:
        SelftestError: no samples, a photo that failed, an empty caption or a bad attention map.
        Exception: whatever loading the model raised (a missing bundle, missing encoder weights).
    """
    photos = sample_photos(samples)
    start = time.perf_counter()
    from model.captioner import Captioner  # imports TensorFlow

    captioner = Captioner.from_bundle(bundle, device=device)
    loaded = time.perf_counter()
    outcomes = captioner.caption(photos, beam_size=beam_size)
    done = time.perf_counter()

    captions = []
    for photo, outcome in zip(photos, outcomes, strict=True):
        reason = getattr(outcome, "reason", None)
        if reason is not None:
            raise SelftestError(f"{photo.name}: could not caption: {reason}")
        if not outcome.words or not all(outcome.words):
            raise SelftestError(f"{photo.name}: empty caption")
        if outcome.attention.shape[0] != len(outcome.words):
            raise SelftestError(f"{photo.name}: {outcome.attention.shape[0]} attention maps for "
                                f"{len(outcome.words)} words")
        sums = outcome.attention.reshape(len(outcome.words), -1).sum(axis=1)
        worst = float(abs(sums - 1.0).max())
        if worst > ATTENTION_TOLERANCE:
            raise SelftestError(f"{photo.name}: an attention map sums to {1.0 + worst:.4f} (or {1.0 - worst:.4f}), not 1")
        captions.append((photo.name, " ".join(outcome.words)))
    return SelftestReport(captioner.name, captioner.device, tuple(captions), loaded - start, done - loaded)


def main(bundle: Path | None = None, samples: Path | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Run the self-test and print the result; 0 on success, 1 with the reason otherwise."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    started = time.perf_counter()
    try:
        report = run_selftest(bundle, samples)
    except Exception as exc:  # any failure is a failed self-test, reported in one line
        print(f"imgcap self-test FAILED: {type(exc).__name__}: {exc}", file=err)
        return 1
    print(f"model {report.model_name} on {report.device}", file=out)
    for name, caption in report.captions:
        print(f"  {name}: {caption}", file=out)
    per_photo = report.caption_seconds / len(report.captions)
    print(f"load {report.load_seconds:.2f} s, caption {report.caption_seconds:.2f} s "
          f"({len(report.captions)} photos, {per_photo:.2f} s each), total {time.perf_counter() - started:.2f} s",
          file=out)
    print("imgcap self-test passed", file=out)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry for ``python -m imgcap_desktop.selftest [--bundle DIR] [--samples DIR]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="imgcap-selftest")
    parser.add_argument("--selftest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--samples", type=Path, default=None)
    args, _ = parser.parse_known_args(argv)
    return main(args.bundle, args.samples)


if __name__ == "__main__":
    sys.exit(cli())
