"""``imgcap archive``: the command line of the archive feature, mounted by ``imgcap_desktop.cli``.

    imgcap archive caption ROOT... --out RESULTS [--address auto|HOST:PORT] [--workers N]
                           [--gpus-per-worker F] [--cpus-per-worker F] [--batch-size N] [--beam N]
                           [--bundle DIR] [--runtime auto|onnx|tf] [--write-sidecars] [--sidecar-style ext|base]
                           [--overwrite-human] [--[no-]keywords] [--attention] [--retry-failed]
                           [--commit-every N]
    imgcap archive export RESULTS [--csv FILE [--root DIR]] [--apply-sidecars [--sidecar-style ext|base]
                           [--overwrite-human]] [--[no-]keywords]

This module imports neither Ray nor pyarrow: the CLI builds its parser with it whether or not the
``cluster`` extra is installed, and only running an archive command needs them.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TextIO

from imgcap_desktop.archive import INSTALL_HINT
from imgcap_desktop.metadata.commands import BEAM_HELP, beam_option
from imgcap_desktop.metadata.printable import printable

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM (a scheduler's slot ended): run again to go on, as imgcap caption


def add_archive_command(subparsers) -> argparse.ArgumentParser:
    """Add ``archive caption`` and ``archive export`` to the CLI's subparsers; returns ``archive``'s parser."""
    archive = subparsers.add_parser(
        "archive", help="caption an archive on a Ray cluster (needs imgcap[cluster])",
        description="Caption an archive of photos on a Ray cluster (or this machine), resumably, into a "
                    "Parquet results folder; export the results to a CSV or the photos' sidecars.")
    commands = archive.add_subparsers(dest="archive_command", required=True, metavar="COMMAND")

    caption = commands.add_parser(
        "caption", help="caption photos into a results folder",
        description="Caption every photo under the roots with a pool of Ray actors. Results are committed "
                    "to RESULTS as the run goes; run the same command again after a stop and it goes on "
                    "where it was. On a cluster, the photos, RESULTS and --bundle must be on storage "
                    "every node sees, under the same paths.")
    caption.add_argument("roots", nargs="+", type=Path, metavar="ROOT",
                         help="folders (with subfolders), photos, or text files listing paths (one per line)")
    caption.add_argument("--out", type=Path, required=True, metavar="RESULTS", help="the results folder")
    caption.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                         help="the Ray cluster to use (default: start Ray on this machine)")
    caption.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                         help="actors, each with a loaded model (default: one per --cpus-per-worker CPUs, "
                              "or per --gpus-per-worker GPUs)")
    caption.add_argument("--gpus-per-worker", type=_fraction, default=0.0, metavar="F",
                         help="GPUs per actor, e.g. 0.25 for four actors per GPU (default 0: CPUs only)")
    caption.add_argument("--cpus-per-worker", type=_fraction, default=None, metavar="F",
                         help="CPUs per actor, also its threads per operation (default: the CPUs shared among "
                              "--workers, or 1)")
    caption.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                         help="photos per model batch (default 8)")
    caption.add_argument("--beam", type=beam_option, default=3, metavar="N", help=BEAM_HELP)
    caption.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the shipped model)")
    caption.add_argument("--runtime", choices=("auto", "onnx", "tf"), default="auto",
                         help="auto: ONNX Runtime when the bundle has its graphs, else TensorFlow")
    caption.add_argument("--write-sidecars", action="store_true",
                         help="the workers also write each caption to the photo's XMP sidecar")
    caption.add_argument("--sidecar-style", choices=("ext", "base"), default="ext",
                         help="name new sidecars photo.jpg.xmp (ext, default) or photo.xmp (base)")
    caption.add_argument("--overwrite-human", action="store_true",
                         help="replace captions a person wrote or edited (kept by default)")
    caption.add_argument("--keywords", action=argparse.BooleanOptionalAction, default=True,
                         help="with --write-sidecars, merge the model's keywords into dc:subject (other tools' "
                              "keywords are kept; default: on). The results always hold the tags and keywords")
    caption.add_argument("--attention", action="store_true", help="also store every word's attention map")
    caption.add_argument("--retry-failed", action="store_true", help="caption again photos whose result is a failure")
    caption.add_argument("--commit-every", type=_positive_int, default=1000, metavar="N",
                         help="photos per results file (default 1000; a file is also committed every minute)")

    export = commands.add_parser(
        "export", help="write results to a CSV or to the photos' sidecars",
        description="Export a results folder: a CSV as 'imgcap caption --csv' writes it (edit it and apply "
                    "it with 'imgcap import-csv'), or each caption into the photo's XMP sidecar.")
    export.add_argument("results", type=Path, metavar="RESULTS", help="the results folder")
    export.add_argument("--csv", type=Path, metavar="FILE", help="write one row per photo to this CSV")
    export.add_argument("--root", type=Path, help="folder the CSV's relative paths start from")
    export.add_argument("--apply-sidecars", action="store_true",
                        help="write each caption to the photo's XMP sidecar (other tools' fields are kept)")
    export.add_argument("--sidecar-style", choices=("ext", "base"), default="ext", help="naming style for new sidecars")
    export.add_argument("--overwrite-human", action="store_true",
                        help="replace captions a person wrote or edited, or embedded in the photo")
    export.add_argument("--keywords", action=argparse.BooleanOptionalAction, default=True,
                        help="store the model's keywords too: merged into dc:subject, other tools' kept; a "
                             "keywords column in the CSV (default: on)")
    return archive


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError("must be a number, 0 or more")
    return value


def cluster_extra_missing() -> bool:
    """Whether Ray Data or pyarrow cannot be imported (they are, when they can: the command needs them)."""
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return True
    return False


def run_archive_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``archive caption`` or ``archive export``; returns the exit status."""
    out = out or sys.stdout
    if cluster_extra_missing():
        print(f"imgcap: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    if args.archive_command == "caption":
        return _run_caption(args, out)
    return _run_export(args, out)


def _run_caption(args: argparse.Namespace, out: TextIO) -> int:
    from imgcap_desktop.archive.pipeline import ArchiveError, ArchiveOptions, run_archive
    from imgcap_desktop.archive.results import ResultsError
    from imgcap_desktop.metadata.apply import StoreOptions
    from model.errors import ModelSetupError

    store = None
    if args.write_sidecars:
        store = StoreOptions(write_sidecars=True, sidecar_style=args.sidecar_style,
                             overwrite_human=args.overwrite_human, keywords=args.keywords)
    options = ArchiveOptions(
        roots=args.roots, out=args.out, address=args.address, workers=args.workers,
        gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker, batch_size=args.batch_size,
        beam=args.beam, bundle=args.bundle, runtime=args.runtime, store=store, attention=args.attention,
        retry_failed=args.retry_failed,
        commit_rows=args.commit_every,
    )
    try:
        report = run_archive(options)
    except (ModelSetupError, ResultsError, ValueError, ConnectionError) as exc:
        print(f"imgcap archive: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiveError as exc:
        print(f"imgcap archive: {exc}; the results that came back are stored: run again to go on",
              file=sys.stderr)
        return EXIT_USAGE
    for problem in report.problems:
        print(f"imgcap archive: {problem}", file=sys.stderr)
    rate = f", {report.steady_rate:.1f} photos/s once started" if report.steady_rate else ""
    sidecars = f", {report.sidecars_failed} sidecars not written" if report.sidecars_failed else ""
    stopped = "interrupted after " if report.interrupted else ""
    before = f" ({report.skipped_failed} of them failed)" if report.skipped_failed else ""
    print(f"{stopped}{report.captioned} captioned, {report.failed} failed{sidecars}, "
          f"{report.skipped} already done{before}, "
          f"{len(report.problems)} left out, in {report.seconds:.1f} s{rate}; results in {args.out}", file=out)
    if report.interrupted:  # told apart from failed photos: a script runs the same command again
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_SOME_FAILED


def _run_export(args: argparse.Namespace, out: TextIO) -> int:
    from imgcap_desktop.archive.export import apply_sidecars, export_csv
    from imgcap_desktop.archive.results import ResultsError, part_files

    if not args.csv and not args.apply_sidecars:
        print("imgcap archive export: say what to export: --csv FILE and/or --apply-sidecars", file=sys.stderr)
        return EXIT_USAGE
    if not part_files(args.results):
        print(f"imgcap archive export: {args.results}: no results there", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    try:
        if args.csv:
            try:
                rows = export_csv(args.results, args.csv, args.root, keywords=args.keywords)
            except OSError as exc:
                print(f"imgcap archive export: cannot write {args.csv}: {exc}", file=sys.stderr)
                return EXIT_SOME_FAILED
            print(f"{rows} photos written to {args.csv}", file=out)
        if args.apply_sidecars:
            report = apply_sidecars(args.results, style=args.sidecar_style, overwrite_human=args.overwrite_human,
                                    keywords=args.keywords)
            for photo in report.changed:
                print(f"imgcap archive: {printable(photo)}: changed since it was captioned; not applied",
                      file=sys.stderr)
            for photo in report.missing:
                print(f"imgcap archive: {printable(photo)}: not found", file=sys.stderr)
            for photo, message in report.errors:  # the whole path: many folders hold an IMG_0001.JPG
                print(f"imgcap archive: {printable(photo)}: {printable(message.removeprefix(f'{Path(photo).name}: '))}",
                      file=sys.stderr)
            print(f"{len(report.applied)} sidecars written, {len(report.unchanged)} unchanged, "
                  f"{len(report.kept_human)} human captions kept, {len(report.changed)} photos changed since, "
                  f"{len(report.missing)} missing, {len(report.failed)} failed photos, {len(report.errors)} errors",
                  file=out)
            if report.errors or report.missing or report.changed:
                status = EXIT_SOME_FAILED
    except ResultsError as exc:
        print(f"imgcap archive export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return status
