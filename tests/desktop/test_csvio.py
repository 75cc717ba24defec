"""CSV export and import: columns, formula neutralisation, exact round trips, applying edits."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcap_desktop.metadata.csvio import (
    COLUMNS,
    CsvFormatError,
    CsvRow,
    format_rows,
    import_csv,
    make_row,
    neutralise,
    parse_rows,
    photo_size,
    read_csv,
    restore,
    write_csv,
)
from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from tests.desktop.conftest_metadata import (
    Snapshot,
    edit_csv_cells,
    exiftool,
    make_photo,
    needs_exiftool,
    write_hand_made_csv,
    xmp_text,
)

AUTO = StoredCaption("a dog runs", "automatic", "sat-flickr8k", -0.75, "2026-11-27T01:00:00+00:00")


def test_header_is_exactly_the_documented_columns():
    header = format_rows([]).splitlines()[0]
    assert header == (
        "relative path,file name,caption,source,model,score,width,height,sidecar path,time captioned,keywords,error,"
        "check"
    )
    assert len(COLUMNS) == 13


def test_make_row_reads_size_and_relative_paths(tmp_path):
    p = make_photo(tmp_path / "sub" / "a.jpg", size=(20, 10))
    sidecar = write_caption(p, AUTO)

    row = make_row(p, tmp_path, read_caption(p), sidecar=sidecar)

    assert row == CsvRow("sub/a.jpg", "a.jpg", "a dog runs", "automatic", "sat-flickr8k", -0.75, 20, 10,
                         "sub/a.jpg.xmp", "2026-11-27T01:00:00+00:00")  # fmt: skip


def test_size_is_as_shown_for_rotated_photos(tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show
    p = make_photo(tmp_path / "r.jpg", size=(40, 10), exif=exif.tobytes())
    assert photo_size(p) == (10, 40)


def test_uncaptioned_and_unreadable_photos_get_blank_cells(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    row = make_row(broken, tmp_path, None)
    assert (row.caption, row.source, row.score, row.width, row.height) == ("", "", None, None, None)


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2", "'-2"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=already", "''=already"),
        ("'plain", "'plain"),
        ("a = b", "a = b"),
        ("", ""),
    ],
)
def test_formula_cells_are_neutralised_reversibly(cell, safe):
    assert neutralise(cell) == safe
    assert restore(safe) == cell


@given(st.text())
def test_neutralise_is_undone_exactly(cell):
    safe = neutralise(cell)
    assert restore(safe) == cell
    assert not safe or safe[0] not in "=+-@\t\r"


def test_exported_cells_cannot_run_as_formulas(tmp_path):
    rows = [CsvRow("=HYPERLINK(x).jpg", "=HYPERLINK(x).jpg", "=cmd|' /C calc'!A0", "automatic", "@m", -1.0)]
    write_csv(tmp_path / "c.csv", rows)

    data = list(csv.reader(io.StringIO((tmp_path / "c.csv").read_text(encoding="utf-8"), newline="")))
    assert data[1][:5] == ["'=HYPERLINK(x).jpg", "'=HYPERLINK(x).jpg", "'=cmd|' /C calc'!A0", "automatic", "'@m"]
    assert data[1][5] == "-1.0"  # our own numbers stay numbers
    assert [row for _, row in read_csv(tmp_path / "c.csv")] == rows


def test_file_is_utf8_with_rfc4180_quoting(tmp_path):
    write_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", 'say "hi",\nthen ünïcode')])
    raw = (tmp_path / "c.csv").read_bytes()
    row = rb'a\.jpg,a\.jpg,"say ""hi"",\nthen \xc3\xbcn\xc3\xafcode",,,,,,,,,,c[0-9a-f]{10}k[0-9a-f]{10}'
    assert re.search(rb"\r\n" + row + rb"\r\n\Z", raw)
    assert not raw.startswith(b"\xef\xbb\xbf")


def test_unwritable_csv_raises_oserror_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    from imgcap_desktop.metadata import sidecar

    write_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "old")])
    before = (tmp_path / "c.csv").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sidecar.os, "fsync", full)
    with pytest.raises(OSError):
        write_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "new")])
    assert (tmp_path / "c.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]


def test_a_csv_is_never_written_over_a_photo_a_sidecar_or_a_special_file(tmp_path):
    """``--csv photo.jpg`` used to replace the photo with CSV text, and ``--csv /dev/null`` (as root)
    the device with a regular file."""
    import os

    rows = [CsvRow("a.jpg", "a.jpg", "a caption")]
    photo = make_photo(tmp_path / "a.jpg")
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>\n')  # another tool's sidecar
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    (tmp_path / "folder.csv").mkdir()
    raw = tmp_path / "IMG_0001.CR2"
    raw.write_bytes(b"II*\x00 a raw's bytes")
    scan = tmp_path / "scan.jfif"  # a JPEG under a name imgcap does not list, captioned by name
    scan.write_bytes(photo.read_bytes())
    kept = {p: p.read_bytes() for p in (photo, sidecar, raw, scan)}
    for target, message in ((photo, "named like a photo or a sidecar"), (sidecar, "named like a photo or a sidecar"),
                            (tmp_path / "new.PNG", "named like a photo or a sidecar"),
                            (raw, "named like a photo or a sidecar"), (scan, "is a photo"),  # they were replaced
                            (fifo, "is not a regular file"), (tmp_path / "folder.csv", "is a folder"),
                            (tmp_path / "missing" / "c.csv", "does not exist")):
        with pytest.raises(OSError, match=message):
            write_csv(target, rows)
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert fifo.is_fifo() and not (tmp_path / "new.PNG").exists()

    real = tmp_path / "real.csv"
    (tmp_path / "link.csv").symlink_to(real)
    write_csv(tmp_path / "link.csv", rows)  # written through: the link stays a link
    assert (tmp_path / "link.csv").is_symlink() and "a caption" in real.read_text()


def test_excel_bom_is_optional_and_accepted_on_import(tmp_path):
    rows = [CsvRow("a.jpg", "a.jpg", "x")]
    write_csv(tmp_path / "c.csv", rows, excel_bom=True)
    assert (tmp_path / "c.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert [row for _, row in read_csv(tmp_path / "c.csv")] == rows


caption_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


# A keyword: no separator, no surrounding space (the cell is split on ";" and stripped).
keyword_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                                     blacklist_characters=";"), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.builds(
            CsvRow,
            relative_path=caption_text,
            file_name=caption_text,
            caption=caption_text,
            source=st.sampled_from(["automatic", "human", "embedded", ""]),
            model=caption_text,
            score=st.none() | st.floats(allow_nan=False),
            width=st.none() | st.integers(0, 100_000),
            height=st.none() | st.integers(0, 100_000),
            sidecar_path=caption_text,
            captioned_at=caption_text,
            keywords=st.lists(keyword_text, max_size=4, unique=True).map(tuple),
        ),
        max_size=4,
    )
)
def test_any_rows_round_trip_exactly_through_csv_text(rows):
    rows = [r for r in rows if any(getattr(r, name) not in ("", None) for name in CsvRow.__dataclass_fields__)]
    assert [row for _, row in parse_rows(format_rows(rows))] == rows


def test_spreadsheet_may_reorder_and_add_columns():
    text = "caption,notes,relative path\r\n=edited,mine,a.jpg\r\n"
    ((line, row),) = parse_rows(text)
    assert (line, row.relative_path, row.caption) == (2, "a.jpg", "=edited")


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("file,text\r\na,b\r\n", "no 'relative path' or 'caption' column"),
    # a quote left open used to swallow every row after it into one caption, silently
    ('relative path,caption\r\na.jpg,"An astronaut\r\nb.jpg,A cat\r\n', "line 3: unexpected end of data"),
])
def test_foreign_csv_is_refused_with_a_message(text, message):
    with pytest.raises(CsvFormatError, match=message):
        parse_rows(text)


def test_numbers_a_spreadsheet_wrote_its_own_way_do_not_stop_an_import():
    """score, width and height are for the record: "-3,27" or "451.0" used to refuse the whole file."""
    ((_, row),) = parse_rows("relative path,caption,score,width,height\r\na.jpg,x,\"-3,27\",451.0,12\r\n")
    assert (row.caption, row.score, row.width, row.height) == ("x", None, None, 12)


# --- importing edits back -----------------------------------------------------------------------


def _export(root: Path, photos: list[Path]) -> Path:
    rows = [make_row(p, root, read_caption(p), sidecar=sidecar_path(p)) for p in photos]
    write_csv(root / "captions.csv", rows)
    return root / "captions.csv"


def _edit(csv_file: Path, captions: dict[str, str]) -> None:
    edit_csv_cells(csv_file, {path: {"caption": text} for path, text in captions.items()})


def test_import_applies_edited_captions_as_human(tmp_path):
    photos = [make_photo(tmp_path / n) for n in ("a.jpg", "b.jpg", "sub/c.png")]
    for p in photos:
        write_caption(p, AUTO)
    csv_file = _export(tmp_path, photos)
    _edit(csv_file, {"a.jpg": '=a "new"\ncaption', "sub/c.png": "a cat"})
    untouched = Snapshot([sidecar_path(photos[1]), *photos])

    report = import_csv(csv_file)

    assert report.applied == [photos[0], photos[2]]
    assert report.unchanged == [photos[1]]
    assert report.missing == [] and report.errors == []
    first = read_caption(photos[0])
    assert (first.text, first.source, first.model) == ('=a "new"\ncaption', "human", None)
    assert read_caption(photos[2]).text == "a cat"
    untouched.assert_unchanged()


def test_a_caption_typed_in_another_tool_after_the_export_is_not_undone_by_the_csv(tmp_path):
    """The CSV's rows were exported before Jane typed her caption in another tool: importing the CSV
    used to put the old caption back over hers (as a person's), row unedited or not."""
    photos = [make_photo(tmp_path / n) for n in ("a.jpg", "b.jpg")]
    for p in photos:
        write_caption(p, AUTO)
    csv_file = _export(tmp_path, photos)
    sidecar = sidecar_path(photos[0])
    sidecar.write_text(sidecar.read_text(encoding="utf-8").replace(AUTO.text, "Chelsea, by Jane"), encoding="utf-8")
    assert read_caption(photos[0]).source == "human"  # another tool's edit
    _edit(csv_file, {"b.jpg": "a dog on the beach"})
    jane = Snapshot([sidecar])

    report = import_csv(csv_file)  # a.jpg's row as exported: no edit of Jane's caption

    jane.assert_unchanged()
    assert report.applied == [photos[1]] and read_caption(photos[1]).text == "a dog on the beach"
    assert report.unchanged == [photos[0]] and report.errors == []

    _edit(csv_file, {"a.jpg": "a cat on a sofa"})  # an edit of the caption she has since replaced
    report = import_csv(csv_file)
    jane.assert_unchanged()
    assert report.errors == [(photos[0], "line 2: a.jpg: its sidecar holds a person's caption this row was not "
                                         "exported with; left as it is (export again to edit it)")]

    # Exported again, the person's captions are the CSV's to edit, and an edit is applied, also where
    # a spreadsheet wrote the times its own way ("2026-11-30 13:04:18" for "2026-11-30T13:04:18+00:00").
    csv_file = _export(tmp_path, photos)
    rows = [row for _, row in read_csv(csv_file)]
    write_csv(csv_file, [CsvRow(**{**row.__dict__, "captioned_at": row.captioned_at.replace("T", " ")[:19]})
                         for row in rows])
    _edit(csv_file, {"a.jpg": "Chelsea the cat, by Jane", "b.jpg": "a dog on a beach"})
    report = import_csv(csv_file)
    assert report.applied == photos and report.errors == []
    assert [read_caption(p).text for p in photos] == ["Chelsea the cat, by Jane", "a dog on a beach"]


def test_blank_or_padded_cells_are_no_edit_and_rows_that_are_no_photo_get_no_sidecar(tmp_path):
    """A cell of spaces used to become a blank human caption, a space a spreadsheet added turned the
    model's caption into a person's, and a row naming notes.txt made notes.txt.xmp."""
    photos = [make_photo(tmp_path / n) for n in ("a.jpg", "b.jpg")]
    for p in photos:
        write_caption(p, AUTO)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    csv_file = _export(tmp_path, photos)
    rows = [row for _, row in read_csv(csv_file)]
    write_csv(csv_file, [CsvRow(**{**rows[0].__dict__, "caption": "   "}),
                         CsvRow(**{**rows[1].__dict__, "caption": f" {AUTO.text} "}),
                         CsvRow("notes.txt", "notes.txt", "a caption")])
    untouched = Snapshot([*map(sidecar_path, photos), *photos, notes])

    report = import_csv(csv_file)

    assert report.applied == [] and report.unchanged == photos
    assert [(p, m) for p, m in report.errors] == [(notes, "line 4: notes.txt: not a photo imgcap reads; "
                                                          "no sidecar written")]
    assert not (tmp_path / "notes.txt.xmp").exists()
    untouched.assert_unchanged()


@settings(max_examples=25, deadline=None)
@given(text=xmp_text)
def test_any_caption_round_trips_through_csv_into_the_sidecar(tmp_path_factory, text):
    root = tmp_path_factory.mktemp("rt")
    p = make_photo(root / "a.jpg", size=(4, 4))
    csv_file = _export(root, [p])
    _edit(csv_file, {"a.jpg": text})

    import_csv(csv_file)

    stored = read_caption(p)  # the cell's text, less the spaces around it, its line ends LF; a blank cell: nothing
    assert (stored.text if stored else "") == text.replace("\r\n", "\n").replace("\r", "\n").strip()


def test_missing_photos_and_escapes_are_reported_not_written(tmp_path):
    make_photo(tmp_path / "a.jpg")
    outside = make_photo(tmp_path.parent / f"{tmp_path.name}-outside.jpg")
    rows = [
        CsvRow("a.jpg", "a.jpg", "kept"),
        CsvRow("gone.jpg", "gone.jpg", "x"),
        CsvRow(f"../{outside.name}", outside.name, "x"),
        CsvRow(str(outside), outside.name, "x"),
    ]
    write_hand_made_csv(tmp_path / "c.csv", rows)

    report = import_csv(tmp_path / "c.csv")

    assert report.missing == [(3, "gone.jpg")]
    assert report.outside == [(4, f"../{outside.name}"), (5, str(outside))]
    assert not sidecar_path(outside).exists()
    assert read_caption(tmp_path / "a.jpg").text == "kept"


def test_import_reports_a_broken_sidecar_and_goes_on(tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    sidecar_path(a).write_bytes(b"<not xml")
    write_hand_made_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "x"), CsvRow("b.jpg", "b.jpg", "y")])

    report = import_csv(tmp_path / "c.csv")

    assert [p for p, _ in report.errors] == [a]
    assert report.errors[0][1].startswith("line 2: a.jpg: a.jpg.xmp: ")  # which row, which photo: names repeat
    assert sidecar_path(a).read_bytes() == b"<not xml"
    assert report.applied == [b]
    c = make_photo(tmp_path / "c.jpg")
    sidecar_path(c).symlink_to(tmp_path / "elsewhere.xmp")
    write_hand_made_csv(tmp_path / "d.csv", [CsvRow("c.jpg", "c.jpg", "x"), CsvRow("", "", "y")])
    report = import_csv(tmp_path / "d.csv")
    assert [m for _, m in report.errors] == [  # the photo named once; a row without a path said so
        "line 2: c.jpg: c.jpg.xmp is a symbolic link; imgcap does not write through links (left as it is)",
        "line 3: the row names no photo (its relative path cell is empty)"]


