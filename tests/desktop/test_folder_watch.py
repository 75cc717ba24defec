"""What another program changes in the open folder reaches the app: photos added, removed or
replaced, and captions written into sidecars."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

from imgcap_desktop.metadata.folder import folder_changes, snapshot_folder
from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from imgcap_desktop.session import CaptionSession, CaptionState
from model.results import CaptionResult
from tests.desktop.conftest_metadata import make_photo

WAIT = 10_000


def _rewrite(photo: Path, colour: tuple[int, int, int], size=(30, 20)) -> None:
    """Save another picture under the photo's name, with a later modification time."""
    Image.new("RGB", size, colour).save(photo, format="PNG" if photo.suffix == ".png" else "JPEG")
    later = time.time() + 5
    os.utime(photo, (later, later))


def _result(photo: Path, text: str) -> CaptionResult:
    words = tuple(text.split())
    return CaptionResult(str(photo), words, tuple(range(len(words))), -0.5,
                         np.zeros((len(words), 2, 2), np.float32), ())


# -- what changed: snapshots compared -------------------------------------------------------------

def test_folder_changes_name_photos_added_removed_replaced_and_captioned_elsewhere(tmp_path):
    a, b, c, d = (make_photo(tmp_path / name) for name in ("a.jpg", "b.jpg", "c.png", "d.jpg"))
    before = snapshot_folder(tmp_path)
    assert before.photos == (a, b, c, d)

    e = make_photo(tmp_path / "e.jpg")
    c.unlink()
    write_caption(a, StoredCaption("written elsewhere", "human"))  # a.jpg.xmp, new
    _rewrite(b, (0, 0, 255))
    (tmp_path / "D.XMP").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")  # d's, another case and style
    (tmp_path / "zzz.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")  # no photo's
    changes = folder_changes(before, snapshot_folder(tmp_path))

    assert changes.photos == (a, b, d, e)
    assert (changes.added, changes.removed, changes.replaced) == ((e,), (c,), (b,))
    assert changes.restored == (a, b, d)


