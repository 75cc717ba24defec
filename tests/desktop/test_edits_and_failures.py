"""The app keeps the user's edits and says what failed: each test here failed before the caption session.

(Red-then-green: these ran against the window as it was before ``imgcap_desktop/session.py``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFocusEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMenu, QMessageBox

from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from imgcap_desktop.session import CaptionState
from tests.desktop.conftest import WORDS, fake_result
from tests.desktop.conftest_metadata import exiftool, needs_exiftool, pause_sidecar_moves

WAIT = 10_000
ROOT = Path(__file__).resolve().parents[2]


def open_and_wait(qtbot, window, folder):
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        assert window.open_folder(folder)


# -- defect 1 ---------------------------------------------------------------------------------------

def test_hold_mode_an_edit_typed_while_its_batch_is_pending_wins(qtbot, window, photo_folder, fake_captioner):
    window.apply_settings(replace(window.settings, auto_write=False))
    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    assert window.caption_all()
    path = photo_folder / "photo2.jpg"
    assert window.edit_caption("my own words", path)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        fake_captioner.gate.release(10)
    assert window.photos.item_at(path).text == "my own words"
    assert window.photos.item_at(photo_folder / "photo1.jpg").text  # the others got their captions


# -- defect 2 and "N failed" -------------------------------------------------------------------------

def test_the_reason_a_run_stopped_stays_in_the_status_bar(qtbot, window, photo_folder, fake_captioner):
    real = fake_captioner.caption_batches

    def fails_on_the_second_batch(images, beam_size=3, batch_size=8):
        batches = real(images, beam_size, batch_size)
        yield next(batches)
        raise RuntimeError("the GPU fell over")

    fake_captioner.caption_batches = fails_on_the_second_batch
    open_and_wait(qtbot, window, photo_folder)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_all()
    message = window.statusBar().currentMessage()
    assert "the GPU fell over" in message, message


def test_the_status_says_how_many_failed_and_which_why(qtbot, window, photo_folder):
    """ "Captioned 6 of 7 photos, 1 failed": which one, and why, had to be looked for in the grid."""
    open_and_wait(qtbot, window, photo_folder)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_all()
    message = window.statusBar().currentMessage()
    reason = window.photos.item_at(photo_folder / "broken.jpg").error
    assert reason and message.endswith(f"6 of 7 photos, 1 failed; broken.jpg: {reason}"), message


# -- defect 3 ---------------------------------------------------------------------------------------

def test_export_to_a_place_that_cannot_be_written_says_so(qtbot, window, photo_folder, tmp_path, monkeypatch):
    open_and_wait(qtbot, window, photo_folder)
    target = tmp_path / "no" / "such" / "folder" / "out.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "CSV files (*.csv)")))
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *args, **kwargs: warnings.append(args)))
    window._on_export_action_triggered()  # used to raise OSError out of the slot
    qtbot.waitUntil(lambda: bool(warnings), timeout=WAIT)
    assert "could not be written" in warnings[0][2]


# -- defect 4 ---------------------------------------------------------------------------------------

def test_a_failed_sidecar_write_is_not_shown_as_stored(qtbot, window, photo_folder):
    path = photo_folder / "photo1.jpg"
    open_and_wait(qtbot, window, photo_folder)
    sidecar_path(path).write_bytes(b"<x:xmpmeta broken")  # unparseable: never overwritten
    assert window.edit_caption("my caption", path)
    item = window.photos.item_at(path)
    assert item.text == "my caption" and item.held  # kept, and not stored
    assert sidecar_path(path).read_bytes() == b"<x:xmpmeta broken"


# -- defect 5 ---------------------------------------------------------------------------------------

def test_a_workers_write_never_interleaves_with_an_edit(qtbot, window, photo_folder, monkeypatch):
    path = photo_folder / "photo1.jpg"
    open_and_wait(qtbot, window, photo_folder)
    in_write = pause_sidecar_moves(monkeypatch, "photo1.jpg.xmp")  # read, about to replace it
    row = window.photos.row_of(path)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_selected()
        assert in_write.wait(WAIT / 1000)
        window.edit_caption("the user's words", path)
    stored = read_caption(path)
    assert (stored.text, stored.source) == ("the user's words", "human")
    assert window.photos.item_at(path).text == "the user's words"


# -- defect 6 ---------------------------------------------------------------------------------------

def test_a_service_destroyed_while_captioning_does_not_take_the_app_down(tmp_path):
    script = textwrap.dedent(f"""
        import gc, threading, time
        from pathlib import Path
        from PySide6.QtCore import QCoreApplication, QObject
        from shiboken6 import delete
        from imgcap_desktop.caption_service import CaptionJob, CaptionService
        from tests.desktop.conftest import FakeCaptioner, make_photos
        app = QCoreApplication([])
        gate = threading.Semaphore(0)
        fake = FakeCaptioner(gate=gate)
        photos = make_photos(Path({str(tmp_path / 'p')!r}), count=4, corrupt=False)
        owner = QObject()
        service = CaptionService(factory=lambda bundle, device: fake, parent=owner)
        assert service.caption(CaptionJob(tuple(photos), batch_size=1))
        time.sleep(0.2)
        del service
        delete(owner)  # the window goes without calling shutdown()
        gc.collect()
        gate.release(10)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
    assert "Destroyed while thread" not in done.stderr


# -- defect 8 ---------------------------------------------------------------------------------------

def test_export_reads_the_photos_off_the_gui_thread(qtbot, window, photo_folder, tmp_path, monkeypatch):
    from imgcap_desktop.metadata import csvio

    open_and_wait(qtbot, window, photo_folder)
    threads, real_size = [], csvio.photo_size
    monkeypatch.setattr(csvio, "photo_size",
                        lambda photo: threads.append(threading.current_thread()) or real_size(photo))
    out = tmp_path / "out.csv"
    window.export_csv(out)
    qtbot.waitUntil(lambda: out.exists() and len(threads) == 7, timeout=WAIT)
    assert threading.main_thread() not in threads


# -- defect 9 ---------------------------------------------------------------------------------------

