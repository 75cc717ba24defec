"""The caption session without Qt: photo states, the overwrite policy, edits beating late results,
serialised sidecar writes, held captions, export, import and stale temporary files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imgcap_desktop.metadata.csvio import CsvRow, read_csv
from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from imgcap_desktop.session import CaptionSession, CaptionState, PhotoStatus, remove_stale_temp_files
from model.results import Alternative, CaptionFailure, CaptionResult, Tag
from tests.desktop.conftest_metadata import (
    Snapshot,
    exiftool,
    make_photo,
    needs_exiftool,
    pause_sidecar_moves,
    write_hand_made_csv,
)

NOW = "2026-11-27T02:00:00+00:00"
ROOT = Path(__file__).resolve().parents[2]


def _result(photo: Path, text: str, score: float = -0.5, alternatives=()) -> CaptionResult:
    words = tuple(text.split())
    attention = np.zeros((len(words), 2, 2), np.float32)
    return CaptionResult(str(photo), words, tuple(range(len(words))), score, attention, tuple(alternatives))


def _session(photos, **kwargs) -> CaptionSession:
    session = CaptionSession(**kwargs)
    session.open(photos, Path(photos[0]).parent if photos else None)
    session.read_stored()
    return session


def _run(session, photos, outcomes, policy="replace_automatic", **kwargs):
    plan = session.plan(photos, policy, **kwargs)
    return plan, session.apply_outcomes(plan, outcomes, model_name="tiny", captioned_at=NOW)


def test_the_session_imports_neither_qt_nor_tensorflow():
    script = ("import sys; sys.modules['PySide6'] = None; sys.modules['tensorflow'] = None\n"
              "import imgcap_desktop.session, imgcap_desktop.cli\n"
              "assert not [m for m in sys.modules if m.startswith(('PySide6.', 'tensorflow.'))]\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_states_come_from_what_is_stored(tmp_path):
    a, b, c, d = (make_photo(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"))
    write_caption(a, StoredCaption("auto", "automatic", "tiny", -1.0))
    write_caption(b, StoredCaption("mine", "human"))
    sidecar_path(c).write_bytes(b"<broken")
    (tmp_path / "e.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    session = _session([a, b, c, d, tmp_path / "e.jpg"])
    states = [p.state for p in session.photos()]
    assert states == [CaptionState.AUTOMATIC, CaptionState.HUMAN, CaptionState.ERROR, CaptionState.NONE,
                      CaptionState.ERROR]
    assert "well-formed" in session.photo(c).error
    assert "corrupt or truncated image" in session.photo(tmp_path / "e.jpg").error  # flagged when read, before any run


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_broken_link_is_flagged_with_its_target_before_any_run(tmp_path):
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "unmounted" / "gone.jpg")
    session = _session([make_photo(tmp_path / "a.jpg"), tmp_path / "gone.jpg"])
    gone = session.photo(tmp_path / "gone.jpg")
    assert gone.state == CaptionState.ERROR
    assert gone.error == f"broken link: its target {tmp_path / 'unmounted' / 'gone.jpg'} is missing"


def test_sidecars_are_written_with_provenance(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    changed = []
    session.changed.connect(changed.append)

    _, (status,) = _run(session, [a], [_result(a, "a dog")])

    expected = StoredCaption("a dog", "automatic", "tiny", -0.5, NOW)
    assert status == PhotoStatus(a, "written", expected, sidecar_path(a))
    assert read_caption(a) == expected
    photo = session.photo(a)
    assert photo.state is CaptionState.AUTOMATIC and not photo.held and photo.attention_matches
    assert changed == [(a,)]


def test_without_writing_captions_are_held(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a], auto_write=False)
    _, (status,) = _run(session, [a], [_result(a, "a dog")])
    assert status.status == "held" and status.caption.text == "a dog"
    assert list(tmp_path.iterdir()) == [a]
    assert session.photo(a).held and [p.path for p in session.held()] == [a]
    written, failures = session.accept_held()
    assert (written, failures) == (1, []) and read_caption(a).text == "a dog" and not session.photo(a).held


def test_human_captions_are_kept_unless_replace_all(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("my dog Rex", "human"))
    before = Snapshot([sidecar_path(a)])
    session = _session([a])

    plan = session.plan([a], "replace_automatic")
    assert plan.photos == () and [s.status for s in plan.settled] == ["kept_human"]
    # A person wrote the sidecar after the plan was made: still kept at store time.
    plan, (kept,) = _run(session, [a], [_result(a, "a dog")], policy="skip")
    before.assert_unchanged()

    plan = session.plan([a], "replace_all")
    assert plan.photos == (a,) and plan.human_count == 1 and plan.overwrite_human
    assert session.without_human(plan).photos == ()
    (replaced,) = session.apply_outcomes(plan, [_result(a, "a dog")], model_name="tiny")
    assert replaced.status == "written" and read_caption(a).text == "a dog"


def test_a_human_caption_written_elsewhere_meanwhile_is_kept(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    plan = session.plan([a], "replace_automatic")
    write_caption(a, StoredCaption("typed in darktable", "human"))
    (status,) = session.apply_outcomes(plan, [_result(a, "a dog")], model_name="tiny")
    assert status.status == "kept_human" and read_caption(a).text == "typed in darktable"
    assert session.photo(a).text == "typed in darktable"


def test_the_overwrite_policy(tmp_path):
    none, auto, human, embedded = (make_photo(tmp_path / f"{n}.jpg") for n in ("none", "auto", "human", "embedded"))
    write_caption(auto, StoredCaption("auto", "automatic", "tiny", -1.0))
    write_caption(human, StoredCaption("mine", "human"))
    session = _session([none, auto, human, embedded])
    session._update(embedded, caption=StoredCaption("from the camera", "embedded"))
    assert session.plan(None, "skip").photos == (none,)
    assert session.plan(None, "replace_automatic").photos == (none, auto)  # embedded: a person's caption
    assert session.plan(None, "replace_all").photos == (none, auto, human, embedded)
    assert session.plan([human, none], "skip").photos == (none,)


def test_failures_and_empty_captions_are_per_photo(tmp_path):
    a, b, c = (make_photo(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    write_caption(b, StoredCaption("keep me", "automatic", "tiny", -1.0))
    session = _session([a, b, c])
    sidecar_path(c).write_bytes(b"<broken")
    outcomes = [CaptionFailure(str(a), "not an image"), _result(b, ""), _result(c, "x")]

    _, statuses = _run(session, [a, b, c], outcomes)

    assert [s.status for s in statuses] == ["failed", "failed", "failed"]
    assert "not an image" in statuses[0].message and "empty" in statuses[1].message
    assert "c.jpg.xmp" in statuses[2].message
    assert read_caption(b).text == "keep me" and sidecar_path(c).read_bytes() == b"<broken"
    assert session.photo(a).state is CaptionState.ERROR and session.photo(b).text == "keep me"


def test_base_style_collisions_fail_at_once(tmp_path):
    x_jpg, x_png, y = (make_photo(tmp_path / n) for n in ("x.jpg", "x.png", "y.jpg"))
    session = _session([x_jpg, x_png, y], sidecar_style="base")
    plan = session.plan(None, "replace_automatic")
    assert plan.photos == (y,)
    assert [(s.photo, s.status) for s in plan.settled] == [(x_jpg, "failed"), (x_png, "failed")]
    assert "x.xmp" in plan.settled[0].message
    # The photos show it (the app's error badge, the CSV's error column): it used to live in the plan only,
    # which the window never reads, so the two photos were silently left uncaptioned.
    assert session.photo(x_jpg).state is CaptionState.ERROR and "x.xmp" in session.photo(x_png).error
    rows = {row.file_name: row.error for row in session.export_rows()}
    assert "x.xmp" in rows["x.jpg"] and rows["y.jpg"] == ""


# -- defect 1: the user's edit beats a result planned before it ------------------------------------

@pytest.mark.parametrize("auto_write", [True, False])
def test_an_edit_made_while_the_batch_was_pending_wins(tmp_path, auto_write):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a], auto_write=auto_write)
    plan = session.plan([a], "replace_all")
    session.edit(a, "typed while it was being captioned")
    (status,) = session.apply_outcomes(plan, [_result(a, "a dog")], model_name="tiny")
    assert status.status == "kept_edit"
    assert session.photo(a).text == "typed while it was being captioned"
    assert session.photo(a).state is CaptionState.HUMAN
    if auto_write:
        assert read_caption(a).text == "typed while it was being captioned"


# -- defect 4: a failed write is not shown as stored -----------------------------------------------

def test_a_failed_write_is_held_with_the_reason(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    sidecar_path(a).write_bytes(b"<not xmp")  # unparseable: never overwritten
    photo = session.edit(a, "my caption")
    assert photo.held and photo.write_error and photo.text == "my caption"
    assert sidecar_path(a).read_bytes() == b"<not xmp"
    assert session.held() == [photo]


# -- defect 5: a worker's read-then-write and the GUI's write never interleave --------------------

def test_sidecar_writes_are_serialised_per_photo(tmp_path, monkeypatch):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    plan = session.plan([a], "replace_automatic")
    in_write = pause_sidecar_moves(monkeypatch)  # the worker between its read and its replace
    worker = threading.Thread(target=session.apply_outcomes, args=(plan, [_result(a, "a dog")]),
                              kwargs={"model_name": "tiny"})
    worker.start()
    assert in_write.wait(10)
    session.edit(a, "the user's words")  # waits for the worker's write, then wins
    worker.join(10)
    assert read_caption(a).text == "the user's words" and read_caption(a).source == "human"
    assert session.photo(a).text == "the user's words"


# -- the user's other changes ------------------------------------------------------------------------

def test_a_beam_alternative_stays_automatic(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    alternatives = (Alternative(("a", "dog"), -0.5), Alternative(("a", "brown", "dog"), -0.75))
    _run(session, [a], [_result(a, "a dog", alternatives=alternatives)])
    photo = session.edit(a, "a brown dog", source="automatic")
    assert photo.state is CaptionState.AUTOMATIC
    assert (photo.caption.model, photo.caption.score) == ("tiny", -0.75)
    assert read_caption(a).source == "automatic"


def test_discarding_held_captions_shows_the_stored_ones_again(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("stored", "automatic", "tiny", -1.0))
    session = _session([a], auto_write=False)
    session.edit(a, "not kept")
    assert session.discard_held() == 1
    assert session.photo(a).text == "stored" and not session.photo(a).held


def test_results_for_a_folder_opened_since_change_no_state(tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a])
    plan = session.plan([a], "replace_automatic")
    session.open([b])
    (status,) = session.apply_outcomes(plan, [_result(a, "a dog")], model_name="tiny")
    assert status.status == "written" and session.photo(a) is None


# -- export and import ------------------------------------------------------------------------------

def test_export_lists_every_photo_with_what_the_session_shows(tmp_path):
    a, b, c = (make_photo(tmp_path / n, size=(30, 20)) for n in ("a.jpg", "b.jpg", "c.jpg"))
    write_caption(c, StoredCaption("stored before", "automatic", "tiny", -2.0, NOW))
    session = _session([a, b, c])
    _run(session, None, [_result(a, "a dog"), CaptionFailure(str(b), "broken"), CaptionFailure(str(c), "broken")])

    assert session.export_csv(tmp_path / "out.csv") == 3

    rows = [row for _, row in read_csv(tmp_path / "out.csv")]
    assert [(r.relative_path, r.caption, r.source, r.model, r.width, r.height, r.sidecar_path) for r in rows] == [
        ("a.jpg", "a dog", "automatic", "tiny", 30, 20, "a.jpg.xmp"),
        ("b.jpg", "", "", "", 30, 20, ""),
        ("c.jpg", "stored before", "automatic", "tiny", 30, 20, "c.jpg.xmp"),
    ]
    assert [r.error for r in rows] == ["", "broken", "broken"]  # failed photos say why
    assert session.export_csv(tmp_path / "some.csv", [b]) == 1


def test_export_with_a_bom_for_excel(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    session.edit(a, "café")
    session.export_csv(tmp_path / "excel.csv", excel_bom=True)
    data = (tmp_path / "excel.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and "café".encode() in data


def test_export_to_an_unwritable_place_raises_oserror(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    with pytest.raises(OSError):
        session.export_csv(tmp_path / "no" / "such" / "folder" / "out.csv")


def test_import_csv_updates_the_photos(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    write_hand_made_csv(tmp_path / "c.csv", [CsvRow("a.jpg", "a.jpg", "edited in a spreadsheet")])
    report = session.import_csv(tmp_path / "c.csv")
    assert report.applied == [a]
    assert session.photo(a).text == "edited in a spreadsheet" and session.photo(a).state is CaptionState.HUMAN


def test_a_csv_exported_while_captions_are_held_imports_as_unchanged(tmp_path):
    """The export shows the held captions, the import compared rows with the (empty) sidecars: an
    untouched CSV turned the model's held captions into a person's, written."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b], auto_write=False)
    _run(session, None, [_result(a, "a cat on a sofa"), _result(b, "a dog on the grass")])
    session.export_csv(tmp_path / "c.csv")
    # A reviewer in a spreadsheet can tell the captions held from ones written.
    assert {row.error for _, row in read_csv(tmp_path / "c.csv")} == {"held for review: not written to the sidecar yet"}
    report = session.import_csv(tmp_path / "c.csv")
    assert report.applied == [] and sorted(report.unchanged) == [a, b]
    assert all(p.held and p.state is CaptionState.AUTOMATIC for p in session.photos())
    assert not sidecar_path(a).exists()

    rows = [row for _, row in read_csv(tmp_path / "c.csv")]
    rows[0] = CsvRow(**{**rows[0].__dict__, "caption": "my cat"})
    write_hand_made_csv(tmp_path / "c.csv", rows)
    report = session.import_csv(tmp_path / "c.csv")  # an edited row is a person's edit, written
    assert report.applied == [a] and read_caption(a).text == "my cat" and not session.photo(a).held


