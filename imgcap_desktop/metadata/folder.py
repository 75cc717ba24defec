"""Finding the photos in a folder, the same way for the app and the CLI."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from imgcap_desktop.metadata.printable import printable
from model.images import SUPPORTED_EXTENSIONS

_DIGITS = re.compile(r"(\d+)")

#: Raw photos (imgcap does not read them: their sidecars are kept apart, see ``sidecar.py``).
RAW_EXTENSIONS: frozenset[str] = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .dcr .dng .erf .fff .gpr .iiq .k25 .kdc .mef .mos .mrw .nef .nrw "
    ".orf .pef .ptx .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split())
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    ".mov .mp4 .m4v .avi .mts .m2ts .mkv .webm .3gp .3g2 .mpg .mpeg .wmv .flv .vob".split())
#: Files given by name (a shell's ``*``, a list of paths) that are no photos imgcap reads, and are
#: left out as a folder's are: sidecars, CSVs, notes, raws and videos. Any other file given by name
#: is tried (``scan.jfif`` is a JPEG; Pillow may read an .avif or a .psd).
NOT_PHOTOS: frozenset[str] = frozenset(
    {".xmp", ".csv", ".tsv", ".txt", ".json", ".md", ".pdf", ".pp3", ".dop", ".aae", ".db", ".ini", ".lnk", ".url"}
    | RAW_EXTENSIONS | VIDEO_EXTENSIONS)  # .aae: an iPhone's edits; .db, .ini: Thumbs.db, desktop.ini


def natural_key(path: str | Path) -> tuple:
    """Sort key that puts ``img2.jpg`` before ``img10.jpg``, case-insensitively, folder by folder."""
    return tuple(_part_key(part) for part in Path(path).parts)


def _part_key(part: str) -> tuple:
    # Numbers before words, as numbers; the original text last, so the order is total.
    return tuple(
        (0, int(chunk), chunk) if chunk.isdigit() else (1, chunk.casefold(), chunk)
        for chunk in _DIGITS.split(part)
        if chunk
    )


def is_photo(path: str | Path) -> bool:
    """Whether a file name has one of the extensions the engine reads."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def scan_folder(folder: str | Path, *, recursive: bool = False, problems: list[str] | None = None,
                subfolders: list[Path] | None = None, states: dict[Path, tuple[int, int, int]] | None = None,
                unlisted: list[Path] | None = None) -> list[Path]:
    """The photos in a folder, sorted naturally.

    Hidden files and folders (a leading dot, or the hidden attribute on Windows) are skipped, and so
    are imgcap's own temporary files, and anything else that is not a regular file (a FIFO named like
    a photo would block its reader). Symbolic links to folders are not followed, so a link loop
    cannot hang the scan. A *broken* link named like a photo is listed: reading it then fails with a
    reason that names the missing target, so the user sees why the photo is not there.

    Args:
        folder: where to look.
        recursive: also look in subfolders.
        problems: when given, a line is appended for each subfolder that cannot be listed, and (with
            ``recursive``) each link to a folder (their photos are missing from the result), so the
            caller can say so.
        subfolders: when given (and not ``recursive``), the subfolders not looked in are appended,
            so a caller that finds no photos can say where they might be.
        states: when given, each photo and ``.xmp`` file listed gets its state (modification time
            in ns, size, inode; links followed), in the same listing (:func:`snapshot_folder`).
        unlisted: when given, each subfolder that cannot be listed is appended.

    Returns:
        Paths under ``folder`` (as given, not resolved), sorted by :func:`natural_key` of the path
        relative to ``folder``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is not a folder.
        OSError: ``folder`` itself cannot be listed (subfolders that cannot be listed are skipped,
            and named in ``problems``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        if not os.path.lexists(folder):  # moved, renamed or deleted (a recent folder, say)
            raise FileNotFoundError(f"{folder} does not exist (moved, renamed or deleted?)")
        raise NotADirectoryError(f"{folder} is not a folder")
    found: list[Path] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            if current == folder:
                raise
            if unlisted is not None:
                unlisted.append(current)
            if problems is not None:
                problems.append(f"{printable(current)}: cannot list the folder ({exc.strerror or exc}); its photos "
                                f"are skipped")
            continue
        for entry in entries:
            if _is_hidden(entry):
                continue
            if states is not None and (entry.name.lower().endswith(".xmp") or is_photo(entry.name)):
                with contextlib.suppress(OSError):  # a broken link, or removed meanwhile: no state
                    status = entry.stat()
                    states[Path(entry.path)] = (status.st_mtime_ns, status.st_size, status.st_ino)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        pending.append(Path(entry.path))
                    elif subfolders is not None:
                        subfolders.append(Path(entry.path))
                elif recursive and problems is not None and entry.is_symlink() and entry.is_dir():
                    problems.append(f"{printable(entry.path)}: a link to a folder, not followed (give "
                                    f"{printable(os.path.realpath(entry.path))} itself to include its photos)")
                elif is_photo(entry.name) and (entry.is_file() or _is_broken_link(entry)):
                    found.append(Path(entry.path))
            except OSError:
                if is_photo(entry.name) and entry.is_symlink():  # a link loop: listed, so reading it says so
                    found.append(Path(entry.path))
                continue
    found.sort(key=lambda p: natural_key(p.relative_to(folder)))
    return found


@dataclass(frozen=True)
class FolderSnapshot:
    """A folder's photos and the state of the files that hold their captions, to tell later what
    changed (:func:`folder_changes`).

    Attributes:
        photos: what :func:`scan_folder` found, in its order.
        files: each photo and ``.xmp`` file (not hidden) in the folders looked in: its modification
            time (ns), size and inode, links followed.
        unlisted: the subfolders that could not be listed (their photos are not in ``photos``).
    """

    photos: tuple[Path, ...]
    files: dict[Path, tuple[int, int, int]]
    unlisted: tuple[Path, ...] = ()


@dataclass(frozen=True)
class FolderChanges:
    """What changed in a folder between two snapshots.

    Attributes:
        photos: the photos now, in :func:`scan_folder`'s order.
        added: photos that were not there before.
        removed: photos that are gone.
        replaced: photos (there before and now) whose own file changed: rewritten, replaced, or
            given a new embedded description.
        restored: photos (there before and now) whose stored caption may have changed: the photo
            itself or a sidecar named after it (any case, either naming style) changed.
    """

    photos: tuple[Path, ...]
    added: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()
    replaced: tuple[Path, ...] = ()
    restored: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.restored)


def snapshot_folder(folder: str | Path, *, recursive: bool = False) -> FolderSnapshot:
    """The folder's photos now (as :func:`scan_folder` finds them) and their files' states.

    Raises what :func:`scan_folder` raises for the folder itself.
    """
    files: dict[Path, tuple[int, int, int]] = {}
    unlisted: list[Path] = []
    photos = scan_folder(folder, recursive=recursive, states=files, unlisted=unlisted)  # one listing a folder
    return FolderSnapshot(tuple(photos), files, tuple(unlisted))


def folder_changes(before: FolderSnapshot, after: FolderSnapshot) -> FolderChanges:
    """What changed from ``before`` to ``after`` (see :class:`FolderChanges`). A subfolder that could
    not be listed this time (its permissions changed, a share that did not answer) keeps its photos
    as they were: they are not taken for deleted."""
    if after.unlisted:
        def unseen(path: Path) -> bool:
            return any(path.is_relative_to(folder) for folder in after.unlisted)

        kept = tuple(photo for photo in before.photos if unseen(photo))
        after = FolderSnapshot(tuple(sorted((*after.photos, *kept), key=natural_key)),
                               after.files | {path: state for path, state in before.files.items() if unseen(path)},
                               after.unlisted)
    old, new = set(before.photos), set(after.photos)
    differs = {path for path in before.files.keys() | after.files.keys()
               if before.files.get(path) != after.files.get(path)}
    sidecars = {(path.parent, path.name.casefold()) for path in differs if path.name.lower().endswith(".xmp")}

    def sidecar_changed(photo: Path) -> bool:
        return any((photo.parent, f"{name}.xmp".casefold()) in sidecars for name in (photo.name, photo.stem))

    kept = [photo for photo in after.photos if photo in old]
    return FolderChanges(
        photos=after.photos,
        added=tuple(photo for photo in after.photos if photo not in old),
        removed=tuple(photo for photo in before.photos if photo not in new),
        replaced=tuple(photo for photo in kept if photo in differs),
        restored=tuple(photo for photo in kept if photo in differs or sidecar_changed(photo)),
    )


def base_style_collisions(photos: list[Path]) -> dict[Path, list[Path]]:
    """Photos that would share one ``photo.xmp`` sidecar: sidecar path -> the photos (two or more)."""
    groups: dict[Path, list[Path]] = defaultdict(list)
    for photo in photos:
        groups[Path(photo).with_suffix(".xmp")].append(Path(photo))
    return {sidecar: members for sidecar, members in groups.items() if len(members) > 1}


def _is_broken_link(entry: os.DirEntry) -> bool:
    # Listed so that the photo shows as unreadable, naming the missing target, instead of vanishing.
    return entry.is_symlink() and not os.path.exists(entry.path)


def _is_hidden(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return True
    if os.name != "nt":
        return False
    attributes = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))
