"""Hostile input for the CLI: FIFOs, long and non-UTF-8 names, symbolic links that lead outside,
library noise on stdout, embedded captions, HEIC, stale temporary files. Nothing may hang, print a
traceback, abort the batch or write outside the folder the user chose."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from imgcap_desktop.metadata.csvio import read_csv
from imgcap_desktop.metadata.sidecar import SidecarError, StoredCaption, read_caption, sidecar_path, write_caption
from tests.desktop.conftest_metadata import Snapshot, make_photo, refuse_listing, write_hand_made_csv

REPO = Path(__file__).resolve().parents[2]
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file system features")


def run_cli(*args, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in its own process with the stand-in engine; a hang fails the test instead of blocking it."""
    return subprocess.run(
        [sys.executable, "-m", "tests.hostile.fake_cli", *map(str, args)],
        cwd=REPO, capture_output=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture
def engine(monkeypatch):
    from model.captioner import Captioner
    from tests.hostile.fake_cli import StandInCaptioner

    monkeypatch.setattr(Captioner, "from_bundle",
                        classmethod(lambda cls, path=None, device="auto", **options: StandInCaptioner()))


def cli(*args) -> int:
    from imgcap_desktop.cli import main

    return main([str(a) for a in args])


# --- FIFOs ----------------------------------------------------------------------------------------


@POSIX
def test_fifo_named_like_a_photo_is_reported_and_the_batch_goes_on(tmp_path):
    good = make_photo(tmp_path / "good.jpg")
    os.mkfifo(tmp_path / "y.jpg")
    csv_file = tmp_path / "out.csv"

    done = run_cli("caption", tmp_path / "y.jpg", good, "--csv", csv_file, "--write-sidecars")

    assert done.returncode == 1
    assert "y.jpg: not a regular file" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    assert [row.relative_path for _, row in read_csv(csv_file)] == ["good.jpg"]
    assert read_caption(good).text == "a cat on a sofa"

    scanned = run_cli("caption", tmp_path, "--csv", csv_file)
    assert scanned.returncode == 0  # a folder scan skips what is not a regular file
    assert scanned.stdout.decode().count("\n") == 1


@POSIX
def test_fifo_named_like_a_sidecar_is_reported_not_read(tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    other = make_photo(tmp_path / "q.jpg")
    os.mkfifo(tmp_path / "p.jpg.xmp")

    done = run_cli("caption", tmp_path, "--write-sidecars")
    assert done.returncode == 1
    assert "p.jpg.xmp is not a regular file" in done.stderr.decode()
    assert read_caption(other).text == "a cat on a sofa"

    (tmp_path / "c.csv").write_text("relative path,caption\r\np.jpg,edited\r\nq.jpg,edited too\r\n", encoding="utf-8")
    imported = run_cli("import-csv", tmp_path / "c.csv")
    assert imported.returncode == 1
    assert "not a regular file" in imported.stderr.decode()
    assert read_caption(other).text == "edited too"
    assert stat.S_ISFIFO(os.lstat(sidecar_path(photo)).st_mode)


@POSIX
def test_fifo_named_like_a_csv_is_a_usage_error(tmp_path):
    os.mkfifo(tmp_path / "c.csv")
    done = run_cli("import-csv", tmp_path / "c.csv")
    assert done.returncode == 2
    assert "not a regular file" in done.stderr.decode()


@POSIX
def test_readers_never_open_a_fifo(tmp_path):
    from imgcap_desktop.metadata.csvio import photo_size
    from imgcap_desktop.metadata.embedded import read_embedded_caption, read_embedded_description

    os.mkfifo(tmp_path / "f.jpg")
    assert read_embedded_caption(tmp_path / "f.jpg") is None
    assert read_embedded_description(tmp_path / "f.jpg") is None
    assert photo_size(tmp_path / "f.jpg") is None


@POSIX
def test_fifo_photo_in_the_engine_loader_is_a_clear_failure(tmp_path):
    from model.images import ImageLoadError, load_image

    os.mkfifo(tmp_path / "f.png")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path / "f.png", 32)


# --- names ----------------------------------------------------------------------------------------


@POSIX
def test_a_255_byte_name_is_one_failed_photo_not_an_aborted_batch(tmp_path, engine, capsys):
    long_name = "x" * 251 + ".jpg"
    try:
        long_photo = make_photo(tmp_path / long_name)
    except OSError:
        pytest.skip("this file system does not take 255-byte names")
    good = make_photo(tmp_path / "good.jpg")
    csv_file = tmp_path / "out.csv"

    assert cli("caption", tmp_path, "--write-sidecars", "--csv", csv_file) == 1

    captured = capsys.readouterr()
    assert "sidecar name too long" in captured.err
    assert read_caption(good).text == "a cat on a sofa"
    assert sorted(row.relative_path for _, row in read_csv(csv_file)) == ["good.jpg", long_name]
    # Lightroom's naming fits, and is then used.
    assert cli("caption", long_photo, "--write-sidecars", "--sidecar-style", "base") == 0
    assert read_caption(long_photo).text == "a cat on a sofa"


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 exist on Linux")
def test_non_utf8_name_survives_the_csv_round_trip(tmp_path, engine, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        Image.new("RGB", (8, 8)).save(f, format="JPEG")
    make_photo(folder / "plain.jpg")
    csv_file = folder / "out.csv"

    assert cli("caption", folder, "--csv", csv_file) == 0
    out = capsys.readouterr().out
    assert "caf\\xe9.jpg\ta cat on a sofa" in out  # escaped, one line, no UnicodeEncodeError

    rows = [row for _, row in read_csv(csv_file)]
    assert len(rows) == 2
    rows = [r.__class__(**{**r.__dict__, "caption": f"edited {len(r.file_name)}"}) for r in rows]
    write_hand_made_csv(csv_file, rows)
    assert cli("import-csv", csv_file) == 0
    assert os.path.exists(raw + b".xmp")
    assert read_caption(os.fsdecode(raw)).text == "edited 8"


@POSIX
def test_newline_in_a_name_is_escaped_in_plain_output(tmp_path, engine, capsys):
    make_photo(tmp_path / "a\nb.jpg")
    assert cli("caption", tmp_path) == 0
    assert capsys.readouterr().out.splitlines() == [f"{tmp_path}/a\\nb.jpg\ta cat on a sofa"]


def test_a_missing_path_alone_is_a_usage_error(tmp_path, engine, capsys):
    good = make_photo(tmp_path / "good.jpg")
    assert cli("caption", tmp_path / "nothere.jpg") == 2
    assert "nothere.jpg: no such file or folder" in capsys.readouterr().err
    assert cli("caption", tmp_path / "nothere.jpg", good) == 1


# --- stdout is ours -------------------------------------------------------------------------------


def test_library_warnings_never_reach_stdout(tmp_path):
    make_photo(tmp_path / "a.jpg")
    make_photo(tmp_path / "b.png")

    done = run_cli("caption", tmp_path, "--json", env={"IMGCAP_TEST_NOISE": "1"})

    assert done.returncode == 0
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.jpg", "b.png"]
    assert records[0]["tags"][0] == {"word": "cat", "probability": 0.8} and records[0]["keywords"] == ["cat"]
    assert "[warn] Unsupported date format" in done.stderr.decode()
    assert "XMP toolkit says hello" in done.stderr.decode()


@POSIX
def test_broken_link_in_a_folder_is_a_reported_failure_and_the_batch_goes_on(tmp_path):
    good = make_photo(tmp_path / "good.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "unmounted" / "gone.jpg")
    csv_file = tmp_path / "out.csv"

    done = run_cli("caption", tmp_path, "--csv", csv_file, "--write-sidecars")

    assert done.returncode == 1
    assert "gone.jpg: broken link: its target" in done.stderr.decode()
    assert "unmounted" in done.stderr.decode()  # where it pointed, so the user knows what to mount
    assert "Traceback" not in done.stderr.decode()
    assert read_caption(good).text == "a cat on a sofa"
    assert not (tmp_path / "gone.jpg.xmp").exists()
    assert (tmp_path / "gone.jpg").is_symlink()

    named = run_cli("caption", tmp_path / "gone.jpg", good)
    assert named.returncode == 1
    assert "gone.jpg: broken link: its target" in named.stderr.decode()


def test_a_subfolder_that_cannot_be_listed_is_reported(tmp_path, engine, capsys, monkeypatch):
    good = make_photo(tmp_path / "good.jpg")
    make_photo(tmp_path / "locked" / "hidden.jpg")
    refuse_listing(monkeypatch, "locked")

    assert cli("caption", tmp_path, "--recursive") == 1
    out, err = capsys.readouterr()
    assert f"imgcap: {tmp_path / 'locked'}: cannot list the folder (Permission denied)" in err
    assert out.startswith(f"{good}\t")


# --- writes outside -------------------------------------------------------------------------------


@POSIX
def test_symlinked_photo_is_recorded_as_reached_and_nothing_is_written_outside(tmp_path):
    inside, outside = tmp_path / "p", tmp_path / "o"
    secret = make_photo(outside / "secret.jpg")
    inside.mkdir()
    (inside / "x.jpg").symlink_to("../o/secret.jpg")
    (inside / "y.jpg").symlink_to("/etc/passwd")
    kept = Snapshot([secret])
    csv_file = inside / "out.csv"

    done = run_cli("caption", inside, "--csv", csv_file, "--write-sidecars")

    assert "--root" not in done.stderr.decode()
    assert [row.relative_path for _, row in read_csv(csv_file)] == ["x.jpg", "y.jpg"]
    assert (inside / "x.jpg.xmp").is_file()  # beside the link the user chose
    rows = [r.__class__(**{**r.__dict__, "caption": "edited"}) for _, r in read_csv(csv_file)]
    write_hand_made_csv(csv_file, rows)
    run_cli("import-csv", csv_file)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.jpg"]
    assert not Path("/etc/passwd.xmp").exists()
    kept.assert_unchanged()


@POSIX
def test_csv_rows_through_a_linked_folder_are_outside(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    make_photo(elsewhere / "x.jpg")
    root.mkdir()
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    (root / "c.csv").write_text("relative path,caption\r\nlink/x.jpg,evil\r\n../elsewhere/x.jpg,evil\r\n",
                                encoding="utf-8")

    done = run_cli("import-csv", root / "c.csv")

    assert done.returncode == 1
    assert done.stderr.decode().count("outside the folder") == 2  # the two rows
    assert "0 outside the folder" not in done.stdout.decode()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["x.jpg"]


@POSIX
def test_symlinked_sidecar_is_refused_and_its_target_untouched(tmp_path):
    photo = make_photo(tmp_path / "p" / "a.jpg")
    target = tmp_path / "o" / "target.xmp"
    write_caption(make_photo(tmp_path / "o" / "target.jpg"), StoredCaption("theirs", "human"))
    (tmp_path / "o" / "target.jpg.xmp").rename(target)
    sidecar_path(photo).symlink_to(target)
    kept = Snapshot([target])

    with pytest.raises(SidecarError, match="symbolic link"):
        write_caption(photo, StoredCaption("ours", "automatic", "m", -1.0))
    with pytest.raises(SidecarError, match="symbolic link"):
        read_caption(photo)
    assert sidecar_path(photo).is_symlink()
    kept.assert_unchanged()


# --- captions that already exist, formats, leftovers ----------------------------------------------


def _embedded_xmp_png(path: Path, text: str) -> Path:
    from PIL import PngImagePlugin

    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
        f'<rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt></dc:description></rdf:Description>'
        "</rdf:RDF></x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet)
    return make_photo(path, pnginfo=info)


def test_an_embedded_caption_is_a_persons_caption(tmp_path, engine, capsys):
    photo = _embedded_xmp_png(tmp_path / "e.png", "Grandma's garden, 1987")
    kept = Snapshot([photo])

    assert cli("caption", photo, "--write-sidecars", "--skip-captioned") == 0
    assert not sidecar_path(photo).exists()
    assert cli("caption", photo, "--write-sidecars") == 0
    assert not sidecar_path(photo).exists()
    assert "Grandma's garden, 1987" in capsys.readouterr().out
    assert cli("caption", photo, "--write-sidecars", "--overwrite-human") == 0
    assert read_caption(photo).text == "a cat on a sofa"
    kept.assert_unchanged()


@pytest.mark.parametrize("placeholder", ["OLYMPUS DIGITAL CAMERA", "SONY DSC", "KODAK Digital Still Camera", "  "])
def test_a_cameras_placeholder_description_is_not_a_caption(tmp_path, engine, placeholder):
    exif = Image.Exif()
    exif[0x010E] = placeholder  # ImageDescription
    photo = make_photo(tmp_path / "camera.jpg", exif=exif.tobytes())
    assert read_caption(photo) is None
    assert cli("caption", photo, "--write-sidecars", "--skip-captioned") == 0
    assert read_caption(photo).text == "a cat on a sofa"


@pytest.mark.parametrize("description", ["Vintage digital camera", "Factory default"])
def test_a_persons_description_that_reads_like_a_cameras_is_a_caption(tmp_path, description):
    """Any word before "digital camera" or "default" made a person's description a camera's placeholder."""
    exif = Image.Exif()
    exif[0x010E] = description
    photo = make_photo(tmp_path / "camera.jpg", exif=exif.tobytes())
    assert (read_caption(photo).text, read_caption(photo).source) == (description, "embedded")


def test_heic_photos_are_found_and_captioned(tmp_path, engine, capsys):
    pytest.importorskip("pillow_heif")
    Image.new("RGB", (64, 48), (30, 140, 60)).save(tmp_path / "iphone.heic")
    assert cli("caption", tmp_path, "--write-sidecars") == 0
    assert "iphone.heic\ta cat on a sofa" in capsys.readouterr().out
    assert read_caption(tmp_path / "iphone.heic").source == "automatic"


def test_stale_temporary_sidecars_are_removed_by_the_next_write(tmp_path):
    photo = make_photo(tmp_path / "photo.jpg")
    stale = tmp_path / ".photo.jpg.xmp.k2j4_8zq.tmp"
    fresh = tmp_path / ".other.jpg.xmp.abcdefgh.tmp"
    foreign = tmp_path / ".photo.jpg.xmp.backup"
    for f in (stale, fresh, foreign):
        f.write_bytes(b"<partial")
    old = time.time() - 120
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))

    write_caption(photo, StoredCaption("a caption", "automatic", "m", -1.0))

    assert not stale.exists()
    assert fresh.exists() and foreign.exists()  # a write in progress, and a file that is not ours


def test_utf16_sidecar_is_named_as_such(tmp_path):
    photo = make_photo(tmp_path / "u.jpg")
    sidecar_path(photo).write_bytes('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'.encode("utf-16"))
    with pytest.raises(SidecarError, match="UTF-16 XMP is not supported"):
        write_caption(photo, StoredCaption("x", "human"))


@POSIX
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    folder = tmp_path / ("long-folder-name-" * 8)
    for i in range(400):  # more output than a pipe holds, so the writer meets the closed pipe
        make_photo(folder / f"photo-with-a-long-name-{i:04d}.jpg", size=(4, 4))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile.fake_cli", "caption", str(folder), "--write-sidecars"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode()
    assert process.returncode == 1


@POSIX
@pytest.mark.parametrize("closed", ["stdout", "stderr", "both"])
def test_a_run_with_its_output_closed_captions_every_photo(tmp_path, closed):
    """``>&-`` or ``2>&-`` (a cron job, a daemon): Python leaves the stream None, and the first line
    said to it stopped the run with a traceback; with stderr closed nothing was captioned."""
    photos = [make_photo(tmp_path / f"p{i}.jpg") for i in range(12)]  # more than one batch
    csv_file = tmp_path / "out.csv"
    fds = {"stdout": "1", "stderr": "2", "both": "1 2"}[closed]
    command = f'"{sys.executable}" -m tests.hostile.fake_cli caption "{tmp_path}" --write-sidecars --csv "{csv_file}"'
    script = f"for fd in {fds}; do eval \"exec $fd>&-\"; done; exec {command}"
    done = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=closed == "stdout", timeout=60)
    assert done.returncode == 0, done
    assert all(sidecar_path(p).exists() for p in photos) and csv_file.exists()


@POSIX
def test_a_run_whose_standard_output_is_full_says_so_and_captions_every_photo(tmp_path):
    """``> log`` on a full disk: "OSError: No space left on device" after the first line, and the
    run stopped there (no sidecars after it, no CSV)."""
    photos = [make_photo(tmp_path / f"p{i}.jpg") for i in range(12)]
    csv_file = tmp_path / "out.csv"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "tests.hostile.fake_cli", "caption", str(tmp_path),
                               "--write-sidecars", "--csv", str(csv_file)],
                              cwd=REPO, stdout=full, stderr=subprocess.PIPE, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in err, err
    assert err.count("imgcap: cannot write standard output (No space left on device)") == 1, err
    assert all(sidecar_path(p).exists() for p in photos) and csv_file.exists()