# -- defect 9: stale temporary files of a killed writer ----------------------------------------------

def test_stale_temporary_files_are_removed_on_open_and_plan(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    stale = tmp_path / ".a.jpg.xmp.k3j_x9q2.tmp"
    fresh = tmp_path / ".a.jpg.xmp.abcdef12.tmp"
    foreign = tmp_path / ".notes.txt.abcdef.tmp"
    other_photo = tmp_path / ".z.jpg.xmp.abcdef12.tmp"
    for path in (stale, fresh, foreign, other_photo):
        path.write_bytes(b"partial")
    old = time.time() - 120
    for path in (stale, foreign, other_photo):
        os.utime(path, (old, old))

    CaptionSession().open([a])

    assert not stale.exists()
    assert fresh.exists() and foreign.exists() and other_photo.exists()  # young, or not ours by name
    os.utime(fresh, (old, old))
    session = CaptionSession()
    session.open([a])
    assert not fresh.exists()
    assert remove_stale_temp_files([a]) == []


@needs_exiftool
@pytest.mark.parametrize("auto_write", [True, False])
def test_an_edit_undone_back_to_an_embedded_caption(tmp_path, auto_write):
    """Undo of an edit on a photo with an embedded description set the embedded caption again, which
    the writer refuses (ValueError): in auto-write mode the typed caption stayed in the sidecar; held,
    Accept Held (and Quit, Save) raised out of the window and wrote none of the others."""
    photo, other = make_photo(tmp_path / "e.jpg"), make_photo(tmp_path / "f.jpg")
    exiftool("-q", "-overwrite_original", "-EXIF:ImageDescription=Eileen Collins", photo)
    session = _session([photo, other], auto_write=auto_write)
    embedded = session.photo(photo).caption
    assert embedded == StoredCaption("Eileen Collins", "embedded")

    session.set_caption(photo, StoredCaption("my typed caption", "human"))
    session.set_caption(photo, embedded)  # Undo
    session.set_caption(other, StoredCaption("another typed caption", "human"))
    written, failures = session.accept_held()
    assert failures == [] and written == (0 if auto_write else 1)  # the undone one is not held
    assert session.photo(photo).state == CaptionState.EMBEDDED and not session.photo(photo).write_error
    assert read_caption(photo) == embedded  # the sidecar holds no caption of its own any more
    assert not sidecar_path(photo).exists()  # nothing anyone stored was in it
    assert read_caption(other).text == "another typed caption"


@needs_exiftool
def test_a_clear_shows_the_embedded_caption_it_cannot_take(tmp_path):
    """A clear of a photo's embedded caption said nothing and showed no caption, yet the photo kept
    it (it showed again on reopening, and runs left it alone); a clear of a caption over it showed
    none instead of the embedded one that then applies."""
    photo, over = make_photo(tmp_path / "e.jpg"), make_photo(tmp_path / "f.jpg")
    for path in (photo, over):
        exiftool("-q", "-overwrite_original", "-EXIF:ImageDescription=Sunset over the harbour", path)
    session = _session([photo, over])
    embedded = session.photo(photo).caption

    cleared = session.set_caption(photo, None)
    assert cleared.caption == embedded and "embedded in the photo" in cleared.write_error
    assert not sidecar_path(photo).exists()

    session.set_caption(over, StoredCaption("a boat at dusk", "human"))
    cleared = session.set_caption(over, None)
    assert cleared.caption == embedded == read_caption(over) and not cleared.write_error
    assert cleared.state == CaptionState.EMBEDDED


def test_a_clear_while_captions_are_held_for_review_is_written_or_takes_the_held_one_back(tmp_path):
    """Held for review, a clear showed "No caption" but was neither written nor held: Accept wrote
    nothing, closing asked nothing, and the caption was back on reopening."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    write_caption(a, StoredCaption("mine", "human"))
    write_caption(b, StoredCaption("stored", "human"))
    session = _session([a, b], auto_write=False)

    cleared = session.set_caption(a, None)
    assert cleared.caption is None and not cleared.held and read_caption(a) is None

    _run(session, [b], [_result(b, "a model's caption")], policy="replace_all")
    assert session.photo(b).held and read_caption(b).text == "stored"
    back = session.set_caption(b, None)  # the held one taken back: the stored one shows, untouched
    assert (back.text, back.held) == ("stored", False) and read_caption(b).text == "stored"
    assert session.accept_held() == (0, [])


@pytest.mark.parametrize(("first", "later"), [(["en-US"], ["x-default", "en-US"]), (["x-default", "en-US"], ["en-US"])])
def test_a_caption_whose_words_move_to_another_language_item_is_undone_to_where_they_are(tmp_path, first, later):
    """Another program saved the same words into another language's item: the session kept the old
    one (not part of a caption's equality), and an edit's undo then took out that program's x-default
    item, or made an x-default copy of its en-US one."""
    import re

    def items(languages):
        return "".join(f'<rdf:li xml:lang="{lang}">A cat on the sofa</rdf:li>' for lang in languages)

    photo = make_photo(tmp_path / "a.jpg")
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
              '{}</rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>')
    sidecar_path(photo).write_text(packet.format(items(first)))
    session = _session([photo])
    sidecar_path(photo).write_text(packet.format(items(later)))
    session.refresh_stored([photo])  # what the folder watcher does
    before = session.photo(photo).caption
    session.set_caption(photo, StoredCaption("A dog on the sofa", "human"))
    session.set_caption(photo, before)  # undone
    assert re.findall(r'xml:lang="([^"]+)"', sidecar_path(photo).read_text()) == later


def test_held_for_review_a_typed_caption_accepted_is_undone(qapp, tmp_path):
    """Undo after Accept was refused as "changed since by another program": what the sidecar held
    at the edit (nothing, the caption being held) was taken for the mark of what to take back."""
    from PySide6.QtGui import QUndoStack

    from imgcap_desktop.actions import SetCaptionCommand

    photo = make_photo(tmp_path / "a.jpg")
    session = _session([photo], auto_write=False)
    stack = QUndoStack()
    stack.push(SetCaptionCommand(session, photo, StoredCaption("typed", "human"), None))
    assert session.accept_held() == (1, []) and read_caption(photo).text == "typed"
    stack.undo()
    assert read_caption(photo) is None and session.photo(photo).caption is None


def test_a_caption_taken_out_leaves_no_provenance_and_no_stub_sidecar(tmp_path):
    """A caption typed and undone on an uncaptioned photo left a sidecar holding only imgcap's
    CreatorTool and "source: human"; one another tool wrote to keeps its values."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b])
    session.set_caption(a, StoredCaption("typed", "human"))
    assert sidecar_path(a).exists()
    session.set_caption(a, None)
    assert not sidecar_path(a).exists()

    sidecar_path(b).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="3"/>'
        "</rdf:RDF></x:xmpmeta>", encoding="utf-8")
    write_caption(b, StoredCaption("typed", "human"))
    write_caption(b, StoredCaption("", "human"))
    data = sidecar_path(b).read_text(encoding="utf-8")
    assert 'xmp:Rating="3"' in data and "imgcap:source" not in data and read_caption(b) is None


def test_a_result_the_sidecar_cannot_take_is_held_not_lost(tmp_path, monkeypatch):
    """A read-only folder: each photo became "error: cannot write" and the model's caption was gone
    (not in the app, not in a CSV), while a typed caption in the same place was held."""
    import imgcap_desktop.metadata.sidecar as sidecar
    from imgcap_desktop.metadata.sidecar import SidecarError

    a = make_photo(tmp_path / "a.jpg")

    def refuse(target, data, photo, read=None):
        raise SidecarError(photo, "cannot write a.jpg.xmp: Read-only file system")

    monkeypatch.setattr(sidecar, "_replace_atomically", refuse)
    session = _session([a])
    _, statuses = _run(session, None, [_result(a, "a cat on a sofa")])
    assert [s.status for s in statuses] == ["failed"]  # still reported as a failure
    photo = session.photo(a)
    assert (photo.text, photo.held, photo.error) == ("a cat on a sofa", True, "")
    assert "Read-only file system" in photo.write_error
    session.export_csv(tmp_path / "c.csv")
    [(_, row)] = read_csv(tmp_path / "c.csv")
    assert row.caption == "a cat on a sofa" and "Read-only" in row.error
    monkeypatch.undo()
    assert session.accept_held() == (1, []) and read_caption(a).text == "a cat on a sofa"


def test_a_run_of_the_folder_before_it_was_opened_again_shows_what_it_wrote(tmp_path):
    """Include Subfolders (or Open Recent) during a run re-reads the folder while the batch in flight
    is still being written: the photos then showed no caption, though their sidecars held one."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b])
    plan = session.plan(None, "replace_automatic")
    session.open([a, b], tmp_path)  # opened again: the reader read the sidecars before the write
    session.read_stored()
    session.apply_outcomes(plan, [_result(a, "a cat on a sofa"), _result(b, "a dog on the grass")], model_name="m")
    assert [p.text for p in session.photos()] == ["a cat on a sofa", "a dog on the grass"]
    assert session.photo(a).state is CaptionState.AUTOMATIC and session.photo(a).attention_matches


def test_a_run_held_for_review_shows_its_late_batch_in_the_folder_opened_again(tmp_path):
    """Hold mode, the same folder opened again (Save answered) while a batch was under way: its
    captions were dropped without a word, though the run's status counted them."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b], auto_write=False)
    plan = session.plan(None, "replace_automatic")
    session.open([a, b], tmp_path)
    session.read_stored()
    session.set_caption(b, StoredCaption("typed after reopening", "human"))  # held: it stays
    session.apply_outcomes(plan, [_result(a, "a cat on a sofa"), _result(b, "a dog on the grass")], model_name="m")
    assert (session.photo(a).text, session.photo(a).held) == ("a cat on a sofa", True)
    assert session.photo(b).text == "typed after reopening"
    assert not sidecar_path(a).exists()


def test_no_orphan_sidecar_for_a_photo_deleted_after_it_was_listed(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    a.unlink()
    session.set_caption(a, StoredCaption("typed for a photo now gone", "human"))
    assert not sidecar_path(a).exists()  # it used to be created beside nothing
    photo = session.photo(a)
    assert photo.held and "not there any more" in photo.write_error


@pytest.mark.parametrize("extra", [
    "<!-- kept by hand -->",
    '<foo:Thing xmlns:foo="http://example.com/foo/" rdf:about=""><foo:val>important</foo:val></foo:Thing>',
])
def test_a_sidecar_with_anything_else_in_it_is_not_taken_for_a_stub(tmp_path, extra):
    """Only a packet that is exactly imgcap's new-sidecar stub is removed once its caption is taken
    out: a comment, or a typed node beside the Descriptions, was deleted with it."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("typed", "human"))
    data = sidecar_path(a).read_text(encoding="utf-8")
    sidecar_path(a).write_text(data.replace("</rdf:RDF>", f"{extra}</rdf:RDF>"), encoding="utf-8")
    write_caption(a, StoredCaption("", "human"))
    assert extra in sidecar_path(a).read_text(encoding="utf-8")


def test_a_caption_typed_and_taken_out_again_leaves_another_tools_sidecar_as_it_was(tmp_path):
    """Each cycle left one more empty rdf:Description of imgcap's behind (the file grew every time)."""
    a = make_photo(tmp_path / "a.jpg")
    original = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
                ' <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="3"/>\n'
                "</rdf:RDF></x:xmpmeta>\n")
    sidecar_path(a).write_text(original, encoding="utf-8")
    sizes = []
    for _ in range(3):
        write_caption(a, StoredCaption("typed", "human"))
        write_caption(a, StoredCaption("", "human"))
        sizes.append(len(sidecar_path(a).read_bytes()))
    assert sizes[0] == sizes[1] == sizes[2] <= len(original.encode()) + 1
    assert "Description" not in sidecar_path(a).read_text(encoding="utf-8").split("xmp:Rating")[1]


def test_an_import_over_a_held_caption_keeps_its_keyword_removals(tmp_path):
    """Held: "cat" removed, then a CSV edit of the keywords wrote the held caption without recording
    the removal, and the next run added "cat" back."""
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a], auto_write=False)
    result = CaptionResult(str(a), ("a", "cat"), (1, 2), -0.5, np.zeros((2, 2, 2), np.float32), (),
                           (Tag("cat", 0.9, (0,)), Tag("sofa", 0.6, (1,))), ("cat", "sofa"))
    _run(session, None, [result])
    session.set_keywords(a, ("sofa",))
    session.export_csv(tmp_path / "c.csv")
    rows = [row for _, row in read_csv(tmp_path / "c.csv")]
    write_hand_made_csv(tmp_path / "c.csv", [CsvRow(**{**rows[0].__dict__, "keywords": ("sofa", "whiskers")})])
    assert session.import_csv(tmp_path / "c.csv").applied == [a]
    session.auto_write = True
    _run(session, None, [result])
    assert read_caption(a).keywords == ("sofa", "whiskers")  # "cat" stays out