def test_stale_temporary_sidecars_are_removed_when_a_folder_opens(qtbot, window, photo_folder):
    stale = photo_folder / ".photo1.jpg.xmp.a1b2c3d4.tmp"
    stale.write_bytes(b"half a sidecar")
    old = time.time() - 120
    os.utime(stale, (old, old))
    open_and_wait(qtbot, window, photo_folder)
    assert not stale.exists()


# -- defect 10 --------------------------------------------------------------------------------------

def test_the_settings_dialog_uses_the_settings_ranges(qtbot):
    from imgcap_desktop import settings
    from imgcap_desktop.settings_dialog import SettingsDialog

    dialog = SettingsDialog(settings.AppSettings())
    qtbot.addWidget(dialog)
    assert (dialog.beam_size.minimum(), dialog.beam_size.maximum()) == settings.RANGES["beam_size"]
    assert (dialog.batch_size.minimum(), dialog.batch_size.maximum()) == settings.RANGES["batch_size"]


# -- found by using the app as a new user would -----------------------------------------------------

def test_quitting_with_held_captions_asks_write_discard_or_cancel(qtbot, window, photo_folder):
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    path = photo_folder / "photo1.jpg"
    window.edit_caption("held for review", path)
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save]
    asked = []
    window._ask_about_held = lambda count, before: asked.append(count) or answers.pop(0)
    window.close()
    assert window.isVisible() and asked == [1]  # cancelled: still open, nothing written
    assert not sidecar_path(path).exists()
    window.close()
    assert not window.isVisible() and read_caption(path).text == "held for review"


def test_ctrl_z_in_the_caption_box_undoes_the_edit(qtbot, window, photo_folder):
    write_caption(photo_folder / "photo1.jpg", StoredCaption("before", "automatic", "m", -1.0))
    open_and_wait(qtbot, window, photo_folder)
    row = window.photos.row_of(photo_folder / "photo1.jpg")
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    window.caption_edit.setFocus()
    window.caption_edit.selectAll()
    qtbot.keyClicks(window.caption_edit, "after")
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert window.photos.item_at(photo_folder / "photo1.jpg").text == "after"
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.photos.item_at(photo_folder / "photo1.jpg").text == "before"
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.photos.item_at(photo_folder / "photo1.jpg").text == "after"


def test_esc_takes_back_typing_in_the_caption_box_and_clears_the_filter(qtbot, window, photo_folder):
    """Esc did neither: a keyboard user had to select and retype, or leave the box (which commits)."""
    write_caption(photo_folder / "photo1.jpg", StoredCaption("two lines\nof mine", "human"))
    open_and_wait(qtbot, window, photo_folder)
    row = window.photos.row_of(photo_folder / "photo1.jpg")
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, " and more")
    assert window.caption_edit.isModified()
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Escape)
    assert window.caption_edit.text() == "two lines\nof mine" and not window.caption_edit.isModified()
    window.caption_edit.clearFocus()  # leaving commits nothing now
    assert window.photos.item_at(photo_folder / "photo1.jpg").text == "two lines\nof mine"
    assert window.undo_stack.count() == 0

    qtbot.keyClicks(window.filter_edit, "zzz")
    assert window.filtered.rowCount() == 0
    qtbot.keyClick(window.filter_edit, Qt.Key.Key_Escape)
    assert window.filter_edit.text() == "" and window.filtered.rowCount() == window.photos.rowCount()


def test_wrote_one_caption_in_the_singular(qtbot, window, photo_folder):
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    window.edit_caption(" ".join(WORDS[:3]), photo_folder / "photo1.jpg")
    assert window.accept_held() == 1
    assert "Wrote 1 caption " in window.statusBar().currentMessage()


def test_settings_ok_keeps_the_overlay_slider(qtbot, window, monkeypatch):
    from imgcap_desktop.settings_dialog import SettingsDialog

    monkeypatch.setattr(SettingsDialog, "exec", lambda self: True)  # the user presses OK at once
    window.view.opacity_slider.setValue(25)
    window.settings_action.trigger()
    assert window.view.opacity_slider.value() == 25


def test_window_size_and_splitter_are_remembered(qtbot, service):
    from imgcap_desktop.main_window import MainWindow
    from imgcap_desktop.settings import AppSettings

    first = MainWindow(service=service, settings=AppSettings())
    qtbot.addWidget(first)
    first.show()
    first.resize(700, 500)  # within the offscreen screen (restoreGeometry keeps windows on screen)
    first.splitter.setSizes([300, 600])
    qtbot.waitUntil(lambda: first.width() != 1280)
    size, sizes = first.size(), first.splitter.sizes()
    first.close()
    second = MainWindow(service=service, settings=AppSettings())
    qtbot.addWidget(second)
    second.show()
    assert second.size() == size
    assert second.splitter.sizes() == sizes
    second.close()


def test_shortcuts_for_settings_and_the_filter(qtbot, window):
    assert window.settings_action.shortcut().toString() == "Ctrl+,"
    assert window.find_action.shortcut().toString() == "Ctrl+F"
    window.find_action.trigger()
    assert window.filter_edit.hasFocus() or window.focusWidget() is window.filter_edit


def test_every_menu_command_has_a_shortcut_and_none_is_bound_twice(qtbot, window):
    """The README says every action has one: Import CSV, Accept Held Captions and Include Subfolders
    had none, so a keyboard user went through the menus."""
    commands = [act for menu in window.menuBar().findChildren(QMenu) if menu is not window.recent_menu
                for act in menu.actions() if not act.isSeparator() and act.menu() is None]
    assert len(commands) >= 13
    assert [act.text() for act in commands if act.shortcut().isEmpty()] == []
    keys = [act.shortcut().toString() for act in commands]
    assert len(keys) == len(set(keys))


