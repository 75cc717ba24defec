"""The main window end to end with a fake captioner: open, caption, badges, words, edit, cancel, export."""

from __future__ import annotations

import csv
import threading
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import Qt

from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from imgcap_desktop.main_window import PREVIEW_SIZE
from imgcap_desktop.photo_model import Roles
from imgcap_desktop.session import CaptionState
from tests.desktop.conftest import make_photos

WAIT = 10_000


def open_and_wait(qtbot, window, folder):
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        assert window.open_folder(folder)


def caption_all_and_wait(qtbot, window):
    with qtbot.waitSignal(window.service.finished, timeout=WAIT) as blocker:
        assert window.caption_all()
    return blocker.args[0]


def states(window):
    return {item.path.name: item.state for item in window.photos.items()}


def select(qtbot, window, name):
    row = window.photos.row_of(window.folder / name)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    return window.photos.item(row)


def test_open_folder_lists_photos_and_shows_stored_captions(qtbot, window, photo_folder):
    write_caption(photo_folder / "photo3.jpg", StoredCaption("an old caption", "human"))
    open_and_wait(qtbot, window, photo_folder)

    names = [window.photos.index(r).data() for r in range(window.photos.rowCount())]
    assert names == ["broken.jpg", "drawing.png", "photo1.jpg", "photo2.jpg", "photo3.jpg", "photo4.jpg", "photo5.jpg"]
    found = states(window)
    assert found["photo3.jpg"] is CaptionState.HUMAN
    assert found["photo1.jpg"] is CaptionState.NONE
    assert "tensorflow" not in window.service.model_name  # nothing loaded just by opening
    assert window.settings.recent_folders[0] == str(photo_folder.resolve())


