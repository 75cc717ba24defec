"""``imgcap archive``: a local Ray cluster (2 CPUs) captioning small folders with the tiny bundle.

The same results as ``imgcap caption``; a rerun after the driver was killed finishes the job with no
photo missing or twice; a corrupt photo fails alone; a killed actor's photos are still captioned;
``export --apply-sidecars`` keeps what other tools stored; and nothing but the archive needs Ray.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the cluster extra is not installed: pip install -e '.[cluster]'")
pa = pytest.importorskip("pyarrow")

from imgcap_desktop.archive.inputs import collect_inputs  # noqa: E402
from imgcap_desktop.archive import pipeline  # noqa: E402
from imgcap_desktop.archive.pipeline import ArchiveError, ArchiveOptions, _pool_size, plan, run_archive  # noqa: E402
from imgcap_desktop.archive.results import (  # noqa: E402
    ResultsError,
    ResultsWriter,
    bundle_sha,
    part_files,
    read_results,
)
from imgcap_desktop.cli import main  # noqa: E402
from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption  # noqa: E402
from tests.desktop.archive_helpers import (  # noqa: E402
    CRASH_MARKER,
    CrashMidTaskWorker,
    CrashOnceWorker,
    MismatchedWorker,
    PoisonWorker,
    RaisingWorker,
)
from tests.desktop.conftest import make_photos  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray instance with 2 CPUs for this module; its workers import this checkout's packages."""
    import ray

    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(address="local", num_cpus=2, num_gpus=0, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
             logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": python_path, "TF_CPP_MIN_LOG_LEVEL": "2"}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(ray_cluster, tiny_bundle, tmp_path_factory):
    """Photos in two folders (one corrupt), captioned once by the archive: ``(folder, results, report)``."""
    folder = tmp_path_factory.mktemp("archive") / "photos"
    make_photos(folder, count=5)  # photo1..5.jpg, drawing.png, broken.jpg
    make_photos(folder / "sub", count=2, corrupt=False)  # photo1..2.jpg, drawing.png
    results = folder.parent / "results"
    report = run_archive(_options(folder, results, tiny_bundle, attention=True))
    return folder, results, report


def _options(root, results, bundle, **changes) -> ArchiveOptions:
    settings = dict(roots=[Path(root)], out=Path(results), bundle=Path(bundle), beam=2, batch_size=2, workers=2,
                    cpus_per_worker=1, commit_rows=4)
    return ArchiveOptions(**(settings | changes))


def _rows(results) -> dict[str, dict]:
    rows = read_results(results).to_pylist()
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), "a photo was recorded twice"
    return {row["path"]: row for row in rows}


def test_results_match_the_cli(archive, tiny_bundle):
    folder, results, report = archive
    out = io.StringIO()
    code = main(["caption", str(folder), "--recursive", "--bundle", str(tiny_bundle), "--beam", "2",
                 "--batch-size", "2", "--json"], out)
    assert code == 1  # the corrupt photo
    cli = {record["path"]: record for record in map(json.loads, out.getvalue().splitlines())}
    rows = _rows(results)

    assert set(rows) == set(cli) and len(rows) == 10
    assert report.found == 10 and report.captioned == 9 and report.failed == 1
    for path, record in cli.items():
        row = rows[path]
        if "error" in record:
            assert row["caption"] is None and row["error"] == record["error"]
            continue
        assert row["error"] is None
        assert row["caption"] == record["caption"]
        assert round(row["score"], 4) == pytest.approx(record["score"], abs=2e-4)
        assert [a["caption"] for a in row["alternatives"]] == [a["caption"] for a in record["alternatives"]]
        assert [a["score"] for a in row["alternatives"]] == pytest.approx(
            [a["score"] for a in record["alternatives"]], abs=2e-4)
        assert (row["size"], row["mtime_ns"]) == (os.stat(path).st_size, os.stat(path).st_mtime_ns)
        assert row["model"] == "tiny-test" and row["beam"] == 2 and len(row["model_sha"]) == 64


def test_a_corrupt_photo_is_retried_once_then_recorded_as_failed(archive):
    folder, results, _ = archive
    rows = _rows(results)
    broken = rows[str(folder / "broken.jpg")]
    assert "broken.jpg" in broken["error"] and "corrupt" in broken["error"]
    assert broken["attempts"] == 2
    others = [row for path, row in rows.items() if not path.endswith("broken.jpg")]
    assert all(row["error"] is None and row["caption"] and row["attempts"] == 1 for row in others)


def test_attention_maps_are_stored_when_asked(archive):
    _, results, _ = archive
    for row in _rows(results).values():
        if row["error"] is None:
            shape = row["attention_shape"]
            maps = np.asarray(row["attention"], np.float32).reshape(shape)
            assert shape[0] == len(row["caption"].split())
            np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-4)


def test_a_rerun_skips_what_is_done(archive, tiny_bundle):
    folder, results, _ = archive
    before = part_files(results)

    again = run_archive(_options(folder, results, tiny_bundle))

    assert (again.skipped, again.skipped_failed, again.captioned, again.failed) == (10, 1, 0, 0)
    assert part_files(results) == before
    assert not again.ok  # broken.jpg failed before: a run resumed after an interruption exited 0 (as all done)


def test_a_changed_photo_another_model_or_beam_is_captioned_again(archive, tiny_bundle):
    folder, results, _ = archive
    inputs = collect_inputs([folder])
    sha = bundle_sha(tiny_bundle)
    assert plan(inputs, results, sha, beam=2, retry_failed=False)[0].num_rows == 0
    todo, skipped, skipped_failed = plan(inputs, results, sha, beam=2, retry_failed=True)
    assert todo["path"].to_pylist() == [str(folder / "broken.jpg")] and (skipped, skipped_failed) == (9, 0)

    changed = inputs.paths.index(str(folder / "photo1.jpg"))
    inputs.mtimes[changed] += 1
    assert plan(inputs, results, sha, beam=2, retry_failed=False)[0]["path"].to_pylist() == [inputs.paths[changed]]
    assert plan(inputs, results, sha, beam=1, retry_failed=False)[0].num_rows == 10
    assert plan(inputs, results, "0" * 64, beam=2, retry_failed=False)[0].num_rows == 10