def test_broken_photos_are_flagged_when_the_folder_is_read(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    broken = window.photos.item_at(photo_folder / "broken.jpg")
    assert broken.error and "No caption yet" not in window.state_label.text()


def test_a_caption_stored_earlier_gets_its_maps_and_stays_as_it_is(qtbot, window, photo_folder):
    """Recomputing used to caption the photo again: a caption the model would now say otherwise (an
    older model's, an alternative picked, a person's) was replaced. Its maps are computed for its
    own words now, and nothing is written."""
    path = photo_folder / "photo1.jpg"
    write_caption(path, StoredCaption("An older model's caption, with capitals", "automatic", "old-model", -0.5))
    stored = sidecar_path(path).read_bytes()
    open_and_wait(qtbot, window, photo_folder)
    row = window.photos.row_of(path)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    qtbot.waitUntil(lambda: window.caption_edit.text().startswith("An older"), timeout=WAIT)
    assert not any(b.isEnabled() for b in window.view.word_buttons())
    assert window.panel.recompute_button.isVisibleTo(window)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        window.panel.recompute_button.click()

    qtbot.waitUntil(lambda: all(b.isEnabled() for b in window.view.word_buttons()), timeout=WAIT)
    assert [b.text() for b in window.view.word_buttons()] == "An older model's caption, with capitals".split()
    assert not window.panel.recompute_button.isVisibleTo(window)
    assert sidecar_path(path).read_bytes() == stored and window.caption_edit.text().startswith("An older")
    assert window.statusBar().currentMessage().startswith("Attention maps for 1 of 1 photo")
    qtbot.mouseClick(window.view.word_buttons()[2], Qt.MouseButton.LeftButton)
    assert window.view.current_word == 2


def test_a_typed_caption_gets_maps_too(qtbot, window, photo_folder):
    path = photo_folder / "photo2.jpg"
    open_and_wait(qtbot, window, photo_folder)
    row = window.photos.row_of(path)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    assert window.edit_caption("my own words here")
    assert window.panel.recompute_button.isVisibleTo(window)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.recompute_attention()
    qtbot.waitUntil(lambda: all(b.isEnabled() for b in window.view.word_buttons()), timeout=WAIT)
    photo = window.photos.item_at(path)
    assert photo.text == "my own words here" and photo.state.value == "human" and photo.attention_matches


def test_a_caption_edited_while_its_maps_are_computed_is_not_counted_as_done(qtbot, window, photo_folder,
                                                                          fake_captioner):
    """The summary said "Attention maps for 1 of 1 photo" when the person had typed another caption
    meanwhile and the maps were dropped."""
    path = photo_folder / "photo2.jpg"
    open_and_wait(qtbot, window, photo_folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    assert window.edit_caption("my own words here")
    fake_captioner.gate = threading.Semaphore(0)
    assert window.recompute_attention()
    assert window.edit_caption("other words, typed meanwhile")
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        fake_captioner.gate.release()
    assert window.statusBar().currentMessage() == (
        "Attention maps for 0 of 1 photo, 1 edited meanwhile (the edit kept)")
    assert window.photos.item_at(path).recomputable


def test_a_photo_deleted_during_a_run_is_not_counted_as_failed(qtbot, window, photo_folder, fake_captioner):
    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    total = len(window.session)
    assert window.caption_all()
    (photo_folder / "photo2.jpg").unlink()
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        fake_captioner.gate.release(10)
    assert window.statusBar().currentMessage().startswith(
        f"Captioned {total - 2} of {total} photos, 1 failed, 1 deleted or moved away meanwhile")  # broken.jpg failed


def test_editing_a_word_of_a_caption_with_paragraphs_keeps_them(qtbot, window, photo_folder):
    """The caption box was one line: editing one word of another program's description with a
    paragraph break stored it as one line."""
    path = photo_folder / "photo1.jpg"
    write_caption(path, StoredCaption("A dog on the beach.\n\nSunset,  2019, Lisbon", "human"))
    open_and_wait(qtbot, window, photo_folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    qtbot.waitUntil(lambda: window.caption_edit.text().startswith("A dog"), timeout=WAIT)
    one_line = window.caption_edit.sizeHint().height()
    window.caption_edit.setFocus()
    cursor = window.caption_edit.textCursor()
    cursor.setPosition(2)
    cursor.setPosition(5, cursor.MoveMode.KeepAnchor)  # "dog"
    window.caption_edit.setTextCursor(cursor)
    qtbot.keyClicks(window.caption_edit, "cat")
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(path).text == "A cat on the beach.\n\nSunset, 2019, Lisbon"

    qtbot.keyClick(window.caption_edit, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)  # a new line
    qtbot.keyClicks(window.caption_edit, "Photo by Ana")
    assert read_caption(path).text == "A cat on the beach.\n\nSunset, 2019, Lisbon"  # not committed yet
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(path).text == "A cat on the beach.\n\nSunset, 2019, Lisbon\nPhoto by Ana"
    window.caption_edit.setText("one line")
    assert window.caption_edit.sizeHint().height() < one_line  # the box is as tall as its caption


def test_a_persons_caption_written_during_a_run_is_not_counted_as_captioned(qtbot, window, photo_folder,
                                                                         fake_captioner):
    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    total = len(window.session)
    assert window.caption_all()
    write_caption(photo_folder / "photo3.jpg", StoredCaption("typed in digiKam meanwhile", "human"))
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        fake_captioner.gate.release(10)
    assert read_caption(photo_folder / "photo3.jpg").text == "typed in digiKam meanwhile"
    assert window.statusBar().currentMessage().startswith(
        f"Captioned {total - 2} of {total} photos, 1 failed, 1 kept a person's caption")


def test_typing_undone_after_the_caption_changed_shows_the_caption_stored_now(qtbot, window, photo_folder):
    """Ctrl+Z took the typing back to the caption from before another program's change, marked
    unmodified; Return then wrote that old caption over the new one."""
    path = photo_folder / "photo1.jpg"
    write_caption(path, StoredCaption("old caption", "human"))
    open_and_wait(qtbot, window, photo_folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    qtbot.waitUntil(lambda: window.caption_edit.text() == "old caption", timeout=WAIT)
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, " plus typing")
    write_caption(path, StoredCaption("new caption from another program", "human"))
    window.session.refresh_stored([path])
    qtbot.wait(20)
    assert window.caption_edit.text() == "old caption plus typing"  # the typing is kept
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.caption_edit.text() == "new caption from another program", timeout=WAIT)
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(path).text == "new caption from another program"
    qtbot.keyClicks(window.caption_edit, ", at dusk")  # at its end, not where the undo left the cursor
    assert window.caption_edit.text() == "new caption from another program, at dusk"


def _type_and_commit(qtbot, window, folder, path, text):
    """Open ``folder``, show the photo at ``path``, type ``text`` in the caption box and press Return."""
    open_and_wait(qtbot, window, folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, text)
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)


def test_typing_after_a_commit_undone_to_a_caption_changed_meanwhile_shows_that_one(qtbot, window, photo_folder):
    """After Return, more typing undone came back to the committed text still marked modified: the
    caption another program wrote meanwhile was not shown, and leaving the box wrote the old text
    over it. The box also kept the committed text as typed (spaces, blank lines) instead of as stored."""
    path = photo_folder / "photo1.jpg"
    _type_and_commit(qtbot, window, photo_folder, path, "mine   too  ")
    assert window.caption_edit.text() == "mine too" == read_caption(path).text  # as stored
    qtbot.keyClicks(window.caption_edit, " more")
    write_caption(path, StoredCaption("theirs, from another program", "human"))
    window.session.refresh_stored([path])
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.caption_edit.text() == "theirs, from another program", timeout=WAIT)
    assert not window.caption_edit.isModified()
    window.grid.setFocus(Qt.FocusReason.MouseFocusReason)  # leaving the box writes nothing
    qtbot.wait(20)
    assert read_caption(path).text == "theirs, from another program"