@needs_exiftool
def test_held_edits_undone_back_to_what_is_stored_are_not_held(tmp_path):
    """Hold mode: edits undone all the way back still counted as held ("Wrote 2 captions" on Accept,
    and a question on closing), though nothing was left to write."""
    photo, other = make_photo(tmp_path / "e.jpg"), make_photo(tmp_path / "f.jpg")
    exiftool("-q", "-overwrite_original", "-EXIF:ImageDescription=Eileen Collins", photo)
    write_caption(other, StoredCaption("stored", "human"))
    session = _session([photo, other], auto_write=False)
    for path in (photo, other):
        before = session.photo(path).caption
        session.set_caption(path, StoredCaption("typed", "human"))
        assert session.photo(path).held
        session.set_caption(path, before)  # Undo
        assert not session.photo(path).held
    assert session.held() == [] and session.accept_held() == (0, [])


def _tagged(photo: Path, text: str, keywords: tuple[str, ...]) -> CaptionResult:
    words = tuple(text.split())
    tags = tuple(Tag(w, 0.9, (i,)) for i, w in enumerate(keywords))
    return CaptionResult(str(photo), words, tuple(range(len(words))), -0.5, np.zeros((len(words), 2, 2), np.float32),
                         (), tags, keywords)


def test_a_csv_over_held_captions_writes_their_keywords_and_the_persons_removals(tmp_path):
    """Held: a CSV editing only the caption wrote no keywords (the held ones were never in the sidecar),
    and one taking a keyword out did not reject it, so the next run added it back."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b], auto_write=False)
    _run(session, None, [_tagged(a, "a cat on a sofa", ("cat", "sofa")), _tagged(b, "a dog", ("dog", "grass"))])
    session.export_csv(tmp_path / "c.csv")
    rows = {row.relative_path: row for _, row in read_csv(tmp_path / "c.csv")}
    rows["a.jpg"] = CsvRow(**{**rows["a.jpg"].__dict__, "caption": "a black cat on a sofa"})
    rows["b.jpg"] = CsvRow(**{**rows["b.jpg"].__dict__, "keywords": ("dog",)})
    write_hand_made_csv(tmp_path / "c.csv", list(rows.values()))
    assert sorted(session.import_csv(tmp_path / "c.csv").applied) == [a, b]
    assert read_caption(a).keywords == ("cat", "sofa") and read_caption(b).keywords == ("dog",)
    again = _session([a, b])
    _run(again, None, [_tagged(b, "a dog", ("dog", "grass"))])
    assert read_caption(b).keywords == ("dog",)


def test_accepting_a_held_caption_rejects_only_what_the_person_removed(tmp_path):
    """The model's new result no longer gave "lamp": accepting the held caption (a keyword removed by
    the person) recorded "lamp" as a person's rejection too, and no later run added it back."""
    a = make_photo(tmp_path / "a.jpg")
    _run(_session([a]), None, [_tagged(a, "a cat by a lamp", ("cat", "lamp"))])
    session = _session([a], auto_write=False)
    _run(session, None, [_tagged(a, "a cat on a sofa", ("cat", "sofa", "rug"))])
    session.set_keywords(a, ("cat", "rug"))  # the person removes "sofa" only
    session.accept_held()
    _run(_session([a]), None, [_tagged(a, "a cat by a lamp", ("cat", "lamp", "sofa"))])
    assert read_caption(a).keywords == ("cat", "lamp")