def test_photos_of_a_subfolder_that_cannot_be_listed_for_a_while_stay(tmp_path, monkeypatch):
    """A subfolder that could not be listed (its permissions changed, a share that did not answer)
    made its photos leave the grid, to come back as new ones."""
    a, b, c = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "sub" / "b.jpg"), make_photo(tmp_path / "z.jpg")
    before = snapshot_folder(tmp_path, recursive=True)
    d = make_photo(tmp_path / "d.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == tmp_path / "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    after = snapshot_folder(tmp_path, recursive=True)
    changes = folder_changes(before, after)
    assert after.unlisted == (tmp_path / "sub",)
    assert changes.photos == (a, d, b, c) and changes.added == (d,)
    assert (changes.removed, changes.replaced, changes.restored) == ((), (), ())


def test_nothing_changed_is_no_change(tmp_path):
    make_photo(tmp_path / "a.jpg")
    write_caption(tmp_path / "a.jpg", StoredCaption("kept", "human"))
    assert not folder_changes(snapshot_folder(tmp_path), snapshot_folder(tmp_path))


# -- the session follows the folder ---------------------------------------------------------------

def _session(photos, **kwargs) -> CaptionSession:
    session = CaptionSession(**kwargs)
    session.open(photos, Path(photos[0]).parent)
    session.read_stored()
    return session


def test_refreshing_shows_another_programs_caption_and_leaves_a_held_one(tmp_path):
    a, b, c = (make_photo(tmp_path / name) for name in ("a.jpg", "b.jpg", "c.jpg"))
    write_caption(c, StoredCaption("a cat", "automatic", "m"))
    session = _session([a, b, c], auto_write=False)
    session.edit(b, "my typing, held")
    changed = []
    session.changed.connect(changed.append)

    write_caption(a, StoredCaption("from digiKam", "human"))
    write_caption(b, StoredCaption("from darktable", "human"))
    assert session.refresh_stored([a, b, c]) == [a]

    assert session.photo(a).text == "from digiKam" and session.photo(a).state is CaptionState.HUMAN
    assert session.photo(b).held and session.photo(b).text == "my typing, held"  # its Save checks again
    assert changed == [(a,)]


def test_a_replaced_photo_loses_the_attention_of_the_old_picture(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    plan = session.plan([a], "replace_automatic")
    session.apply_outcomes(plan, [_result(a, "a red square")], model_name="m")
    assert session.photo(a).attention_matches

    assert session.refresh_stored([a]) == []  # our own write, read back: nothing new
    assert session.photo(a).attention_matches
    _rewrite(a, (0, 255, 0))
    assert session.refresh_stored([a], replaced=[a]) == [a]
    photo = session.photo(a)
    assert photo.text == "a red square" and not photo.attention_matches and photo.recomputable


def test_a_photo_that_became_unreadable_shows_why_and_one_mended_shows_its_caption(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    session = _session([a])
    a.write_bytes(b"\xff\xd8 half a download")
    assert session.refresh_stored([a]) == [a] and session.photo(a).state is CaptionState.ERROR

    _rewrite(a, (9, 9, 9))
    write_caption(a, StoredCaption("mended", "human"))
    assert session.refresh_stored([a]) == [a]
    assert session.photo(a).error == "" and session.photo(a).text == "mended"


def test_photos_join_and_leave_but_one_with_a_held_caption_stays(tmp_path):
    p1, p2, p10 = (make_photo(tmp_path / name) for name in ("p1.jpg", "p2.jpg", "p10.jpg"))
    session = _session([p1, p2, p10], auto_write=False)
    session.edit(p2, "typed, not saved yet")
    listed = []
    session.listed.connect(lambda: listed.append(True))

    p3 = make_photo(tmp_path / "p3.jpg")
    p1.unlink()
    p2.unlink()
    added, removed = session.sync_photos([p3, p10])

    assert (added, removed) == ((p3,), (p1,)) and listed == [True]
    assert [p.path for p in session.photos()] == [p2, p3, p10]  # the held one in its place
    assert session.photo(p2).text == "typed, not saved yet" and session.photo(p1) is None
    assert session.sync_photos([p3, p10]) == ((), ()) and listed == [True]


def test_reading_the_folder_goes_on_past_a_photo_removed_meanwhile(tmp_path):
    a, b, c = (make_photo(tmp_path / name) for name in ("a.jpg", "b.jpg", "c.jpg"))
    write_caption(c, StoredCaption("still read", "human"))
    session = CaptionSession()
    session.open([a, b, c], tmp_path)
    a.unlink()
    session.sync_photos([b, c])  # the folder changed after the reader took its list, before it got to a

    session.read_stored([a, b, c])
    assert session.photo(c).text == "still read"


# -- the window ---------------------------------------------------------------------------------

def _open(qtbot, window, folder):
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        assert window.open_folder(folder)
    qtbot.waitUntil(lambda: not window.watcher.looking, timeout=WAIT)


def _names(window):
    return [window.photos.index(row).data() for row in range(window.photos.rowCount())]


def test_the_window_shows_a_caption_another_program_wrote(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    photo1 = photo_folder / "photo1.jpg"
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(photo1))))

    write_caption(photo1, StoredCaption("a caption from digiKam", "human"))
    window.watcher.check()

    qtbot.waitUntil(lambda: window.caption_edit.text() == "a caption from digiKam", timeout=WAIT)
    assert window.photos.item_at(photo1).state is CaptionState.HUMAN
    assert read_caption(photo1).text == "a caption from digiKam"


def test_photos_copied_in_or_deleted_join_or_leave_the_grid_and_the_current_one_stays(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    photo4 = photo_folder / "photo4.jpg"
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(photo4))))

    make_photo(photo_folder / "photo0.jpg")
    write_caption(photo_folder / "photo0.jpg", StoredCaption("came with its sidecar", "human"))
    (photo_folder / "photo2.jpg").unlink()
    window.watcher.check()

    qtbot.waitUntil(lambda: "photo0.jpg" in _names(window) and "photo2.jpg" not in _names(window), timeout=WAIT)
    assert _names(window) == ["broken.jpg", "drawing.png", "photo0.jpg", "photo1.jpg", "photo3.jpg", "photo4.jpg",
                              "photo5.jpg"]
    assert window.current_item().path == photo4
    qtbot.waitUntil(lambda: window.photos.item_at(photo_folder / "photo0.jpg").text == "came with its sidecar",
                    timeout=WAIT)
    assert "1 photo added and 1 photo removed" in window.statusBar().currentMessage()


