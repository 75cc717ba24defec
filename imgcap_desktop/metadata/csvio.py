"""Captions to and from CSV: export for spreadsheets and photo editors, import their edits back.

UTF-8, RFC 4180 quoting (the csv module), and every text cell that a spreadsheet would run as a
formula gets a leading apostrophe; import removes exactly those apostrophes, so a round trip gives
back every caption unchanged. A file name that is not valid UTF-8 (possible on Linux) is written
with its original bytes (Python's surrogate escapes), which import maps back to the same file.
Keywords are one cell, separated by ``"; "``. The last column, ``check``, is a fingerprint of the
caption and keywords cells as exported: import tells an edited cell from one left as it was by it,
so a row nobody edited never writes anything, whatever was stored since.

Import reads what spreadsheets save: UTF-8 with or without a byte-order mark, UTF-16 with one
(Excel's "Unicode Text"), and commas, semicolons (Excel where the decimal mark is a comma) or tabs
between the cells, told by the header line.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from imgcap_desktop.metadata.folder import NOT_PHOTOS
from imgcap_desktop.metadata.sidecar import (
    SIDECAR_OWNER_EXTENSIONS,
    PersonsCaptionKept,
    SidecarError,
    SidecarStyle,
    StoredCaption,
    caption_taken_out,
    find_sidecar_or_none,
    has_ext_style_sidecar,
    is_blank,
    other_tools_keywords,
    replace_atomically,
    read_caption,
    write_caption,
)
from model.images import SUPPORTED_EXTENSIONS, UNREADABLE_IMAGE_ERRORS, exif_orientation, is_regular_file

log = logging.getLogger(__name__)

COLUMNS = (
    "relative path",
    "file name",
    "caption",
    "source",
    "model",
    "score",
    "width",
    "height",
    "sidecar path",
    "time captioned",
    "keywords",
    "error",
    "check",
)
KEYWORD_SEPARATOR = "; "

# A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets.
_FORMULA_START = "=+-@\t\r"
_NEEDS_APOSTROPHE = re.compile(f"^'*[{re.escape(_FORMULA_START)}]")
_HAS_APOSTROPHE = re.compile(f"^'+[{re.escape(_FORMULA_START)}]")

# The longest cell import reads (the csv module's default is 128 KiB): a sidecar takes 8 MiB.
_LONGEST_CELL = 16 * 2**20
_DELIMITERS = (",", ";", "\t")


def neutralise(cell: str) -> str:
    """Make a text cell safe to open in a spreadsheet, reversibly (see :func:`restore`).

    A cell that starts with a formula character, or with apostrophes followed by one, gets one more
    apostrophe in front; any other cell is unchanged.
    """
    return "'" + cell if _NEEDS_APOSTROPHE.match(cell) else cell


def restore(cell: str) -> str:
    """Undo :func:`neutralise` exactly."""
    return cell[1:] if _HAS_APOSTROPHE.match(cell) else cell


@dataclass(frozen=True)
class CsvRow:
    """One photo's line in the CSV. Paths are relative to the exported folder, with ``/``."""

    relative_path: str
    file_name: str
    caption: str = ""
    source: str = ""
    model: str = ""
    score: float | None = None
    width: int | None = None
    height: int | None = None
    sidecar_path: str = ""
    captioned_at: str = ""
    keywords: tuple[str, ...] | None = ()  # imgcap's keywords; None: read from a CSV without that column
    error: str = ""  # why the photo could not be read or captioned
    # Read from a CSV: the fingerprint of the caption and keywords cells as exported (written: computed
    # from the row). Not part of a row's value: two rows with the same cells are equal.
    check: str = field(default="", compare=False)


def fingerprint(caption: str, keywords: Sequence[str] | None) -> str:
    """The ``check`` cell for a row: ``c`` and the caption's digest, ``k`` and the keywords' (the
    letters keep a spreadsheet from taking it for a number)."""
    return f"c{_caption_digest(caption)}k{_keywords_digest(keywords)}"


def _cell_text(caption: str) -> str:
    """A caption cell as import reads it: spaces at its ends and line-end conventions (a spreadsheet
    or an editor saving CRLF inside cells) are no edit; a cell that says nothing is empty."""
    text = caption.replace("\r\n", "\n").replace("\r", "\n").strip()
    return "" if is_blank(text) else text