def test_a_late_result_for_a_folder_opened_again_never_replaces_an_edit_made_there(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    plan = session.plan([a], "replace_all")
    session.open([a], tmp_path)
    session.read_stored()
    session.edit(a, "my own words")
    [status] = session.apply_outcomes(plan, [_result(a, "a cat on a sofa")], model_name="m")
    assert status.status == "kept_edit"
    assert read_caption(a).text == session.photo(a).text == "my own words"


def test_a_late_result_the_sidecar_refuses_is_held_in_the_folder_opened_again(tmp_path, monkeypatch):
    import imgcap_desktop.metadata.sidecar as sidecar
    from imgcap_desktop.metadata.sidecar import SidecarError

    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    plan = session.plan([a], "replace_automatic")
    session.open([a], tmp_path)
    session.read_stored()

    def refuse(target, data, photo, read=None):
        raise SidecarError(photo, "read-only; left as it is")

    monkeypatch.setattr(sidecar, "_replace_atomically", refuse)
    session.apply_outcomes(plan, [_result(a, "a cat on a sofa")], model_name="m")
    photo = session.photo(a)
    assert (photo.text, photo.held, photo.write_error) == ("a cat on a sofa", True, "read-only; left as it is")


@needs_exiftool
def test_removing_a_keyword_keeps_a_caption_another_program_wrote_since(tmp_path):
    """A keyword change once wrote the caption the folder was opened with back over the one another
    program (here exiftool, as digiKam or Lightroom would) wrote since, and marked it the model's again."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("a dog on a beach", "automatic", "tiny", -0.5, NOW, ("dog", "beach")))
    session = _session([a])
    exiftool("-q", "-overwrite_original", "-XMP-dc:Description=My own caption typed in digiKam", sidecar_path(a))
    photo = session.set_keywords(a, ["dog"])
    stored = read_caption(a)
    assert (stored.text, stored.source) == ("My own caption typed in digiKam", "human")
    assert stored.keywords == ("dog",)  # the keyword change is written all the same
    assert (photo.text, photo.keywords) == ("My own caption typed in digiKam", ("dog",))
    session.set_keywords(a, ["dog", "beach"])  # undone: still on the newer caption
    assert (read_caption(a).text, read_caption(a).keywords) == ("My own caption typed in digiKam", ("dog", "beach"))


def test_a_keyword_change_after_another_program_removed_the_caption_writes_nothing(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("a dog on a beach", "automatic", "tiny", -0.5, NOW, ("dog", "beach")))
    session = _session([a])
    sidecar_path(a).unlink()
    photo = session.set_keywords(a, ["dog"])
    assert read_caption(a) is None and not sidecar_path(a).exists()
    assert photo.caption is None


@needs_exiftool
def test_accepting_a_held_caption_keeps_a_persons_caption_written_since(tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b], auto_write=False)
    _run(session, None, [_result(a, "a dog"), _result(b, "a cat")], policy="skip")
    assert [p.held for p in session.photos()] == [True, True]
    exiftool("-q", "-o", sidecar_path(a), "-XMP-dc:Description=Typed in Lightroom by me", a)
    written, not_written = session.accept_held()
    assert written == 1 and read_caption(b).text == "a cat"
    assert [(s.photo, s.status) for s in not_written] == [(a, "kept_human")]
    assert "a person's caption" in not_written[0].message
    assert (read_caption(a).text, read_caption(a).source) == ("Typed in Lightroom by me", "human")
    assert (session.photo(a).text, session.photo(a).held) == ("Typed in Lightroom by me", False)


def test_accepting_a_held_caption_replaces_the_persons_caption_the_run_was_told_to(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("mine", "human"))
    session = _session([a], auto_write=False)
    _run(session, None, [_result(a, "a dog")], policy="replace_all")
    assert session.accept_held() == (1, []) and read_caption(a).text == "a dog"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_photo_that_became_a_pipe_is_reported_not_waited_on(tmp_path):
    """A photo replaced by a named pipe while the folder was read blocked its reader in Image.open for
    good, and the app could not quit."""
    from imgcap_desktop.session import unreadable_photo_reason

    pipe = tmp_path / "b.jpg"
    os.mkfifo(pipe)
    answer = []
    reader = threading.Thread(target=lambda: answer.append(unreadable_photo_reason(pipe)), daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the reader, so the test run can end
        with open(pipe, "wb"):
            pass
    assert answer == ["not a regular file"]
    assert unreadable_photo_reason(tmp_path / "gone.jpg") == "file not found"


def _replace_file(photo: Path) -> None:
    """Another picture saved under the photo's name (a camera's counter started again, say)."""
    before = photo.stat()
    make_photo(photo.with_name("other.png"))
    os.replace(photo.with_name("other.png"), photo)
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def test_a_caption_is_not_stored_for_another_file_saved_under_the_photos_name_since(tmp_path):
    """The real captioner reads the next batch's photos ahead; a photo replaced after it was read got
    the old picture's caption written into its sidecar."""
    from dataclasses import replace

    from model.images import file_identity

    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b])
    results = [replace(_result(p, "a dog on a beach"), identity=file_identity(p)) for p in (a, b)]
    _replace_file(a)
    _, statuses = _run(session, None, results)
    assert [s.status for s in statuses] == ["failed", "written"]
    assert "changed while it was being captioned" in statuses[0].message
    assert read_caption(a) is None and not sidecar_path(a).exists()
    assert session.photo(a).error.startswith("the photo changed") and read_caption(b).text == "a dog on a beach"


