"""The CLI's options for storing captions, ``import-csv``, and ``imgcap caption`` end to end with a fake engine."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from imgcap_desktop.cli import caption_policy
from imgcap_desktop.metadata.commands import add_caption_options, add_import_csv_command, run_import_csv
from imgcap_desktop.metadata.csvio import CsvRow, read_csv
from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from tests.desktop.conftest_metadata import Snapshot, edit_csv_cells, make_photo, write_hand_made_csv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcap")
    commands = parser.add_subparsers(dest="command", required=True)
    add_caption_options(commands.add_parser("caption"))
    add_import_csv_command(commands)
    return parser


def test_caption_options_map_to_the_overwrite_policy():
    args = _parser().parse_args(["caption", "--write-sidecars", "--sidecar-style", "base", "--skip-captioned",
                                 "--csv", "out.csv"])  # with --overwrite-human: a usage error (test_cli)
    assert (args.write_sidecars, args.sidecar_style, args.csv) == (True, "base", Path("out.csv"))
    assert caption_policy(args) == "skip"
    assert caption_policy(_parser().parse_args(["caption", "--write-sidecars"])) == "replace_automatic"
    assert caption_policy(_parser().parse_args(["caption", "--write-sidecars", "--overwrite-human"])) == "replace_all"
    assert caption_policy(_parser().parse_args(["caption"])) == "replace_all"  # nothing is stored anyway


def test_import_csv_command_applies_and_reports(tmp_path, capsys):
    a = make_photo(tmp_path / "a.jpg")
    write_hand_made_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "edited"), CsvRow("gone.jpg", "gone.jpg", "x")])

    status = run_import_csv(_parser().parse_args(["import-csv", str(tmp_path / "c.csv")]))

    printed = capsys.readouterr()
    assert status == 1
    assert printed.err == "imgcap: line 3: photo not found: gone.jpg\n"  # problems on stderr, as caption's
    assert printed.out.startswith("1 caption applied")
    assert read_caption(a) == StoredCaption("edited", "human", captioned_at=read_caption(a).captioned_at)


def test_import_csv_command_reports_rows_in_the_csvs_order(tmp_path, capsys):
    # Each kind of problem used to be printed apart: missing photos first, then rows outside the
    # folder, then the rest, so a person walking down the spreadsheet found them out of order.
    (tmp_path / "folder.jpg").mkdir()
    rows = [CsvRow("folder.jpg", "folder.jpg", "x"), CsvRow("../out.jpg", "out.jpg", "x"),
            CsvRow("gone.jpg", "gone.jpg", "x")]
    write_hand_made_csv(tmp_path / "c.csv", rows)

    assert run_import_csv(_parser().parse_args(["import-csv", str(tmp_path / "c.csv")])) == 1

    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["line 2", "line 3", "line 4"]
    assert lines[0].endswith("folder.jpg: not a regular file")
    assert lines[1] == f"imgcap: line 3: outside the folder {tmp_path}, not written: ../out.jpg"


def test_import_csv_command_refuses_a_foreign_file(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("a,b\r\n1,2\r\n", encoding="utf-8")
    assert run_import_csv(_parser().parse_args(["import-csv", str(tmp_path / "c.csv")])) == 2
    assert "relative path" in capsys.readouterr().err
    missing = tmp_path / "missing.csv"
    assert run_import_csv(_parser().parse_args(["import-csv", str(missing)])) == 2
    assert capsys.readouterr().err == f"imgcap import-csv: {missing}: No such file or directory\n"  # the path once
    (tmp_path / "loop").symlink_to("loop")
    write_hand_made_csv(tmp_path / "ok.csv", [CsvRow("a.jpg", "a.jpg", "a cat")])
    args = _parser().parse_args(["import-csv", str(tmp_path / "ok.csv"), "--root", str(tmp_path / "loop")])
    assert run_import_csv(args) == 2  # a --root that loops is named, not the CSV
    assert capsys.readouterr().err == f"imgcap import-csv: {tmp_path / 'loop'}: Too many levels of symbolic links\n"


# --- end to end through ``imgcap`` ---------------------------------------------------------------


@pytest.fixture
def fake_engine(monkeypatch):
    """``Captioner.from_bundle`` gives the GUI tests' deterministic fake: no TensorFlow."""
    from model.captioner import Captioner
    from tests.desktop.conftest import FakeCaptioner

    monkeypatch.setattr(Captioner, "from_bundle",
                        classmethod(lambda cls, path=None, device="auto", **options: FakeCaptioner()))