def _thumbnail(qtbot, window, photo: Path, unlike=None):
    """The photo's grid thumbnail once decoded (one of another size than ``unlike``'s)."""
    def decoded():
        image = window.thumbnails.image(str(photo), 160)
        return image is not None and (unlike is None or image.size() != unlike.size())

    qtbot.waitUntil(decoded, timeout=WAIT)
    return window.thumbnails.image(str(photo), 160)


def test_a_photo_saved_over_gets_a_new_thumbnail(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    photo3 = photo_folder / "photo3.jpg"
    old = _thumbnail(qtbot, window, photo3)

    _rewrite(photo3, (0, 0, 255), size=(60, 20))
    window.watcher.check()
    _thumbnail(qtbot, window, photo3, unlike=old)


def test_our_own_writes_change_nothing_shown(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    photo5 = photo_folder / "photo5.jpg"
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(photo5))))
    assert window.edit_caption("typed here")
    assert sidecar_path(photo5).exists()
    window.watcher.check()
    qtbot.waitUntil(lambda: not window.watcher.looking, timeout=WAIT)
    qtbot.wait(100)  # the read-back's queued signals, if any

    assert window.photos.item_at(photo5).text == "typed here" and window.undo_stack.count() == 1
    window.undo_stack.undo()
    assert window.photos.item_at(photo5).text == "" and read_caption(photo5) is None



def test_coming_back_to_the_window_looks_at_the_folder_again(qtbot, window, photo_folder, monkeypatch):
    _open(qtbot, window, photo_folder)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=WAIT)
    looks = []
    monkeypatch.setattr(window.watcher, "check", lambda: looks.append(True))
    QApplication.sendEvent(window, QEvent(QEvent.Type.ActivationChange))
    assert looks == [True]


def test_a_photo_deleted_while_its_caption_is_typed_stays_with_the_typing(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    photo3 = photo_folder / "photo3.jpg"
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(photo3))))
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, "my words, not committed yet")

    photo3.unlink()
    (photo_folder / "photo4.jpg").unlink()
    window.watcher.check()

    qtbot.waitUntil(lambda: "photo4.jpg" not in _names(window), timeout=WAIT)
    assert "photo3.jpg" in _names(window) and window.current_item().path == photo3
    assert window.caption_edit.text() == "my words, not committed yet"