def test_a_held_caption_of_a_photo_replaced_since_is_dropped_not_written(tmp_path):
    from dataclasses import replace

    from model.images import file_identity

    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b], auto_write=False)
    _run(session, None, [replace(_result(p, "a dog"), identity=file_identity(p)) for p in (a, b)])
    _replace_file(a)
    written, not_written = session.accept_held()
    assert written == 1 and read_caption(b).text == "a dog"
    assert [(s.photo, s.status) for s in not_written] == [(a, "failed")]
    assert "changed since it was captioned" in not_written[0].message
    assert read_caption(a) is None and not session.photo(a).held and session.photo(a).text == ""


def test_a_held_caption_of_a_photo_deleted_since_is_said_to_be_gone(tmp_path):
    """It was said to be "changed since it was captioned (another file under its name)"; a person's
    typing stays held, to be written or discarded."""
    from dataclasses import replace

    from model.images import file_identity

    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b], auto_write=False)
    _run(session, None, [replace(_result(a, "a dog"), identity=file_identity(a))])
    session.set_caption(b, StoredCaption("Grandma Rose at the lake, 1962", "human"))  # typed, held
    a.unlink()
    b.unlink()
    written, not_written = session.accept_held()
    assert written == 0 and [(s.photo, s.status) for s in not_written] == [(a, "gone"), (b, "failed")]
    assert "deleted or moved away since it was captioned" in not_written[0].message
    assert not sidecar_path(a).exists() and not sidecar_path(b).exists()
    assert session.photo(b).held and session.photo(b).text == "Grandma Rose at the lake, 1962"  # still the person's