def _caption_digest(caption: str) -> str:
    """10 hex digits of a caption as import reads it (:func:`_cell_text`)."""
    return _digest(_cell_text(caption))


def _keywords_digest(keywords: Sequence[str] | None) -> str:
    """10 hex digits of a set of keywords as import reads them back (reordering them is no edit)."""
    return _digest("\n".join(sorted(_keywords(KEYWORD_SEPARATOR.join(keywords or ())))))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def make_row(
    photo: str | Path,
    root: str | Path,
    caption: StoredCaption | None,
    *,
    sidecar: str | Path | None = None,
    size: tuple[int, int] | None = None,
    error: str = "",
) -> CsvRow:
    """Build a photo's CSV row.

    Args:
        photo: the photo.
        root: the folder the CSV describes; paths are written relative to it.
        caption: the photo's caption, if any.
        sidecar: its sidecar, if any.
        size: ``(width, height)``; read from the photo header (no pixels decoded) when not given.
        error: why the photo could not be read or captioned, if it could not.
    """
    photo, root = Path(photo), Path(root)
    if size is None:
        size = photo_size(photo)
    width, height = size if size is not None else (None, None)
    return CsvRow(
        relative_path=_relative(photo, root),
        file_name=photo.name,
        caption=caption.text if caption else "",
        source=caption.source if caption else "",
        model=(caption.model or "") if caption else "",
        score=caption.score if caption else None,
        width=width,
        height=height,
        sidecar_path=_relative(Path(sidecar), root) if sidecar else "",
        captioned_at=(caption.captioned_at or "") if caption else "",
        keywords=tuple(caption.keywords or ()) if caption else (),
        error=error,
    )


def csv_root(csv_file: str | Path, photos: Sequence[str | Path]) -> tuple[Path, bool]:
    """The folder a CSV's relative paths start from, and whether it is the CSV's own: its folder
    when every photo is under it (what ``import-csv`` assumes), else the photos' common folder (the
    caller says so: ``--root``). Paths are taken as the user reached them: a symbolic link is the
    link, never its target, so a row can never lead ``import-csv`` outside the folders captioned."""
    csv_dir = Path(os.path.abspath(csv_file)).parent
    reached = [Path(os.path.abspath(p)) for p in photos]
    if all(p.is_relative_to(csv_dir) for p in reached):
        return csv_dir, True
    return (Path(os.path.commonpath([str(p.parent) for p in reached])) if reached else Path.cwd()), False


def photo_size(photo: str | Path) -> tuple[int, int] | None:
    """A photo's ``(width, height)`` as shown (EXIF rotation applied), from its header; None if unreadable."""
    from PIL import Image

    if not is_regular_file(photo):
        return None
    try:
        with Image.open(photo) as img:
            width, height = img.size
            if exif_orientation(img) in (5, 6, 7, 8):  # turned a quarter
                return height, width
            return width, height
    except UNREADABLE_IMAGE_ERRORS:
        return None


def _relative(path: Path, root: Path) -> str:
    # The path as the user reached it: a symbolic link is recorded as the link, never its target.
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        pass
    try:  # one given relative to the working folder, the other absolute
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return path.as_posix()