def test_redo_in_the_caption_box_redoes_the_typing_undone_there(qtbot, window, photo_folder):
    """Ctrl+Shift+Z after Ctrl+Z of typing went to the window's redo (an earlier edit, written to
    the sidecar), and the typing was lost."""
    path = photo_folder / "photo1.jpg"
    _type_and_commit(qtbot, window, photo_folder, path, "first caption")
    window.undo_action.trigger()
    assert window.undo_stack.canRedo() and window.caption_edit.text() == ""
    qtbot.keyClicks(window.caption_edit, "a cat on a red sofa")
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.caption_edit.text() == ""
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.caption_edit.text() == "a cat on a red sofa" and read_caption(path) is None


def test_an_edit_the_sidecar_refuses_leaves_nothing_to_undo_and_says_why(qtbot, window, photo_folder):
    """A clear refused by the sidecar stayed on the undo stack, and the status bar blamed "its
    caption was changed since (by another program ...)"; its Undo then wrote a copy of the caption."""
    path = photo_folder / "photo1.jpg"
    (photo_folder / "photo1.jpg.xmp").write_text(  # darktable's, made on import: no caption
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="2"/></rdf:RDF>'
        '</x:xmpmeta>', encoding="utf-8")
    (photo_folder / "photo1.xmp").write_text(  # Lightroom's
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
        '<rdf:li xml:lang="x-default">Lightroom\'s caption</rdf:li></rdf:Alt></dc:description></rdf:Description>'
        '</rdf:RDF></x:xmpmeta>', encoding="utf-8")
    open_and_wait(qtbot, window, photo_folder)
    assert window.photos.item_at(path).text == "Lightroom's caption"
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    assert window.edit_caption("")
    photo = window.photos.item_at(path)
    assert photo.text == "Lightroom's caption" and "the caption is in photo1.xmp" in photo.write_error
    assert window.undo_stack.count() == 0 and "changed since" not in window.statusBar().currentMessage()


def test_import_csv_from_the_window_updates_the_grid(qtbot, window, photo_folder):
    from imgcap_desktop.metadata.csvio import CsvRow
    from tests.desktop.conftest_metadata import write_hand_made_csv

    open_and_wait(qtbot, window, photo_folder)
    write_hand_made_csv(photo_folder / "edited.csv", [CsvRow("photo1.jpg", "photo1.jpg", "edited in a spreadsheet")])
    assert window.import_csv(photo_folder / "edited.csv")
    photo = window.photos.item_at(photo_folder / "photo1.jpg")
    assert (photo.text, photo.state.value) == ("edited in a spreadsheet", "human")
    assert "Applied 1 caption" in window.statusBar().currentMessage()

    write_hand_made_csv(photo_folder / "again.csv", [CsvRow("photo1.jpg", "photo1.jpg", "edited again"),
                                           CsvRow("gone.jpg", "gone.jpg", "a caption")])
    assert window.import_csv(photo_folder / "again.csv")
    # Why a row was not applied is said, not only how many: it used to be "1 row not applied".
    assert window.statusBar().currentMessage() == ("Applied 1 caption, 0 unchanged, 1 row not applied "
                                                   "(line 3: photo not found: gone.jpg)")


def test_opening_another_folder_asks_about_held_captions(qtbot, window, photo_folder, tmp_path):
    """Held captions were dropped without a word when another folder was opened (or Include
    Subfolders re-read this one): now Save, Discard or Cancel is asked, as on quitting."""
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    path = photo_folder / "photo1.jpg"
    window.edit_caption("held for review", path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save]
    asked = []
    window._ask_about_held = lambda count, before: asked.append((count, before)) or answers.pop(0)

    assert not window.open_folder(elsewhere)  # cancelled: the folder and its held caption stay
    assert window.folder == photo_folder and window.photos.item_at(path).held
    subfolders = window.settings.include_subfolders
    window.subfolders_action.trigger()  # re-reads this folder: asked too, and cancelled
    assert window.settings.include_subfolders == subfolders == window.subfolders_action.isChecked()
    shown = "leaving out the subfolders" if subfolders else "showing the subfolders' photos too"
    assert asked == [(1, "opening another folder"), (1, shown)]
    assert window.open_folder(elsewhere)  # Save: written first
    assert read_caption(path).text == "held for review" and window.folder == elsewhere


def _a_held_run_under_way(qtbot, window, tmp_path, fake_captioner, typed: str | None = None, photos: int = 1):
    """Hold mode, a folder of broken.jpg, drawing.png, photo1.jpg… (``photos`` of them; ``typed``
    over photo1.jpg's caption first), and a run in batches of two whose first (broken.jpg,
    drawing.png) is under way, waiting for a release, as each batch does."""
    from tests.desktop.conftest import make_photos

    folder = tmp_path / "few"
    make_photos(folder, count=photos)
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, folder)
    if typed is not None:
        window.edit_caption(typed, folder / "photo1.jpg")
    fake_captioner.gate = threading.Semaphore(0)
    waiting, wait = threading.Event(), fake_captioner._wait_for_release
    fake_captioner._wait_for_release = lambda: waiting.set() or wait()
    assert window.caption_all()
    assert waiting.wait(5)  # the batch is under way
    return folder


