"""From an archive's results to what photo tools read: a CSV, or the photos' XMP sidecars.

Sidecars are written with :func:`~imgcap_desktop.metadata.sidecar.write_caption`, under the rules
that hold everywhere in imgcap: every other tool's properties are kept, the file is replaced
atomically, an unparseable sidecar is reported and left alone, and a caption a person wrote is kept
unless ``overwrite_human``. A result is applied only while the photo is the file that was captioned
(same size and modification time).
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
from imgcap_desktop.metadata.csvio import make_row, write_csv
from imgcap_desktop.metadata.folder import natural_key
from imgcap_desktop.metadata.sidecar import SidecarError, SidecarStyle, StoredCaption, find_sidecar, read_caption, write_caption

_COLUMNS = ["model", "caption", "score", "keywords", "error", "captioned_at", "sidecar"]


def current_results(folder: str | Path) -> pa.Table:
    """One row per photo: the result written last for it (whatever the model), in natural path order."""
    table = latest_results(folder, columns=_COLUMNS)
    if table.num_rows == 0:
        return table
    numbered = table.select(["path"]).append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    last = numbered.group_by(["path"], use_threads=False).aggregate([("_row", "max")])
    table = table.take(last["_row_max"])
    order = sorted(range(table.num_rows), key=lambda i: natural_key(table["path"][i].as_py()))
    return table.take(pa.array(order, pa.int64()))


def export_csv(folder: str | Path, csv_file: str | Path, root: str | Path | None = None,
               err: TextIO | None = None) -> int:
    """Write one CSV row per photo (as ``imgcap caption --csv`` does); returns the number of rows.

    Args:
        folder: the results folder.
        csv_file: the CSV to write (atomically).
        root: the folder the CSV's relative paths start from; by default the CSV's own folder when
            every photo is under it (what ``imgcap import-csv`` assumes), else their common folder.

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
        caption = None
        if row["error"] is None:
            caption = StoredCaption(row["caption"], "automatic", row["model"], row["score"], row["captioned_at"])
        rows.append(make_row(photo, root, caption, sidecar=row["sidecar"] or _sidecar_or_none(photo)))
    write_csv(csv_file, rows)
    return len(rows)


def _csv_root(csv_file: Path, photos: list[Path], err: TextIO) -> Path:
    csv_dir = csv_file.resolve().parent
    if all(p.resolve().is_relative_to(csv_dir) for p in photos):
        return csv_dir
    root = Path(os.path.commonpath([str(p.parent) for p in photos])) if photos else csv_dir
    print(f"imgcap archive: paths in {csv_file} are relative to {root}; import it with --root {root}", file=err)
    return root


def _sidecar_or_none(photo: Path) -> Path | None:
    try:
        return find_sidecar(photo)
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


def apply_sidecars(folder: str | Path, *, style: SidecarStyle = "ext", overwrite_human: bool = False) -> ApplyReport:
    """Write every photo's stored caption into its XMP sidecar.

    Skipped: photos whose result is a failure (``failed``), that are gone (``missing``) or were
    changed since they were captioned (``changed``), whose sidecar already holds this caption
    (``unchanged``) or a person's caption (``kept_human``, unless ``overwrite_human``). A sidecar that
    cannot be read or written is left as it is and listed in ``errors``.

    Raises:
        ResultsError: a part file is unreadable.
    """
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
        if not row["caption"]:  # never store it: it would erase the description already there
            report.errors.append((photo, f"{photo.name}: the result holds no caption"))
            continue
        caption = StoredCaption(row["caption"], "automatic", row["model"], row["score"], row["captioned_at"])
        try:
            stored = read_caption(photo)
            # A description embedded in the photo is a person's too (as for ``imgcap caption``).
            if stored is not None and stored.source in ("human", "embedded") and not overwrite_human:
                report.kept_human.append(photo)
            elif stored is not None and (stored.text, stored.source, stored.model) == (caption.text, caption.source, caption.model):
                report.unchanged.append(photo)
            else:
                write_caption(photo, caption, style=style)
                report.applied.append(photo)
        except SidecarError as exc:
            report.errors.append((photo, str(exc)))
    report.failed = [Path(p) for p in table.filter(failed)["path"].to_pylist()]
    return report
