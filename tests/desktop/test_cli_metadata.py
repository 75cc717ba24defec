"""What a captioning run stores (sidecars, skipped and protected photos, the CSV report), and the
CLI options for it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from imgcap_desktop.metadata.apply import (
    PhotoStatus,
    StoreOptions,
    select_photos,
    store_outcomes,
    write_report_csv,
)
from imgcap_desktop.metadata.commands import (
    add_caption_options,
    add_import_csv_command,
    run_import_csv,
    store_options,
)
from imgcap_desktop.metadata.csvio import CsvRow, read_csv, write_csv
from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from model.results import CaptionFailure, CaptionResult
from tests.desktop.conftest_metadata import Snapshot, make_photo

NOW = "2026-11-27T02:00:00+00:00"


def _result(photo: Path, text: str, score: float = -0.5) -> CaptionResult:
    words = tuple(text.split())
    attention = np.zeros((len(words), 2, 2), np.float32)
    return CaptionResult(str(photo), words, tuple(range(len(words))), score, attention)


def test_sidecars_are_written_with_provenance(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    options = StoreOptions(write_sidecars=True)

    (status,) = store_outcomes([_result(a, "a dog")], options, model_name="tiny", captioned_at=NOW)

    expected = StoredCaption("a dog", "automatic", "tiny", -0.5, NOW)
    assert status == PhotoStatus(a, "written", expected, sidecar_path(a))
    assert read_caption(a) == status.caption


def test_without_write_sidecars_nothing_is_written(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    (status,) = store_outcomes([_result(a, "a dog")], StoreOptions(), model_name="tiny")
    assert status.status == "captioned" and status.caption.text == "a dog"
    assert list(tmp_path.iterdir()) == [a]


def test_human_captions_are_kept_unless_overwrite_human(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("my dog Rex", "human"))
    before = Snapshot([sidecar_path(a)])

    (kept,) = store_outcomes([_result(a, "a dog")], StoreOptions(write_sidecars=True), model_name="tiny")
    before.assert_unchanged()
    assert kept.status == "kept_human" and kept.caption.text == "my dog Rex"

    options = StoreOptions(write_sidecars=True, overwrite_human=True)
    (replaced,) = store_outcomes([_result(a, "a dog")], options, model_name="tiny")
    assert replaced.status == "written" and read_caption(a).text == "a dog"


def test_automatic_captions_are_replaced(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("old", "automatic", "tiny", -1.0))
    (status,) = store_outcomes([_result(a, "new")], StoreOptions(write_sidecars=True), model_name="tiny")
    assert status.status == "written" and read_caption(a).text == "new"


def test_failures_and_empty_captions_are_per_photo(tmp_path):
    a, b, c = (make_photo(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    write_caption(b, StoredCaption("keep me", "automatic", "tiny", -1.0))
    sidecar_path(c).write_bytes(b"<broken")
    outcomes = [CaptionFailure(str(a), "not an image"), _result(b, ""), _result(c, "x")]

    statuses = store_outcomes(outcomes, StoreOptions(write_sidecars=True), model_name="tiny")

    assert [s.status for s in statuses] == ["failed", "failed", "failed"]
    assert "not an image" in statuses[0].message and "empty" in statuses[1].message
    assert "c.jpg.xmp" in statuses[2].message
    assert read_caption(b).text == "keep me" and sidecar_path(c).read_bytes() == b"<broken"


def test_skip_captioned_and_base_style_collisions(tmp_path):
    done, todo, x_jpg, x_png = (make_photo(tmp_path / n) for n in ("done.jpg", "todo.jpg", "x.jpg", "x.png"))
    write_caption(done, StoredCaption("already", "human"))
    options = StoreOptions(write_sidecars=True, sidecar_style="base", skip_captioned=True)

    to_caption, settled = select_photos([done, todo, x_jpg, x_png], options)

    assert to_caption == [todo]
    assert [(s.photo, s.status) for s in settled] == [(done, "skipped"), (x_jpg, "failed"), (x_png, "failed")]
    assert "x.xmp" in settled[1].message


def test_empty_caption_never_erases_and_human_is_reported_first(tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    write_caption(a, StoredCaption("old", "automatic", "tiny", -1.0))
    write_caption(b, StoredCaption("mine", "human"))

    statuses = store_outcomes([_result(a, ""), _result(b, "")], StoreOptions(write_sidecars=True), model_name="m")

    assert [s.status for s in statuses] == ["failed", "kept_human"]
    assert read_caption(a).text == "old" and read_caption(b).text == "mine"


def test_report_csv_lists_every_photo(tmp_path):
    a, b, c = (make_photo(tmp_path / n, size=(30, 20)) for n in ("a.jpg", "b.jpg", "c.jpg"))
    write_caption(c, StoredCaption("stored before", "automatic", "tiny", -2.0, NOW))
    statuses = store_outcomes(
        [_result(a, "a dog"), CaptionFailure(str(b), "broken"), CaptionFailure(str(c), "broken")],
        StoreOptions(write_sidecars=True), model_name="tiny", captioned_at=NOW,
    )  # fmt: skip

    write_report_csv(tmp_path / "out.csv", tmp_path, statuses)

    rows = [row for _, row in read_csv(tmp_path / "out.csv")]
    assert [(r.relative_path, r.caption, r.source, r.model, r.width, r.height, r.sidecar_path) for r in rows] == [
        ("a.jpg", "a dog", "automatic", "tiny", 30, 20, "a.jpg.xmp"),
        ("b.jpg", "", "", "", 30, 20, ""),
        ("c.jpg", "stored before", "automatic", "tiny", 30, 20, "c.jpg.xmp"),
    ]


# --- the command-line options, as cli.py mounts them --------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcap")
    commands = parser.add_subparsers(dest="command", required=True)
    add_caption_options(commands.add_parser("caption"))
    add_import_csv_command(commands)
    return parser


def test_caption_options_map_to_store_options():
    args = _parser().parse_args(["caption", "--write-sidecars", "--sidecar-style", "base", "--skip-captioned",
                                 "--overwrite-human", "--csv", "out.csv"])  # fmt: skip
    assert store_options(args) == StoreOptions(True, "base", True, True)
    assert args.csv == Path("out.csv")
    assert store_options(_parser().parse_args(["caption"])) == StoreOptions()


def test_import_csv_command_applies_and_reports(tmp_path, capsys):
    a = make_photo(tmp_path / "a.jpg")
    write_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "edited"), CsvRow("gone.jpg", "gone.jpg", "x")])

    status = run_import_csv(_parser().parse_args(["import-csv", str(tmp_path / "c.csv")]))

    out = capsys.readouterr().out
    assert status == 1
    assert "line 3: photo not found: gone.jpg" in out and "1 captions applied" in out
    assert read_caption(a) == StoredCaption("edited", "human", captioned_at=read_caption(a).captioned_at)


def test_import_csv_command_refuses_a_foreign_file(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("a,b\r\n1,2\r\n", encoding="utf-8")
    assert run_import_csv(_parser().parse_args(["import-csv", str(tmp_path / "c.csv")])) == 2
    assert "relative path" in capsys.readouterr().err


# --- end to end through ``imgcap`` ---------------------------------------------------------------


@pytest.fixture
def fake_engine(monkeypatch):
    """``Captioner.from_bundle`` gives the GUI tests' deterministic fake: no TensorFlow."""
    from model.captioner import Captioner
    from tests.desktop.conftest import FakeCaptioner

    monkeypatch.setattr(Captioner, "from_bundle", classmethod(lambda cls, path=None, device="auto", **options: FakeCaptioner()))


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
    write_csv(csv_file, list(rows.values()))
    assert main(["import-csv", str(csv_file)]) == 1  # broken.jpg is reported missing
    assert "photo not found: broken.jpg" in capsys.readouterr().out
    assert (read_caption(auto).text, read_caption(auto).source) == (edited, "human")

    assert main(["caption", str(folder), "--write-sidecars", "--sidecar-style", "base", "--overwrite-human"]) == 0
    assert read_caption(auto).source == read_caption(human).source == "automatic"
    assert not (folder / "b.xmp").exists()  # existing sidecars are updated, not doubled


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