def test_the_archive_workers_store_skips_a_photo_replaced_since_it_was_read(tmp_path):
    from dataclasses import replace

    from imgcap_desktop.metadata.apply import StoreOptions, store_outcomes
    from model.images import file_identity

    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    results = [replace(_result(p, "a dog"), identity=file_identity(p)) for p in (a, b)]
    _replace_file(b)
    statuses = store_outcomes(results, StoreOptions(write_sidecars=True), model_name="tiny", captioned_at=NOW)
    assert [s.status for s in statuses] == ["written", "failed"]
    assert "changed while it was being captioned" in statuses[1].message and read_caption(b) is None


def test_a_held_result_for_a_folder_no_longer_open_is_reported_not_counted_as_held(tmp_path):
    """Hold for review, another folder opened mid-run: the late batch's captions were neither held nor
    written, and the run counted them as captioned."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a, b = make_photo(tmp_path / "one" / "a.jpg"), make_photo(tmp_path / "two" / "b.jpg")
    session = _session([a], auto_write=False)
    plan = session.plan(None, "skip")
    session.open([b], tmp_path / "two")
    [status] = session.apply_outcomes(plan, [_result(a, "a dog")], model_name="tiny", captioned_at=NOW)
    assert status.status == "failed" and "no longer open; not written" in status.message
    assert read_caption(a) is None


def test_a_caption_typed_over_a_held_model_caption_is_written_even_where_the_photo_was_saved_again(tmp_path):
    """The typed caption inherited the model result's file identity: Accept dropped it as the caption
    of a replaced photo once an editor had saved the JPEG again."""
    from dataclasses import replace

    from model.images import file_identity

    a = make_photo(tmp_path / "a.jpg")
    session = _session([a], auto_write=False)
    _run(session, None, [replace(_result(a, "a dog"), identity=file_identity(a))])
    session.edit(a, "my own careful caption")
    _replace_file(a)
    assert session.accept_held() == (1, [])
    assert read_caption(a).text == "my own careful caption"


def test_accepting_what_a_run_held_after_a_failed_write_replaces_the_caption_it_was_told_to(tmp_path, monkeypatch):
    """A replace-all run whose write failed held its caption without what it was held over: Accept
    then took the person's caption it was told to replace for one written since, and kept it."""
    import imgcap_desktop.metadata.sidecar as sidecar
    from imgcap_desktop.metadata.sidecar import SidecarError

    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("mine", "human"))
    session = _session([a])

    def refuse(target, data, photo, read=None):
        raise SidecarError(photo, "cannot write a.jpg.xmp: No space left on device")

    monkeypatch.setattr(sidecar, "_replace_atomically", refuse)
    _run(session, None, [_result(a, "a dog")], policy="replace_all")
    assert session.photo(a).held
    monkeypatch.undo()
    assert session.accept_held() == (1, []) and read_caption(a).text == "a dog"


