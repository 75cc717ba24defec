"""Captions held for review (auto_write off), and another program writing the sidecar meanwhile: a
caption it wrote is never lost, whatever the user does with the held one (import a CSV, switch to
writing at once, undo after Accept), and what is typed is part of Accept."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtWidgets import QApplication

from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, write_caption
from tests.desktop.test_keyword_chips import TaggingCaptioner
from tests.desktop.test_main_window import WAIT, caption_all_and_wait, open_and_wait, select

DIGIKAM = StoredCaption("typed in digikam", "human")


@pytest.fixture
def fake_captioner():
    return TaggingCaptioner()  # keywords cat and dog


def _hold(window) -> None:
    window.apply_settings(replace(window.settings, auto_write=False))


def _held_model_caption_then_digikam(qtbot, window, photo_folder):
    """photo1.jpg's model caption held (keywords cat, dog); then digiKam writes a person's caption."""
    _hold(window)
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    photo = photo_folder / "photo1.jpg"
    assert window.session.photo(photo).held and read_caption(photo) is None
    write_caption(photo, DIGIKAM)
    return photo


def _stored(photo):
    stored = read_caption(photo)
    return None if stored is None else (stored.text, stored.source)


def test_a_csv_import_over_a_held_caption_keeps_a_caption_written_since(qtbot, window, photo_folder):
    """The row's keywords edited: the held model caption was written over digiKam's (the import
    compared with the held caption, and never with what it was held over)."""
    photo = _held_model_caption_then_digikam(qtbot, window, photo_folder)
    out = photo_folder.parent / "captions.csv"
    with qtbot.waitSignal(window.exported, timeout=WAIT):
        assert window.export_csv(out)
    out.write_text("\n".join(line.replace("cat; dog", "cat") if line.startswith("photo1.jpg,") else line
                             for line in out.read_text().splitlines()) + "\n")
    assert window.import_csv(out)
    assert _stored(photo) == ("typed in digikam", "human")
    assert "another program wrote its caption since the caption shown was held" in window.statusBar().currentMessage()


def test_a_keyword_removed_after_switching_to_writing_at_once_keeps_a_caption_written_since(
        qtbot, window, photo_folder):
    photo = _held_model_caption_then_digikam(qtbot, window, photo_folder)
    window.apply_settings(replace(window.settings, auto_write=True))
    select(qtbot, window, "photo1.jpg")
    assert window.remove_keyword("dog", photo)
    assert _stored(photo) == ("typed in digikam", "human")  # it stays held, for Accept, which keeps it
    window.accept_held()
    assert _stored(photo) == ("typed in digikam", "human")


def _typed_then_digikam(qtbot, window, photo_folder):
    _hold(window)
    open_and_wait(qtbot, window, photo_folder)
    photo = photo_folder / "photo1.jpg"
    select(qtbot, window, "photo1.jpg")
    assert window.edit_caption("my words", photo)
    assert window.session.photo(photo).held and read_caption(photo) is None
    write_caption(photo, DIGIKAM)
    window.session.refresh_stored([photo])  # the folder watcher: a held photo is left as it is
    return photo


@pytest.mark.parametrize("how", ["undo", "clear"])
def test_held_typing_taken_back_after_switching_to_writing_at_once_leaves_a_caption_written_since(
        qtbot, window, photo_folder, how):
    """digiKam's caption, never shown, was deleted from the sidecar: the clear was written at once."""
    photo = _typed_then_digikam(qtbot, window, photo_folder)
    window.apply_settings(replace(window.settings, auto_write=True))
    window.undo_stack.undo() if how == "undo" else window.edit_caption("", photo)
    assert _stored(photo) == ("typed in digikam", "human")
    assert window.session.photo(photo).text == "typed in digikam"


def test_undo_of_an_accepted_caption_keeps_a_caption_written_since(qtbot, window, photo_folder):
    """Held for review, typed, accepted, then digiKam: Undo deleted digiKam's caption (written at
    once, unchecked), where writing at once refuses the same Undo."""
    _hold(window)
    open_and_wait(qtbot, window, photo_folder)
    photo = photo_folder / "photo1.jpg"
    select(qtbot, window, "photo1.jpg")
    assert window.edit_caption("my words", photo)
    window.accept_held()
    assert _stored(photo) == ("my words", "human")
    write_caption(photo, DIGIKAM)
    window.session.refresh_stored([photo])
    window.undo_stack.undo()
    assert _stored(photo) == ("typed in digikam", "human")
    assert "its caption was changed since" in window.statusBar().currentMessage()

    other = photo_folder / "photo2.jpg"  # without another program, that Undo takes the caption out
    select(qtbot, window, "photo2.jpg")
    assert window.edit_caption("mine too", other)
    window.accept_held()
    window.undo_stack.undo()
    assert read_caption(other) is None


def test_accept_writes_the_caption_being_typed(qtbot, window, photo_folder):
    """Typed and not committed, then Ctrl+Shift+H: "Wrote 0 captions", the typing left out."""
    _hold(window)
    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo1.jpg")
    window.caption_edit.setFocus()
    qtbot.waitUntil(window.caption_edit.hasFocus, timeout=WAIT)
    window.caption_edit.selectAll()
    qtbot.keyClicks(window.caption_edit, "typed, then accepted")
    window.accept_action.trigger()
    QApplication.processEvents()
    assert _stored(photo_folder / "photo1.jpg") == ("typed, then accepted", "human")