def test_every_photo_gone_at_once_is_taken_for_a_drive_unmounted_not_a_folder_emptied(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    before = _names(window)
    with qtbot.waitSignal(window.watcher.unavailable, timeout=WAIT):
        for photo in photo_folder.iterdir():
            photo.unlink()
        window.watcher.check()
    assert _names(window) == before
    assert "a drive unmounted?" in window.statusBar().currentMessage()


def test_a_photo_under_a_name_that_left_and_came_back_shows_its_own_picture(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    photo3 = photo_folder / "photo3.jpg"
    old = _thumbnail(qtbot, window, photo3)
    photo3.unlink()
    window.watcher.check()
    qtbot.waitUntil(lambda: "photo3.jpg" not in _names(window), timeout=WAIT)

    _rewrite(photo3, (0, 0, 255), size=(60, 20))  # another picture saved under the name
    window.watcher.check()
    qtbot.waitUntil(lambda: "photo3.jpg" in _names(window), timeout=WAIT)
    _thumbnail(qtbot, window, photo3, unlike=old)


def test_a_sidecar_rewritten_in_place_is_noticed_without_a_notice(qtbot, tmp_path, monkeypatch):
    """A file written in place sends no folder notice: the slow beat looks all the same."""
    from imgcap_desktop import folder_watcher

    photo = make_photo(tmp_path / "a.jpg")
    write_caption(photo, StoredCaption("before", "human"))
    monkeypatch.setattr(folder_watcher, "BEAT_MS", 300)
    monkeypatch.setattr(folder_watcher, "BEAT_FACTOR", 1)  # a slow look on a loaded machine: no longer a wait
    watcher = folder_watcher.FolderWatcher(delay_ms=50)
    watcher.set_beating(True)  # the window is active
    watcher.watch(tmp_path, [photo])
    qtbot.waitUntil(lambda: not watcher.looking, timeout=WAIT)
    watcher._notices.removePaths(watcher._notices.directories())  # no notices at all, as for a share

    with qtbot.waitSignal(watcher.changed, timeout=WAIT) as changed:
        with open(sidecar_path(photo), "r+b") as handle:  # in place: same file, new bytes
            data = handle.read().replace(b"before", b"after!")
            handle.seek(0)
            handle.write(data)
    assert changed.args[0].restored == (photo,)
    watcher.stop()


def test_a_folder_that_stays_gone_is_said_once_and_the_window_beats_only_while_active(qtbot, window, photo_folder):
    _open(qtbot, window, photo_folder)
    said = []
    window.watcher.unavailable.connect(said.append)
    for photo in photo_folder.iterdir():
        photo.unlink()
    for _ in range(3):
        window.watcher.check()
        qtbot.waitUntil(lambda: not window.watcher.looking, timeout=WAIT)
    assert len(said) == 1

    window.watcher.set_beating(False)  # what the window does when another one becomes active
    assert not window.watcher._beat.isActive()
    window.watcher.set_beating(True)
    assert window.watcher._beat.isActive()


def _looked_at(qtbot, window) -> None:
    """The folder looked at, and the stored captions it found changed read again."""
    window.watcher.check()
    qtbot.waitUntil(lambda: not window.watcher.looking, timeout=WAIT)
    qtbot.wait(300)  # the read in the background, and its queued signals


def _typing_over_a_photo_replaced(qtbot, window, photo_folder) -> Path:
    """photo3.jpg's caption being typed while it and its sidecar are deleted, and another picture
    with a caption of its own put under its name."""
    from tests.desktop.test_main_window import select

    photo = photo_folder / "photo3.jpg"
    write_caption(photo, StoredCaption("the old picture's caption", "human"))
    _open(qtbot, window, photo_folder)
    select(qtbot, window, "photo3.jpg")
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, " and more")
    photo.unlink()
    sidecar_path(photo).unlink()
    _looked_at(qtbot, window)
    assert "photo3.jpg" in _names(window)  # kept for the typing
    make_photo(photo)
    write_caption(photo, StoredCaption("the new picture's caption", "human"))
    _looked_at(qtbot, window)
    return photo


def test_a_photo_replaced_while_its_caption_is_typed_shows_the_new_caption(qtbot, window, photo_folder):
    """The new picture's sidecar was never read (kept for the typing, the photo was no "added" one):
    Esc showed the old picture's caption, and Undo of a commit wrote it over the new picture's."""
    from PySide6.QtCore import Qt

    photo = _typing_over_a_photo_replaced(qtbot, window, photo_folder)
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Escape)  # the typing given up
    assert window.session.photo(photo).text == window.caption_edit.text() == "the new picture's caption"


def test_undo_of_typing_over_a_photo_replaced_brings_back_the_new_caption(qtbot, window, photo_folder):
    from PySide6.QtCore import Qt

    photo = _typing_over_a_photo_replaced(qtbot, window, photo_folder)
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(photo).text == "the old picture's caption and more"
    window.undo_stack.undo()
    assert read_caption(photo).text == "the new picture's caption"


def test_a_photo_deleted_while_its_caption_is_typed_goes_once_the_typing_is_given_up(qtbot, window, photo_folder):
    """Kept while typed, it stayed in the grid for good: later looks saw no change."""
    from PySide6.QtCore import Qt

    from tests.desktop.test_main_window import select

    _open(qtbot, window, photo_folder)
    select(qtbot, window, "photo3.jpg")
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, "my words")
    (photo_folder / "photo3.jpg").unlink()
    _looked_at(qtbot, window)
    assert "photo3.jpg" in _names(window)
    _looked_at(qtbot, window)  # still typed: still kept, at every look
    assert "photo3.jpg" in _names(window)
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Escape)
    select(qtbot, window, "photo1.jpg")
    _looked_at(qtbot, window)
    assert "photo3.jpg" not in _names(window)
