"""``imgcap caption``: output formats, exit codes and folders, with a tiny random-weight bundle."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcap_desktop.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from model.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("cli-bundle") / "tiny")


@pytest.fixture
def photos(tmp_path):
    """``top/a.jpg``, ``top/b.png``, ``top/notes.txt`` and ``top/sub/c.jpg``."""
    rng = np.random.default_rng(7)
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(top / name)
    (top / "notes.txt").write_text("not a photo")
    return top


def _run(*argv) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main(["caption", *map(str, argv)], out)
    return code, out.getvalue().splitlines()


def test_plain_output_is_path_tab_caption(bundle, photos):
    a, b = photos / "a.jpg", photos / "b.png"
    code, lines = _run(a, b, "--bundle", bundle, "--beam", 2)
    assert code == EXIT_OK
    assert len(lines) == 2
    for line, path in zip(lines, (a, b)):
        shown, caption = line.split("\t")
        assert shown == str(path)
        assert caption and all(word.isalpha() for word in caption.split())


def test_json_lines_and_a_failed_photo(bundle, photos, capsys):
    corrupt = photos / "corrupt.jpg"
    corrupt.write_bytes((photos / "a.jpg").read_bytes()[:150])
    code, lines = _run(photos / "a.jpg", corrupt, photos / "b.png", "--bundle", bundle, "--json",
                       "--beam", 3, "--batch-size", 2)

    assert code == EXIT_SOME_FAILED
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == [str(photos / "a.jpg"), str(corrupt), str(photos / "b.png")]
    good = [records[0], records[2]]
    for record in good:
        assert {"path", "caption", "words", "score", "alternatives"} <= set(record)
        assert record["caption"] == " ".join(record["words"]) and record["words"]
        assert isinstance(record["score"], float) and record["score"] <= 0
        assert len(record["alternatives"]) == 3
        assert record["alternatives"][0]["caption"] == record["caption"]
        assert {"caption", "score"} <= set(record["alternatives"][0])
        assert "error" not in record
    failed = records[1]
    assert set(failed) == {"path", "status", "error"} and failed["status"] == "failed"  # as every record has
    assert "corrupt.jpg" in failed["error"]
    assert "corrupt.jpg" in capsys.readouterr().err


def test_missing_path_still_captions_the_rest(bundle, photos, capsys):
    code, lines = _run(photos / "a.jpg", photos / "missing.jpg", "--bundle", bundle, "--beam", 1)
    assert code == EXIT_SOME_FAILED
    assert [line.split("\t")[0] for line in lines] == [str(photos / "a.jpg")]
    assert "missing.jpg" in capsys.readouterr().err


def test_folders_and_recursive(bundle, photos):
    code, lines = _run(photos, "--bundle", bundle, "--beam", 1)
    assert code == EXIT_OK
    assert sorted(line.split("\t")[0] for line in lines) == sorted([str(photos / "a.jpg"), str(photos / "b.png")])

    code, lines = _run(photos, "--recursive", "--bundle", bundle, "--beam", 1)
    assert code == EXIT_OK
    assert sorted(line.split("\t")[0] for line in lines) == sorted(
        [str(photos / "a.jpg"), str(photos / "b.png"), str(photos / "sub" / "c.jpg")])


def test_a_folder_without_photos_says_so(bundle, photos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a photo")
    code, lines = _run(empty, "--bundle", bundle)
    assert (code, lines) == (EXIT_OK, [])  # nothing failed; it used to print nothing at all
    assert f"imgcap: no photos in {empty} (imgcap reads .bmp .gif .heic" in capsys.readouterr().err

    for photo in photos.glob("*.*"):
        photo.unlink()  # top/ keeps only sub/c.jpg
    code, lines = _run(photos, "--bundle", bundle)
    assert (code, lines) == (EXIT_OK, [])
    assert capsys.readouterr().err.rstrip().endswith("; --recursive also reads the subfolders")
    code, lines = _run(photos, "--recursive", "--bundle", bundle, "--beam", 1)
    assert code == EXIT_OK and len(lines) == 1 and "no photos" not in capsys.readouterr().err


def test_csv_onto_a_photo_is_a_usage_error_before_anything_is_captioned(bundle, photos, capsys):
    photo = photos / "a.jpg"
    before = photo.read_bytes()
    code, lines = _run(photos, "--bundle", bundle, "--csv", photo)
    assert (code, lines) == (EXIT_USAGE, [])  # it used to caption, then write the CSV over the photo
    assert "--csv:" in capsys.readouterr().err and photo.read_bytes() == before


def test_ctrl_c_says_so_and_the_csv_keeps_the_photos_done(bundle, photos, monkeypatch, capsys):
    """It used to end in a 40-line KeyboardInterrupt traceback, and no CSV."""
    from imgcap_desktop.metadata.csvio import read_csv
    from model.captioner import Captioner

    caption_batches = Captioner.caption_batches

    def stopped_after_one_batch(self, *args, **kwargs):
        yield next(caption_batches(self, *args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(Captioner, "caption_batches", stopped_after_one_batch)
    code, lines = _run(photos, "--bundle", bundle, "--beam", 1, "--batch-size", 1, "--csv", photos / "out.csv")
    assert (code, len(lines)) == (130, 1)
    assert capsys.readouterr().err.strip().endswith("imgcap: interrupted; what was written stays written")
    captions = {row.relative_path: row.caption for _, row in read_csv(photos / "out.csv")}
    assert set(captions) == {"a.jpg", "b.png"} and sorted(bool(c) for c in captions.values()) == [False, True]


def test_one_photo_named_three_ways_is_captioned_once(bundle, photos, monkeypatch):
    monkeypatch.chdir(photos)
    code, lines = _run("a.jpg", photos / "a.jpg", photos / "sub" / ".." / "a.jpg", "--bundle", bundle, "--beam", 1)
    assert code == EXIT_OK and [line.split("\t")[0] for line in lines] == ["a.jpg"]  # it was captioned 3 times


def test_same_captions_as_the_engine(bundle, photos):
    from model.captioner import Captioner

    code, lines = _run(photos / "a.jpg", "--bundle", bundle, "--beam", 2, "--json")
    engine = Captioner.from_bundle(bundle, device="cpu").caption([photos / "a.jpg"], beam_size=2)[0]
    record = json.loads(lines[0])
    assert code == EXIT_OK
    assert record["words"] == list(engine.words)
    assert record["score"] == pytest.approx(engine.score, abs=1e-4)


@pytest.mark.parametrize("argv", [
    ["--beam", "0"],
    ["--beam", "-2"],
    ["--beam", "100000"],  # it used to search on until the kernel killed it for memory (22 GB)
    ["--batch-size", "0"],
    ["--beam", "three"],
    ["--device", "tpu"],
    ["--skip-captioned", "--overwrite-human"],  # the second was silently ignored
    ["--no-such-option"],
])
def test_usage_errors_exit_2(photos, argv, capsys):
    code, lines = _run(photos / "a.jpg", *argv)
    assert code == EXIT_USAGE
    assert lines == []
    assert "usage" in capsys.readouterr().err


def test_an_unknown_option_shows_its_commands_usage(photos, capsys):
    """``imgcap caption --no-such-option`` answered with the top-level usage, ``imgcap [-h] COMMAND
    ...``, which hides the options caption has."""
    assert main(["caption", str(photos / "a.jpg"), "--no-such-option"], io.StringIO()) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: imgcap caption [-h]") and "unrecognized arguments: --no-such-option" in err
    assert main(["archive", "export", "r", "--no-such-option"], io.StringIO()) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("usage: imgcap archive export [-h]")


def test_no_paths_is_a_usage_error(capsys):
    assert main(["caption"], io.StringIO()) == EXIT_USAGE
    assert main([], io.StringIO()) == EXIT_USAGE


def test_a_file_named_like_an_option_gets_a_hint(tmp_path, monkeypatch, capsys):
    # "imgcap caption -dash.jpg" only said "the following arguments are required: PATH".
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-dash.jpg").write_bytes(b"x")
    assert main(["caption", "-dash.jpg"], io.StringIO()) == EXIT_USAGE
    assert "imgcap: -dash.jpg is a file: give it as ./-dash.jpg (or after --)" in capsys.readouterr().err


def test_missing_bundle_is_a_usage_error(photos, tmp_path, capsys):
    code, lines = _run(photos / "a.jpg", "--bundle", tmp_path / "no-bundle")
    assert code == EXIT_USAGE
    assert lines == []
    assert "model bundle not found" in capsys.readouterr().err


def test_inception_weights_are_named_with_encoder_weights(bundle, photos, tmp_path, monkeypatch, capsys):
    """The message about missing InceptionV3 weights names --encoder-weights: the option exists, and
    a file named there that is not there is said so (not passed over for Keras' cache)."""
    from model import captioner
    from model.encoders import inception_weights_candidates

    def from_bundle(path, **kwargs):
        inception_weights_candidates(kwargs["encoder_weights"])  # what an InceptionV3 bundle looks up first

    monkeypatch.setattr(captioner.Captioner, "from_bundle", staticmethod(from_bundle))
    code, lines = _run(photos / "a.jpg", "--bundle", bundle, "--encoder-weights", tmp_path / "missing.h5")
    assert code == EXIT_USAGE and lines == []
    assert capsys.readouterr().err.startswith(f"imgcap: {tmp_path / 'missing.h5'}: no such file")


def test_kept_captions_are_said_to_be_kept(bundle, photos, capsys):
    """A person's caption (and, with --skip-captioned, any stored one) prints as stored, like a fresh
    result: stderr says which were kept and how to replace them (it used to say nothing)."""
    from imgcap_desktop.metadata.sidecar import StoredCaption, write_caption

    a, b = photos / "a.jpg", photos / "b.png"
    write_caption(a, StoredCaption("my own words", "human"))
    code, lines = _run(a, b, "--bundle", bundle, "--write-sidecars")
    assert code == EXIT_OK and lines[0] == f"{a}\tmy own words"
    assert capsys.readouterr().err == ("imgcap: kept 1 caption a person wrote or edited, printed as stored "
                                       "(--overwrite-human replaces them)\n")

    code, lines = _run(a, b, "--bundle", bundle, "--write-sidecars", "--skip-captioned")
    assert code == EXIT_OK and len(lines) == 2
    assert capsys.readouterr().err == ("imgcap: skipped 2 photos already captioned, printed as stored "
                                       "(--skip-captioned)\n")

    code, _ = _run(a, b, "--bundle", bundle, "--write-sidecars", "--overwrite-human")
    assert code == EXIT_OK and capsys.readouterr().err == ""


def test_failures_name_the_photo_by_its_path_so_two_of_one_name_can_be_told_apart(bundle, photos, capsys):
    """With --recursive, "imgcap: IMG_0001.jpg: corrupt ..." twice did not say which folder's."""
    for folder in (photos, photos / "sub"):
        (folder / "IMG_0001.jpg").write_bytes(b"not a photo")
    code, _ = _run(photos, "--recursive", "--bundle", bundle, "--beam", 1)
    err = capsys.readouterr().err
    assert code == EXIT_SOME_FAILED
    assert f"imgcap: {photos / 'IMG_0001.jpg'}: " in err and f"imgcap: {photos / 'sub' / 'IMG_0001.jpg'}: " in err


def test_csv_to_a_dash_or_to_a_folder_that_cannot_be_written_is_refused_before_captioning(bundle, photos,
                                                                                          monkeypatch, capsys):
    """`--csv -` wrote a file named "-", and a read-only folder was found only after every photo was
    captioned (the work lost, and the temporary file's name in the message)."""
    import tempfile

    assert _run(photos, "--bundle", bundle, "--csv", "-") == (EXIT_USAGE, [])
    assert "--csv -" in capsys.readouterr().err and not Path("-").exists()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    assert _run(photos, "--bundle", bundle, "--csv", photos / "out.csv") == (EXIT_USAGE, [])
    err = capsys.readouterr().err
    assert "cannot be written there (Read-only file system)" in err and ".tmp" not in err


def test_a_caption_its_sidecar_cannot_take_is_still_printed(bundle, photos, capsys):
    """The photo was captioned, but only the write error was printed: the caption was lost."""
    (photos / "a.jpg.xmp").mkdir()  # no sidecar can be written there
    code, lines = _run(photos / "a.jpg", "--bundle", bundle, "--beam", 1, "--write-sidecars")
    assert code == EXIT_SOME_FAILED
    assert len(lines) == 1 and lines[0].startswith(f"{photos / 'a.jpg'}\t") and lines[0].split("\t")[1]
    assert "a.jpg.xmp" in capsys.readouterr().err

    code, lines = _run(photos / "a.jpg", "--bundle", bundle, "--beam", 1, "--write-sidecars", "--json")
    (record,) = map(json.loads, lines)
    assert record["status"] == "failed" and record["caption"] and record["error"]