def test_cli_writes_sidecars_and_csv_keeps_human_captions_and_imports_edits(tmp_path, fake_engine, capsys):
    from imgcap_desktop.cli import main

    folder = tmp_path / "photos"
    auto, human = make_photo(folder / "a.jpg"), make_photo(folder / "b.png")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    write_caption(human, StoredCaption("my own words", "human"))
    kept = Snapshot([auto, human, sidecar_path(human)])
    csv_file = folder / "captions.csv"

    status = main(["caption", str(folder), "--write-sidecars", "--csv", str(csv_file)])

    assert status == 1  # broken.jpg failed; the others were still stored
    stored = read_caption(auto)
    assert (stored.source, stored.model) == ("automatic", "fake-model") and stored.text
    rows = {row.relative_path: row for _, row in read_csv(csv_file)}
    assert list(rows) == ["a.jpg", "b.png", "broken.jpg"]
    assert (rows["a.jpg"].caption, rows["a.jpg"].sidecar_path) == (stored.text, "a.jpg.xmp")
    assert (rows["b.png"].caption, rows["b.png"].source) == ("my own words", "human")
    assert rows["broken.jpg"].caption == ""
    kept.assert_unchanged()

    (folder / "broken.jpg").unlink()
    capsys.readouterr()
    assert main(["caption", str(folder), "--write-sidecars", "--skip-captioned"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{auto}\t{stored.text}", f"{human}\tmy own words"]

    edited = '=edited, "by hand"\nline two'
    rows["a.jpg"] = CsvRow(**{**rows["a.jpg"].__dict__, "caption": edited})
    write_hand_made_csv(csv_file, list(rows.values()))
    assert main(["import-csv", str(csv_file)]) == 0  # broken.jpg's row, gone since, has nothing to apply
    assert "broken.jpg" not in capsys.readouterr().err
    assert (read_caption(auto).text, read_caption(auto).source) == (edited, "human")

    assert main(["caption", str(folder), "--write-sidecars", "--sidecar-style", "base", "--overwrite-human"]) == 0
    assert read_caption(auto).source == read_caption(human).source == "automatic"
    assert not (folder / "b.xmp").exists()  # existing sidecars are updated, not doubled


def test_base_style_fails_only_photos_that_would_share_a_new_sidecar(tmp_path, fake_engine, capsys):
    """a.jpg and a.png each with its own a.jpg.xmp / a.png.xmp failed "would share the sidecar
    a.xmp" in base style, though their captions go into their own sidecars; and with --recursive
    that line named no folder, so it could not be told which pair it was about."""
    from imgcap_desktop.cli import main

    folder = tmp_path / "photos"
    pair = [make_photo(folder / "a.jpg"), make_photo(folder / "a.png")]
    assert main(["caption", str(folder), "--write-sidecars"]) == 0
    new_pair = [make_photo(folder / "sub" / "a.jpg"), make_photo(folder / "sub" / "a.png")]
    capsys.readouterr()

    status = main(["caption", str(folder), "--recursive", "--write-sidecars", "--sidecar-style", "base"])

    errors = capsys.readouterr().err.splitlines()
    assert status == 1 and not (folder / "a.xmp").exists() and all(sidecar_path(p).exists() for p in pair)
    assert errors == [f"imgcap: {photo}: a.jpg, a.png would share the sidecar a.xmp; use the ext style"
                      for photo in new_pair]

    sidecar_path(new_pair[0]).write_text(sidecar_path(pair[0]).read_text())  # sub/a.jpg has its own now
    status = main(["caption", str(folder / "sub"), "--write-sidecars", "--sidecar-style", "base", "--json"])
    printed = capsys.readouterr()
    assert status == 1 and printed.err.splitlines() == [  # sub/a.png alone is refused, before it is captioned
        f"imgcap: {new_pair[1]}: a.jpg, a.png would share the sidecar a.xmp; use the ext style"]
    assert '"status": "written"' in printed.out and not (folder / "sub" / "a.xmp").exists()


def test_a_shells_star_passes_sidecars_and_csvs_that_are_left_out_not_failed(tmp_path, fake_engine, capsys):
    """``imgcap caption *`` in a captioned folder exited 1, one failure for every .xmp and .csv; a
    photo with an extension imgcap does not list, captioned by name, got a sidecar that import-csv
    then refused to write ("not a photo imgcap reads")."""
    from imgcap_desktop.cli import main

    photo = make_photo(tmp_path / "a.jpg")
    scan = tmp_path / "scan.jfif"
    scan.write_bytes(photo.read_bytes())
    assert main(["caption", str(photo), str(scan), "--write-sidecars", "--csv", str(tmp_path / "c.csv")]) == 0
    capsys.readouterr()
    (tmp_path / "IMG_1.AAE").write_text("<plist/>", encoding="utf-8")  # an iPhone's edits
    (tmp_path / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    star = sorted(tmp_path.iterdir())  # IMG_1.AAE Thumbs.db a.jpg a.jpg.xmp c.csv scan.jfif scan.jfif.xmp

    assert main(["caption", *map(str, star), "--write-sidecars", "--overwrite-human"]) == 0
    err = capsys.readouterr().err
    assert "left out 5 files that imgcap does not caption (.aae .csv .db .xmp)" in err and "failed" not in err

    avif = tmp_path / "holiday.avif"  # Pillow may read it: a file given by name that is no raw is tried
    avif.write_bytes(photo.read_bytes())
    assert main(["caption", str(avif)]) == 0 and str(avif) in capsys.readouterr().out

    edit_csv_cells(tmp_path / "c.csv", {"scan.jfif": {"caption": "a scanned print"}})
    assert main(["import-csv", str(tmp_path / "c.csv")]) == 0
    assert read_caption(scan).text == "a scanned print"

    letter = tmp_path / "letter.jfif"  # captioned in base style: its sidecar is letter.xmp
    letter.write_bytes(photo.read_bytes())
    assert main(["caption", str(letter), "--write-sidecars", "--sidecar-style", "base",
                 "--csv", str(tmp_path / "b.csv")]) == 0
    edit_csv_cells(tmp_path / "b.csv", {"letter.jfif": {"caption": "a letter from grandma"}})
    assert main(["import-csv", str(tmp_path / "b.csv"), "--sidecar-style", "base"]) == 0
    assert read_caption(letter).text == "a letter from grandma" and (tmp_path / "letter.xmp").exists()

    note = tmp_path / "note.jfif"  # captioned by name, not written: the CSV holds the caption's only copy
    note.write_bytes(photo.read_bytes())
    assert main(["caption", str(note), "--csv", str(tmp_path / "n.csv")]) == 0
    assert main(["import-csv", str(tmp_path / "n.csv")]) == 0 and read_caption(note) is not None


@pytest.mark.slow
def test_cli_runs_the_real_engine_on_a_tiny_bundle(tmp_path, tiny_bundle):
    from imgcap_desktop.cli import main

    folder = tmp_path / "photos"
    photos = [make_photo(folder / "a.jpg"), make_photo(folder / "b.png")]
    write_caption(photos[1], StoredCaption("my own words", "human"))
    kept = Snapshot([*photos, sidecar_path(photos[1])])
    csv_file = tmp_path / "out.csv"

    main(["caption", str(folder), "--bundle", str(tiny_bundle), "--device", "cpu", "--write-sidecars",
          "--csv", str(csv_file)])  # fmt: skip

    # Paths are relative to the CSV's folder, which is where import-csv starts from by default.
    rows = [row for _, row in read_csv(csv_file)]
    assert [r.relative_path for r in rows] == ["photos/a.jpg", "photos/b.png"]
    assert rows[1].caption == "my own words"
    stored = read_caption(photos[0])
    assert stored.text and (stored.source, stored.model, stored.text) == ("automatic", "tiny-test", rows[0].caption)
    kept.assert_unchanged()


def test_a_failure_line_names_the_photo_once_whatever_its_name_holds():
    from imgcap_desktop.cli import _with_folder

    photo = Path("trip/Paris: day 1.jpg")
    assert _with_folder("Paris: day 1.jpg: cannot be read", photo) == "trip/Paris: day 1.jpg: cannot be read"
    assert _with_folder("Paris: day 1.JPG.XMP: read-only", photo) == "trip/Paris: day 1.JPG.XMP: read-only"
    assert _with_folder("a.jpg, a.png would share a.xmp", Path("t/a.png")) == "t/a.png: a.jpg, a.png would share a.xmp"