def format_rows(rows: list[CsvRow] | tuple[CsvRow, ...]) -> str:
    """The CSV text (header included) for some rows."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                neutralise(row.relative_path),
                neutralise(row.file_name),
                neutralise(row.caption),
                row.source,
                neutralise(row.model),
                repr(float(row.score)) if row.score is not None else "",
                "" if row.width is None else str(row.width),
                "" if row.height is None else str(row.height),
                neutralise(row.sidecar_path),
                neutralise(row.captioned_at),
                neutralise(KEYWORD_SEPARATOR.join(row.keywords or ())),
                neutralise(row.error),
                fingerprint(row.caption, row.keywords),
            ]
        )
    return buffer.getvalue()


def write_csv(path: str | Path, rows: list[CsvRow] | tuple[CsvRow, ...], *, excel_bom: bool = False) -> None:
    """Write rows to a CSV file, atomically (a temporary file moved over the old one).

    Args:
        path: the CSV file.
        rows: the rows, in order.
        excel_bom: start with a UTF-8 byte-order mark, which Excel needs to recognise UTF-8.

    Raises:
        OSError: the file cannot be written (read-only folder, full disk, a missing folder), or
            ``path`` is a photo, a sidecar, a folder or anything but a regular file (a device, a FIFO):
            nothing is written over those. An old CSV is unchanged. A symbolic link is written through.
    """
    path = refuse_as_csv_target(path)
    # surrogateescape: a file name that is not UTF-8 keeps its own bytes, and import finds it again.
    data = format_rows(rows).encode("utf-8-sig" if excel_bom else "utf-8", "surrogateescape")
    replace_atomically(path, data)


def refuse_as_csv_target(path: str | Path, *, probe: bool = False) -> Path:
    """Where a CSV for ``path`` goes: the path, or a symbolic link's target (the link stays a link).

    Args:
        path: where the CSV is to be written.
        probe: also write and remove a small file in its folder, so that a read-only or full
            storage is found before a long run, not after it (file modes alone cannot tell: root
            writes through them, and a read-only mount refuses even root).

    Raises:
        OSError: a CSV must not or cannot be written there (see :func:`write_csv`).
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    suffix = path.suffix.lower()
    if suffix in SUPPORTED_EXTENSIONS or suffix in SIDECAR_OWNER_EXTENSIONS or suffix == ".xmp":  # a raw, a video
        raise OSError(f"{path} is named like a photo or a sidecar: the CSV is not written over it")
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise OSError(f"{path} is {what}: the CSV is not written over it")
    if path.is_file() and photo_size(path) is not None:  # a photo under another name (scan.jfif)
        raise OSError(f"{path} is a photo: the CSV is not written over it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} does not exist: the CSV cannot be written there")
    if probe:
        try:
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".imgcap-probe-"):
                pass
        except OSError as exc:
            raise OSError(f"{path.parent}: the CSV cannot be written there ({exc.strerror or exc})") from None
    return path


_SURROGATE = re.compile("[\ud800-\udfff]")


def _keywords(cell: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k.strip() for k in cell.split(KEYWORD_SEPARATOR.strip()) if k.strip()))


class CsvFormatError(ValueError):
    """The file is not a CSV this module wrote (missing columns, bad numbers)."""