def test_resume_after_the_driver_is_killed(ray_cluster, tiny_bundle, tmp_path):
    """The driver gets SIGKILL right after its first commit (no cleanup runs: no finally, no atexit),
    with the workers still busy; the same command again stores exactly the photos that are missing."""
    folder, results = tmp_path / "photos", tmp_path / "results"
    photos = make_photos(folder, count=22, corrupt=False)  # 23 photos
    driver = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from imgcap_desktop.archive import results
        from imgcap_desktop.archive.pipeline import ArchiveOptions, run_archive

        commit = results.ResultsWriter.commit
        def commit_then_die(self):
            part = commit(self)
            if part is not None:
                os.kill(os.getpid(), signal.SIGKILL)
            return part
        results.ResultsWriter.commit = commit_then_die
        run_archive(ArchiveOptions(roots=[Path({str(folder)!r})], out=Path({str(results)!r}), address={ray_cluster!r},
                                   bundle=Path({str(tiny_bundle)!r}), beam=1, batch_size=2, workers=2,
                                   cpus_per_worker=1, commit_rows=2))
    """)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", driver], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    stored_before = read_results(results).num_rows
    assert 0 < stored_before < len(photos), "the driver was not stopped in the middle of the run"

    report = run_archive(_options(folder, results, tiny_bundle, beam=1))

    rows = _rows(results)  # no photo twice
    assert set(rows) == {str(p) for p in photos}
    assert all(row["error"] is None for row in rows.values())
    assert report.skipped == stored_before and report.captioned == len(photos) - stored_before


@pytest.mark.parametrize("worker, count", [(CrashOnceWorker, 9), (CrashMidTaskWorker, 127)])
def test_a_killed_actors_photos_are_completed_and_stored_once(ray_cluster, tiny_bundle, tmp_path, worker, count):
    folder, results = tmp_path / "photos", tmp_path / "results"
    photos = make_photos(folder, count=count, corrupt=False)

    report = run_archive(_options(folder, results, tiny_bundle, beam=1), worker_cls=worker)

    assert (folder / CRASH_MARKER).exists(), "no actor was killed"
    rows = _rows(results)
    assert set(rows) == {str(p) for p in photos}
    assert all(row["error"] is None and row["caption"] for row in rows.values())
    assert report.captioned == len(photos) and report.failed == 0


def test_a_photo_that_kills_its_worker_every_time_fails_alone_and_the_run_ends(ray_cluster, tiny_bundle, tmp_path):
    """Ray retried a task whose photo killed the actor for ever: the run never ended, and the other
    photos of that block were never stored."""
    folder, results = tmp_path / "photos", tmp_path / "results"
    photos = make_photos(folder, count=6, corrupt=False)
    poison = folder / "poison.jpg"
    poison.write_bytes(photos[0].read_bytes())

    report = run_archive(_options(folder, results, tiny_bundle, beam=1, workers=1), worker_cls=PoisonWorker)

    rows = _rows(results)
    assert set(rows) == {str(p) for p in [*photos, poison]}
    assert all(rows[str(p)]["caption"] for p in photos)
    assert "worker" in rows[str(poison)]["error"] and rows[str(poison)]["caption"] is None
    assert report.failed == 1 and report.captioned == len(photos)


def test_an_error_in_the_workers_own_code_is_said_in_each_photos_row(ray_cluster, tiny_bundle, tmp_path):
    """With failed blocks let through (for a photo that kills its worker), Ray dropped a block whose
    worker raised, unsaid: its photos were then recorded as having killed their worker."""
    folder, results = tmp_path / "photos", tmp_path / "results"
    photos = make_photos(folder, count=3, corrupt=False)
    bug = folder / "bug.jpg"
    bug.write_bytes(photos[0].read_bytes())

    report = run_archive(_options(folder, results, tiny_bundle, beam=1, workers=1, batch_size=1),
                         worker_cls=RaisingWorker)

    rows = _rows(results)
    assert "the worker failed on its batch: KeyError" in rows[str(bug)]["error"]
    assert report.failed >= 1 and report.captioned + report.failed == len(photos) + 1


def test_an_interrupted_run_exits_130_and_says_so(tmp_path, monkeypatch):
    """Ctrl-C and SIGTERM exited 1, as failed photos do, and the summary did not say the run stopped:
    a scheduler's script could not tell "run me again" from "some photos are bad"."""
    from imgcap_desktop.archive.pipeline import ArchiveReport

    monkeypatch.setattr(pipeline, "run_archive", lambda options: ArchiveReport(found=3, captioned=1, interrupted=True))
    out = io.StringIO()
    assert main(["archive", "caption", str(tmp_path), "--out", str(tmp_path / "r")], out) == 130
    assert out.getvalue().startswith("interrupted after 1 captioned, 0 failed")


def test_a_worker_that_cannot_start_stops_the_run_with_its_reason(ray_cluster, tiny_bundle, tmp_path, capsys):
    folder = tmp_path / "photos"
    make_photos(folder, count=2, corrupt=False)
    code = main(["archive", "caption", str(folder), "--out", str(tmp_path / "r"), "--bundle", str(tiny_bundle)])
    assert code == 0  # the real worker, for contrast

    with pytest.raises(ArchiveError, match="ModelMismatchError: node-7: bundle .* has sha 0123456789ab"):
        run_archive(_options(folder, tmp_path / "r2", tiny_bundle), worker_cls=MismatchedWorker)