def test_saving_held_captions_during_a_run_writes_its_last_batch_too_and_opens_the_folder(
        qtbot, window, tmp_path, fake_captioner):
    """Another folder opened during a run in hold mode, Save answered: the batch under way was held
    while Save wrote, so the folder did not open, and the status bar said its captions "could not
    be written (not written)" and pointed to Discard."""
    folder = _a_held_run_under_way(qtbot, window, tmp_path, fake_captioner, photos=2)
    fake_captioner.gate.release()  # the first batch (drawing.png's caption) is held; the last one waits
    qtbot.waitUntil(lambda: len(window.session.held()) == 1, timeout=WAIT)
    window._ask_about_held = lambda count, before: QMessageBox.StandardButton.Save
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    threading.Timer(0.3, fake_captioner.gate.release).start()  # the last batch comes while the folder opens
    assert window.open_folder(elsewhere)
    assert window.folder == elsewhere and "could not be written" not in window.statusBar().currentMessage()
    assert all(read_caption(folder / name) is not None for name in ("drawing.png", "photo1.jpg", "photo2.jpg"))
    qtbot.waitUntil(lambda: not window.service.busy, timeout=WAIT)


def test_opening_another_folder_during_a_held_run_asks_about_its_batch_under_way(
        qtbot, window, tmp_path, fake_captioner):
    """Hold mode, nothing held yet, another folder opened while a batch was captioned: nothing was
    asked, and that batch's captions came for a folder no longer open: dropped, and counted as failed."""
    folder = _a_held_run_under_way(qtbot, window, tmp_path, fake_captioner)
    asked = []
    window._ask_about_held = lambda count, before: asked.append(count) or QMessageBox.StandardButton.Save
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    threading.Timer(0.3, fake_captioner.gate.release).start()  # the batch ends while the folder opens
    assert window.open_folder(elsewhere)
    assert asked == [1] and read_caption(folder / "drawing.png") is not None
    qtbot.waitUntil(lambda: not window.service.busy, timeout=WAIT)
    message = window.statusBar().currentMessage()
    assert "1 failed" in message, message  # broken.jpg's; drawing.png's caption was held, and written


def test_discard_drops_as_many_held_captions_as_it_was_asked_about(qtbot, window, tmp_path, fake_captioner):
    """The question counted the held captions before the batch under way was stored: "1 caption held"
    asked, and Discard dropped 2."""
    folder = _a_held_run_under_way(qtbot, window, tmp_path, fake_captioner, typed="my own words")
    asked = []
    window._ask_about_held = lambda count, before: asked.append(count) or QMessageBox.StandardButton.Discard
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    held = {photo.path.name for photo in window.session.held()}
    threading.Timer(0.3, fake_captioner.gate.release).start()
    assert window.open_folder(elsewhere)
    assert held == {"photo1.jpg"} and asked == [2], asked  # the typed caption and drawing.png's
    assert read_caption(folder / "drawing.png") is None and read_caption(folder / "photo1.jpg") is None


def test_the_wait_for_the_batch_under_way_is_shown(qtbot, window, tmp_path, fake_captioner):
    """"Finishing the photos being captioned…" was put in the status bar and never painted: the wait
    for the batch under way held the event loop, and the message was gone when it let go."""
    from PySide6.QtCore import QObject

    _a_held_run_under_way(qtbot, window, tmp_path, fake_captioner, typed="my own words")
    painted = []

    class PaintWatch(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.Paint:
                painted.append(window.statusBar().currentMessage())
            return False

    watch = PaintWatch()
    window.statusBar().installEventFilter(watch)
    seen, wait = [], window.service.cancel_and_wait

    def cancel_and_wait(*args, **kwargs):
        seen.extend(painted)  # painted before the wait: what the user sees during it
        fake_captioner.gate.release()
        return wait(*args, **kwargs)

    window.service.cancel_and_wait = cancel_and_wait
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert window.open_folder(elsewhere)
    window.statusBar().removeEventFilter(watch)
    assert "Finishing the photos being captioned…" in seen, seen


def test_a_save_that_fails_keeps_the_window_open(qtbot, window, photo_folder, monkeypatch):
    """Quit, Save with a sidecar that cannot be written closed the window anyway: the typed caption
    was lost with only a status-bar message."""
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    path = photo_folder / "photo1.jpg"
    window.edit_caption("held for review", path)
    sidecar_path(path).mkdir()  # a folder where the sidecar goes: it cannot be written
    answers = [QMessageBox.StandardButton.Save, QMessageBox.StandardButton.Discard]
    window._ask_about_held = lambda count, before: answers.pop(0)
    window.close()
    assert window.isVisible() and window.photos.item_at(path).held
    assert "still held" in window.statusBar().currentMessage()
    window.close()  # Discard
    assert not window.isVisible()


def _type_in_the_caption_box(qtbot, window, photo_folder, path, text):
    """Open the folder, select ``path`` and type ``text`` over its caption (not committed)."""
    open_and_wait(qtbot, window, photo_folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    window.caption_edit.setFocus()
    window.caption_edit.selectAll()
    qtbot.keyClicks(window.caption_edit, text)


def test_text_being_typed_survives_a_result_arriving_for_that_photo(qtbot, window, photo_folder):
    """A caption typed (not yet committed) was replaced by the model's when the photo's result, or
    its preview, arrived and the panel showed the photo again; Return then committed nothing."""
    path = photo_folder / "photo1.jpg"
    _type_in_the_caption_box(qtbot, window, photo_folder, path, "the Saturn V rolling out")
    result = fake_result(str(path))
    window.session.apply_outcomes(window.session.plan([path], "replace_all"), [result], model_name="m")
    assert window.photos.item_at(path).text == " ".join(result.words)
    assert window.caption_edit.text() == "the Saturn V rolling out"
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert window.photos.item_at(path).text == "the Saturn V rolling out"
    other = photo_folder / "photo2.jpg"  # another photo shows its own caption, as before
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(other))))
    assert window.caption_edit.text() == window.photos.item_at(other).text


