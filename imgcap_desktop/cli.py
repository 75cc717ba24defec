"""``imgcap``: the headless command line, sharing the engine and metadata code with the app.

    imgcap caption PATH... [--recursive] [--bundle DIR] [--beam N] [--batch-size N] [--json]
                           [--csv FILE] [--write-sidecars] [--sidecar-style ext|base]
                           [--skip-captioned] [--overwrite-human] [--device auto|cpu]
    imgcap import-csv FILE [--root DIR] [--sidecar-style ext|base]

Plain output is one ``path<TAB>caption`` line per photo on stdout; ``--json`` prints one JSON object
per line instead. Problems go to stderr. Exit status: 0 when every photo was captioned, 1 when some
failed (the rest are still captioned and stored), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from imgcap_desktop.metadata.apply import PhotoStatus, select_photos, store_outcomes, write_report_csv
from imgcap_desktop.metadata.commands import add_caption_options, add_import_csv_command, run_import_csv, store_options
from imgcap_desktop.metadata.folder import scan_folder
from model.results import CaptionOutcome

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcap", description="Caption photos and store the captions where photo tools read them.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    caption = commands.add_parser("caption", help="caption photos and folders",
                                  description="Caption photos (files or folders) with the shipped model, or another bundle.")
    caption.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos and folders of photos")
    caption.add_argument("-r", "--recursive", action="store_true", help="include photos in subfolders")
    caption.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the shipped model)")
    caption.add_argument("--beam", type=_positive, default=3, metavar="N", help="beam size (1 = greedy; default 3)")
    caption.add_argument("--batch-size", type=_positive, default=8, metavar="N", help="photos per batch (default 8)")
    caption.add_argument("--device", choices=("auto", "cpu"), default="auto", help="auto: the GPU when TensorFlow sees one")
    caption.add_argument("--json", action="store_true", help="one JSON object per line instead of path<TAB>caption")
    add_caption_options(caption)
    add_import_csv_command(commands)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def collect_photos(paths: list[Path], recursive: bool) -> tuple[list[Path], list[str]]:
    """Expand folders into their photos; returns ``(photos, problems)`` for paths that do not exist."""
    photos: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            photos += scan_folder(path, recursive=recursive)
        elif path.exists():
            photos.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return list(dict.fromkeys(photos)), problems


def _emit(status: PhotoStatus, outcome: CaptionOutcome | None, as_json: bool, out: TextIO) -> None:
    path = str(status.photo)
    if status.status == "failed":
        if as_json:
            print(json.dumps({"path": path, "error": status.message}, ensure_ascii=False), file=out)
        print(f"imgcap: {status.message}", file=sys.stderr)
        return
    caption = status.caption.text if status.caption else ""
    if not as_json:
        print(f"{path}\t{caption}", file=out)
        return
    record = {"path": path, "caption": caption, "status": status.status}
    if outcome is not None and outcome.ok:
        record |= {"words": list(outcome.words), "score": round(outcome.score, 4),
                   "alternatives": [{"caption": a.text, "score": round(a.score, 4)} for a in outcome.alternatives]}
    if status.sidecar:
        record["sidecar"] = str(status.sidecar)
    print(json.dumps(record, ensure_ascii=False), file=out)


def run_caption(args: argparse.Namespace, out: TextIO) -> int:
    photos, problems = collect_photos(args.paths, args.recursive)
    for problem in problems:
        print(f"imgcap: {problem}", file=sys.stderr)
    options = store_options(args)
    to_caption, settled = select_photos(photos, options)
    statuses: list[PhotoStatus] = list(settled)
    for status in settled:
        _emit(status, None, args.json, out)
    if to_caption:
        from tqdm import tqdm

        from model.bundle import BundleError
        from model.captioner import Captioner
        from model.encoders import EncoderWeightsError

        try:
            captioner = Captioner.from_bundle(args.bundle, device=args.device)
        except (BundleError, EncoderWeightsError) as exc:
            print(f"imgcap: {exc}", file=sys.stderr)
            return EXIT_USAGE
        with tqdm(total=len(to_caption), unit="photo", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            for batch in captioner.caption_batches(to_caption, beam_size=args.beam, batch_size=args.batch_size):
                for outcome, status in zip(batch, store_outcomes(batch, options, model_name=captioner.name)):
                    _emit(status, outcome, args.json, out)
                    statuses.append(status)
                out.flush()
                bar.update(len(batch))
    if args.csv:
        order = {p: i for i, p in enumerate(photos)}
        statuses.sort(key=lambda s: order.get(s.photo, len(order)))
        root = _csv_root(args.csv, photos)
        try:
            write_report_csv(args.csv, root, statuses)
        except OSError as exc:
            print(f"imgcap: cannot write {args.csv}: {exc}", file=sys.stderr)
            return EXIT_SOME_FAILED
    failed = problems or any(s.status == "failed" for s in statuses)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _csv_root(csv_file: Path, photos: list[Path]) -> Path:
    """The folder the CSV's relative paths start from: the CSV's own folder when every photo is
    under it (what ``import-csv`` assumes), else the photos' common folder (say so: ``--root``)."""
    csv_dir = csv_file.resolve().parent
    resolved = [p.resolve() for p in photos]
    if all(p.is_relative_to(csv_dir) for p in resolved):
        return csv_dir
    root = Path(os.path.commonpath([str(p.parent) for p in resolved])) if resolved else Path.cwd()
    print(f"imgcap: paths in {csv_file} are relative to {root}; import it with --root {root}", file=sys.stderr)
    return root


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    logging.basicConfig(level=logging.WARNING, format="imgcap: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 for --help
        return int(exc.code or 0)
    if args.command == "import-csv":
        return run_import_csv(args, out)
    return run_caption(args, out)


if __name__ == "__main__":
    raise SystemExit(main())