def test_apply_sidecars_keeps_other_tools_fields(archive, tmp_path, capsys):
    folder, results, _ = archive
    foreign = sidecar_path(folder / "photo1.jpg")
    foreign.write_text(textwrap.dedent("""\
        <?xml version="1.0" encoding="UTF-8"?>
        <x:xmpmeta xmlns:x="adobe:ns:meta/">
         <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
          <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
            xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmp:Rating="4">
           <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
           <digiKam:TagsList><rdf:Seq><rdf:li>Places/Beach</rdf:li></rdf:Seq></digiKam:TagsList>
          </rdf:Description>
         </rdf:RDF>
        </x:xmpmeta>
        """), encoding="utf-8")
    human = StoredCaption("my own words", "human", captioned_at="2026-01-01T00:00:00+00:00")
    write_caption(folder / "photo2.jpg", human)
    unparseable = sidecar_path(folder / "photo3.jpg")
    unparseable.write_bytes(b"<x:xmpmeta><rdf:RDF> not closed")
    rows = _rows(results)

    out = io.StringIO()
    code = main(["archive", "export", str(results), "--apply-sidecars"], out)

    assert code == 1  # the unparseable sidecar
    # Said with the photo's whole path (it gave "photo3.jpg.xmp: ...": which of the folders?).
    assert f"imgcap archive: {folder / 'photo3.jpg'}: " in capsys.readouterr().err
    text = foreign.read_text(encoding="utf-8")
    assert 'xmp:Rating="4"' in text and "<rdf:li>holiday</rdf:li>" in text and "Places/Beach" in text
    stored = read_caption(folder / "photo1.jpg", embedded=False)
    assert stored.text == rows[str(folder / "photo1.jpg")]["caption"] and stored.source == "automatic"
    assert read_caption(folder / "photo2.jpg") == human
    assert unparseable.read_bytes() == b"<x:xmpmeta><rdf:RDF> not closed"
    assert not sidecar_path(folder / "broken.jpg").exists()
    for path, row in rows.items():
        if row["error"] is None and not path.endswith(("photo2.jpg", "photo3.jpg")):
            assert read_caption(path, embedded=False).text == row["caption"]
    assert "7 sidecars written" in out.getvalue() and "1 human captions kept" in out.getvalue()

    again = io.StringIO()
    main(["archive", "export", str(results), "--apply-sidecars"], again)
    assert "0 sidecars written, 7 unchanged" in again.getvalue()


def test_a_photo_restored_from_a_backup_gets_its_own_rows_caption(ray_cluster, tiny_bundle, tmp_path):
    """Captioned, replaced by another picture and captioned again, then restored: the caption run took
    the first row as the restored file's, but export took the last, so --apply-sidecars refused the
    photo for ever ("changed since") and the CSV gave it the other picture's caption."""
    folder, results = tmp_path / "photos", tmp_path / "results"
    photos = make_photos(folder, count=2, corrupt=False)
    first, other = photos[0], photos[1]
    backup = tmp_path / "backup.jpg"
    backup.write_bytes(first.read_bytes())
    then = first.stat()
    run_archive(_options(folder, results, tiny_bundle, beam=1))
    caption_then = _rows(results)[str(first)]["caption"]
    first.write_bytes(other.read_bytes() + b"\0")  # another picture under its name, a size of its own
    run_archive(_options(folder, results, tiny_bundle, beam=1))
    first.write_bytes(backup.read_bytes())
    os.utime(first, ns=(then.st_atime_ns, then.st_mtime_ns))
    assert run_archive(_options(folder, results, tiny_bundle, beam=1)).skipped == len(photos)  # its first row stands

    out = io.StringIO()
    assert main(["archive", "export", str(results), "--apply-sidecars"], out) == 0
    assert read_caption(first, embedded=False).text == caption_then
    assert main(["archive", "export", str(results), "--csv", str(folder / "c.csv")], io.StringIO()) == 0
    assert caption_then in (folder / "c.csv").read_text(encoding="utf-8")


def test_export_csv_has_a_row_per_photo_with_what_is_stored(archive):
    folder, results, _ = archive
    human = StoredCaption("my own words", "human", captioned_at="2026-01-01T00:00:00+00:00")
    write_caption(folder / "photo2.jpg", human)
    csv_file = folder / "captions.csv"
    assert main(["archive", "export", str(results), "--csv", str(csv_file)], io.StringIO()) == 0
    from imgcap_desktop.metadata.csvio import read_csv

    rows = {row.relative_path: row for _, row in read_csv(csv_file)}
    csv_file.unlink()
    stored = {Path(path).relative_to(folder).as_posix(): row for path, row in _rows(results).items()}
    assert set(rows) == set(stored)
    assert (rows["photo2.jpg"].caption, rows["photo2.jpg"].source) == ("my own words", "human")
    assert rows["broken.jpg"].caption == "" and "corrupt" in rows["broken.jpg"].error
    for relative, row in rows.items():
        if relative not in ("photo2.jpg", "broken.jpg"):
            assert (row.caption, row.source, row.model) == (stored[relative]["caption"], "automatic", "tiny-test")
            assert row.error == ""