def test_undo_shows_the_caption_undone_to_after_a_commit_with_extra_spaces(qtbot, window, photo_folder):
    """A commit stores the text with its spaces collapsed, so "a new caption " never equalled it: the
    panel took the box for one still being typed, and after Undo showed the undone text."""
    path = photo_folder / "photo1.jpg"
    _type_in_the_caption_box(qtbot, window, photo_folder, path, "a new  caption ")
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert window.photos.item_at(path).text == "a new caption"
    window.undo_stack.undo()
    assert window.caption_edit.text() == window.photos.item_at(path).text != "a new caption"


def test_typed_text_is_committed_when_the_box_is_left_not_dropped(qtbot, window, photo_folder):
    """Typing a caption and then Tab, Shift+Tab or a click on another photo left it uncommitted: the
    next photo shown replaced it, and nothing said so."""
    path = photo_folder / "photo1.jpg"
    window.show()
    qtbot.waitExposed(window)
    _type_in_the_caption_box(qtbot, window, photo_folder, path, "a carefully typed caption")
    qtbot.waitUntil(window.caption_edit.hasFocus, timeout=WAIT)
    window.grid.setFocus()  # as Shift+Tab or a click on the grid does
    qtbot.waitUntil(lambda: window.photos.item_at(path).text == "a carefully typed caption", timeout=WAIT)
    assert window.photos.item_at(path).state.value == "human"
    window.undo_stack.undo()  # one edit, undoable as a Return's is
    assert window.photos.item_at(path).text != "a carefully typed caption"

    other = photo_folder / "photo2.jpg"
    before = window.photos.item_at(other).text
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(other))))
    window.caption_edit.setFocus()
    qtbot.waitUntil(window.caption_edit.hasFocus, timeout=WAIT)
    window.grid.setFocus()  # left untouched: no edit
    QApplication.processEvents()
    assert window.photos.item_at(other).text == before and window.undo_stack.index() == 0

    # Another window or a menu taking the focus is no leaving: the typing goes on after, as one edit.
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, " and more")
    QApplication.sendEvent(window.caption_edit, QFocusEvent(QEvent.Type.FocusOut,
                                                           Qt.FocusReason.ActiveWindowFocusReason))
    QApplication.processEvents()
    assert window.photos.item_at(other).text == before and window.caption_edit.text().endswith(" and more")


def test_a_click_on_a_filtered_grid_lands_on_the_photo_aimed_at_while_the_typed_caption_is_committed(
        qtbot, window, photo_folder):
    """The commit ran as the box lost the focus to the mouse press: the edited photo left the
    filtered grid before the press was handled, and the click chose the photo that moved up."""
    open_and_wait(qtbot, window, photo_folder)
    paths = [item.path for item in window.photos.items() if not item.error][:3]
    for path in paths:
        window.session._update(path, caption=StoredCaption(f"a zebra {path.stem}", "automatic", "m", -1.0))
    window.filter_edit.setText("zebra")
    first, second = paths[0], paths[1]
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(first))))
    window.caption_edit.setFocus()
    qtbot.waitUntil(window.caption_edit.hasFocus, timeout=WAIT)
    window.caption_edit.selectAll()
    qtbot.keyClicks(window.caption_edit, "a horse")
    target = window.filtered.mapFromSource(window.photos.index(window.photos.row_of(second)))
    qtbot.mouseClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=window.grid.visualRect(target).center())
    qtbot.waitUntil(lambda: window.photos.item_at(first).text == "a horse", timeout=WAIT)
    assert window.current_item().path == second


def test_text_being_typed_when_the_window_closes_is_part_of_the_held_question(qtbot, window, photo_folder):
    """Typed text was committed only as the window went (the box losing the focus), after the
    question about held captions: in hold mode it was then dropped without a word."""
    window.apply_settings(replace(window.settings, auto_write=False))  # hold for review
    path = photo_folder / "photo1.jpg"
    _type_in_the_caption_box(qtbot, window, photo_folder, path, "typed as the window closes")
    asked = []
    window._ask_about_held = lambda count, before="closing": asked.append(count) or QMessageBox.StandardButton.Cancel
    window.close()  # Cancel: the window stays, and so does the typed caption, held
    assert asked == [1] and window.photos.item_at(path).text == "typed as the window closes"
    assert window.photos.item_at(path).held
    window._ask_about_held = lambda count, before="closing": QMessageBox.StandardButton.Discard


def test_return_on_an_unchanged_caption_with_line_breaks_writes_nothing(qtbot, window, photo_folder):
    """The box shows a caption on one line: Return on it unchanged wrote the one-line text back over
    another program's "First paragraph.\\n\\nSecond  paragraph." and marked it a person's."""
    path = photo_folder / "photo1.jpg"
    write_caption(path, StoredCaption("First paragraph.\n\nSecond  paragraph.", "automatic", "other", -1.0))
    before = sidecar_path(path).read_bytes()
    open_and_wait(qtbot, window, photo_folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    window.caption_edit.setFocus()
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert sidecar_path(path).read_bytes() == before and window.undo_stack.index() == 0
    assert window.photos.item_at(path).state.value == "automatic"


def test_undo_keeps_a_caption_another_program_wrote_since_and_says_so(qtbot, window, photo_folder):
    """Undo wrote the caption from before the edit back over the one a colleague wrote since in
    another program, and said nothing."""
    path = photo_folder / "photo1.jpg"
    _type_in_the_caption_box(qtbot, window, photo_folder, path, "my edit")
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(path).text == "my edit"
    write_caption(path, StoredCaption("a colleague's careful caption", "human"))  # another program
    window.undo_stack.undo()
    assert read_caption(path).text == window.photos.item_at(path).text == "a colleague's careful caption"
    assert "its caption was changed since (by another program" in window.statusBar().currentMessage()
    window.undo_stack.redo()  # takes back nothing it set either
    assert read_caption(path).text == "a colleague's careful caption"

    other = photo_folder / "photo2.jpg"  # without another program, Undo and Redo work as before
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(other))))
    before = window.photos.item_at(other).text
    assert window.edit_caption("mine", other)
    window.undo_stack.undo()
    assert window.photos.item_at(other).text == before
    window.undo_stack.redo()
    assert read_caption(other).text == "mine"