def test_a_clear_the_sidecar_refuses_keeps_showing_the_caption(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    sidecar_path(a).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
        '<rdf:li xml:lang="en-US">Only English</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF>'
        '</x:xmpmeta>', encoding="utf-8")
    session = _session([a])
    photo = session.edit(a, "")
    assert photo.text == "Only English" and "en-us description" in photo.write_error and not photo.held


def test_maps_computed_for_a_caption_as_it_is_leave_it_and_its_sidecar_alone(tmp_path):
    """Recomputing the maps of a picked alternative captioned the photo again: the best caption came
    back over the person's pick. The maps are now computed for the caption shown, whatever it is."""
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    alternative = Alternative(("a", "cup", "on", "a", "table"), -1.0)
    _run(session, [a], [_result(a, "a cup of coffee", alternatives=(alternative,))])
    assert not session.photo(a).recomputable  # the model's own caption has its maps

    photo = session.edit(a, "a cup on a table", source="automatic")  # the alternative picked
    assert photo.recomputable and not photo.attention_matches
    stored = sidecar_path(a).read_bytes()
    (status,) = session.apply_attention([_result(a, "a cup on a table")])

    photo = session.photo(a)
    assert status.status == "skipped" and photo.attention_matches and photo.text == "a cup on a table"
    assert photo.result.alternatives == (alternative,)  # still offered
    assert sidecar_path(a).read_bytes() == stored

    session.edit(a, "my own words")
    (status,) = session.apply_attention([_result(a, "a cup on a table")])  # computed for the text before
    assert status.status == "kept_edit" and not session.photo(a).attention_matches