def test_export_csv_says_which_photos_are_gone_or_changed_and_keeps_paths_through_links(
        ray_cluster, tiny_bundle, tmp_path, capsys):
    """The CSV gave a photo replaced since the run the old picture's caption (import-csv then wrote
    it into the new one's sidecar), listed deleted photos as captioned, and wrote absolute paths
    for photos reached through a link to their folder (import-csv elsewhere: "outside the folder")."""
    from imgcap_desktop.metadata.csvio import read_csv

    make_photos(tmp_path / "photos", count=3, corrupt=False)
    (tmp_path / "link").symlink_to(tmp_path / "photos")
    results = tmp_path / "results"
    run_archive(_options(tmp_path / "link", results, tiny_bundle))
    (tmp_path / "photos" / "photo1.jpg").unlink()
    replaced = tmp_path / "photos" / "photo2.jpg"
    replaced.write_bytes((tmp_path / "photos" / "photo3.jpg").read_bytes())
    os.utime(replaced, ns=(time.time_ns(), time.time_ns() + 10**9))
    csv_file = tmp_path / "link" / "captions.csv"
    assert main(["archive", "export", str(results), "--csv", str(csv_file)], io.StringIO()) == 0
    assert "relative to" not in capsys.readouterr().err

    rows = {row.relative_path: row for _, row in read_csv(csv_file)}
    assert set(rows) == {"photo1.jpg", "photo2.jpg", "photo3.jpg", "drawing.png"}  # relative: the link kept
    assert (rows["photo1.jpg"].caption, rows["photo1.jpg"].error) == ("", "not found: deleted or moved since it "
                                                                          "was captioned")
    assert rows["photo2.jpg"].caption == "" and rows["photo2.jpg"].error.startswith("changed since it was captioned")
    assert rows["photo3.jpg"].caption and rows["photo3.jpg"].error == ""
    assert main(["import-csv", str(csv_file)], io.StringIO()) == 0  # untouched: nothing written, nothing wrong
    assert not sidecar_path(replaced).exists()


def test_tags_and_keywords_reach_the_results_and_the_sidecars(tiny_bundle, tmp_path):
    """The worker alone (no Ray): an engine result with tags becomes a row with tags, keywords and
    class activation maps, and --write-sidecars merges the keywords into dc:subject."""
    import dataclasses

    from imgcap_desktop.archive.worker import CaptionWorker
    from imgcap_desktop.metadata.apply import StoreOptions
    from model.results import Tag

    photos = make_photos(tmp_path / "p", count=2, corrupt=False)[:2]
    worker = CaptionWorker(bundle=str(tiny_bundle), model_sha=bundle_sha(tiny_bundle), beam=1, batch_size=2,
                           device="cpu", threads=1, attention=True,
                           store=StoreOptions(write_sidecars=True, keywords=True))
    cam = np.full(worker.captioner.grid, 1 / np.prod(worker.captioner.grid), np.float32)
    tags = (Tag("dog", 0.8, (207, 208), cam), Tag("grass", 0.1, (972,)))
    engine = worker.captioner.caption
    worker.captioner.caption = lambda *a, **k: [dataclasses.replace(r, tags=tags, keywords=("dog",))
                                                for r in engine(*a, **k)]
    batch = pa.table({"id": [0, 1], "path": [str(p) for p in photos], "size": [p.stat().st_size for p in photos],
                      "mtime_ns": [p.stat().st_mtime_ns for p in photos]})

    rows = worker(batch).to_pylist()

    for row, photo in zip(rows, photos):
        assert row["keywords"] == ["dog"] and row["tagged"] is True
        assert [(t["word"], round(t["probability"], 3)) for t in row["tags"]] == [("dog", 0.8), ("grass", 0.1)]
        np.testing.assert_allclose(row["tags"][0]["cam"], cam.reshape(-1))
        assert row["tags"][1]["cam"] is None
        assert row["sidecar_status"] == "written"
        stored = read_caption(photo, embedded=False)
        assert stored.text == row["caption"] and stored.keywords == ("dog",)


def test_an_engine_error_costs_only_its_own_photo(tiny_bundle, tmp_path):
    """The worker alone: the engine raising on a batch falls back to one photo at a time; the photo it
    raises on is retried once and recorded with the error, the rest of the batch is captioned."""
    from imgcap_desktop.archive.worker import CaptionWorker

    photos = make_photos(tmp_path / "p", count=3, corrupt=False)[:3]
    worker = CaptionWorker(bundle=str(tiny_bundle), model_sha=bundle_sha(tiny_bundle), beam=1, batch_size=4,
                           device="cpu", threads=1)
    engine, calls = worker.captioner.caption, []

    def caption(paths, **kwargs):
        calls.append(len(paths))
        if any(str(path).endswith("photo2.jpg") for path in paths):
            raise RuntimeError("out of memory on the device")
        return engine(paths, **kwargs)

    worker.captioner.caption = caption
    outcomes, attempts = worker.caption_with_retry([str(p) for p in photos])

    assert calls == [3, 1, 1, 1, 1]  # the batch, each photo alone, the failed one again
    assert [o.ok for o in outcomes] == [True, False, True] and attempts == [1, 2, 1]
    assert outcomes[1].reason == "the engine failed on this photo: RuntimeError: out of memory on the device"


def test_apply_sidecars_stores_keywords_only_from_a_model_with_tags():
    from imgcap_desktop.archive.export import _caption

    row = {"caption": "a dog", "model": "m", "score": -1.0, "captioned_at": "2026-11-28T09:00:00+00:00",
           "tags": [{"word": "dog", "probability": 0.9, "cam": None}], "keywords": ["dog"]}
    assert _caption(row, keywords=True).keywords == ("dog",)
    assert _caption(row, keywords=False).keywords is None  # --no-keywords: leave dc:subject alone
    assert _caption(row | {"tags": [], "keywords": []}, keywords=True).keywords is None  # no classifier (older parts)
    # A tagging model that saw nothing to tag: its old keywords go (they were kept); one that cannot tag: kept.
    assert _caption(row | {"tags": [], "keywords": [], "tagged": True}, keywords=True).keywords == ()
    assert _caption(row | {"tags": [], "keywords": [], "tagged": False}, keywords=True).keywords is None