def _two_languages(photo: Path, default: str, english: str) -> None:
    """A sidecar another program wrote, its description in x-default and en-US."""
    sidecar_path(photo).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
        f'<rdf:li xml:lang="x-default">{default}</rdf:li><rdf:li xml:lang="en-US">{english}</rdf:li>'
        '</rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>', encoding="utf-8")


def test_undo_of_clearing_a_caption_brings_it_back_where_another_shows_through(qtbot, window, photo_folder):
    """After a clear, the sidecar's other-language item (or the photo's embedded description) shows
    through; Undo took that for a caption written since and refused to bring the person's back."""
    path = photo_folder / "photo1.jpg"
    _two_languages(path, "my words", "English words")
    open_and_wait(qtbot, window, photo_folder)
    assert window.edit_caption("", path)
    assert read_caption(path).text == "English words"
    window.undo_stack.undo()
    assert read_caption(path).text == window.photos.item_at(path).text == "my words"
    window.undo_stack.redo()
    assert read_caption(path).text == "English words"


def test_clearing_a_caption_another_language_repeats_is_undone_into_the_x_default_item(qtbot, window, photo_folder):
    """x-default and en-US saying the same (Adobe's tools write both): the clear took the x-default
    item out, said "nothing was cleared" and could not be undone."""
    path = photo_folder / "photo1.jpg"
    _two_languages(path, "Same words", "Same words")
    open_and_wait(qtbot, window, photo_folder)
    assert window.edit_caption("", path)
    photo = window.photos.item_at(path)
    assert photo.text == "Same words" and not photo.write_error and window.undo_stack.count() == 1
    assert 'x-default">Same words' not in sidecar_path(path).read_text()
    window.undo_stack.undo()
    assert 'x-default">Same words' in sidecar_path(path).read_text()


def test_held_for_review_a_clear_and_its_undo_are_written_at_once_and_a_held_one_is_held_again(
        qtbot, window, photo_folder):
    """The clear was written at once but its undo only held: discarding held captions on closing
    then lost the person's caption."""
    window.apply_settings(replace(window.settings, auto_write=False))
    mine, other = photo_folder / "photo1.jpg", photo_folder / "photo2.jpg"
    write_caption(mine, StoredCaption("my own words", "human"))
    open_and_wait(qtbot, window, photo_folder)
    assert window.edit_caption("", mine)
    assert read_caption(mine) is None
    window.undo_stack.undo()
    assert read_caption(mine).text == "my own words" and not window.photos.item_at(mine).held

    assert window.edit_caption("typed, held", other) and window.photos.item_at(other).held
    assert window.edit_caption("", other)  # the held one taken back, nothing written
    assert read_caption(other) is None and not window.photos.item_at(other).held
    window.undo_stack.undo()  # held again, not written
    assert window.photos.item_at(other).held and read_caption(other) is None


@needs_exiftool
def test_clearing_a_caption_over_an_embedded_one_shows_that_one_and_undoes(qtbot, window, photo_folder):
    """The clear showed no caption while the photo's embedded one applied again; and a clear of the
    embedded caption itself said nothing and looked done."""
    path = photo_folder / "photo1.jpg"
    exiftool("-q", "-overwrite_original", "-EXIF:ImageDescription=Sunset over the harbour", path)
    open_and_wait(qtbot, window, photo_folder)
    assert window.edit_caption("a boat at dusk", path)
    assert window.edit_caption("", path)
    photo = window.photos.item_at(path)
    assert (photo.text, photo.state) == ("Sunset over the harbour", CaptionState.EMBEDDED)
    assert window.undo_stack.count() == 2
    window.undo_stack.undo()
    assert read_caption(path).text == window.photos.item_at(path).text == "a boat at dusk"
    window.undo_stack.redo()
    assert window.photos.item_at(path).state == CaptionState.EMBEDDED and not sidecar_path(path).exists()

    assert window.edit_caption("", path)  # the photo's own caption: refused, and said
    assert "embedded in the photo" in window.photos.item_at(path).write_error
    assert window.undo_stack.count() == 2 and window.photos.item_at(path).text == "Sunset over the harbour"


def test_a_caption_stored_on_several_lines_gives_way_to_the_next_one_in_the_box(qtbot, window, photo_folder):
    """The box compared the person's typing with the stored caption's own spacing: a caption on two
    lines (another program's) always looked typed over, so the box kept it after a new caption came,
    and Return put it back."""
    photo1 = photo_folder / "photo1.jpg"
    write_caption(photo1, StoredCaption("My cat Tom\non the sofa,  2019", "human"))
    open_and_wait(qtbot, window, photo_folder)
    row = window.photos.row_of(photo1)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))

    assert window.edit_caption("a cat on a sofa", photo1)  # as a run's caption, or Undo, would change it
    assert window.caption_edit.text() == "a cat on a sofa"
    window.caption_edit.setFocus()
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(photo1).text == "a cat on a sofa"
    window.undo_stack.undo()
    assert window.caption_edit.text() == "My cat Tom\non the sofa,  2019"


def test_show_attention_maps_waits_for_the_run_under_way_and_says_so(qtbot, window, photo_folder, fake_captioner):
    import threading

    path = photo_folder / "photo1.jpg"
    write_caption(path, StoredCaption("an older caption", "automatic", "old-model", -0.5))
    open_and_wait(qtbot, window, photo_folder)
    row = window.photos.row_of(path)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    gate = fake_captioner.gate = threading.Semaphore(0)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window._caption(None, policy="replace_automatic")  # a run under way, paced by the gate
        assert not window.panel.recompute_button.isEnabled()
        assert not window.recompute_attention()
        assert "once the run under way is over" in window.statusBar().currentMessage()
        for _ in range(10):
            gate.release()
    assert window.panel.recompute_button.isEnabled()


def test_show_attention_maps_by_keyboard_leaves_the_focus_on_the_words(qtbot, window, photo_folder):
    """The button, disabled while its run went and then hidden, handed the focus on to the caption
    box: a keyboard user landed in the text, not on the words whose maps had just come."""
    path = photo_folder / "photo1.jpg"
    write_caption(path, StoredCaption("an older caption", "automatic", "old-model", -0.5))
    window.show()
    open_and_wait(qtbot, window, photo_folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(window.photos.row_of(path))))
    button = window.panel.recompute_button
    assert button.isVisible()
    button.setFocus()
    qtbot.waitUntil(button.hasFocus)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        qtbot.keyClick(button, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not button.isVisible())
    assert window.panel.view.hasFocus() and window.panel.view.words == ("an", "older", "caption")