def parse_rows(text: str) -> list[tuple[int, CsvRow]]:
    """Parse CSV text into ``(line number, row)`` pairs, undoing the formula neutralisation.

    Columns are found by their header, so a spreadsheet may reorder them or add its own; only
    ``relative path`` and ``caption`` are required.

    Raises:
        CsvFormatError: the header lacks a required column, or a number cannot be read.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if csv.field_size_limit() < _LONGEST_CELL:
        csv.field_size_limit(_LONGEST_CELL)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=_delimiter(text))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise CsvFormatError("the CSV file is empty") from None
    except csv.Error as exc:
        raise CsvFormatError(f"line 1: {exc}") from None
    missing = [name for name in ("relative path", "caption") if name not in header]
    if missing:
        raise CsvFormatError(f"the CSV has no {' or '.join(repr(m) for m in missing)} column")
    index = {name: header.index(name) for name in COLUMNS if name in header}
    table = []
    while True:
        first_line = reader.line_num + 1  # where the row starts: a caption cell may hold line breaks
        try:  # strict: a quote left open (the rows after it would be swallowed into one cell) is refused
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            hint = "" if "field larger" in str(exc) else " (a quote left open?)"
            raise CsvFormatError(f"line {reader.line_num}: {exc}{hint}") from None
        if any(cells):
            table.append((first_line, cells))
    index.pop("check", None)
    check = _check_column(header, [cells for _, cells in table])
    if check is not None:
        index["check"] = check
    rows = []
    for line, cells in table:

        def cell(name: str, cells: list[str] = cells) -> str:
            i = index.get(name)
            return cells[i] if i is not None and i < len(cells) else ""

        # A row cut short before its keywords cell says nothing about them (an empty cell removes them).
        has_keywords = "keywords" in index and index["keywords"] < len(cells)
        for name in ("caption", "source", "model", "score", "width", "height", "time captioned", "keywords"):
            if _SURROGATE.search(cell(name)):
                raise CsvFormatError(f"line {line}: the {name} column is not UTF-8 text")
        # Read for the record only (an import writes captions and keywords): a spreadsheet's "-3,27"
        # or "451.0" becomes no value rather than stopping the import.
        score, width, height = _number(cell("score"), float), _number(cell("width"), int), _number(cell("height"), int)
        rows.append(
            (
                line,
                CsvRow(
                    relative_path=restore(cell("relative path")),
                    file_name=restore(cell("file name")),
                    caption=restore(cell("caption")),
                    source=cell("source").strip(),
                    model=restore(cell("model")),
                    score=score,
                    width=width,
                    height=height,
                    sidecar_path=restore(cell("sidecar path")),
                    captioned_at=restore(cell("time captioned")),
                    keywords=_keywords(restore(cell("keywords"))) if has_keywords else None,
                    error=restore(cell("error")),
                    check=cell("check").strip(),
                ),
            )
        )
    return rows


def _check_column(header: list[str], table: list[list[str]]) -> int | None:
    """imgcap's ``check`` column: of the columns of that name (a user may add one of their own,
    anywhere), the one whose cells are most often fingerprints; None where none has one."""
    counts = {i: sum(i < len(cells) and _CHECK.match(cells[i].strip()) is not None for cells in table)
              for i, name in enumerate(header) if name == "check"}
    best = max(counts, key=lambda i: (counts[i], i), default=None)
    return best if best is not None and counts[best] else None


def _delimiter(text: str) -> str:
    """The cell separator of a caption CSV, told by its header line: the first of comma, semicolon
    and tab that splits out both required columns (a comma where none does, for the error message)."""
    header = text.split("\n", 1)[0]
    for delimiter in _DELIMITERS:
        names = {name.strip().strip('"').strip().lower() for name in header.split(delimiter)}
        if {"relative path", "caption"} <= names:
            return delimiter
    return ","


def _number(text: str, kind: type):
    try:
        return kind(text) if text.strip() else None
    except ValueError:
        return None


def read_csv(path: str | Path) -> list[tuple[int, CsvRow]]:
    """Read a CSV file (UTF-8, with or without a byte-order mark); see :func:`parse_rows`.

    Raises:
        CsvFormatError: not UTF-8, or not a caption CSV.
        OSError: the file cannot be read.
    """
    if Path(path).exists() and not is_regular_file(path):
        raise CsvFormatError("not a regular file")
    data = Path(path).read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 (Excel's "Unicode Text"), told by its mark
        try:
            return parse_rows(data.decode("utf-16"))
        except UnicodeDecodeError as exc:
            raise CsvFormatError(f"not UTF-16 text after its byte-order mark: {exc.reason}") from None
    # Path cells may hold a file name's own non-UTF-8 bytes (see write_csv); any other cell may not.
    return parse_rows(data.decode("utf-8", "surrogateescape"))


@dataclass
class ImportReport:
    """What importing a CSV did.

    Attributes:
        applied: sidecars written with an edited caption or edited keywords.
        unchanged: photos whose caption and keywords in the CSV equal the stored ones (or whose
            caption cell is empty): not touched.
        missing: ``(line, relative path)`` of rows whose photo does not exist.
        outside: ``(line, relative path)`` of rows that point outside the folder (an absolute path,
            ``..``, or a symbolic link to a folder elsewhere): never written.
        errors: ``(photo, message)`` of photos whose sidecar could not be read or written.
        problems: a message for each row that was not applied (missing, outside or an error), in
            the CSV's order, each starting "line N: ": what to show a person.
    """

    applied: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    missing: list[tuple[int, str]] = field(default_factory=list)
    outside: list[tuple[int, str]] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def _missing(self, line: int, relative: str) -> None:
        self.missing.append((line, relative))
        self.problems.append(f"line {line}: photo not found: {relative}")

    def _outside(self, line: int, relative: str, root: Path) -> None:
        self.outside.append((line, relative))
        self.problems.append(f"line {line}: outside the folder {root}, not written: {relative}")

    def _error(self, photo: Path, message: str) -> None:
        self.errors.append((photo, message))
        self.problems.append(message)


def import_csv(csv_file: str | Path, root: str | Path | None = None, *, style: SidecarStyle = "ext",
               held: Callable[[Path], tuple[StoredCaption, Sequence[str], StoredCaption | None] | None] | None = None,
               ) -> ImportReport:
    """Apply the captions and keywords of a CSV to the photos' sidecars, as a person's edits.

    Only captions that differ from the stored one are written, and where the row has its ``check``
    only the cells a person edited count; an empty caption cell leaves the caption alone (clearing a
    cell never deletes a caption; keywords edited beside it go onto the stored caption, and are
    reported where there is none). A row whose photo has no caption stored is written as it is (the
    CSV holds the caption's only copy: captions not written, reviewed in a spreadsheet), the model's
    where its caption cell is as exported; unless the sidecar says imgcap wrote that caption and
    another program took it out since: then an unedited row is left alone. An edit of keywords
    that were stored after the export is left out and reported, as an edit of a person's caption
    is; so is a row whose check cell was changed. A person's caption stored after the CSV was
    written (typed in another tool, say) is never replaced: the row's ``time captioned`` tells,
    and such a row is reported in ``errors``. Where the CSV has a ``keywords`` column,
    a cell that differs from imgcap's stored keywords replaces them: a keyword taken out is a
    person's removal (never added back automatically), one added is the person's (an automatic run
    keeps it); other tools' keywords are never touched. A row whose only edit is its keywords
    leaves the caption whose it was (a model's stays the model's, as in the app).
    A sidecar is only ever written inside ``root``: rows that lead outside it are reported.

    Args:
        csv_file: the CSV (as :func:`write_csv` wrote it, possibly edited in a spreadsheet).
        root: the folder the relative paths start from; by default the CSV's own folder.
        style: naming style for sidecars that do not exist yet.
        held: the caption the app holds for a photo, not written yet, the keywords a person
            removed from it, and the caption it was held over (None: none held; a person's caption
            written over that one since is kept, as Accept keeps it): a row is compared with it instead
            of the sidecar's, so a
            CSV exported while captions were held imports as unchanged, an edit of the keywords
            alone keeps the held caption's source, and the removals are recorded as rejected.

    Raises:
        CsvFormatError: the file is not a caption CSV.
        OSError: the CSV cannot be read.
    """
    csv_file = Path(csv_file)
    root = Path(root) if root is not None else csv_file.parent
    try:
        resolved_root = root.resolve()
    except RuntimeError:  # a link loop (Python 3.11 says so with RuntimeError)
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(root)) from None
    report = ImportReport()
    for line, row in read_csv(csv_file):
        relative = Path(row.relative_path)
        photo = root / relative
        text = _cell_text(row.caption)  # a space a spreadsheet added is no edit; a blank cell is an empty one
        exported = _CHECK.match(row.check)  # None: a row without one (a CSV made by hand, an older imgcap's)
        edits = _edits(row, exported)
        keywords_edited = bool(row.keywords) if edits is None else edits[1]
        if not text and not keywords_edited:  # nothing to apply (a broken link's row, say): whatever its photo is
            report.unchanged.append(photo)
            continue
        if not row.relative_path:
            report._error(root, f"line {line}: the row names no photo (its relative path cell is empty)")
            continue
        if not _inside(photo, root, resolved_root):
            report._outside(line, row.relative_path, root)
            continue
        try:
            kind = "file" if photo.is_file() else "other" if photo.exists() else None
        except (OSError, ValueError) as exc:  # a name too long, a folder that cannot be entered: this row's
            report._error(photo, f"line {line}: {row.relative_path}: cannot be looked at ({_why(exc)})")
            continue
        if kind != "file":
            if kind == "other":
                report._error(photo, f"line {line}: {row.relative_path}: not a regular file")
            else:
                report._missing(line, row.relative_path)
            continue
        if photo.suffix.lower() not in SUPPORTED_EXTENSIONS and (
                photo.suffix.lower() in NOT_PHOTOS and not has_ext_style_sidecar(photo)
                or find_sidecar_or_none(photo) is None and photo_size(photo) is None):
            # A file captioned by name (scan.jfif) is a photo Pillow reads, or has the sidecar imgcap
            # wrote; a raw's photo.xmp is Lightroom's, a notes.txt no photo.
            report._error(photo, f"line {line}: {row.relative_path}: not a photo imgcap reads; no sidecar "
                          f"written")
            continue
        try:
            holding = held(photo) if held is not None else None
            current, removed, held_over = holding if holding is not None else (read_caption(photo), (), None)
            if row.check and exported is None:
                report._error(photo, f"line {line}: {row.relative_path}: its check cell was changed, so "
                              f"its edits cannot be told; left as it is (export again to edit it)")
                continue
            if not text:  # a cleared caption cell deletes nothing: its keywords go onto the stored caption
                if current is None:
                    report._error(photo, f"line {line}: {row.relative_path}: keywords edited in a row without "
                                  f"a caption; left out (keywords go with a caption: type one too)")
                    continue
                text = current.text.strip()
            # The sidecar is read again only for a row that has keywords to compare.
            wanted = _keywords_to_store(row.keywords, other_tools_keywords(photo)) if row.keywords else ()
            if current is None:
                if holding is None and caption_taken_out(photo, text):  # since the export, in another program
                    if keywords_edited:
                        report._error(photo, f"line {line}: {row.relative_path}: its caption was taken "
                                      f"out in another program since the CSV was written; the row's "
                                      f"keywords are left out")
                    else:
                        report.unchanged.append(photo)
                    continue
                # The row holds the caption's only copy (not written, reviewed in a spreadsheet).
                write_caption(photo, _unstored(row, text, wanted, edits), style=style,
                              added_by_person=list(wanted) if edits is None or edits[1] else [],
                              keep_persons=True, keep_any=True, replacing=held_over)  # none written since
                report.applied.append(photo)
                continue
            text_changed = _cell_text(current.text) != text
            current_keywords = tuple(current.keywords or ())
            keywords_changed = row.keywords is not None and set(wanted) != set(current_keywords)  # order: no edit
            if edits is not None:  # a cell left as exported is no edit, whatever is stored now
                text_changed, keywords_changed = text_changed and edits[0], keywords_changed and edits[1]
            if not text_changed and not keywords_changed:
                report.unchanged.append(photo)
                continue
            if keywords_changed and exported is not None and _keywords_digest(current_keywords) != exported[2]:
                # Keywords stored after the export (a later run's): the edit was made on others.
                report._error(photo, f"line {line}: {row.relative_path}: its keywords changed after the "
                              f"CSV was written; the row's keywords are left out (export again to "
                              f"edit them)")
                keywords_changed = False
                if not text_changed:
                    continue
            if text_changed and _stored_since(current, row, exported):
                report._error(photo, f"line {line}: {row.relative_path}: its sidecar holds a person's "
                              f"caption this row was not exported with; left as it is (export "
                              f"again to edit it)")
                continue
            if holding is not None:
                # A held caption's keywords are not in the sidecar yet: they go with it (as the row
                # leaves them), merged as the model's are; what the person took out is rejected.
                keywords = wanted if row.keywords is not None else current.keywords
                rejected = [*removed, *(k for k in current_keywords if k not in (keywords or ()))]
                by_person = False
            else:  # the row's keywords are the person's whole choice against the stored ones
                keywords, rejected, by_person = (wanted if keywords_changed else None), [], True
            if text_changed or current.source not in ("automatic", "human"):  # an embedded caption: now a sidecar's
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                caption = StoredCaption(text=text if text_changed else current.text, source="human", captioned_at=now,
                                        keywords=keywords)
            else:  # only the keywords: a person's choice of them; the caption stays whose it was
                caption = replace(current, keywords=keywords)
            added = [k for k in wanted if k not in current_keywords] if keywords_changed else []
            # Decided on the caption read above: one another program writes meanwhile is kept.
            write_caption(photo, caption, style=style, keywords_by_person=by_person, added_by_person=added,
                          rejected_keywords=rejected, keep_persons=True, keep_any=True,
                          replacing=current if holding is None else held_over)
            report.applied.append(photo)
        except PersonsCaptionKept:
            when = "while the CSV was imported" if holding is None else "since the caption shown was held"
            report._error(photo, f"line {line}: {row.relative_path}: another program wrote its caption {when}; "
                          f"left as it is (export again to edit it)")
        except SidecarError as exc:  # "photo.jpg: ..." names the photo again; "photo.jpg.xmp: ..." its sidecar
            said = str(exc).removeprefix(f"{photo.name}: ")
            report._error(photo, f"line {line}: {row.relative_path}: {said}")
        except OSError as exc:  # this row's files (its sidecar's name too long, say): the next rows go on
            report._error(photo, f"line {line}: {row.relative_path}: {_why(exc)}; left as it is")
    return report


def _why(exc: BaseException) -> str:
    """An OSError's reason without the path it names (the row names it)."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _unstored(row: CsvRow, text: str, keywords: tuple[str, ...], edits: tuple[bool, bool] | None) -> StoredCaption:
    """The caption of a row whose photo has none stored (a CSV of captions not written, reviewed in a
    spreadsheet): a person's where the cell was edited, else whose the row says it is."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    kept = keywords or None  # an empty cell: no keywords to write
    if edits is not None and not edits[0] and row.source == "automatic" and row.model:
        return StoredCaption(text, "automatic", row.model, row.score, row.captioned_at or now, kept)
    return StoredCaption(text, "human", captioned_at=now, keywords=kept)


def _keywords_to_store(cell: Sequence[str], theirs: Sequence[str]) -> tuple[str, ...]:
    """A keywords cell as imgcap's keywords: one another tool has (in any case) is not imgcap's to
    add, and one spelled twice ("whiskers; Whiskers") is one, as first spelled."""
    seen = {k.casefold() for k in theirs}
    kept = []
    for keyword in cell:
        if keyword.casefold() not in seen:
            seen.add(keyword.casefold())
            kept.append(keyword)
    return tuple(kept)


_CHECK = re.compile(r"^c([0-9a-f]{10})k([0-9a-f]{10})$")


def _edits(row: CsvRow, exported: re.Match | None) -> tuple[bool, bool] | None:
    """Whether the row's caption cell and its keywords cell differ from what was exported, by its
    ``check`` (``exported``: its match of :data:`_CHECK`); None for a row without one."""
    if exported is None:
        return None
    return (_caption_digest(row.caption) != exported[1],
            row.keywords is not None and _keywords_digest(row.keywords) != exported[2])


def _stored_since(current: StoredCaption, row: CsvRow, exported: re.Match | None) -> bool:
    """Whether ``current``, a person's caption (here or in another tool), was stored after the row
    was exported, so that the row's edit was made on another caption: by the row's check where it
    has one, else by its time captioned. A model's caption is replaced by a person's edit anyway."""
    if current.source == "automatic":
        return False
    if exported is None:
        return current.source == "human" and _changed_since(current, row)
    return _caption_digest(current.text) != exported[1]


def _changed_since(current: StoredCaption, row: CsvRow) -> bool:
    """Whether the stored caption is not the one the row was exported with, by its time captioned (a
    caption edited in another tool has none; one imgcap stores gets a new one). A row without a time
    it can read (a CSV made by hand, or a spreadsheet that rewrote the dates its own way) cannot
    tell: False. A spreadsheet that only dropped the "T" or the UTC offset still matches."""
    exported = _utc(row.captioned_at)
    if exported is None:
        return False
    return _utc(current.captioned_at or "") != exported


def _utc(text: str) -> datetime | None:
    """An ISO 8601 time as a naive UTC datetime (one without an offset is taken as UTC), or None."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _inside(photo: Path, root: Path, resolved_root: Path) -> bool:
    """Whether a photo's sidecar would land inside ``root``: no absolute path, no ``..`` out of it,
    and no symbolic link to a folder elsewhere (the photo itself may be a link: its sidecar goes
    beside the link)."""
    relative = Path(os.path.relpath(os.path.abspath(photo), os.path.abspath(root)))
    if relative.is_absolute() or relative.parts[:1] == ("..",):
        return False
    try:
        return photo.parent.resolve().is_relative_to(resolved_root)
    except (OSError, ValueError, RuntimeError):  # unreadable, a NUL in the name, a link loop: not shown inside
        return False
