"""From an archive's results to what photo tools read: a CSV, or the photos' XMP sidecars.

Sidecars are written by :func:`~imgcap_desktop.metadata.apply.store_caption`, the rule
``imgcap caption --write-sidecars`` follows: every other tool's properties are kept, the file is
replaced atomically, an unparseable sidecar is reported and left alone, a caption a person wrote (or
one embedded in the photo) is kept unless ``overwrite_human``, and the model's keywords are merged
into ``dc:subject`` without touching anyone else's. A result is applied only while the photo is the
file that was captioned (same size and modification time).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.compute as pc

from imgcap_desktop.archive.results import latest_results
from imgcap_desktop.metadata.apply import StoreOptions, store_caption
from imgcap_desktop.metadata.csvio import csv_root, make_row, write_csv
from imgcap_desktop.metadata.folder import natural_key
from imgcap_desktop.metadata.printable import printable
from imgcap_desktop.metadata.sidecar import (SidecarError, SidecarStyle, StoredCaption, find_sidecar_or_none,
                                             keywords_as_written, read_caption)

_COLUMNS = ["model", "caption", "score", "tags", "keywords", "tagged", "error", "captioned_at", "sidecar"]
#: The error cell of a photo that is not as it was captioned.
GONE_SINCE = "not found: deleted or moved since it was captioned"
CHANGED_SINCE = "changed since it was captioned (another file under its name): caption it again"


def current_results(folder: str | Path) -> pa.Table:
    """One row per photo, in natural path order: the result written last for the file as it is now
    (its size and modification time), else the one written last for it (whatever the model).

    A photo captioned, then replaced and captioned again, then restored from a backup has two rows;
    the caption run takes the first as the restored file's, and so must the export: the last row,
    the other picture's, was refused by ``--apply-sidecars`` for ever ("changed since")."""
    table = latest_results(folder, columns=_COLUMNS)
    if table.num_rows == 0:
        return table
    numbered = table.select(["path"]).append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    grouped = numbered.group_by(["path"], use_threads=False).aggregate([("_row", "max"), ("_row", "list")])
    chosen = grouped["_row_max"].to_pylist()
    sizes, mtimes = table["size"], table["mtime_ns"]
    # Only a photo with more than one row is looked at on disk.
    for index in pc.indices_nonzero(pc.greater(pc.list_value_length(grouped["_row_list"]), 1)).to_pylist():
        path, written = grouped["path"][index].as_py(), grouped["_row_list"][index].as_py()
        try:
            status = os.stat(path)
        except OSError:
            continue
        matching = [i for i in written if (sizes[i].as_py(), mtimes[i].as_py()) == (status.st_size, status.st_mtime_ns)]
        if matching:
            chosen[index] = max(matching)
    table = table.take(pa.array(chosen, pa.int64()))
    order = sorted(range(table.num_rows), key=lambda i: natural_key(table["path"][i].as_py()))
    return table.take(pa.array(order, pa.int64()))


def export_csv(folder: str | Path, csv_file: str | Path, root: str | Path | None = None, *,
               keywords: bool = True, err: TextIO | None = None) -> int:
    """Write one CSV row per photo (the columns of ``imgcap caption --csv``); returns the number of rows.

    A photo whose sidecar holds a caption gets that one (what is stored, as the CLI's CSV shows, so
    the CSV imports back as unchanged); the others get their result's caption; a photo that failed
    gets its reason in the error column.

    Args:
        folder: the results folder.
        csv_file: the CSV to write (atomically).
        root: the folder the CSV's relative paths start from; by default the CSV's own folder when
            every photo is under it (what ``imgcap import-csv`` assumes), else their common folder.
        keywords: fill the keywords column from the results.

    Raises:
        ResultsError: a part file is unreadable.
        OSError: the CSV cannot be written.
    """
    err = err or sys.stderr
    table = current_results(folder)
    paths = [Path(p) for p in table["path"].to_pylist()]
    root = Path(root) if root is not None else _csv_root(Path(csv_file), paths, err)
    rows = []
    for photo, row in zip(paths, table.to_pylist()):
        try:
            status = os.stat(photo)
        except OSError:  # the row of a photo gone, said (import-csv leaves a blank caption alone)
            rows.append(make_row(photo, root, None, size=(None, None), error=GONE_SINCE))
            continue
        caption, error = _stored_or_none(photo), row["error"] or ""
        if caption is None and not error:
            if (status.st_size, status.st_mtime_ns) == (row["size"], row["mtime_ns"]):
                caption = _caption(row, keywords)
            else:  # another picture under its name: the result is not its caption
                error = CHANGED_SINCE
        rows.append(make_row(photo, root, caption, sidecar=find_sidecar_or_none(photo), error=error))
    write_csv(csv_file, rows)
    return len(rows)