def test_a_photo_deleted_before_the_run_reached_it_is_gone_not_failed(tmp_path):
    """A photo deleted or moved away during a run was counted as failed ("file not found") and
    flagged with an error until the folder's watcher took it out."""
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    session = _session([a, b])
    plan = session.plan(None, "replace_automatic")
    a.rename(tmp_path / "moved.jpg")
    gone, done = session.apply_outcomes(plan, [CaptionFailure(str(a), "file not found"), _result(b, "a dog")],
                                        model_name="tiny", captioned_at=NOW)
    assert (gone.status, done.status) == ("gone", "written")
    assert "deleted or moved away while it was being captioned" in gone.message
    assert not session.photo(a).error and not sidecar_path(a).exists()


def test_a_persons_caption_written_during_a_held_run_is_kept_not_held_over(tmp_path):
    """Hold for review: a person's caption another program wrote while the photo was being
    captioned got the model's caption held over it, as if reviewed; Accept wrote it over theirs."""
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a], auto_write=False)
    plan = session.plan(None, "skip")
    write_caption(a, StoredCaption("typed in digiKam meanwhile", "human"))
    (status,) = session.apply_outcomes(plan, [_result(a, "a dog")], model_name="tiny", captioned_at=NOW)
    assert status.status == "kept_human" and not session.photo(a).held
    assert session.accept_held() == (0, []) and read_caption(a).text == "typed in digiKam meanwhile"


def test_maps_computed_for_an_alternative_keep_the_run_s_own_maps(tmp_path):
    """The maps computed for a picked alternative replaced the run's result: going back to the
    model's best caption (Undo, or picking it) left it without maps, to be computed again."""
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    alternative = Alternative(("a", "cup", "on", "a", "table"), -1.0)
    best = _result(a, "a cup of coffee", alternatives=(alternative,))
    _run(session, [a], [best])
    session.edit(a, "a cup on a table", source="automatic")
    picked = _result(a, "a cup on a table")
    session.apply_attention([picked])
    assert session.photo(a).maps is picked

    photo = session.edit(a, "a cup of coffee", source="automatic")  # back to the best caption
    assert photo.attention_matches and not photo.recomputable and photo.maps is best
    photo = session.edit(a, "a cup on a table", source="automatic")  # and to the alternative again
    assert photo.maps is picked and photo.result is best

    _run(session, [a], [_result(a, "a mug")])  # a new run: the maps of the old one's captions go
    assert session.photo(a).maps_for[0] is not session.photo(a).result
    session.edit(a, "a cup on a table", source="automatic")
    assert session.photo(a).recomputable


def test_a_held_typed_caption_does_not_silently_replace_one_another_program_wrote_since(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("first words", "human"))
    session = _session([a], auto_write=False)
    session.edit(a, "my typing, held")
    write_caption(a, StoredCaption("typed in digiKam since", "human"))  # another program

    written, (status,) = session.accept_held()
    assert written == 0 and status.status == "failed" and "yours is still held" in status.message
    assert read_caption(a).text == "typed in digiKam since"
    photo = session.photo(a)
    assert photo.held and photo.text == "my typing, held" and "Accept again" in photo.write_error

    written, failures = session.accept_held()  # the person has seen it, and writes theirs over it
    assert (written, failures) == (1, []) and read_caption(a).text == "my typing, held"
    assert not session.photo(a).held and not session.photo(a).write_error


def test_maps_are_given_to_a_caption_with_line_breaks_and_double_spaces(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("A dog on the beach.\nSunset,  2019 ", "human"))
    session = _session([a])
    assert session.photo(a).recomputable
    (status,) = session.apply_attention([_result(a, "A dog on the beach. Sunset, 2019")])  # as attend splits it
    assert status.status == "skipped" and session.photo(a).attention_matches
    assert not session.photo(a).recomputable