def test_import_with_another_root_and_base_style(tmp_path):
    root = tmp_path / "photos"
    p = make_photo(root / "a.jpg")
    write_hand_made_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "x")])

    report = import_csv(tmp_path / "c.csv", root, style="base")

    assert report.applied == [p] and (root / "a.xmp").is_file()


@pytest.mark.parametrize(("exported", "readable", "changed"), [
    ("2026-11-30T13:04:18+00:00", True, False),
    ("2026-11-30 13:04:18", True, False),  # a spreadsheet dropped the "T" and the offset
    ("2026-11-30T14:04:18+01:00", True, False),  # the same moment
    ("2026-11-29T09:00:00+00:00", True, True),
    ("2026-11-29 09:00:00", True, True),
    ("", False, False),  # a CSV made by hand: cannot tell
    ("30/11/2026 13:04", False, False),  # a date written a spreadsheet's own way: cannot tell
])
def test_a_rows_time_captioned_tells_whether_a_persons_caption_changed_since(exported, readable, changed):
    from imgcap_desktop.metadata.csvio import _changed_since

    row = CsvRow("a.jpg", "a.jpg", "x", captioned_at=exported)
    assert _changed_since(StoredCaption("by imgcap", "human", captioned_at="2026-11-30T13:04:18+00:00"), row) is changed
    assert _changed_since(StoredCaption("typed in another tool", "human"), row) is readable  # it has no time