def test_caption_all_changes_badges_and_reports_the_corrupt_photo(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    with qtbot.waitSignal(window.service.model_loaded, timeout=WAIT) as loaded:
        cancelled = caption_all_and_wait(qtbot, window)

    assert cancelled is False
    assert loaded.args == ["fake-model", "CPU"]
    assert "fake-model" in window.model_label.text() and "CPU" in window.model_label.text()
    found = states(window)
    assert found.pop("broken.jpg") is CaptionState.ERROR
    assert set(found.values()) == {CaptionState.AUTOMATIC}
    broken = window.photos.index(window.photos.row_of(photo_folder / "broken.jpg"))
    assert "Error:" in broken.data(Qt.ItemDataRole.ToolTipRole)
    assert broken.data(Roles.ERROR)
    # auto-write (the default): every caption is in its sidecar, marked automatic with the model name
    stored = read_caption(photo_folder / "photo1.jpg")
    assert stored.source == "automatic" and stored.model == "fake-model"
    assert stored.text == window.photos.item_at(photo_folder / "photo1.jpg").text
    assert not sidecar_path(photo_folder / "broken.jpg").exists()


def test_clicking_a_word_overlays_that_words_attention(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    item = select(qtbot, window, "photo1.jpg")
    qtbot.waitUntil(lambda: window.view._photo is not None, timeout=WAIT)

    buttons = window.view.word_buttons()
    assert [b.text() for b in buttons] == list(item.result.words)
    qtbot.mouseClick(buttons[2], Qt.MouseButton.LeftButton)
    assert window.view.current_word == 2
    shown = window.view.overlay_map
    assert shown.shape == window.view._photo.shape[:2]
    # word 2's map peaks on grid cell 2 (row 0, column 2): so must the upsampled overlay
    h, w = shown.shape
    peak_y, peak_x = np.unravel_index(np.argmax(shown), shown.shape)
    assert peak_y < h / 4 and 2 * w / 4 <= peak_x < 3 * w / 4

    qtbot.keyClick(window.view, Qt.Key.Key_Right)
    assert window.view.current_word == 3
    qtbot.keyClick(window.view, Qt.Key.Key_Left)
    assert window.view.current_word == 2
    qtbot.keyClick(window.view, Qt.Key.Key_Escape)
    assert window.view.current_word == -1 and window.view.overlay_map is None


def test_editing_a_caption_marks_it_human_and_undo_restores_it(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    item = select(qtbot, window, "photo2.jpg")
    automatic = item.text

    window.caption_edit.setText("  a  cat asleep on a red chair ")
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    edited = window.photos.item_at(item.path)
    assert edited.text == "a cat asleep on a red chair"
    assert edited.state is CaptionState.HUMAN
    assert read_caption(item.path).source == "human"
    assert not any(b.isEnabled() for b in window.view.word_buttons())  # no attention for typed words

    window.undo_action.trigger()
    restored = window.photos.item_at(item.path)
    assert restored.text == automatic and restored.state is CaptionState.AUTOMATIC
    assert read_caption(item.path).text == automatic
    assert all(b.isEnabled() for b in window.view.word_buttons())
    window.redo_action.trigger()
    assert window.photos.item_at(item.path).state is CaptionState.HUMAN


def test_picking_an_alternative_uses_it(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    item = select(qtbot, window, "photo4.jpg")
    assert window.alternatives.count() == 2
    second = " ".join(item.result.alternatives[1].words)
    assert window.alternatives.item(1).data(Qt.ItemDataRole.AccessibleTextRole) == second  # no score read out
    window.alternatives.setCurrentRow(1)
    window.alternatives.itemActivated.emit(window.alternatives.item(1))
    picked = window.photos.item_at(item.path)
    assert window.alternatives.currentRow() == 1  # a keyboard user stays where they were in the list
    assert picked.text == " ".join(item.result.alternatives[1].words)
    assert picked.state is CaptionState.AUTOMATIC  # the model's caption, not a person's
    assert read_caption(item.path).source == "automatic"


def test_an_alternative_picked_after_an_edit_keeps_the_models_name(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    item = select(qtbot, window, "photo4.jpg")
    assert window.edit_caption("my own words")
    window.alternatives.itemActivated.emit(window.alternatives.item(1))
    stored = read_caption(item.path)
    assert (stored.source, stored.model) == ("automatic", "fake-model")
    assert stored.score == item.result.alternatives[1].score


def test_human_captions_are_skipped_unless_asked(qtbot, window, photo_folder):
    write_caption(photo_folder / "photo1.jpg", StoredCaption("mine", "human"))
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    assert window.photos.item_at(photo_folder / "photo1.jpg").text == "mine"
    assert read_caption(photo_folder / "photo1.jpg").text == "mine"

    window.apply_settings(replace(window.settings, overwrite_policy="replace_automatic"))
    caption_all_and_wait(qtbot, window)
    assert read_caption(photo_folder / "photo1.jpg").text == "mine"

    window.apply_settings(replace(window.settings, overwrite_policy="replace_all"))
    asked = []
    window._confirm_replace_human = lambda count: asked.append(count) or False  # the user says no
    caption_all_and_wait(qtbot, window)
    assert asked == [1] and read_caption(photo_folder / "photo1.jpg").text == "mine"
    window._confirm_replace_human = lambda count: True
    caption_all_and_wait(qtbot, window)
    assert read_caption(photo_folder / "photo1.jpg").source == "automatic"


def test_held_captions_are_written_only_when_accepted(qtbot, window, photo_folder):
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    item = window.photos.item_at(photo_folder / "photo1.jpg")
    assert item.held and item.state is CaptionState.AUTOMATIC
    assert not sidecar_path(item.path).exists()

    assert window.accept_held() == 6
    assert read_caption(item.path).text == item.text
    assert not window.photos.item_at(item.path).held


def test_accepting_held_captions_says_which_persons_caption_written_since_it_kept(qtbot, window, photo_folder):
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    photo = photo_folder / "photo2.jpg"
    write_caption(photo, StoredCaption("Typed in Lightroom", "human"))  # another program, meanwhile
    assert window.accept_held() == 5
    assert read_caption(photo).text == window.photos.item_at(photo).text == "Typed in Lightroom"
    assert "kept 1 caption that a person wrote in another program since (photo2.jpg)" in (
        window.statusBar().currentMessage())


def test_cancel_mid_batch_keeps_what_was_produced(qtbot, window, photo_folder, fake_captioner):
    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    window.caption_all()
    assert not window.caption_all_action.isEnabled() and window.cancel_action.isEnabled()
    with qtbot.waitSignal(window.service.caption_generated, timeout=WAIT):
        fake_captioner.gate.release()  # the first batch goes through
    with qtbot.waitSignal(window.service.finished, timeout=WAIT) as finished:
        window.cancel_button.click()
        fake_captioner.gate.release(10)  # the batch under way finishes; no further one starts
    assert finished.args == [True]
    captioned = [s for s in states(window).values() if s is not CaptionState.NONE]
    # Stopped within one batch: the first (two photos), plus the next one if it had already begun.
    assert len(captioned) == 2 * fake_captioner.batches and fake_captioner.batches in (1, 2)
    assert window.caption_all_action.isEnabled()
    assert "Cancelled" in window.statusBar().currentMessage()


def test_grid_keyboard_navigation_works_while_captioning(qtbot, window, photo_folder, fake_captioner):
    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    window.caption_all()
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_End)
    assert window.current_item().path.name == "photo5.jpg"
    qtbot.keyClick(window.grid, Qt.Key.Key_Home)
    assert window.current_item().path.name == "broken.jpg"
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        fake_captioner.gate.release(10)


def test_filter_narrows_the_grid_by_caption(qtbot, window, photo_folder):
    write_caption(photo_folder / "photo3.jpg", StoredCaption("a lighthouse at dusk", "human"))
    open_and_wait(qtbot, window, photo_folder)
    qtbot.keyClicks(window.filter_edit, "LIGHTHOUSE")
    assert window.filtered.rowCount() == 1
    assert window.filtered.index(0, 0).data() == "photo3.jpg"
    window.filter_edit.clear()
    assert window.filtered.rowCount() == 7
    write_caption(photo_folder / "photo3.jpg", StoredCaption("a lighthouse\nat  dusk", "human"))
    window.session.refresh_stored([photo_folder / "photo3.jpg"])
    qtbot.keyClicks(window.filter_edit, "lighthouse at dusk")  # across the line break and the two spaces
    assert window.filtered.rowCount() == 1


def test_the_photo_shown_stays_in_a_filtered_grid_while_its_caption_changes(qtbot, window, photo_folder):
    """Another program (or a run) changing the caption of the photo shown so that the filter no
    longer matched took it out of the grid: the caption being typed for it was dropped, or the box
    went on with the next photo's caption, and the keys typed next edited that photo."""
    for name in ("photo1.jpg", "photo3.jpg"):
        write_caption(photo_folder / name, StoredCaption(f"a lighthouse at dusk ({name})", "human"))
    open_and_wait(qtbot, window, photo_folder)
    qtbot.keyClicks(window.filter_edit, "lighthouse")
    select(qtbot, window, "photo1.jpg")
    window.caption_edit.setFocus()
    qtbot.keyClicks(window.caption_edit, " my")
    write_caption(photo_folder / "photo1.jpg", StoredCaption("a harbour", "human"))  # another program
    window.session.refresh_stored([photo_folder / "photo1.jpg"])  # as the folder's watcher does
    qtbot.wait(50)
    assert window.current_item().path.name == "photo1.jpg" and window.filtered.rowCount() == 2
    qtbot.keyClicks(window.caption_edit, " words")
    qtbot.keyClick(window.caption_edit, Qt.Key.Key_Return)
    assert read_caption(photo_folder / "photo1.jpg").text == "a lighthouse at dusk (photo1.jpg) my words"
    assert read_caption(photo_folder / "photo3.jpg").text == "a lighthouse at dusk (photo3.jpg)"

    write_caption(photo_folder / "photo1.jpg", StoredCaption("a harbour", "human"))
    window.session.refresh_stored([photo_folder / "photo1.jpg"])
    qtbot.wait(50)
    select(qtbot, window, "photo3.jpg")  # the person moves on: photo1 no longer matches, and goes
    qtbot.waitUntil(lambda: window.filtered.rowCount() == 1, timeout=WAIT)
    assert window.current_item().path.name == "photo3.jpg"
    qtbot.keyClicks(window.filter_edit, "zzz")  # filter text that leaves the photo shown out takes it
    assert window.filtered.rowCount() == 0 and window.current_item() is None


def _shown_photo_stops_matching(qtbot, window, folder, words, numbers):
    """Photos ``photoN.jpg`` captioned with ``words``, the grid filtered by them, photo1 shown; then
    another program gives photo1 a caption the filter does not match."""
    for n in numbers:
        write_caption(folder / f"photo{n}.jpg", StoredCaption(f"{words} {n}", "human"))
    open_and_wait(qtbot, window, folder)
    qtbot.keyClicks(window.filter_edit, words)
    select(qtbot, window, "photo1.jpg")
    write_caption(folder / "photo1.jpg", StoredCaption("something else entirely", "human"))
    window.session.refresh_stored([folder / "photo1.jpg"])
    qtbot.wait(50)


def test_a_click_past_a_pinned_photo_that_leaves_selects_the_photo_clicked(qtbot, window, photo_folder):
    """The pinned photo left the grid inside the click's handling: the click's selection spanned the
    row that moved up under it, and Caption Selected would have captioned another photo."""
    _shown_photo_stops_matching(qtbot, window, photo_folder, "a lighthouse", (1, 3, 4, 5))
    assert window.filtered.rowCount() == 4  # photo1 pinned
    target = window.filtered.mapFromSource(window.photos.index(window.photos.row_of(photo_folder / "photo3.jpg")))
    qtbot.mouseClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=window.grid.visualRect(target).center())
    qtbot.waitUntil(lambda: window.filtered.rowCount() == 3, timeout=WAIT)
    assert [p.path.name for p in window.selected_photos()] == ["photo3.jpg"]
    assert window.current_item().path.name == "photo3.jpg"


def test_a_selection_extended_from_a_pinned_photo_keeps_it(qtbot, window, photo_folder, fake_captioner):
    """Shift+Right from the photo shown, whose caption no longer matched, took it out of the
    selection and the grid: Caption Selected skipped it."""
    _shown_photo_stops_matching(qtbot, window, photo_folder, "an old scan", (1, 3, 4))
    window.grid.setFocus()
    for _ in range(2):
        qtbot.keyClick(window.grid, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    qtbot.wait(50)
    assert [p.path.name for p in window.selected_photos()] == ["photo1.jpg", "photo3.jpg", "photo4.jpg"]


def test_the_selection_is_pinned_once_a_pass_however_many_changes_come(qtbot, window, tmp_path):
    """Every selection change rebuilt the pins from every selected photo: with 5,000 selected, 500
    photos deleted by another program froze the window for 17 s (500 rebuilds)."""
    folder = tmp_path / "many"
    make_photos(folder, count=200, corrupt=False)
    open_and_wait(qtbot, window, folder)
    calls = []
    real = window._pin_selection
    window._pin_selection = lambda: calls.append(1) or real()
    window._pin_selection_timer.timeout.disconnect()
    window._pin_selection_timer.timeout.connect(window._pin_selection)
    paths = [window.photos.path(row) for row in range(window.photos.rowCount())]
    window.grid.selectAll()
    window.session.sync_photos(paths[::2])  # no filter: nothing to pin
    qtbot.wait(20)
    assert calls == []
    qtbot.keyClicks(window.filter_edit, "photo")
    calls.clear()
    window.grid.selectAll()
    window.session.sync_photos(paths[::4])
    qtbot.wait(20)
    assert len(calls) == 1


def test_a_photo_deleted_in_a_filtered_grid_takes_no_other_with_it(qtbot, window, photo_folder):
    """The shown photo deleted on disk moved the current photo while its row was being removed, and
    the grid filtered again then lost another photo that still matched."""
    for n in (1, 3, 4, 5):
        write_caption(photo_folder / f"photo{n}.jpg", StoredCaption(f"a zebra {n}", "human"))
    open_and_wait(qtbot, window, photo_folder)
    qtbot.keyClicks(window.filter_edit, "zebra")
    select(qtbot, window, "photo4.jpg")
    (photo_folder / "photo4.jpg").unlink()
    (photo_folder / "photo4.jpg.xmp").unlink()
    window.watcher.check()
    qtbot.waitUntil(lambda: window.filtered.rowCount() == 3, timeout=WAIT)
    qtbot.wait(100)
    assert sorted(window.filtered.index(r, 0).data() for r in range(3)) == ["photo1.jpg", "photo3.jpg", "photo5.jpg"]


def test_moving_through_a_filtered_grid_filters_it_again_only_when_a_photo_leaves(qtbot, window, tmp_path):
    """Every arrow key in a filtered grid filtered the whole folder again (5,000 photos: about 0.1 s a
    key); now only a pinned photo that no longer matches makes it."""
    from imgcap_desktop.photo_model import PhotoFilterModel

    calls = []
    real = PhotoFilterModel._matches

    def counted(model, row):
        calls.append(row)
        return real(model, row)

    folder = tmp_path / "many"
    make_photos(folder, count=40, corrupt=False)
    open_and_wait(qtbot, window, folder)
    qtbot.keyClicks(window.filter_edit, "photo")
    window.grid.setFocus()
    PhotoFilterModel._matches = counted
    try:
        for _ in range(10):
            qtbot.keyClick(window.grid, Qt.Key.Key_Right)
        qtbot.wait(20)
    finally:
        PhotoFilterModel._matches = real
    assert window.current_item().path.name == "photo11.jpg"
    assert len(calls) < 100  # not once over the folder a key (ten keys went over it ten times: 400)


def test_a_folder_the_filter_hides_entirely_shows_no_photo_of_the_last_one(qtbot, window, photo_folder, tmp_path):
    """The panel went on showing the last folder's photo, and a caption typed there went nowhere."""
    write_caption(photo_folder / "photo1.jpg", StoredCaption("a lighthouse at dusk", "human"))
    open_and_wait(qtbot, window, photo_folder)
    qtbot.keyClicks(window.filter_edit, "lighthouse")
    select(qtbot, window, "photo1.jpg")
    assert window.caption_edit.text() == "a lighthouse at dusk"
    other = tmp_path / "other"
    make_photos(other, count=2, corrupt=False)
    open_and_wait(qtbot, window, other)
    assert window.filtered.rowCount() == 0 and window.current_item() is None
    assert window.caption_edit.text() == "" and window.panel.shown_text == ""


def test_a_new_result_with_the_same_caption_shows_its_own_alternatives(qtbot, window, photo_folder):
    """A run that gave the photo shown the caption it had left the last result's alternatives in the
    list; the one picked was stored without its score."""
    from model.results import Alternative

    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    photo = select(qtbot, window, "photo2.jpg")
    qtbot.waitUntil(lambda: window.thumbnails.image(str(photo.path), PREVIEW_SIZE) is not None, timeout=WAIT)
    qtbot.wait(50)  # the preview shown: nothing else shows the photo again
    assert window.panel.alternatives.count() == 2
    result = photo.result
    again = replace(result, score=-0.25, alternatives=(Alternative(result.words, -0.25),))
    plan = window.session.plan([photo.path], "replace_automatic")
    window.session.apply_outcomes(plan, [again], model_name="tiny")
    qtbot.waitUntil(lambda: window.panel.alternatives.count() == 1, timeout=WAIT)


def test_export_csv_of_folder_and_selection(qtbot, window, photo_folder, tmp_path):
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    out = tmp_path / "captions.csv"
    with qtbot.waitSignal(window.exported, timeout=WAIT) as exported:
        assert window.export_csv(out)
    assert exported.args == [str(out), 7]
    with out.open(encoding="utf-8", newline="") as f:
        rows = {row["file name"]: row for row in csv.DictReader(f)}
    assert rows["photo1.jpg"]["caption"] == window.photos.item_at(photo_folder / "photo1.jpg").text
    assert rows["photo1.jpg"]["source"] == "automatic"
    assert rows["photo1.jpg"]["sidecar path"] == "photo1.jpg.xmp"
    assert rows["broken.jpg"]["caption"] == ""

    select(qtbot, window, "photo2.jpg")
    window.grid.selectionModel().select(window.grid.currentIndex(),
                                        window.grid.selectionModel().SelectionFlag.ClearAndSelect)
    with qtbot.waitSignal(window.exported, timeout=WAIT) as exported:
        window.export_csv(out, selection_only=True)
    assert exported.args[1] == 1


def test_closing_the_window_stops_the_worker(qtbot, window, photo_folder):
    from imgcap_desktop.caption_service import running_threads

    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    assert running_threads()
    window.close()
    assert running_threads() == []


@pytest.mark.parametrize("policy", ["skip"])
def test_everything_captioned_means_nothing_to_do(qtbot, window, photo_folder, policy):
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    # only the corrupt photo is left to try again under the skip policy
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_all()
    assert states(window)["broken.jpg"] is CaptionState.ERROR


def test_caption_selected_captions_only_the_selection(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo3.jpg")
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_selected()
    captioned = {name for name, state in states(window).items() if state is CaptionState.AUTOMATIC}
    assert captioned == {"photo3.jpg"}


def test_caption_selected_with_nothing_selected_captions_the_photo_shown(qtbot, window, photo_folder):
    # When the photo chosen is deleted, or the filter hides it, the grid moves on to the next one
    # without selecting it: Ctrl+R did nothing, and said nothing.
    from PySide6.QtCore import QItemSelectionModel

    open_and_wait(qtbot, window, photo_folder)
    index = window.filtered.mapFromSource(window.photos.index(window.photos.row_of(photo_folder / "photo2.jpg")))
    window.grid.selectionModel().clearSelection()
    window.grid.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)
    assert window.selected_photos() == [] and window.current_item().path.name == "photo2.jpg"
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_selected()
    assert {name for name, state in states(window).items() if state is CaptionState.AUTOMATIC} == {"photo2.jpg"}

    window.grid.selectionModel().clear()
    assert not window.caption_selected()
    assert "No photo is selected" in window.statusBar().currentMessage()


def test_a_runs_summary_stays_and_is_announced(qtbot, window, photo_folder, monkeypatch):
    # It went from the status bar after 8 s, and no screen reader was told: a person busy elsewhere
    # never learnt that photos had failed.
    from PySide6 import QtGui

    if not hasattr(QtGui, "QAccessibleAnnouncementEvent"):
        pytest.skip("Qt before 6.8 has no announcements")
    said = []
    monkeypatch.setattr(QtGui.QAccessible, "updateAccessibility",
                        lambda event: said.append(event.message()) if hasattr(event, "message") else None)
    open_and_wait(qtbot, window, photo_folder)
    shown = []
    bar = window.statusBar()
    show = bar.showMessage
    monkeypatch.setattr(bar, "showMessage",
                        lambda text, timeout=0: (shown.append((text, timeout)), show(text, timeout)))
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window.caption_all()
    summary = bar.currentMessage()
    assert summary.startswith("Captioned 6 of 7 photos, 1 failed") and said == [summary]
    assert shown[-1] == (summary, 0)  # no time limit: there until the next message
    from PySide6.QtGui import QStatusTipEvent
    from PySide6.QtWidgets import QApplication

    QApplication.sendEvent(window, QStatusTipEvent(""))  # the mouse over a menu command: it cleared the bar
    assert bar.currentMessage() == summary


def test_progress_bar_counts_and_shows_an_eta(qtbot, window, photo_folder, fake_captioner):
    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    window.caption_all()
    assert window.progress_bar.isVisible() and window.progress_bar.maximum() == 7
    with qtbot.waitSignal(window.service.progress, timeout=WAIT, check_params_cb=lambda done, total: done == 2):
        fake_captioner.gate.release()
    assert window.progress_bar.value() == 2
    assert "left" in window.eta_label.text()
    fake_captioner.gate.release(10)
    qtbot.waitUntil(lambda: not window.service.busy and not window.progress_bar.isVisible(), timeout=WAIT)


def test_dropping_a_folder_opens_it_and_it_joins_the_recent_list(qtbot, window, photo_folder, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo_folder))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        window.dropEvent(event)
    assert window.folder == photo_folder and window.photos.rowCount() == 7
    recent = [a.text() for a in window.recent_menu.actions()]
    assert recent[0] == str(photo_folder.resolve())

    other = tmp_path / "other"
    other.mkdir()
    window.open_folder(other)
    assert window.photos.rowCount() == 0
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        window.recent_menu.actions()[1].trigger()
    assert window.folder == photo_folder.resolve()


def test_subfolders_option(qtbot, window, photo_folder):
    from tests.desktop.conftest import make_photos

    make_photos(photo_folder / "day2", count=2, corrupt=False)
    open_and_wait(qtbot, window, photo_folder)
    assert window.photos.rowCount() == 7
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        window.subfolders_action.trigger()
    assert window.photos.rowCount() == 10
    assert window.settings.include_subfolders


def test_a_folder_whose_photos_are_all_in_subfolders_says_where_they_are(qtbot, window, tmp_path):
    from tests.desktop.conftest import make_photos

    make_photos(tmp_path / "trip" / "day1", count=2, corrupt=False)
    assert window.open_folder(tmp_path / "trip")
    assert window.photos.rowCount() == 0
    assert window.statusBar().currentMessage() == (f"No photos in {tmp_path / 'trip'}; File > Include Subfolders "
                                                   f"shows those of its subfolders")  # it used to say "0 photos"
    (tmp_path / "empty").mkdir()
    assert window.open_folder(tmp_path / "empty")
    assert window.statusBar().currentMessage() == f"0 photos in {tmp_path / 'empty'}"


def test_photos_that_would_share_a_base_style_sidecar_are_shown_failed(qtbot, window, tmp_path):
    from tests.desktop.conftest_metadata import make_photo

    folder = tmp_path / "pair"
    make_photo(folder / "x.jpg")
    make_photo(folder / "x.png")
    window.apply_settings(replace(window.settings, sidecar_style="base"))
    open_and_wait(qtbot, window, folder)
    window.caption_all_action.trigger()
    # It said "Every photo already has a caption" and showed nothing on the photos.
    assert window.statusBar().currentMessage() == "x.jpg, x.png would share the sidecar x.xmp; use the ext style"
    assert {name: state.value for name, state in states(window).items()} == {"x.jpg": "error", "x.png": "error"}


def test_a_subfolder_that_cannot_be_read_is_named_in_the_status_bar(qtbot, window, photo_folder, monkeypatch):
    from tests.desktop.conftest import make_photos
    from tests.desktop.conftest_metadata import refuse_listing

    make_photos(photo_folder / "locked", count=2, corrupt=False)
    refuse_listing(monkeypatch, "locked")
    window.settings = replace(window.settings, include_subfolders=True)
    open_and_wait(qtbot, window, photo_folder)

    assert window.photos.rowCount() == 7
    message = window.statusBar().currentMessage()
    assert message.startswith("7 photos in ")
    assert f"Left out: {photo_folder / 'locked'}: cannot list the folder (Permission denied)" in message


def test_a_run_says_how_many_photos_it_left_out(qtbot, window, tmp_path):
    """With a pair that would share a base-style sidecar beside another photo, the run ended with
    "Captioned 1 of 1 photo", not a word of the pair left out (their badges alone said so)."""
    from tests.desktop.conftest_metadata import make_photo

    folder = tmp_path / "pair"
    make_photo(folder / "x.jpg")
    make_photo(folder / "x.png")
    make_photo(folder / "y.jpg")
    window.apply_settings(replace(window.settings, sidecar_style="base"))
    open_and_wait(qtbot, window, folder)
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        window.caption_all_action.trigger()
    assert window.statusBar().currentMessage() == ("Captioned 1 of 1 photo; 2 others left out: x.jpg, x.png would "
                                                   "share the sidecar x.xmp; use the ext style")


def test_closing_mid_run_in_hold_mode_asks_about_the_last_batch_too(qtbot, window, photo_folder, fake_captioner):
    """The batch under way ended after the held-captions question: its captions, held, were dropped
    with the window without being asked about."""
    from PySide6.QtWidgets import QMessageBox

    fake_captioner.delay = 0.3
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    with qtbot.waitSignal(window.service.caption_generated, timeout=WAIT):
        window.caption_all()  # the first batch of two is held; the second is under way
    asked = []
    window._ask_about_held = lambda count, before: asked.append(count) or QMessageBox.StandardButton.Save
    window.close()
    assert not window.isVisible()
    captioned = [p for p in window.session.photos() if p.caption is not None]
    assert asked == [len(captioned)]
    assert all(read_caption(p.path) is not None for p in captioned)  # all of them written


def test_closing_mid_run_asks_first_and_cancel_lets_the_run_go_on(qtbot, window, photo_folder, fake_captioner):
    """Closing during a run stopped it before anything was asked: answering Cancel to the held
    captions' question then kept the window with its run stopped half-way."""
    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    assert window.caption_all()
    asked = []
    window._confirm_stop_run = lambda: asked.append(window.run_status.progress()) or False
    window.close()
    assert window.isVisible() and window.service.busy and asked == [(0, len(window.session), "Captioned")]
    with qtbot.waitSignal(window.service.finished, timeout=WAIT) as finished:
        fake_captioner.gate.release(10)
    assert finished.args == [False]  # not cancelled: every photo was captioned
    assert all(p.caption is not None for p in window.session.photos() if p.path.name != "broken.jpg")


def test_controls_have_names_and_the_focus_stays_in_the_window_when_cancel_goes(qtbot, window):
    """Unnamed controls were read as "edit" or "list"; Tab reached the filter box last, though it is
    above the grid; and Cancel, hidden at the end of a run while it had the focus, passed it on to
    the filter box."""
    names = {w.accessibleName() for w in (window.grid, window.filter_edit, window.caption_edit, window.alternatives,
                                          window.view, window.view.opacity_slider, window.progress_bar)}
    assert names == {"Photos", "Filter photos", "Caption", "Alternative captions", "Caption words",
                     "Overlay opacity", "Captioning progress"}
    following = window.filter_edit.nextInFocusChain()
    while not following.focusPolicy() & Qt.FocusPolicy.TabFocus:  # the clear button inside the box takes none
        following = following.nextInFocusChain()
    assert following is window.grid

    window.show()
    qtbot.waitExposed(window)
    window.cancel_button.setVisible(True)
    window.cancel_button.setFocus()
    qtbot.waitUntil(window.cancel_button.hasFocus, timeout=WAIT)
    window.run_status._on_service_finished(True)
    assert window.grid.hasFocus()


def test_every_grid_cell_has_room_for_a_portrait_thumbnail_and_its_name(qtbot, window, photo_folder):
    """The grid gave every cell the first photo's size: after a landscape photo, a portrait photo's
    name was cut off, and with it the sign that it was the one selected."""
    from PIL import Image

    from imgcap_desktop.photo_model import THUMBNAIL_SIZE

    folder = photo_folder.parent / "shapes"
    folder.mkdir()
    Image.new("RGB", (300, 150), (200, 30, 30)).save(folder / "a_landscape.jpg")
    Image.new("RGB", (150, 300), (30, 30, 200)).save(folder / "b_portrait.jpg")
    open_and_wait(qtbot, window, folder)
    window.show()
    qtbot.waitExposed(window)
    for row in range(2):  # the thumbnails in place of the square placeholders
        qtbot.waitUntil(lambda row=row: window.filtered.index(row, 0).data(Qt.ItemDataRole.DecorationRole).width()
                        != window.filtered.index(row, 0).data(Qt.ItemDataRole.DecorationRole).height(), timeout=WAIT)
    from PySide6.QtWidgets import QStyleOptionViewItem

    option = QStyleOptionViewItem()
    window.grid.initViewItemOption(option)
    line = window.grid.fontMetrics().height()
    for row in range(2):  # the grid sizes every cell by one of them: each must fit the tallest
        hint = window.grid.itemDelegate().sizeHint(option, window.filtered.index(row, 0))
        assert hint.height() >= THUMBNAIL_SIZE + line
    assert window.grid.gridSize().height() >= THUMBNAIL_SIZE + line


def _drop(window, *paths):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    return event.isAccepted()


def test_a_drop_opens_only_a_folder_or_a_photo_and_chooses_the_photo_dropped(qtbot, window, photo_folder, tmp_path):
    """A text file or a vanished path dropped replaced the open folder with its parent; a photo
    dropped opened its folder at the first photo; several folders dropped opened one, unsaid."""
    open_and_wait(qtbot, window, photo_folder)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    assert not _drop(window, notes) and not _drop(window, tmp_path / "gone")
    assert window.folder == photo_folder

    other = tmp_path / "other"
    other.mkdir()
    photo = other / "b.jpg"
    (photo_folder / "photo2.jpg").rename(photo)
    (photo_folder / "photo1.jpg").rename(other / "a.jpg")
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        assert _drop(window, photo, photo_folder)
    assert window.folder == other and window.current_item().path == photo
    assert "the other dropped item was left out" in window.statusBar().currentMessage()


def test_open_with_on_a_photo_opens_its_folder_with_it_chosen(qtbot, window, photo_folder, tmp_path):
    """A file manager's Open With runs "imgcap-desktop PHOTO": it said "not a folder" and opened
    nothing."""
    photo = photo_folder / "photo3.jpg"
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        assert window.open_paths([photo, photo_folder / "photo4.jpg"])  # both in the folder opened
    assert window.folder == photo_folder and window.current_item().path == photo
    assert "left out" not in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.reader.finished, timeout=WAIT):
        assert window.open_paths([photo, tmp_path])
    assert "the other given item was left out" in window.statusBar().currentMessage()
    assert not window.open_paths([tmp_path / "gone.jpg"])  # said, as a folder that is not there is
    assert "Cannot open" in window.statusBar().currentMessage() and window.folder == photo_folder


def test_a_second_running_copy_leaves_the_first_ones_settings_as_it_wrote_them(qtbot, window, photo_folder,
                                                                              tmp_path):
    """Opening a folder wrote back every setting of the window's own old copy: a second copy undid
    hold-for review, the naming and the beam set in the first, and its recent list."""
    from dataclasses import replace

    from PySide6.QtWidgets import QMessageBox

    from imgcap_desktop.main_window import MainWindow
    from imgcap_desktop.settings import AppSettings, load_settings

    second = MainWindow(service=window.service, settings=AppSettings(batch_size=2))
    second._ask_about_held = lambda count, before="closing": QMessageBox.StandardButton.Discard
    qtbot.addWidget(second)
    window.apply_settings(replace(window.settings, beam_size=10, sidecar_style="base", auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    other = tmp_path / "other"
    other.mkdir()
    second.open_folder(other)

    stored = load_settings()
    assert (stored.beam_size, stored.sidecar_style, stored.auto_write) == (10, "base", False)
    assert stored.recent_folders[:2] == (str(other.resolve()), str(photo_folder.resolve()))


def test_the_folder_is_made_absolute_so_it_has_a_title_and_is_one_folder_whatever_the_way(
        qtbot, window, photo_folder, monkeypatch):
    monkeypatch.chdir(photo_folder)
    open_and_wait(qtbot, window, ".")
    assert window.windowTitle() == f"{photo_folder.name} — imgcap" and window.folder == photo_folder
    assert window.open_folder(photo_folder / ".." / photo_folder.name)
    assert window.folder == photo_folder


def test_settings_that_cannot_be_saved_are_said_so(qtbot, window, monkeypatch):
    from dataclasses import replace

    from imgcap_desktop import main_window

    monkeypatch.setattr(main_window, "save_settings", lambda *args, **kwargs: False)
    window.apply_settings(replace(window.settings, beam_size=7))
    assert "could not be saved" in window.statusBar().currentMessage()


def test_switching_hold_for_review_during_a_run_says_it_applies_from_the_next_run(qtbot, window, photo_folder,
                                                                                 fake_captioner):
    import threading
    from dataclasses import replace

    fake_captioner.gate = threading.Semaphore(0)
    open_and_wait(qtbot, window, photo_folder)
    assert window.caption_all()
    window.apply_settings(replace(window.settings, auto_write=False))
    assert "holding captions for review from the next run" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        fake_captioner.gate.release(10)


def test_a_recent_folder_that_no_longer_exists_leaves_the_list_when_chosen(qtbot, window, photo_folder, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    window.open_folder(gone)
    open_and_wait(qtbot, window, photo_folder)
    gone.rmdir()
    entry = next(a for a in window.recent_menu.actions() if a.text() == str(gone.resolve()))
    entry.trigger()
    assert "does not exist" in window.statusBar().currentMessage()
    assert str(gone.resolve()) not in [a.text() for a in window.recent_menu.actions()]
    assert window.folder == photo_folder  # the open folder stays


def test_a_folder_opened_through_a_link_is_offered_again_through_it(qtbot, window, photo_folder, tmp_path,
                                                                    fake_captioner):
    """The recent list held the resolved path: Open Recent during a run then opened the folder under
    another path, and the run's late results were written but shown as missing (held ones lost)."""
    class CountingGate(threading.Semaphore):
        calls = 0

        def acquire(self, *args, **kwargs):
            self.calls += 1
            return super().acquire(*args, **kwargs)

    link = tmp_path / "link"
    link.symlink_to(photo_folder, target_is_directory=True)
    fake_captioner.gate = gate = CountingGate(0)
    open_and_wait(qtbot, window, photo_folder)
    open_and_wait(qtbot, window, link)
    assert window.settings.recent_folders[0] == str(link)
    assert str(photo_folder) not in window.settings.recent_folders  # one folder, one entry: the newest spelling
    window.caption_all()
    with qtbot.waitSignal(window.service.caption_generated, timeout=WAIT):
        gate.release()  # the first batch goes through
    qtbot.waitUntil(lambda: gate.calls >= 2, timeout=WAIT)  # the second is under way: it ends as the folder opens
    entry = next(a for a in window.recent_menu.actions() if a.text() == str(link))
    threading.Timer(0.3, gate.release, (10,)).start()
    with qtbot.waitSignals([window.reader.finished, window.service.finished], timeout=WAIT):
        entry.trigger()
    written = [p for p in sorted(link.glob("photo*.jpg")) if read_caption(p) is not None
               and read_caption(p).source == "automatic"]  # the second batch's too, written as the folder opened again
    assert written and all(window.photos.item_at(p).text == read_caption(p).text for p in written)


def test_a_closed_window_is_freed(qtbot, service):
    """The filter box's slot was a lambda holding the window, a cycle through C++ that Python's
    collector cannot see: a closed window, with its session, photos and previews, stayed for good."""
    import gc
    import weakref

    from imgcap_desktop.main_window import MainWindow
    from imgcap_desktop.settings import AppSettings

    window = MainWindow(service=service, settings=AppSettings())
    window.show()
    qtbot.waitExposed(window)
    window.close()
    ref = weakref.ref(window)
    del window
    gc.collect()
    assert ref() is None


# -- "&" shown as it is, and no Alt+letter shortcut -------------------------------------------------


def test_a_recent_folder_with_an_ampersand_is_shown_and_read_as_named(qtbot, window, tmp_path):
    """"R&D photos" was shown "RD photos" (D underlined) in Open Recent, and read out so."""
    from PySide6.QtGui import QAccessible

    from tests.desktop.conftest import make_photos

    folder = tmp_path / "R&D photos"
    make_photos(folder, 2, corrupt=False)
    open_and_wait(qtbot, window, folder)
    entry = window.recent_menu.actions()[0]
    spoken = QAccessible.queryAccessibleInterface(window.recent_menu).child(0).text(QAccessible.Text.Name)
    assert entry.iconText() == spoken == str(folder)


def test_caption_words_and_keywords_with_an_ampersand_take_no_shortcut(qtbot, window, photo_folder):
    """"R&D" in a caption was drawn "RD" and took Alt+D (a word "R&E" took Alt+E, the Edit menu's);
    another program's keyword "Rock&Roll" was drawn "RockRoll", with Alt+R."""
    write_caption(photo_folder / "photo1.jpg", StoredCaption("the R&D lab of Smith & Sons", "human"))
    sidecar = photo_folder / "photo1.jpg.xmp"
    sidecar.write_text(sidecar.read_text().replace(
        "</rdf:RDF>", '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:subject><rdf:Bag><rdf:li>Rock&amp;Roll</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF>"))
    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo1.jpg")
    qtbot.waitUntil(lambda: len(window.view.word_buttons()) == 7, timeout=WAIT)
    keywords = window.panel.keywords
    qtbot.waitUntil(lambda: keywords.other_keywords() == ["Rock&Roll"], timeout=WAIT)
    for button, name in ((window.view.word_buttons()[1], "R&D"), (window.view.word_buttons()[5], "&"),
                         (keywords.chip_buttons()[0], "Keyword Rock&Roll, from another program")):
        assert button.accessibleName() == name and button.shortcut().isEmpty(), button.shortcut().toString()
        assert button.text().replace("&&", "&") == name.removeprefix("Keyword ").removesuffix(", from another program")


def test_the_caption_box_says_nothing_of_a_photo_no_longer_shown(qtbot, window, photo_folder, tmp_path):
    """A filter matching no photo, or an empty folder opened: the box's accessible description still
    said "Automatic caption (fake-model, score -0.50)" of the photo shown before."""
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    select(qtbot, window, "photo1.jpg")
    assert window.caption_edit.accessibleDescription().startswith("Automatic caption")
    window.filter_edit.setText("no photo has this text")
    qtbot.waitUntil(lambda: window.current_item() is None, timeout=WAIT)
    assert window.caption_edit.accessibleDescription() == ""


def test_the_grids_cells_grow_with_a_font_chosen_while_the_app_runs(qtbot, window, photo_folder):
    """A larger desktop font chosen later left the cells at the old font's height: each photo's name
    was cut off under its thumbnail."""
    from PySide6.QtGui import QFont
    from PySide6.QtWidgets import QApplication

    open_and_wait(qtbot, window, photo_folder)
    index = window.grid.model().index(0, 0)
    before = QApplication.font()
    try:
        large = QFont(before)
        large.setPixelSize(40)
        QApplication.setFont(large)
        qtbot.waitUntil(lambda: window.grid.fontMetrics().height() >= 40, timeout=WAIT)
        qtbot.waitUntil(lambda: window.grid.visualRect(index).height() >= window.grid.sizeHintForIndex(index).height(),
                        timeout=WAIT)
    finally:
        QApplication.setFont(before)
