"""Finding an archive's photos: folders (recursively), single photos, and text files listing paths."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imgcap_desktop.metadata.folder import NOT_PHOTOS, is_photo, scan_folder
from imgcap_desktop.metadata.printable import printable
from model.images import broken_link_reason


@dataclass
class Inputs:
    """The photos of a run, as parallel lists (cheap for millions of photos), and what went wrong.

    Attributes:
        paths: absolute paths (not resolved: a mount's own name is kept, so every node sees the same
            path), without duplicates, in the order found.
        sizes: each photo's size in bytes.
        mtimes: each photo's modification time in nanoseconds.
        problems: messages about roots or listed paths that do not exist or cannot be read.
        left_out: files given or listed that are no photos (sidecars, CSVs, raws, …; see
            ``NOT_PHOTOS``), left out as a folder scan leaves them: no problem.
    """

    paths: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def collect_inputs(roots: list[str | Path]) -> Inputs:
    """Expand roots into photos and read each one's size and modification time.

    A root is a folder (every photo under it, subfolders included, hidden ones skipped), a photo, or
    a text file listing paths, one per line (UTF-8, with or without a byte-order mark; blank lines
    and lines starting with ``#`` are skipped; relative paths start from the list's own folder; a
    listed folder is scanned too, except one the list itself is in). A photo whose name is not
    UTF-8 is a problem, not an input. Sidecars, CSVs, raws and videos given or listed are left out
    (``left_out``), as a folder scan leaves them; a ``.txt`` given is a list, a ``.txt`` listed is
    left out. ``..`` in a path goes where the system goes after a link, not where the text does.

    Never raises for a bad root or path: each becomes a line in ``problems``.
    """
    found: dict[str, None] = {}
    inputs = Inputs()
    for root in roots:
        _expand(Path(root), found, inputs, listed_in=None)
    problems = inputs.problems
    for path in found:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # a name from another system's encoding: Parquet stores UTF-8 only
            problems.append(f"{printable(path)}: the file name is not UTF-8, which the results cannot record; "
                            f"rename it to caption it")
            continue
        try:
            status = os.stat(path)
        except OSError as exc:
            problems.append(f"{printable(path)}: {printable(broken_link_reason(path) or exc.strerror or str(exc))}")
            continue
        inputs.paths.append(path)
        inputs.sizes.append(status.st_size)
        inputs.mtimes.append(status.st_mtime_ns)
    return inputs


def _expand(path: Path, found: dict[str, None], inputs: Inputs, listed_in: Path | None) -> None:
    where = f" (listed in {listed_in})" if listed_in else ""
    if ".." in path.parts:  # after a link to a folder, ".." goes where the system goes, not where the text does
        last = len(path.parts) - 1 - path.parts[::-1].index("..")  # links after the last ".." are kept
        path = Path(os.path.realpath(Path(*path.parts[:last + 1]))).joinpath(*path.parts[last + 1:])
    if path.is_dir():
        if listed_in is not None and listed_in.resolve().is_relative_to(path.resolve()):
            inputs.problems.append(f"{printable(path)}{printable(where)}: a folder the list itself is in, not "
                                   f"scanned (a stray line? give the folder itself to caption it)")
            return
        try:
            photos = scan_folder(path, recursive=True, problems=inputs.problems)
        except OSError as exc:
            inputs.problems.append(f"{printable(path)}{printable(where)}: cannot list the folder "
                                   f"({exc.strerror or exc})")
            return
        found.update((os.path.abspath(p), None) for p in photos)
    elif path.is_file() and (path.suffix.lower() in NOT_PHOTOS and (listed_in or path.suffix.lower() != ".txt")
                             or listed_in and path.name.startswith(".")):
        inputs.left_out.append(str(path))  # a sidecar, a CSV, a raw, ._IMG.jpg a shell glob or a list took in
    elif path.is_file() and is_photo(path):
        found[os.path.abspath(path)] = None
    elif path.is_file() and listed_in is not None:
        found[os.path.abspath(path)] = None  # listed by name: tried (scan.jfif is a JPEG)
    elif path.is_file():
        refused = _not_a_list(path)
        if refused:  # a binary file a shell glob took in: no list of paths
            inputs.problems.append(f"{printable(path)}: {refused}")
        else:
            _read_list(path, found, inputs)
    else:
        inputs.problems.append(f"{printable(path)}{printable(where)}: no such file or folder")


def _not_a_list(path: Path) -> str | None:
    """Why a file that is no photo is not read as a list of paths either, or None."""
    what = "not a photo imgcap reads, nor a list of paths (a text file, one path a line)"
    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
    except OSError:
        return None  # reading the list says why
    return what if b"\0" in head else None


def _read_list(list_file: Path, found: dict[str, None], inputs: Inputs) -> None:
    try:
        # A byte-order mark (Notepad, Excel) is no part of the first path; a line in another
        # encoding is one problem of its own (above), not the whole list's.
        text = list_file.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except (OSError, UnicodeDecodeError) as exc:
        inputs.problems.append(f"{printable(list_file)}: cannot read the list of paths ({exc})")
        return
    base = list_file.parent
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry)
        _expand(path if path.is_absolute() else base / path, found, inputs, listed_in=list_file)