@needs_exiftool
def test_a_keywords_only_edit_of_an_embedded_caption_stores_it_as_a_persons(tmp_path):
    """An embedded caption cannot stay "embedded" in a sidecar: a keywords-only row stores its text
    as a person's, with the keywords (the caption's source must never reach the writer as is)."""
    from imgcap_desktop.metadata.csvio import import_csv

    photo = make_photo(tmp_path / "e.jpg")
    exiftool("-q", "-overwrite_original", "-XMP-dc:Description=from the camera", photo)
    (tmp_path / "c.csv").write_text("relative path,caption,keywords\r\ne.jpg,from the camera,beach\r\n",
                                    encoding="utf-8")
    report = import_csv(tmp_path / "c.csv")
    assert report.applied == [photo] and report.errors == []
    stored = read_caption(photo, embedded=False)
    assert (stored.text, stored.source, stored.keywords) == ("from the camera", "human", ("beach",))


def test_a_keyword_another_tool_has_is_no_edit_and_case_twins_are_one(tmp_path):
    """A keywords cell naming another tool's keyword ("pet", or "cat" beside its "Cat") was applied
    on every import, rewriting the sidecar with nothing changed; "whiskers; Whiskers" stored both."""
    from imgcap_desktop.metadata.csvio import import_csv

    photo = make_photo(tmp_path / "p.jpg")
    sidecar_path(photo).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
        "<rdf:li>Cat</rdf:li><rdf:li>pet</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>",
        encoding="utf-8")
    write_caption(photo, StoredCaption("a cat", "automatic", "m", -1.0, None, ("sofa",)))
    (tmp_path / "c.csv").write_text("relative path,caption,keywords\r\np.jpg,a cat,sofa; cat; pet\r\n",
                                    encoding="utf-8")
    report = import_csv(tmp_path / "c.csv")
    assert report.unchanged == [photo] and report.applied == []
    (tmp_path / "c.csv").write_text("relative path,caption,keywords\r\np.jpg,a cat,sofa; whiskers; Whiskers\r\n",
                                    encoding="utf-8")
    assert import_csv(tmp_path / "c.csv").applied == [photo]
    assert read_caption(photo).keywords == ("sofa", "whiskers")
    assert import_csv(tmp_path / "c.csv").unchanged == [photo]