def _caption(row: dict, keywords: bool) -> StoredCaption:
    # A model without a classifier says nothing of keywords, as store_outcomes has it; a part an older
    # imgcap wrote (tagged null) tells it by the tags.
    tagged = row.get("tagged")
    words = tuple(row["keywords"] or ()) if keywords and (row["tags"] if tagged is None else tagged) else None
    return StoredCaption(row["caption"], "automatic", row["model"], row["score"], row["captioned_at"], words)


def _csv_root(csv_file: Path, photos: list[Path], err: TextIO) -> Path:
    root, own = csv_root(csv_file, photos)  # as the CLI's: links kept (resolved, every path was absolute)
    if not own:
        print(f"imgcap archive: paths in {printable(csv_file)} are relative to {printable(root)}; import it with "
              f"--root {printable(root)}", file=err)
    return root


def _stored_or_none(photo: Path) -> StoredCaption | None:
    try:
        return read_caption(photo)
    except SidecarError:
        return None


@dataclass
class ApplyReport:
    """What applying results to sidecars did (lists of photos, and ``(photo, message)`` for errors)."""

    applied: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    kept_human: list[Path] = field(default_factory=list)
    changed: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)


def apply_sidecars(folder: str | Path, *, style: SidecarStyle = "ext", overwrite_human: bool = False,
                   keywords: bool = True) -> ApplyReport:
    """Write every photo's stored caption (and keywords) into its XMP sidecar.

    Skipped: photos whose result is a failure (``failed``), that are gone (``missing``) or were
    changed since they were captioned (``changed``), whose sidecar already holds this caption and
    these keywords (``unchanged``) or a person's caption (``kept_human``, unless ``overwrite_human``).
    A sidecar that cannot be read or written is left as it is and listed in ``errors``.

    Raises:
        ResultsError: a part file is unreadable.
    """
    options = StoreOptions(write_sidecars=True, sidecar_style=style, overwrite_human=overwrite_human, keywords=keywords)
    report = ApplyReport()
    table = current_results(folder)
    failed = pc.is_valid(table["error"])
    for row in table.filter(pc.invert(failed)).to_pylist():
        photo = Path(row["path"])
        try:
            status = photo.stat()
        except OSError:
            report.missing.append(photo)
            continue
        if (status.st_size, status.st_mtime_ns) != (row["size"], row["mtime_ns"]):
            report.changed.append(photo)
            continue
        caption = _caption(row, keywords)
        try:
            if _holds(photo, read_caption(photo, embedded=False), caption):
                report.unchanged.append(photo)
                continue
        except SidecarError:
            pass  # store_caption says what is wrong with it
        stored = store_caption(photo, caption, options)
        if stored.status == "written":
            report.applied.append(photo)
        elif stored.status == "kept_human":
            report.kept_human.append(photo)
        else:
            report.errors.append((photo, stored.message))
    report.failed = [Path(p) for p in table.filter(failed)["path"].to_pylist()]
    return report


def _holds(photo: Path, stored: StoredCaption | None, caption: StoredCaption) -> bool:
    """Whether the sidecar already holds this automatic caption (and these keywords, where given, as
    they would be written: one a person removed stays out, one they added stays in)."""
    if stored is None or (stored.text, stored.source, stored.model) != (caption.text, caption.source, caption.model):
        return False
    return caption.keywords is None or set(stored.keywords or ()) == set(keywords_as_written(photo, caption.keywords))