def test_a_batch_that_does_not_end_in_time_keeps_the_folder_open(qtbot, window, tmp_path, fake_captioner):
    """A batch slower than the wait (256 photos at beam 20 on a laptop): the folder switched all the
    same, and the batch's captions, coming for a folder no longer open, were dropped as "failed"."""
    import functools

    folder = _a_held_run_under_way(qtbot, window, tmp_path, fake_captioner)
    window.service.cancel_and_wait = functools.partial(window.service.cancel_and_wait, timeout_ms=200)
    asked = []
    window._ask_about_held = lambda count, before: asked.append(count) or QMessageBox.StandardButton.Save
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not window.open_folder(elsewhere)  # the gate is shut: the batch goes on past the wait
    assert window.folder == folder and asked == []
    message = window.statusBar().currentMessage()
    assert message.endswith("nothing was lost, and the folder can be opened in a moment"), message
    fake_captioner.gate.release()
    qtbot.waitUntil(lambda: not window.service.busy, timeout=WAIT)
    assert [photo.path.name for photo in window.session.held()] == ["drawing.png"]
    assert window.open_folder(elsewhere)
    assert asked == [1] and read_caption(folder / "drawing.png") is not None and window.folder == elsewhere


# -- CSV export and import in the app -----------------------------------------------------------------


def test_an_export_includes_the_caption_being_typed(qtbot, window, photo_folder, monkeypatch):
    """Ctrl+E with a caption typed and not committed exported the caption from before it."""
    from imgcap_desktop import dialogs
    from tests.desktop.test_main_window import select

    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo3.jpg")
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, "a boat on a lake")
    out = photo_folder.parent / "captions.csv"
    monkeypatch.setattr(dialogs, "ask_export_file", lambda *a: (str(out), False))
    with qtbot.waitSignal(window.exported, timeout=WAIT):
        window.export_action.trigger()
    row = next(line for line in out.read_text().splitlines() if line.startswith("photo3.jpg,"))
    assert ",a boat on a lake,human," in row, row


def test_an_export_made_while_stored_captions_are_read_has_them(qtbot, window, photo_folder, monkeypatch):
    """Exported right after the folder opened (a slow share), a photo whose caption was not read yet
    had an empty caption cell, and a check cell saying so: nothing in the CSV told."""
    from imgcap_desktop import session as session_module

    write_caption(photo_folder / "photo5.jpg", StoredCaption("an old caption", "human"))
    real = session_module._read_stored
    monkeypatch.setattr(session_module, "_read_stored", lambda *a, **k: (time.sleep(0.2), real(*a, **k))[1])
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        assert window.open_folder(photo_folder)
        out = photo_folder.parent / "captions.csv"
        with qtbot.waitSignal(window.exported, timeout=WAIT):
            assert window.export_csv(out)  # at once: the action is enabled
    row = next(line for line in out.read_text().splitlines() if line.startswith("photo5.jpg,"))
    assert ",an old caption,human," in row, row


def test_a_held_caption_an_import_wrote_is_not_said_to_be_unwritten(qtbot, window, photo_folder):
    """Held, refused at Accept (another program wrote since), then written by a CSV import: the photo
    still said "NOT written to the sidecar", and the next export's error cell too."""
    from tests.desktop.test_main_window import select

    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    photo = photo_folder / "photo1.jpg"
    select(qtbot, window, "photo1.jpg")
    assert window.edit_caption("typed here")
    write_caption(photo, StoredCaption("from digikam", "human"))  # another program, meanwhile
    window.accept_held()
    assert window.session.photo(photo).write_error  # held still: Accept again, or Discard
    out = photo_folder.parent / "captions.csv"
    with qtbot.waitSignal(window.exported, timeout=WAIT):
        window.export_csv(out)
    out.write_text(out.read_text().replace("typed here", "edited in a spreadsheet"))
    assert window.import_csv(out)
    assert read_caption(photo).text == "edited in a spreadsheet"
    state = window.session.photo(photo)
    assert not state.held and state.write_error == "" and state.held_over is None
    assert "NOT written" not in window.state_label.text(), window.state_label.text()


def test_caption_all_while_the_folder_is_still_read_skips_the_photos_already_captioned(
        qtbot, window, photo_folder, monkeypatch):
    """Caption All right after opening a folder (its stored captions read in the background: a big
    folder, a slow share): a photo not read yet counted as uncaptioned, and "skip" wrote the model's
    caption over the one it had."""
    from imgcap_desktop import session as session_module

    old = StoredCaption("an old automatic caption", "automatic", "old-model", -1.0, "2020-01-01T00:00:00+00:00")
    captioned = [photo_folder / name for name in ("photo1.jpg", "photo2.jpg", "photo5.jpg")]
    for photo in captioned:
        write_caption(photo, old)
    real = session_module._read_stored
    monkeypatch.setattr(session_module, "_read_stored", lambda *a, **k: (time.sleep(0.2), real(*a, **k))[1])
    assert window.settings.overwrite_policy == "skip" and window.open_folder(photo_folder)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_all()  # at once: the action is enabled
    assert [read_caption(photo) for photo in captioned] == [old] * 3
    assert window.session.photo(captioned[0]).caption == old
    qtbot.waitUntil(lambda: not window.service.busy, timeout=WAIT)


def test_an_edit_keeps_the_no_break_and_ideographic_spaces_it_did_not_touch(qtbot, window, photo_folder):
    """One "!" typed at the end of a Japanese and French caption: every ideographic space (U+3000)
    and no-break space ("10\u00a0km") in it became an ordinary space in the sidecar."""
    from PySide6.QtGui import QTextCursor

    from tests.desktop.test_main_window import select

    caption = "東京タワー\u3000夜景。Vue de Paris\u00a0: la tour, 10\u00a0km"
    photo = photo_folder / "photo1.jpg"
    write_caption(photo, StoredCaption(caption, "human"))
    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo1.jpg")
    window.caption_edit.setFocus()
    window.caption_edit.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClicks(window.caption_edit, "!  ")  # spaces typed after it still go
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(photo).text == caption + "!"
