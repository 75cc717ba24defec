"""``imgcap-desktop --selftest``: load the model, caption the sample photos, then run the app's job sequence.

Used by CI on the frozen build and by users checking an installation. Exit status 0 means the
model loaded, every sample got a non-empty caption, every attention map sums to 1, and the app's
caption service (its worker thread, no window) ran several jobs in a row, a cancelled one and its
resumption, with the same captions every time.
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
    service_jobs: int = 0
    service_seconds: float = 0.0


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
    # The app's sequence first, while the model's runtime is still untouched on this thread, as in
    # the app: the second job's crash (TensorFlow) did not show once this thread had run the model.
    service_start = time.perf_counter()
    jobs = run_service_sequence(photos, bundle, beam_size=beam_size, device=device)
    service_seconds = time.perf_counter() - service_start
    start = time.perf_counter()
    from model.captioner import Captioner  # imports the model's runtime

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
            raise SelftestError(f"{photo.name}: an attention map sums to {1.0 + worst:.4f} "
                                f"(or {1.0 - worst:.4f}), not 1")
        captions.append((photo.name, " ".join(outcome.words)))
    return SelftestReport(captioner.name, captioner.device, tuple(captions), loaded - start, done - loaded,
                          jobs, service_seconds)


#: How long one job of the service sequence may take before the self-test gives up (milliseconds).
SERVICE_JOB_TIMEOUT_MS = 300_000


def run_service_sequence(photos: Sequence[Path], bundle: Path | None = None, *, beam_size: int = 3,
                         device: str = "auto", factory=None) -> int:
    """Run the app's caption service (no window) through several jobs in a row; return how many ran.

    The service loads the model on its worker thread, as the app does (``factory`` replaces that
    loader in tests). A model built on another thread and handed over would not show the crash
    this sequence guards against.

    The sequence: every photo, every photo again, a job cancelled as soon as it starts, a job that
    resumes with the photos the cancelled one did not reach, and one photo on its own. Each job must
    end without a failure, and every photo must get the same caption each time. (A second job on
    the service's worker thread used to crash the app.)

    Raises:
        SelftestError: a job failed, hung, was not cancelled, or changed a caption.
    """
    from PySide6.QtCore import QCoreApplication

    from imgcap_desktop.caption_service import CaptionService
    from imgcap_desktop.gui_gc import collecting_on_gui_thread

    _app = QCoreApplication.instance() or QCoreApplication([])
    with collecting_on_gui_thread():  # as in the app: Qt objects are freed on this thread only
        return _service_sequence(CaptionService(bundle=bundle, factory=factory), photos, beam_size, device)


def _service_sequence(service, photos: Sequence[Path], beam_size: int, device: str) -> int:
    from imgcap_desktop.caption_service import CaptionJob

    photos = tuple(photos)
    first: dict[str, str] = {}

    def check(captions: dict[str, str], label: str) -> None:
        for source, caption in captions.items():
            if not caption:
                raise SelftestError(f"service {label}: empty caption for {Path(source).name}")
            if first.setdefault(source, caption) != caption:
                raise SelftestError(f"service {label}: {Path(source).name} got {caption!r}, "
                                    f"before {first[source]!r}")

    def job(batch: tuple[Path, ...], batch_size: int = 2, cancel: bool = False):
        captions, cancelled = _run_job(service, CaptionJob(batch, beam_size=beam_size, batch_size=batch_size,
                                                           device=device), cancel=cancel)
        return captions, cancelled

    try:
        runs = 0
        for label in ("job 1", "job 2"):
            captions, _ = job(photos)
            runs += 1
            if len(captions) != len(photos):
                raise SelftestError(f"service {label}: {len(captions)} of {len(photos)} photos captioned")
            check(captions, label)
        captions, cancelled = job(photos, batch_size=1, cancel=True)
        runs += 1
        if not cancelled or len(captions) >= len(photos):
            raise SelftestError("service: cancelling a job did not stop it")
        check(captions, "cancelled job")
        rest = tuple(p for p in photos if str(p) not in captions)
        resumed, _ = job(rest)
        runs += 1
        if set(resumed) | set(captions) != {str(p) for p in photos}:
            raise SelftestError("service: resuming after a cancel did not caption the rest")
        check(resumed, "resumed job")
        single, _ = job(photos[:1], batch_size=1)
        runs += 1
        check(single, "single photo")
    finally:
        service.shutdown()
    return runs


def _run_job(service, job, *, cancel: bool = False) -> tuple[dict[str, str], bool]:
    """Run one job on ``service`` and wait for it: ``({source: caption}, cancelled)``."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    captions: dict[str, str] = {}
    failures: list[str] = []
    ended: list[bool] = []

    def on_generated(outcomes, _statuses):
        for outcome in outcomes:
            reason = getattr(outcome, "reason", None)
            if reason is not None:
                failures.append(f"{Path(outcome.source).name}: {reason}")
            else:
                captions[outcome.source] = " ".join(outcome.words)

    def on_failed(reason):
        failures.append(str(reason))

    def on_finished(cancelled):
        ended.append(bool(cancelled))
        loop.quit()

    connections = [(service.caption_generated, on_generated), (service.batch_failed, on_failed),
                   (service.model_failed, on_failed), (service.finished, on_finished)]
    for signal, slot in connections:
        signal.connect(slot)
    timer = QTimer(singleShot=True, interval=SERVICE_JOB_TIMEOUT_MS)
    timer.timeout.connect(loop.quit)
    try:
        if not service.caption(job):
            raise SelftestError("service: a job was refused (the previous one still running?)")
        if cancel:
            service.cancel()
        timer.start()
        if not ended:
            loop.exec()
    finally:
        timer.stop()
        for signal, slot in connections:
            signal.disconnect(slot)
    if not ended:
        raise SelftestError(f"service: a job did not finish within {SERVICE_JOB_TIMEOUT_MS // 1000} s")
    if failures:
        raise SelftestError(f"service: {failures[0]}")
    return captions, ended[0]


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
    print(f"caption service: {report.service_jobs} jobs in a row (one cancelled, then resumed) "
          f"in {report.service_seconds:.2f} s", file=out)
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