def test_results_an_older_imgcap_wrote_read_with_the_columns_added_since(tmp_path):
    """A part file without the ``tagged`` column (written before it was added) reads as null there."""
    import pyarrow.parquet as pq

    from imgcap_desktop.archive.results import SCHEMA

    old = pa.schema([f for f in SCHEMA if f.name != "tagged"])
    row = {"path": "/p/a.jpg", "size": 1, "mtime_ns": 2, "model_sha": "s", "beam": 3, "caption": "a dog",
           "tags": [], "keywords": []}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "part-20261128T000000-old.parquet")
    assert [part.name for part in part_files(tmp_path)] == ["part-20261128T000000-old.parquet"]
    table = read_results(tmp_path)
    assert table.schema == SCHEMA and table.to_pylist()[0]["tagged"] is None
    assert read_results(tmp_path, columns=["caption", "tagged"]).to_pylist() == [{"caption": "a dog", "tagged": None}]


@pytest.mark.parametrize("options, resources, expected", [
    (dict(), {"CPU": 16.0}, (16, 1.0, 0.0)),  # one actor per core by default
    (dict(workers=1), {"CPU": 2.0}, (1, 2.0, 0.0)),  # a lone actor gets every core
    (dict(workers=4, cpus_per_worker=2), {"CPU": 64.0}, (4, 2.0, 0.0)),
    (dict(gpus_per_worker=0.25), {"CPU": 64.0, "GPU": 2.0}, (8, 1.0, 0.25)),  # four actors per GPU
    (dict(gpus_per_worker=1, cpus_per_worker=4, workers=3), {"CPU": 64.0, "GPU": 4.0}, (3, 4.0, 1.0)),
])
def test_pool_size(options, resources, expected):
    assert _pool_size(ArchiveOptions(roots=[], out=Path("r"), **options), resources) == expected


@pytest.mark.parametrize("photos, workers, expected", [
    (300, 1, 64), (300, 2, 32), (10**6, 100, 128), (23, 2, 4), (5, 2, 2),
])
def test_blocks_spread_over_the_workers_in_whole_batches(photos, workers, expected):
    assert pipeline._block_rows(photos, workers, batch_size=8 if photos > 100 else 2,
                                call_rows=32 if photos > 100 else 8) == expected


def test_gpus_asked_for_on_a_cluster_without_them_is_a_usage_error():
    with pytest.raises(ValueError, match="has 0 GPUs"):
        _pool_size(ArchiveOptions(roots=[], out=Path("r"), gpus_per_worker=0.5), {"CPU": 8.0})


def test_progress_lines_say_done_rate_eta_and_failures(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: now[0])
    err = io.StringIO()
    progress = pipeline._Progress(total=300, err=err, interval=5.0)
    progress.update(100, 0)  # t=0: the first results; the rate counts from here
    now[0] = 10.0
    progress.update(100, 2)  # t=10: 100 more photos in 10 s
    progress.note("broken.jpg: corrupt")
    now[0] = 12.0
    progress.update(50, 0)  # within the interval: no line
    now[0] = 30.0
    progress.update(50, 0)  # the last ones
    assert err.getvalue().splitlines() == [
        "imgcap archive: 200/300 photos, 10.0 photos/s, ETA 0m10s, 2 failed",
        "imgcap archive: broken.jpg: corrupt",
        "imgcap archive: 300/300 photos, done, 2 failed",
    ]


def test_a_second_run_on_the_same_results_is_refused(tmp_path):
    with ResultsWriter(tmp_path / "r"):
        with pytest.raises(ResultsError, match="another archive run"):
            ResultsWriter(tmp_path / "r")
    ResultsWriter(tmp_path / "r").close()  # released


def test_another_users_lock_file_in_a_shared_results_folder_does_not_refuse_the_run(tmp_path, monkeypatch):
    """User B's run on results user A began was refused "cannot write results there (Permission
    denied)": the lock file is A's (0644), though the folder takes B's files and flock needs no write."""
    from imgcap_desktop.archive import results as results_module

    ResultsWriter(tmp_path / "r").close()
    real_open = open

    def as_another_user(path, mode="r", *args, **kwargs):
        if str(path).endswith(".lock") and mode != "r":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(results_module, "open", as_another_user, raising=False)
    with ResultsWriter(tmp_path / "r"):
        with pytest.raises(ResultsError, match="another archive run"):  # still one run at a time
            ResultsWriter(tmp_path / "r")

    import errno
    import fcntl

    def nfs_flock(fd, operation):  # NFS locks by write access: a read-only handle cannot be locked
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    with pytest.raises(ResultsError, match="cannot lock .lock .Bad file descriptor.; if another user's run"):
        ResultsWriter(tmp_path / "r")  # not "another archive run": none is


def test_a_list_of_paths_is_an_input(tmp_path):
    photos = make_photos(tmp_path / "p", count=2, corrupt=False)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\n{photos[0]}\n\np/{photos[1].name}\nmissing.jpg\n", encoding="utf-8")
    inputs = collect_inputs([listing, photos[0]])
    assert inputs.paths == [str(photos[0]), str(photos[1])]
    assert inputs.sizes == [photos[0].stat().st_size, photos[1].stat().st_size]
    assert len(inputs.problems) == 1 and "missing.jpg" in inputs.problems[0]


