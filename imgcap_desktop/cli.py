"""``imgcap``: the headless command line, sharing the engine and metadata code with the app.

    imgcap caption PATH... [--recursive] [--bundle DIR] [--beam N] [--batch-size N] [--json]
                           [--csv FILE] [--write-sidecars] [--sidecar-style ext|base]
                           [--skip-captioned] [--overwrite-human] [--device auto|cpu]
                           [--runtime auto|onnx|tf]
    imgcap import-csv FILE [--root DIR] [--sidecar-style ext|base]
    imgcap archive caption|export ...   (a Ray cluster; see imgcap_desktop/archive/commands.py)

Plain output is one ``path<TAB>caption`` line per photo on stdout (control characters and bytes
that are not UTF-8 in a file name escaped, so a line is always one photo); ``--json`` prints one JSON
object per line instead, with the caption's ``tags`` and ``keywords``. stdout carries nothing else:
whatever a library prints there goes to stderr. Problems go to stderr. Exit status: 0 when every
photo was captioned, 1 when some failed (the rest are still captioned and stored), 2 for a usage
error (including paths that do not exist when nothing else was given).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import stat
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from imgcap_desktop.archive.commands import add_archive_command, run_archive_command  # no Ray until run
from imgcap_desktop.metadata.apply import PhotoStatus
from imgcap_desktop.metadata.commands import (BEAM_HELP, add_caption_options, add_import_csv_command, beam_option,
                                               run_import_csv)
from imgcap_desktop.metadata.csvio import csv_root, refuse_as_csv_target
from imgcap_desktop.metadata.folder import NOT_PHOTOS, scan_folder
from imgcap_desktop.metadata.printable import count, printable
from imgcap_desktop.session import CaptionSession, OverwritePolicy
from model.images import broken_link_reason
from model.results import CaptionOutcome

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports a program that Ctrl-C stopped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcap",
                                     description="Caption photos and store the captions where photo tools read them.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    caption = commands.add_parser("caption", help="caption photos and folders",
                                  description="Caption photos (files or folders) with the shipped model, "
                                              "or another bundle.")
    caption.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos and folders of photos")
    caption.add_argument("-r", "--recursive", action="store_true", help="include photos in subfolders")
    caption.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the shipped model)")
    caption.add_argument("--beam", type=beam_option, default=3, metavar="N", help=BEAM_HELP)
    caption.add_argument("--batch-size", type=_positive, default=8, metavar="N", help="photos per batch (default 8)")
    caption.add_argument("--device", choices=("auto", "cpu"), default="auto",
                         help="auto: the best GPU provider onnxruntime has (CUDA, DirectML, CoreML), else the CPU")
    caption.add_argument("--runtime", choices=("auto", "onnx", "tf"), default="auto",
                         help="auto: ONNX Runtime when the bundle has ONNX graphs, "
                              "else TensorFlow (tf: for development)")
    caption.add_argument("--encoder-weights", type=Path, default=None, metavar="FILE",
                         help="for a bundle on the InceptionV3 encoder: Keras' ImageNet weights file "
                              "(inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5); else "
                              "$IMGCAP_INCEPTION_WEIGHTS, then Keras' cache (~/.keras/models)")
    caption.add_argument("--json", action="store_true", help="one JSON object per line instead of path<TAB>caption")
    add_caption_options(caption)
    add_import_csv_command(commands)
    add_archive_command(commands)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def collect_photos(paths: list[Path], recursive: bool, subfolders: list[Path] | None = None,
                   left_out: list[Path] | None = None) -> tuple[list[Path], list[str]]:
    """Expand folders into their photos; returns ``(photos, problems)`` for paths that do not exist
    or are neither a folder nor a regular file (a FIFO would block the first reader forever).
    ``subfolders``: when given, the subfolders not looked in (see :func:`scan_folder`) are appended;
    ``left_out``: the files given by name that are no photos (:data:`NOT_PHOTOS`), which are not
    problems. Any other file given by name is tried (``scan.jfif`` is a JPEG)."""
    photos: list[Path] = []
    problems: list[str] = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            problems.append(f"{printable(path)}: {broken_link_reason(path) or 'no such file or folder'}")
            continue
        except OSError as exc:
            problems.append(f"{printable(path)}: {exc.strerror or exc}")
            continue
        if stat.S_ISDIR(mode):
            try:
                skipped: list[str] = []
                photos += scan_folder(path, recursive=recursive, problems=skipped, subfolders=subfolders)
                problems += map(printable, skipped)
            except OSError as exc:
                problems.append(f"{printable(path)}: {exc.strerror or exc}")
        elif stat.S_ISREG(mode) and path.suffix.lower() in NOT_PHOTOS:
            if left_out is not None:
                left_out.append(path)
        elif stat.S_ISREG(mode):
            photos.append(path)
        else:
            problems.append(f"{printable(path)}: not a regular file")
    # One photo given twice (a.jpg, ./a.jpg, /abs/a.jpg, or in a folder given too) is captioned once.
    unique: dict[str, Path] = {}
    for photo in photos:
        unique.setdefault(os.path.normcase(os.path.abspath(photo)), photo)
    return list(unique.values()), problems


def _emit(status: PhotoStatus, outcome: CaptionOutcome | None, as_json: bool, out: TextIO,
          captioner=None) -> None:
    path = str(status.photo)
    if status.status in ("failed", "gone"):
        if as_json:  # the record has the path; the error reads as the archive's results do
            record = {"path": path, "status": status.status, "error": status.message}
            if status.caption is not None:  # captioned, but its sidecar could not take it
                record["caption"] = status.caption.text
            print(_json(record), file=out)
        elif status.caption is not None:
            print(f"{printable(path)}\t{printable(status.caption.text)}", file=out)
        print(f"imgcap: {printable(_with_folder(status.message, status.photo))}", file=sys.stderr)
        return
    caption = status.caption.text if status.caption else ""
    if not as_json:
        print(f"{printable(path)}\t{printable(caption)}", file=out)
        return
    record = {"path": path, "caption": caption, "status": status.status}
    if outcome is not None and outcome.ok:
        record |= {"words": list(outcome.words), "score": round(outcome.score, 4),
                   "alternatives": [{"caption": a.text, "score": round(a.score, 4)} for a in outcome.alternatives],
                   "tags": [{"word": t.word, "probability": round(float(t.probability), 4)}
                            for t in outcome.tags],
                   "keywords": list(outcome.keywords)}  # fmt: skip
    if status.caption is not None and status.caption.keywords is not None and status.status != "written":
        record.setdefault("keywords", list(status.caption.keywords))
    if status.sidecar:
        record["sidecar"] = str(status.sidecar)
    if captioner is not None:  # what ran the model: e.g. "CPU (ONNX Runtime)", "CPUExecutionProvider"
        record |= {"device": captioner.device, "provider": captioner.provider}
    print(_json(record), file=out)


def _with_folder(message: str, photo: Path) -> str:
    """A failure message that starts with a file's bare name (the photo's, its sidecar's) with the
    path as given instead, and one that starts with none with the photo's path: with --recursive,
    many folders hold an IMG_0001.jpg."""
    for name in (f"{photo.name}.xmp", f"{photo.stem}.xmp", photo.name):  # names may hold ": " too
        if message[:len(name) + 2].casefold() == f"{name}: ".casefold():
            if str(photo.parent) == ".":
                return message
            return f"{photo.parent / message[:len(name)]}: {message[len(name) + 2:]}"
    return f"{photo}: {message}"  # one that names no file ("a.jpg, a.png would share ..."): which one


def _json(record: dict) -> str:
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8: \udcxx escapes, which JSON allows
        text = json.dumps(record)
    return text


def caption_policy(args: argparse.Namespace) -> OverwritePolicy:
    """The caption session's overwrite policy for the ``caption`` options.

    Without ``--write-sidecars`` nothing is stored, so every photo is captioned (unless
    ``--skip-captioned``); with it a person's caption is kept unless ``--overwrite-human``.
    """
    if args.skip_captioned:
        return "skip"
    if args.overwrite_human or not args.write_sidecars:
        return "replace_all"
    return "replace_automatic"


def run_caption(args: argparse.Namespace, out: TextIO) -> int:
    if args.csv:
        if str(args.csv) == "-":
            print("imgcap: --csv -: give the CSV a file name (captions go to standard output without --csv)",
                  file=sys.stderr)
            return EXIT_USAGE
        try:  # before the photos are captioned, not after
            refuse_as_csv_target(args.csv, probe=True)
        except OSError as exc:
            print(f"imgcap: --csv: {exc}", file=sys.stderr)
            return EXIT_USAGE
    subfolders: list[Path] = []
    left_out: list[Path] = []
    photos, problems = collect_photos(args.paths, args.recursive, subfolders, left_out)
    for problem in problems:
        print(f"imgcap: {problem}", file=sys.stderr)
    if left_out:
        kinds = " ".join(sorted({path.suffix.lower() for path in left_out}))
        print(f"imgcap: left out {count(len(left_out), 'file')} that imgcap does not caption ({kinds}): "
              f"{printable(left_out[0])}{' …' if len(left_out) > 1 else ''}", file=sys.stderr)
    if problems and not photos and len(problems) == len(args.paths):
        return EXIT_USAGE  # nothing that was given exists: a mistyped path, not a failed photo
    if not photos:
        print(f"imgcap: {_no_photos_note(args.paths, subfolders)}", file=sys.stderr)
    session = CaptionSession(sidecar_style=args.sidecar_style, auto_write=args.write_sidecars)
    session.open(photos)
    session.read_stored(check_photos=False)  # the engine reports unreadable photos itself
    plan = session.plan(None, caption_policy(args), keywords=args.keywords)
    statuses: list[PhotoStatus] = list(plan.settled)
    for status in plan.settled:
        _emit(status, None, args.json, out)
    if plan.photos:
        from tqdm import tqdm

        from model.captioner import Captioner
        from model.errors import ModelSetupError

        try:
            captioner = Captioner.from_bundle(args.bundle, device=args.device, runtime=args.runtime,
                                              encoder_weights=args.encoder_weights)
        except ModelSetupError as exc:
            print(f"imgcap: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            with tqdm(total=len(plan.photos), unit="photo", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
                for batch in captioner.caption_batches(list(plan.photos), beam_size=args.beam,
                                                       batch_size=args.batch_size):
                    for outcome, status in zip(batch, session.apply_outcomes(plan, batch, model_name=captioner.name),
                                               strict=True):
                        _emit(status, outcome, args.json, out, captioner)
                        statuses.append(status)
                    out.flush()
                    bar.update(len(batch))
        except KeyboardInterrupt:  # Ctrl-C: the CSV still gets the photos done (the others' cells blank)
            if args.csv:
                with contextlib.suppress(OSError):
                    session.export_csv(args.csv, root=_csv_root(args.csv, photos))
            raise
    if args.csv:
        try:
            session.export_csv(args.csv, root=_csv_root(args.csv, photos))
        except OSError as exc:
            print(f"imgcap: cannot write {printable(args.csv)}: {exc}", file=sys.stderr)
            return EXIT_SOME_FAILED
    for note in _kept_notes(plan.settled):
        print(f"imgcap: {note}", file=sys.stderr)
    failed = problems or any(s.status in ("failed", "gone") for s in statuses)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _kept_notes(settled) -> list[str]:
    """What to tell the user about the photos printed with their stored caption, not a new one
    (their lines look like the others, and come first)."""
    counts = Counter(status.status for status in settled)
    notes = []
    if counts["kept_human"]:
        n = counts["kept_human"]
        notes.append(f"kept {n} caption{'s' * (n != 1)} a person wrote or edited, printed as stored "
                     f"(--overwrite-human replaces them)")
    if counts["skipped"]:
        n = counts["skipped"]
        notes.append(f"skipped {n} photo{'s' * (n != 1)} already captioned, printed as stored (--skip-captioned)")
    return notes


def _no_photos_note(paths: list[Path], subfolders: list[Path]) -> str:
    """What to tell a user whose folders hold no photo imgcap reads (instead of printing nothing);
    ``subfolders``: those the scan did not look in."""
    from model.images import SUPPORTED_EXTENSIONS

    where = ", ".join(printable(path) for path in paths if path.is_dir()) or "the paths given"
    note = f"no photos in {where} (imgcap reads {' '.join(sorted(SUPPORTED_EXTENSIONS))})"
    return note + ("; --recursive also reads the subfolders" if subfolders else "")


def _csv_root(csv_file: Path, photos: list[Path]) -> Path:
    """The folder the CSV's relative paths start from (:func:`csv_root`), said where it is not the CSV's."""
    root, own = csv_root(csv_file, photos)
    if not own:
        print(f"imgcap: paths in {printable(csv_file)} are relative to {printable(root)}; "
              f"import it with --root {printable(root)}", file=sys.stderr)
    return root


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, but an option no command knows is refused with the usage of the
    command given (``imgcap caption [-h] [-r] ...``), not the top-level one that hides its options."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        chosen = parser
        while (commands := next((a for a in chosen._actions if isinstance(a, argparse._SubParsersAction)), None)):
            name = getattr(args, commands.dest, None)
            if name not in commands.choices:
                break
            chosen = commands.choices[name]
        chosen.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


class _RunOutput(io.TextIOBase):
    """Standard output for a run's lines. A write it refuses (``> log`` on a full disk) is said once
    on stderr, and the run goes on without its lines: the sidecars and ``--csv`` are what it is for.
    A broken pipe (``| head``) still ends it (see :func:`main`)."""

    def __init__(self, stream: TextIO):
        super().__init__()
        self._stream, self.lost = stream, False

    def write(self, text: str) -> int:
        self._guarded(self._stream.write, text)
        return len(text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def _guarded(self, call, *args) -> None:
        if self.lost:
            return
        try:
            call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.lost = True
            print(f"imgcap: cannot write standard output ({exc.strerror or exc}); captioning goes on without "
                  f"its lines", file=sys.stderr)


def _standard_streams() -> None:
    """A stream the caller closed (``>&-``, ``2>&-``: a daemon, a cron job) is one that goes nowhere:
    Python leaves it None, and every line said to it stopped the run."""
    for name in ("stdout", "stderr"):  # in this order: a file opened now takes the lowest closed descriptor
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - for the process's life


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    _standard_streams()
    logging.basicConfig(level=logging.WARNING, format="imgcap: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = parse_command_line(build_parser(), argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 for --help
        if exc.code:
            for token in sys.argv[1:] if argv is None else argv:
                if token.startswith("-") and len(token) > 1 and os.path.lexists(token):  # taken for an option
                    print(f"imgcap: {printable(token)} is a file: give it as ./{printable(token)} (or after --)",
                          file=sys.stderr)
                    break
        return int(exc.code or 0)
    try:
        with contextlib.ExitStack() as stack:
            if out is None:
                out = stack.enter_context(_stdout_for_us_only())
            out = _RunOutput(out)
            if args.command == "import-csv":
                code = run_import_csv(args, out)
            elif args.command == "archive":
                code = run_archive_command(args, out)
            else:
                code = run_caption(args, out)
            return max(code, EXIT_SOME_FAILED) if out.lost else code
    except BrokenPipeError:  # ``imgcap caption ... | head``: the reader left; what was stored stays
        _silence_stdout()
        return EXIT_SOME_FAILED
    except KeyboardInterrupt:
        print("imgcap: interrupted; what was written stays written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    # Python would report the broken pipe again when it flushes stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


@contextlib.contextmanager
def _stdout_for_us_only():
    """Our output goes to the real stdout; anything else written there (a library's warning,
    from Python or from C) goes to stderr, so ``--json`` and ``path<TAB>caption`` stay parseable."""
    if sys.stdout is None or sys.stdout is not sys.__stdout__:  # captured (tests) or absent (windowed app)
        yield sys.stdout
        return
    try:
        sys.stdout.flush()
        saved = os.dup(sys.stdout.fileno())
        if saved is None or sys.stdout.fileno() != 1:
            raise OSError("stdout is not file descriptor 1")
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        yield sys.stdout
        return
    try:
        os.dup2(2, 1)
    except OSError:
        os.close(saved)
        yield sys.stdout
        return
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    ours = io.TextIOWrapper(io.FileIO(saved, "w", closefd=True), encoding=encoding, errors="backslashreplace",
                            line_buffering=True)  # fmt: skip
    try:
        yield ours
    finally:
        try:
            ours.flush()
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        finally:
            os.dup2(ours.fileno(), 1)
            try:
                ours.close()
            except BrokenPipeError:
                pass


if __name__ == "__main__":
    raise SystemExit(main())