# --- what a tester found importing CSVs (twenty-fourth session) ---------------------------------


def _sidecar_by_another_tool(photo: Path, description: str, subjects: tuple[str, ...] = ()) -> None:
    bag = "".join(f"<rdf:li>{s}</rdf:li>" for s in subjects)
    sidecar_path(photo).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt></dc:description>'
        + (f"<dc:subject><rdf:Bag>{bag}</rdf:Bag></dc:subject>" if subjects else "")
        + "</rdf:Description></rdf:RDF></x:xmpmeta>",
        encoding="utf-8",
    )


def test_an_unedited_row_never_undoes_a_caption_another_tool_wrote_after_the_export(tmp_path):
    """Another tool's caption has no time captioned, so the row's time could not tell: the unedited
    row put the old caption back over the newer one, as a person's, and reported it as applied."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    _sidecar_by_another_tool(a, "Old caption typed in digiKam")
    write_caption(b, AUTO)
    csv_file = _export(tmp_path, [a, b])
    _sidecar_by_another_tool(a, "NEW caption a person typed later")
    _edit(csv_file, {"b.jpg": "a dog on the sand"})
    newer = Snapshot([sidecar_path(a)])

    report = import_csv(csv_file)

    newer.assert_unchanged()
    assert report.applied == [b] and report.unchanged == [a] and report.errors == []

    _edit(csv_file, {"a.jpg": "an edit of the old caption"})  # edited: reported, still not written
    report = import_csv(csv_file)
    newer.assert_unchanged()
    assert [p for p, _ in report.errors] == [a] and "not exported with" in report.errors[0][1]


def test_an_unedited_row_never_replaces_a_newer_model_caption(tmp_path):
    """A later run's caption used to be replaced by the row's older one, marked as a person's."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, AUTO)
    csv_file = _export(tmp_path, [a])
    later = StoredCaption("a dog runs on grass", "automatic", "sat-flickr8k", -0.5, "2026-11-28T01:00:00+00:00")
    write_caption(a, later)
    before = Snapshot([sidecar_path(a)])

    report = import_csv(csv_file)

    before.assert_unchanged()
    assert report.unchanged == [a] and read_caption(a).source == "automatic"

    _edit(csv_file, {"a.jpg": "my dog Rex"})  # a person's edit wins over a model's caption
    assert import_csv(csv_file).applied == [a]
    assert (read_caption(a).text, read_caption(a).source) == ("my dog Rex", "human")