def test_a_sidecar_or_binary_file_among_the_roots_is_not_read_as_a_list_of_paths(tmp_path, monkeypatch):
    """`imgcap archive caption folder/*` took a raw file and a sidecar for lists of paths: every line
    was reported as a missing photo, control bytes and all, and a binary line naming a folder there
    ("h") had that folder's photos captioned unasked."""
    photos = make_photos(tmp_path / "g", count=1, corrupt=False)
    (tmp_path / "g" / "h").mkdir()
    make_photos(tmp_path / "g" / "h", count=1, corrupt=False)
    raw = tmp_path / "g" / "IMG_2.CR2"
    raw.write_bytes(b"II*\x00\x1b[31m\nh\n\x00\x00")
    sidecar = tmp_path / "g" / "photo1.jpg.xmp"
    sidecar.write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n</x:xmpmeta>\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "g")  # where the binary line "h" named a folder
    binary = tmp_path / "g" / "index.dat"
    binary.write_bytes(b"\x00\x01h\n")
    inputs = collect_inputs([photos[0], raw, sidecar, binary])
    assert inputs.paths == [str(photos[0])]
    assert inputs.left_out == [str(raw), str(sidecar)]  # as a folder scan leaves them: no problem
    assert [p.split(": ", 1)[1] for p in inputs.problems] == [
        "not a photo imgcap reads, nor a list of paths (a text file, one path a line)"]


def test_what_a_shell_glob_or_a_list_sweeps_in_is_left_out_and_dot_dot_follows_links(tmp_path):
    """`archive/*` read the CSV exported there as a list (a problem for each of its rows) and a
    README's line ".." captioned the folder above; listed sidecars, raws and .DS_Store were stored
    as failed photos for good; "link/../photos/a.jpg" was taken as the text says, not as the system
    goes (another photo captioned, or one that is there said to be missing)."""
    photos = make_photos(tmp_path / "archive" / "a", count=1, corrupt=False)
    outside = make_photos(tmp_path / "outside", count=1, corrupt=False)
    (tmp_path / "archive" / "captions.csv").write_text("relative path,caption\na/photo1.jpg,x\n", encoding="utf-8")
    (tmp_path / "archive" / "README.txt").write_text("Scans of 1998\n..\n", encoding="utf-8")
    (tmp_path / "archive" / "a" / ".DS_Store").write_bytes(b"")
    (tmp_path / "archive" / "a" / "photo1.jpg.xmp").write_text("<x/>", encoding="utf-8")
    listing = tmp_path / "archive" / "a" / "list.txt"
    listing.write_text("photo1.jpg\nphoto1.jpg.xmp\n.DS_Store\nnotes.txt\n", encoding="utf-8")
    (tmp_path / "archive" / "a" / "notes.txt").write_text("a note", encoding="utf-8")
    inputs = collect_inputs(sorted((tmp_path / "archive").iterdir()) + [listing])
    assert sorted(inputs.paths) == sorted(map(str, photos)) and str(outside[0]) not in inputs.paths
    assert sorted(Path(p).name for p in inputs.left_out) == [".DS_Store", "captions.csv", "notes.txt",
                                                             "photo1.jpg.xmp"]
    assert any("a folder the list itself is in, not scanned" in p for p in inputs.problems)

    (tmp_path / "real" / "lists").mkdir(parents=True)
    other = make_photos(tmp_path / "real" / "photos", count=1, corrupt=False)
    (tmp_path / "ldir").symlink_to(tmp_path / "real" / "lists")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "photo1.jpg").write_bytes(b"the text's twin, another photo")
    assert collect_inputs([tmp_path / "ldir" / ".." / "photos" / "photo1.jpg"]).paths == [str(other[0])]
    (tmp_path / "plink").symlink_to(tmp_path / "real" / "photos")  # links after the last ".." are kept
    twice = [tmp_path / "plink" / "photo1.jpg", tmp_path / "photos" / ".." / "plink" / "photo1.jpg"]
    assert collect_inputs(twice).paths == [str(tmp_path / "plink" / "photo1.jpg")]


def test_a_list_with_a_byte_order_mark_keeps_its_first_path(tmp_path):
    """Notepad and Excel start a UTF-8 file with a BOM: the first entry was "\ufeffp/a.jpg", not found."""
    photos = make_photos(tmp_path / "p", count=1, corrupt=False)
    (tmp_path / "list.txt").write_text(f"p/{photos[0].name}\r\n", encoding="utf-8-sig")
    inputs = collect_inputs([tmp_path / "list.txt"])
    assert inputs.paths == [str(photos[0])] and inputs.problems == []


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
def test_a_file_name_that_is_not_utf8_is_a_problem_not_the_end_of_the_run(tmp_path):
    """One Latin-1 name (caf\xe9.jpg) stopped the whole run with a UnicodeEncodeError that named no file;
    in a list of paths, it made the whole list unreadable."""
    photos = make_photos(tmp_path / "p", count=1, corrupt=False)
    latin1 = os.fsdecode(os.fsencode(str(tmp_path / "p")) + b"/caf\xe9.jpg")
    Path(latin1).write_bytes(photos[0].read_bytes())
    (tmp_path / "list.txt").write_bytes(b"p/caf\xe9.jpg\np/" + photos[0].name.encode() + b"\n")
    for root, expected in ((tmp_path / "p", photos), (tmp_path / "list.txt", photos[:1])):
        inputs = collect_inputs([root])
        assert sorted(inputs.paths) == sorted(str(p) for p in expected)
        assert len(inputs.problems) == 1 and "caf\\xe9.jpg: the file name is not UTF-8" in inputs.problems[0]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_broken_link_in_an_archive_folder_is_a_problem_naming_its_target(tmp_path):
    photos = make_photos(tmp_path / "p", count=1, corrupt=False)
    (tmp_path / "p" / "gone.jpg").symlink_to(tmp_path / "unmounted" / "gone.jpg")
    inputs = collect_inputs([tmp_path / "p"])
    assert sorted(inputs.paths) == sorted(str(p) for p in photos)
    assert inputs.problems == [f"{tmp_path / 'p' / 'gone.jpg'}: broken link: its target "
                               f"{tmp_path / 'unmounted' / 'gone.jpg'} is missing"]


