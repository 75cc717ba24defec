"""The command-line side of the metadata features, ready for ``imgcap_desktop.cli`` to mount.

``imgcap caption`` gets its sidecar and CSV options from :func:`add_caption_options` and turns them
into the caption session's plan (``imgcap_desktop.cli.caption_policy``); ``imgcap import-csv FILE`` is
:func:`add_import_csv_command` plus :func:`run_import_csv`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from imgcap_desktop.metadata.csvio import CsvFormatError, import_csv
from imgcap_desktop.metadata.printable import count, printable
from model.search import MAX_BEAM_SIZE


BEAM_HELP = f"beam size (1 = greedy; default 3; at most {MAX_BEAM_SIZE})"


def beam_option(text: str) -> int:
    """The ``--beam`` of ``imgcap caption`` and ``imgcap archive caption``: 1 (greedy) to the engine's
    :data:`~model.search.MAX_BEAM_SIZE`."""
    from model.search import check_beam_size

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number") from None
    try:
        return check_beam_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_caption_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--csv``, ``--write-sidecars``, ``--sidecar-style``, ``--skip-captioned``,
    ``--overwrite-human`` and ``--keywords``/``--no-keywords`` to the ``caption`` command."""
    group = parser.add_argument_group("storing captions")
    group.add_argument("--csv", type=Path, metavar="FILE", help="also write every caption to this CSV file")
    group.add_argument(
        "--write-sidecars", action="store_true", help="write each caption to the photo's XMP sidecar"
    )
    group.add_argument(
        "--sidecar-style",
        choices=("ext", "base"),
        default="ext",
        help="name new sidecars photo.jpg.xmp (ext, default; digiKam, darktable) or photo.xmp (base; Lightroom)",
    )
    keep_or_replace = group.add_mutually_exclusive_group()  # skipping every caption replaces none
    keep_or_replace.add_argument(
        "--skip-captioned", action="store_true", help="skip photos whose sidecar already holds a caption"
    )
    keep_or_replace.add_argument(
        "--overwrite-human",
        action="store_true",
        help="replace captions a person wrote or edited, or embedded in the photo (kept by default)",
    )
    group.add_argument(
        "--keywords",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store the model's keywords with the caption: merged into the sidecar's dc:subject (other "
        "tools' keywords are kept) and a keywords column in the CSV (default: on; --no-keywords to skip)",
    )


def add_import_csv_command(subparsers) -> argparse.ArgumentParser:
    """Add the ``import-csv`` command to the CLI's subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "import-csv",
        help="apply captions edited in a CSV back to the photos' sidecars",
        description="Write the captions of a CSV (as 'imgcap caption --csv' wrote it, possibly edited) "
        "to the photos' XMP sidecars as human captions. Unchanged captions are left alone.",
    )
    parser.add_argument("csv_file", type=Path, metavar="FILE", help="the CSV file")
    parser.add_argument(
        "--root", type=Path, help="folder the CSV's relative paths start from (default: the CSV's folder)"
    )
    parser.add_argument(
        "--sidecar-style", choices=("ext", "base"), default="ext", help="naming style for new sidecars"
    )
    return parser


def run_import_csv(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``import-csv``; returns the exit status (0 when every row was applied or unchanged).

    The rows that were not applied are reported on stderr, as the caption command reports its
    failures; the summary goes to ``out``."""
    out = out or sys.stdout
    try:
        report = import_csv(args.csv_file, args.root, style=args.sidecar_style)
    except (CsvFormatError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc  # the path once
        where = exc.filename if isinstance(exc, OSError) and exc.filename else args.csv_file  # or --root's
        print(f"imgcap import-csv: {printable(where)}: {reason}", file=sys.stderr)
        return 2
    for message in report.problems:  # in the CSV's order
        print(f"imgcap: {printable(message)}", file=sys.stderr)
    print(
        f"{count(len(report.applied), 'caption')} applied, {len(report.unchanged)} unchanged, "
        f"{count(len(report.missing), 'photo')} missing, {len(report.outside)} outside the folder, "
        f"{count(len(report.errors), 'error')}",
        file=out,
    )
    return 1 if report.missing or report.outside or report.errors else 0