def test_an_export_without_keywords_imports_without_touching_the_stored_ones(tmp_path):
    """`caption --no-keywords --csv` wrote an empty keywords cell, and importing that CSV unedited
    removed the stored keywords and recorded them as rejected."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption(AUTO.text, "automatic", "m", -1.0, AUTO.captioned_at, ("cat",)))
    stored = read_caption(a)
    write_csv(tmp_path / "c.csv", [make_row(a, tmp_path, replace(stored, keywords=None))])
    before = Snapshot([sidecar_path(a)])

    report = import_csv(tmp_path / "c.csv")

    before.assert_unchanged()
    assert report.unchanged == [a] and read_caption(a).keywords == ("cat",)


def test_export_then_import_is_no_edit_when_another_tool_has_our_keyword_in_another_case(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption(AUTO.text, "automatic", "m", -1.0, AUTO.captioned_at, ("cat",)))
    sidecar = sidecar_path(a)
    sidecar.write_text(sidecar.read_text(encoding="utf-8").replace("<rdf:li>cat</rdf:li>",
                                                                   "<rdf:li>cat</rdf:li><rdf:li>Cat</rdf:li>"),
                       encoding="utf-8")
    csv_file = _export(tmp_path, [a])
    before = Snapshot([sidecar])

    report = import_csv(csv_file)

    before.assert_unchanged()
    assert report.unchanged == [a] and report.applied == []


def test_a_row_cut_short_before_its_keywords_leaves_them_alone(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption(AUTO.text, "automatic", "m", -1.0, AUTO.captioned_at, ("cat",)))
    (tmp_path / "c.csv").write_text("relative path,file name,caption,keywords\r\na.jpg,a.jpg,new words\r\n",
                                    encoding="utf-8")

    assert import_csv(tmp_path / "c.csv").applied == [a]
    assert (read_caption(a).text, read_caption(a).keywords) == ("new words", ("cat",))


def test_a_caption_longer_than_the_csv_modules_cell_limit_round_trips(tmp_path):
    """One caption over 128 KiB made the whole CSV refused ("field larger than field limit")."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    write_caption(a, replace(AUTO, text="x" * 140_000))
    write_caption(b, AUTO)
    csv_file = _export(tmp_path, [a, b])
    _edit(csv_file, {"b.jpg": "a dog on the sand"})

    report = import_csv(csv_file)

    assert report.applied == [b] and report.unchanged == [a]
    assert [row.caption for _, row in read_csv(csv_file)][0] == "x" * 140_000