def test_a_subfolder_that_cannot_be_listed_is_a_problem(tmp_path, monkeypatch):
    from tests.desktop.conftest_metadata import refuse_listing

    photos = make_photos(tmp_path / "p", count=1, corrupt=False)
    make_photos(tmp_path / "p" / "locked", count=1, corrupt=False)
    refuse_listing(monkeypatch, "locked")
    inputs = collect_inputs([tmp_path / "p"])
    assert sorted(inputs.paths) == sorted(str(p) for p in photos)
    assert inputs.problems == [f"{tmp_path / 'p' / 'locked'}: cannot list the folder (Permission denied); "
                               "its photos are skipped"]


def test_ray_is_needed_by_nothing_but_the_archive(tmp_path, tiny_bundle):
    """The app, the CLI and the binary's entry point import and caption with Ray and pyarrow blocked."""
    photo = make_photos(tmp_path / "p", count=1, corrupt=False)[0]
    script = textwrap.dedent(f"""
        import importlib.abc, io, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("ray", "pyarrow"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import imgcap_desktop.app, imgcap_desktop.main_window, imgcap_desktop.cli, imgcap_desktop.selftest
        from imgcap_desktop.cli import main
        out = io.StringIO()
        code = main(["caption", {str(photo)!r}, "--bundle", {str(tiny_bundle)!r}, "--beam", "1"], out)
        assert code == 0, out.getvalue()
        assert out.getvalue().startswith({str(photo)!r})
        assert main(["archive", "caption", {str(photo.parent)!r}, "--out", {str(tmp_path / "r")!r}]) == 2
        assert not [m for m in sys.modules if m.split(".")[0] in ("ray", "pyarrow")]
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    assert "pip install 'imgcap[cluster]'" in done.stderr


def test_latest_rows_keeps_the_newest_row_of_each_photo():
    """After a --retry-failed the rows [A failed, A ok, B] read back as [A failed, A ok]: B vanished
    (and A still counted as failed), because the row numbers were taken as positions."""
    from imgcap_desktop.archive.results import latest_rows

    table = pa.table({"path": ["A", "A", "B"], "size": [1, 1, 2], "mtime_ns": [5, 5, 6], "model_sha": ["m"] * 3,
                      "beam": [3, 3, 3], "status": ["failed", "ok", "ok"]})
    latest = latest_rows(table)
    assert latest.column("path").to_pylist() == ["A", "B"]
    assert latest.column("status").to_pylist() == ["ok", "ok"]
    shuffled = table.take([2, 0, 1])  # B, A failed, A ok
    assert latest_rows(shuffled).column("status").to_pylist() == ["ok", "ok"]
    assert latest_rows(shuffled).column("path").to_pylist() == ["B", "A"]


def test_a_sidecar_that_is_not_written_is_said_and_counted(ray_cluster, tiny_bundle, tmp_path, capsys):
    """--write-sidecars: a sidecar refused (here a folder where it goes) was only in the results'
    columns; the run said "2 captioned, 0 failed" and exited 0, and a rerun skipped the photo."""
    from imgcap_desktop.metadata.apply import StoreOptions

    photos = make_photos(tmp_path / "p", count=2, corrupt=False)[:2]
    sidecar_path(photos[0]).mkdir()
    report = run_archive(_options(tmp_path / "p", tmp_path / "r", tiny_bundle,
                                  store=StoreOptions(write_sidecars=True)))
    assert report.sidecars_failed == 1 and not report.ok
    assert f"sidecar not written: {photos[0]}: " in capsys.readouterr().err  # the whole path


def test_apply_sidecars_counts_a_sidecar_with_a_persons_keyword_removal_as_unchanged(tmp_path):
    """A keyword of imgcap's a person removed stays out of dc:subject, so the stored keywords never
    equalled the row's: every --apply-sidecars rewrote the sidecar and said "1 sidecars written"."""
    from imgcap_desktop.archive.export import _holds

    photo = make_photos(tmp_path / "p", count=1, corrupt=False)[0]
    caption = StoredCaption("a cat on a sofa", "automatic", "m", -1.0, None, ("cat", "sofa"))
    write_caption(photo, caption)
    write_caption(photo, replace(caption, keywords=("sofa",)), keywords_by_person=True)  # "cat" removed
    assert _holds(photo, read_caption(photo, embedded=False), caption)
    assert not _holds(photo, read_caption(photo, embedded=False), replace(caption, text="a dog"))


def test_results_that_cannot_be_written_are_a_message_not_a_traceback(tmp_path, monkeypatch):
    """A read-only results folder failed in the lock's open(), a full disk in pq.write_table: both
    tracebacks (the second with exit 1, as if photos had failed)."""
    import errno

    from imgcap_desktop.archive import results as results_module

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / results_module._LOCK_NAME).mkdir()  # open(..., "a+") fails as on read-only storage
    with pytest.raises(ResultsError, match="cannot write results there"):
        ResultsWriter(tmp_path / "ro")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = ResultsWriter(tmp_path / "full")
    monkeypatch.setattr(results_module.pq, "write_table", full)
    writer._pending.append(pa.table({"x": [1]}))
    with pytest.raises(ResultsError, match="No space left on device"):
        writer.commit()
    assert [p.name for p in (tmp_path / "full").iterdir() if not p.name.startswith(".")] == []
    writer._pending.clear()
    writer.close()


def test_more_cpus_per_worker_than_the_cluster_has_is_a_usage_error():
    """--cpus-per-worker 4 on a 2-CPU machine waited for ever for such a node; inf was an OverflowError."""
    with pytest.raises(ValueError, match="has 2 CPUs"):
        _pool_size(ArchiveOptions(roots=[], out=Path("r"), cpus_per_worker=4), {"CPU": 2.0})
    assert main(["archive", "caption", "x", "--out", "r", "--cpus-per-worker", "inf"], io.StringIO()) == 2


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_a_run_as_ctrl_c_does():
    """A job scheduler's SIGTERM killed the driver (Ray printed a stack dump, exit 15) and the rows
    not committed yet were lost; it now goes the way of Ctrl-C (commit, summary, exit 1)."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with pipeline._terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_a_sigterm_once_the_photos_are_done_stops_the_run_after_their_rows_are_committed(
        tmp_path, tiny_bundle, monkeypatch):
    """A scheduler's SIGTERM while Ray shut down (every photo done) killed the driver: the rows not
    committed yet, all of them with fewer than --commit-every, were never stored."""
    from imgcap_desktop.archive.results import failure_rows

    make_photos(tmp_path / "photos", count=2, corrupt=False)

    def captioned_then_terminated(options, model_name, model_sha, todo, writer, report, err, worker_cls):
        writer.add(failure_rows(todo, ["x"] * todo.num_rows, model=model_name, model_sha=model_sha, beam=2,
                                attempts=1, host="here"))
        os.kill(os.getpid(), signal.SIGTERM)  # as Ray shuts down, say
        time.sleep(0.1)

    monkeypatch.setattr(pipeline, "_caption", captioned_then_terminated)
    before = signal.getsignal(signal.SIGTERM)
    report = run_archive(_options(tmp_path / "photos", tmp_path / "results", tiny_bundle, commit_rows=1000))
    assert report.interrupted and read_results(tmp_path / "results").num_rows == 3
    assert signal.getsignal(signal.SIGTERM) == before



def test_a_sigterm_while_the_stored_results_are_read_stops_the_run_before_it_starts(
        tmp_path, tiny_bundle, monkeypatch):
    """Noted while the results already stored were read (the planning), the SIGTERM was then
    ignored: the whole captioning went ahead until the scheduler's SIGKILL."""
    make_photos(tmp_path / "photos", count=2, corrupt=False)
    real_plan = pipeline.plan

    def plan_then_sigterm(*args, **kwargs):
        planned = real_plan(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        return planned

    captioned = []
    monkeypatch.setattr(pipeline, "plan", plan_then_sigterm)
    monkeypatch.setattr(pipeline, "_caption", lambda *args, **kwargs: captioned.append("a run"))
    report = run_archive(_options(tmp_path / "photos", tmp_path / "results", tiny_bundle))
    assert report.interrupted and captioned == []


def test_listed_apple_double_files_are_left_out_and_the_note_names_kinds(tmp_path, tiny_bundle, monkeypatch):
    """A list (`find photos -type f`) took in ._photo1.jpg, which a folder scan leaves out, as a
    photo that failed for good; the note about what was left out named every dot file's path."""
    lines = []
    for n in range(30):
        folder = tmp_path / "photos" / f"roll{n}"
        make_photos(folder, count=1, corrupt=False)
        (folder / "._photo1.jpg").write_bytes(b"\0\5\x16\7AppleDouble")
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        lines += [str(path) for path in sorted(folder.iterdir())]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert collect_inputs([listing]).paths == collect_inputs([tmp_path / "photos"]).paths
    monkeypatch.setattr(pipeline, "_caption", lambda *args, **kwargs: None)
    err = io.StringIO()
    run_archive(_options(listing, tmp_path / "results", tiny_bundle), err=err)
    note = next(line for line in err.getvalue().splitlines() if "left out" in line)
    assert "left out 60 files that are no photos (dot files)" in note and len(note) < 300



def test_a_temporary_part_another_user_left_in_a_shared_folder_does_not_stop_the_run(tmp_path, monkeypatch):
    """A .part-*.tmp a killed run of another user left in a sticky shared folder could not be
    removed: every run after it ended with a traceback (PermissionError)."""
    (tmp_path / "r").mkdir()
    theirs = tmp_path / "r" / ".part-theirs.tmp"
    theirs.write_bytes(b"half a file")
    real_unlink = Path.unlink

    def sticky(path, missing_ok=False):
        if path == theirs:
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", sticky)
    ResultsWriter(tmp_path / "r").close()
    assert theirs.exists()


def test_a_part_file_without_a_results_column_is_unreadable_not_a_traceback(tmp_path):
    """Valid Parquet without a results column (or with one of another type): KeyError traceback."""
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["/p/a.jpg"], "size": ["not a number"]}), tmp_path / "part-1-x.parquet")
    with pytest.raises(ResultsError, match=r"part-1-x.parquet: unreadable .*move it out of the folder"):
        read_results(tmp_path)


def test_a_message_about_a_photo_with_a_line_break_in_its_name_stays_on_one_line():
    from imgcap_desktop.archive.pipeline import _where

    said = _where("/p/new\nline.jpg", "new\nline.jpg.xmp: not well-formed XML")
    assert "\n" not in said and said == "/p/new\\nline.jpg: new\\nline.jpg.xmp: not well-formed XML"


def test_an_address_nobody_answers_on_is_refused_at_once():
    """--address 127.0.0.1:1: Ray tried again for minutes (deaf to Ctrl-C) instead of exit 2."""
    import socket

    from imgcap_desktop.archive.pipeline import _refuse_unreachable

    started = time.monotonic()
    with pytest.raises(ConnectionError, match="no cluster answers at 127.0.0.1:1"):
        _refuse_unreachable("127.0.0.1:1")
    assert time.monotonic() - started < 5
    with socket.create_server(("127.0.0.1", 0)) as server:  # a port that answers: Ray's to talk to
        _refuse_unreachable(f"127.0.0.1:{server.getsockname()[1]}")
    _refuse_unreachable("auto")