@pytest.mark.parametrize(("delimiter", "encoding"), [(";", "utf-8-sig"), ("\t", "utf-8"), ("\t", "utf-16")])
def test_csvs_that_excel_saves_in_other_layouts_are_read(tmp_path, delimiter, encoding):
    """European Excel's "CSV UTF-8" (semicolons), tab-separated text and Excel's "Unicode Text"
    (UTF-16) were refused as having "no 'relative path' or 'caption' column"."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption(AUTO.text, "automatic", "m", -1.0, AUTO.captioned_at, ("cat",)))
    table = list(csv.reader(io.StringIO(format_rows([make_row(a, tmp_path, read_caption(a))]), newline="")))
    table[1][COLUMNS.index("caption")] = "a cat; on a sofa"
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(table)
    (tmp_path / "c.csv").write_bytes(buffer.getvalue().encode(encoding))

    report = import_csv(tmp_path / "c.csv")

    assert report.applied == [a]
    assert (read_caption(a).text, read_caption(a).keywords) == ("a cat; on a sofa", ("cat",))


def test_rows_of_captions_never_stored_are_written_with_their_keywords_edited_or_not(tmp_path):
    """`caption --csv` without sidecars, reviewed in a spreadsheet: an edited caption lost the row's
    keywords, and a row whose keywords alone were edited was refused with "its caption was taken
    out", though none had ever been stored."""
    a, b, c = (make_photo(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    rows = [make_row(p, tmp_path, StoredCaption(f"caption {p.stem}", "automatic", "m", -0.5, AUTO.captioned_at,
                                                (f"kw{p.stem}",))) for p in (a, b, c)]
    write_csv(tmp_path / "c.csv", rows)
    edit_csv_cells(tmp_path / "c.csv", {"a.jpg": {"caption": "a cat on a sofa"}, "b.jpg": {"keywords": "kwb; mug"}})

    report = import_csv(tmp_path / "c.csv")

    assert report.applied == [a, b, c] and report.errors == []
    assert (read_caption(a).text, read_caption(a).source, read_caption(a).keywords) == ("a cat on a sofa", "human",
                                                                                        ("kwa",))
    assert read_caption(b).keywords == ("kwb", "mug")
    assert (read_caption(c).source, read_caption(c).model, read_caption(c).keywords) == ("automatic", "m", ("kwc",))


def test_a_keyword_edit_made_on_keywords_stored_since_is_left_out_and_reported(tmp_path):
    """A later run's keyword ("sofa") was removed by the row's edit and recorded as rejected, though
    the person never saw it; two rows of one photo: the second's keywords won silently."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, replace(AUTO, keywords=("cat",)))
    csv_file = _export(tmp_path, [a])
    write_caption(a, replace(AUTO, keywords=("cat", "sofa")))  # a later run
    edit_csv_cells(csv_file, {"a.jpg": {"keywords": "cat; kitten"}})
    stored = Snapshot([sidecar_path(a)])

    report = import_csv(csv_file)

    stored.assert_unchanged()
    assert report.applied == [] and [p for p, _ in report.errors] == [a]
    assert "keywords changed after the CSV was written" in report.errors[0][1]


def test_a_damaged_check_cell_or_a_users_own_check_column_never_turns_the_protection_off(tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    for p in (a, b):
        write_caption(p, AUTO)
    csv_file = _export(tmp_path, [a, b])
    for p in (a, b):
        write_caption(p, replace(AUTO, text="a newer caption from a later run"))
    stored = Snapshot([sidecar_path(a), sidecar_path(b)])
    header, *rows = list(csv.reader(io.StringIO(csv_file.read_text(encoding="utf-8"), newline="")))

    def write(table):
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator="\r\n").writerows(table)
        csv_file.write_text(buffer.getvalue(), encoding="utf-8")

    for table in ([["check", *header], *(["done", *row] for row in rows)],  # the user's own, first
                  [[*header, "Check"], [*rows[0], "ok"], [*rows[1], ""]]):  # or last, as spreadsheets add one
        write(table)
        assert import_csv(csv_file).unchanged == [a, b]
    write([header, rows[0], [*rows[1][:-1], rows[1][-1][:-1]]])  # a spreadsheet cut b's check short
    report = import_csv(csv_file)
    assert report.applied == [] and [p for p, _ in report.errors] == [b]
    assert "check cell was changed" in report.errors[0][1]
    stored.assert_unchanged()


def test_keywords_stored_in_another_order_are_no_change_since_the_export(tmp_path):
    """The app exports its keywords in its own order and the sidecar keeps the merge's: the check's
    keywords part differed, and every keyword edit was refused, exported again or not."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, replace(AUTO, keywords=("tabby", "grass", "dog")))
    write_csv(tmp_path / "c.csv", [make_row(a, tmp_path, replace(read_caption(a), keywords=("dog", "tabby",
                                                                                            "grass")))])
    edit_csv_cells(tmp_path / "c.csv", {"a.jpg": {"keywords": "dog; tabby"}})

    report = import_csv(tmp_path / "c.csv")

    assert report.applied == [a] and report.errors == []
    assert read_caption(a).keywords == ("tabby", "dog")


@needs_exiftool
def test_an_unedited_row_does_not_bring_back_a_caption_taken_out_in_another_program(tmp_path):
    """A caption written, exported, then deleted in another program came back, as "applied", from
    the CSV imported again untouched."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    write_caption(a, AUTO)
    csv_file = _export(tmp_path, [a, b])
    exiftool("-q", "-overwrite_original", "-XMP-dc:Description=", sidecar_path(a))
    assert read_caption(a) is None
    untouched = Snapshot([sidecar_path(a)])

    report = import_csv(csv_file)

    untouched.assert_unchanged()
    assert report.applied == [] and report.errors == [] and a in report.unchanged
    _edit(csv_file, {"a.jpg": "a dog runs on the sand"})  # an edit of the row is a person's caption
    assert import_csv(csv_file).applied == [a] and read_caption(a).text == "a dog runs on the sand"


def test_keywords_edited_in_a_row_with_its_caption_cell_cleared(tmp_path):
    """The keywords of a row whose caption cell was blank were dropped without a word; a row without
    a caption anywhere says why its keywords are left out."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    write_caption(a, replace(AUTO, keywords=("dog",)))
    csv_file = _export(tmp_path, [a, b])
    edit_csv_cells(csv_file, {"a.jpg": {"caption": "", "keywords": "dog; beach"},
                              "b.jpg": {"keywords": "sand"}})

    report = import_csv(csv_file)

    assert report.applied == [a] and read_caption(a).text == AUTO.text  # a cleared cell deletes nothing
    assert read_caption(a).keywords == ("dog", "beach")
    assert [(p, m) for p, m in report.errors] == [(b, "line 3: b.jpg: keywords edited in a row without a caption; "
                                                      "left out (keywords go with a caption: type one too)")]


def test_an_unedited_row_of_a_photo_not_there_is_no_error(tmp_path):
    """A CSV's own row of a broken link (blank caption, "broken link" in its error cell) made the
    untouched CSV's import fail with "photo not found"."""
    make_photo(tmp_path / "a.jpg")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "on-a-drive-not-mounted.jpg")
    csv_file = _export(tmp_path, [tmp_path / "a.jpg"])
    rows = [row for _, row in read_csv(csv_file)]
    write_csv(csv_file, [*rows, CsvRow("link.jpg", "link.jpg", error="broken link")])
    report = import_csv(csv_file)
    assert report.missing == [] and report.errors == [] and len(report.unchanged) == 2


def test_line_ends_a_spreadsheet_changed_inside_cells_are_no_edit(tmp_path):
    """A multi-line caption whose cell came back with CRLF (a spreadsheet's or an editor's line
    ends) counted as edited: CR characters went into the sidecar, as a person's caption."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    write_caption(a, StoredCaption("a cat\non a sofa", "human"))
    write_caption(b, AUTO)
    csv_file = _export(tmp_path, [a, b])
    raw = csv_file.read_bytes()
    csv_file.write_bytes(raw.replace(b"a cat\non a sofa", b"a cat\r\non a sofa"))
    untouched = Snapshot([sidecar_path(a), sidecar_path(b)])

    report = import_csv(csv_file)

    untouched.assert_unchanged()
    assert report.applied == [] and report.unchanged == [a, b]
    _edit(csv_file, {"a.jpg": "a cat\r\non a red sofa"})  # an edit: stored with the line end as the app's
    assert import_csv(csv_file).applied == [a] and read_caption(a).text == "a cat\non a red sofa"


def test_a_rows_line_is_where_it_starts_when_a_caption_above_holds_line_breaks(tmp_path):
    """The line said for a row was the last physical line of its record: after a multi-line caption,
    every later row was off."""
    make_photo(tmp_path / "a.jpg")
    b = make_photo(tmp_path / "b.jpg")
    sidecar_path(b).write_bytes(b"<not xml")
    write_hand_made_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "two\nlines\nhere"),
                                             CsvRow("b.jpg", "b.jpg", "x")])
    assert [line for line, _ in read_csv(tmp_path / "c.csv")] == [2, 5]
    assert import_csv(tmp_path / "c.csv").errors[0][1].startswith("line 5: b.jpg: ")


@pytest.mark.parametrize("bad, problem", [
    ("x" * 300 + ".jpg", "cannot be looked at (File name too long)"),  # a mistyped row
    ("sub\0/x.jpg", "outside the folder"),  # a NUL in a folder's name
    ("loop/x.jpg", "outside the folder"),  # loop -> loop, as some sync tools leave behind
])
def test_a_row_whose_path_cannot_be_looked_at_is_reported_and_the_rows_after_it_applied(tmp_path, bad, problem):
    """One such row stopped the whole import, the CSV blamed ("out.csv: File name too long"), or
    crashed it (ValueError: embedded null byte; RuntimeError: Symlink loop); rows after it were not
    applied, and rows before it were written but never reported."""
    (tmp_path / "loop").symlink_to("loop")
    photos = [make_photo(tmp_path / name) for name in ("a.jpg", "b.jpg")]
    for photo in photos:
        write_caption(photo, AUTO)
    csv_file = _export(tmp_path, photos)
    rows = [row for _, row in read_csv(csv_file)]
    write_csv(csv_file, [rows[0], CsvRow(bad, Path(bad).name, "a caption"), rows[1]])
    _edit(csv_file, {"a.jpg": "a.jpg edited", "b.jpg": "b.jpg edited"})
    report = import_csv(csv_file)
    assert report.applied == photos and [read_caption(p).text for p in photos] == ["a.jpg edited", "b.jpg edited"]
    assert len(report.problems) == 1 and report.problems[0].startswith("line 3: ") and problem in report.problems[0]
    with pytest.raises(OSError, match="Too many levels of symbolic links"):  # a --root that loops: said, as OSError
        import_csv(csv_file, root=tmp_path / "loop")


@pytest.mark.parametrize("cell", ["caption", "keywords"])
def test_a_caption_another_program_writes_while_the_csv_is_imported_is_kept(tmp_path, monkeypatch, cell):
    """The import decided on the sidecar it read, and wrote over one another program (digiKam, a
    sync client) wrote a moment later: "typed in digiKam" lost, the row reported as applied."""
    import imgcap_desktop.metadata.csvio as csvio

    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, replace(AUTO, keywords=("dog",)))
    csv_file = _export(tmp_path, [a])
    edited = {"caption": "a dog runs fast"} if cell == "caption" else {"keywords": "dog; grass"}
    edit_csv_cells(csv_file, {"a.jpg": edited})
    real = csvio.read_caption

    def read_then_another_program_writes(photo, *args, **kwargs):
        found = real(photo, *args, **kwargs)
        write_caption(photo, StoredCaption("typed in digiKam", "human"))
        return found

    monkeypatch.setattr(csvio, "read_caption", read_then_another_program_writes)
    report = import_csv(csv_file)
    assert read_caption(a).text == "typed in digiKam" and report.applied == []
    assert report.problems == ["line 2: a.jpg: another program wrote its caption while the CSV was imported; "
                               "left as it is (export again to edit it)"]
