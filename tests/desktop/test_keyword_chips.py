"""Keyword chips in the app: shown under the caption, each one's class activation map on click, removal
as a person's edit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from imgcap_desktop.caption_panel import CaptionPanel
from imgcap_desktop.caption_view import upsample_map
from imgcap_desktop.metadata import xmp_edit
from imgcap_desktop.metadata.sidecar import StoredCaption, find_sidecar, read_caption, write_caption
from imgcap_desktop.session import CaptionSession, CaptionState
from model.results import CaptionResult, Tag
from tests.desktop.conftest import FakeCaptioner, fake_result
from tests.desktop.test_main_window import WAIT, caption_all_and_wait, open_and_wait, select

GRID = (4, 4)


def cam_at(cell: int, grid=GRID) -> np.ndarray:
    """A class activation map peaking on one grid cell, summing to 1, as ``Tag.cam`` is."""
    cam = np.full(grid, 0.02, np.float32)
    cam.flat[cell] = 1.0
    return (cam / cam.sum()).astype(np.float32)


def with_tags(result: CaptionResult) -> CaptionResult:
    """``result`` with tags as the engine gives them: keywords cat and dog (with maps), grass below the threshold."""
    tags = (Tag("cat", 0.87, (285, 281), cam_at(15)), Tag("dog", 0.41, (207,), cam_at(1)), Tag("grass", 0.05, (973,)))
    return CaptionResult(result.source, result.words, result.token_ids, result.score, result.attention,
                         result.alternatives, tags, ("cat", "dog"))


class TaggingCaptioner(FakeCaptioner):
    """The fake captioner with tags and keywords, except for the PNG (a photo the classifier sees nothing in)."""

    def _one(self, path):
        outcome = super()._one(path)
        return with_tags(outcome) if outcome.ok and not str(path).endswith(".png") else outcome


@pytest.fixture
def fake_captioner() -> FakeCaptioner:
    return TaggingCaptioner()


def chip_words(window) -> list[str]:
    return list(window.panel.keywords.chips())


def captioned(qtbot, window, folder, name="photo1.jpg"):
    open_and_wait(qtbot, window, folder)
    caption_all_and_wait(qtbot, window)
    photo = select(qtbot, window, name)
    qtbot.waitUntil(lambda: window.panel.view._photo is not None and window.panel.keywords.isVisible(), timeout=WAIT)
    return window.session.photo(photo.path)


def test_chips_appear_for_a_result_with_keywords(qtbot, window, photo_folder):
    photo = captioned(qtbot, window, photo_folder)

    assert photo.keywords == ("cat", "dog")
    assert chip_words(window) == ["cat", "dog"]  # grass is a tag, not a keyword
    chips = window.panel.keywords.chips()
    assert "87%" in chips["cat"].button.toolTip() and "41%" in chips["dog"].button.toolTip()
    assert all(chip.has_map and chip.button.isCheckable() for chip in chips.values())


def test_clicking_a_chip_overlays_its_class_activation_map(qtbot, window, photo_folder):
    photo = captioned(qtbot, window, photo_folder)
    view, chips = window.panel.view, window.panel.keywords.chips()
    cat = photo.result.tag("cat")

    qtbot.mouseClick(chips["cat"].button, Qt.MouseButton.LeftButton)
    assert np.array_equal(view.current_map, cat.cam)
    assert np.allclose(view.overlay_map, upsample_map(cat.cam, view._photo.shape[:2]))  # the words' overlay
    assert chips["cat"].button.isChecked() and view.current_word == -1
    # Its peak is where the CAM peaks (bottom-right cell), not where any word's attention does.
    height, width = view.overlay_map.shape
    assert view.overlay_map[height * 7 // 8, width * 7 // 8] == pytest.approx(1.0, abs=0.05)

    qtbot.mouseClick(chips["dog"].button, Qt.MouseButton.LeftButton)
    assert np.array_equal(view.current_map, photo.result.tag("dog").cam)
    assert not chips["cat"].button.isChecked()

    qtbot.mouseClick(chips["dog"].button, Qt.MouseButton.LeftButton)  # again: cleared
    assert view.current_map is None and view.overlay_map is None
    assert window.panel.keywords.current == ""

    qtbot.mouseClick(chips["cat"].button, Qt.MouseButton.LeftButton)
    qtbot.keyClick(chips["cat"].button, Qt.Key.Key_Escape)  # Esc on the chip clears
    assert view.current_map is None and not chips["cat"].button.isChecked()

    qtbot.mouseClick(chips["cat"].button, Qt.MouseButton.LeftButton)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Escape)  # and on the photo, as for a word
    assert view.current_map is None and window.panel.keywords.current == ""

    qtbot.mouseClick(chips["cat"].button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(view.word_buttons()[0], Qt.MouseButton.LeftButton)  # a word's map replaces the keyword's
    assert np.array_equal(view.current_map, photo.result.attention[0])
    assert not chips["cat"].button.isChecked() and window.panel.keywords.current == ""


def test_removing_a_chip_is_a_persons_edit_that_the_next_run_respects(qtbot, window, photo_folder):
    photo = captioned(qtbot, window, photo_folder)
    sidecar = find_sidecar(photo.path)
    assert read_caption(photo.path).keywords == ("cat", "dog")

    qtbot.mouseClick(window.panel.keywords.chips()["dog"].remove_button, Qt.MouseButton.LeftButton)

    after = window.session.photo(photo.path)
    assert after.keywords == ("cat",) and after.edits == photo.edits + 1
    assert after.state is CaptionState.AUTOMATIC and after.text == photo.text  # the caption is still the model's
    stored = read_caption(photo.path)
    assert stored.keywords == ("cat",) and stored.source == "automatic"
    rdf = xmp_edit.rdf_root(xmp_edit.parse(sidecar.read_bytes()))
    assert "dog" not in xmp_edit.subject(rdf)
    assert xmp_edit.imgcap_value(rdf, "rejectedKeywords") in ("dog", ["dog"])
    qtbot.waitUntil(lambda: chip_words(window) == ["cat"], timeout=WAIT)

    window.undo_stack.undo()  # undo puts it back, and allows it again
    assert read_caption(photo.path).keywords == ("cat", "dog")
    qtbot.waitUntil(lambda: chip_words(window) == ["cat", "dog"], timeout=WAIT)
    window.undo_stack.redo()
    assert read_caption(photo.path).keywords == ("cat",)

    # Delete on a focused chip removes it too; a later run does not add either back.
    qtbot.waitUntil(lambda: chip_words(window) == ["cat"], timeout=WAIT)
    chip = window.panel.keywords.chips()["cat"].button
    chip.setFocus()
    qtbot.keyClick(chip, Qt.Key.Key_Delete)
    assert window.session.photo(photo.path).write_error == ""
    assert read_caption(photo.path).keywords == ()
    with qtbot.waitSignal(window.service.finished, timeout=WAIT):
        assert window._caption([photo.path], "replace_automatic")
    assert read_caption(photo.path).keywords == ()
    assert window.session.photo(photo.path).keywords == ()


def test_stored_keywords_without_a_map_show_as_plain_chips(qtbot, window, photo_folder):
    write_caption(photo_folder / "photo3.jpg", StoredCaption("a cat on a sofa", "automatic", "m", -0.4, None,
                                                             ("cat", "sofa")))
    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo3.jpg")
    qtbot.waitUntil(lambda: chip_words(window) == ["cat", "sofa"], timeout=WAIT)

    chip = window.panel.keywords.chips()["sofa"]
    assert not chip.has_map and not chip.button.isCheckable() and chip.property("mapless") is True
    assert "comes with a new caption run" in chip.button.toolTip()
    qtbot.mouseClick(chip.button, Qt.MouseButton.LeftButton)
    assert window.panel.view.current_map is None and window.panel.keywords.current == ""


def test_no_chips_for_a_photo_without_keywords(qtbot, window, photo_folder):
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    photo = select(qtbot, window, "drawing.png")
    qtbot.waitUntil(lambda: bool(photo.text) and window.panel.shown_text == photo.text, timeout=WAIT)

    assert window.session.photo(photo.path).keywords == ()
    assert chip_words(window) == [] and not window.panel.keywords.isVisible()
    select(qtbot, window, "photo1.jpg")
    qtbot.waitUntil(lambda: chip_words(window) == ["cat", "dog"], timeout=WAIT)
    select(qtbot, window, "drawing.png")
    qtbot.waitUntil(lambda: chip_words(window) == [], timeout=WAIT)


def test_editing_the_caption_keeps_the_chips_and_their_maps(qtbot, window, photo_folder):
    photo = captioned(qtbot, window, photo_folder)
    assert window.edit_caption("my own words about a cat")
    qtbot.waitUntil(lambda: window.panel.shown_text == "my own words about a cat", timeout=WAIT)

    assert chip_words(window) == ["cat", "dog"]
    assert read_caption(photo.path).keywords == ("cat", "dog")
    qtbot.mouseClick(window.panel.keywords.chips()["cat"].button, Qt.MouseButton.LeftButton)
    assert np.array_equal(window.panel.view.current_map, photo.result.tag("cat").cam)


def test_a_caption_word_that_is_a_keyword_shows_its_cam_on_a_second_click(qtbot, tmp_path):
    from PySide6.QtGui import QImage

    from imgcap_desktop.session import Photo

    words = ("a", "cat", "on", "the", "grass")
    attention = np.stack([cam_at(i) for i in range(len(words))])  # word i looks at cell i
    result = with_tags(CaptionResult(str(tmp_path / "p.png"), words, tuple(range(len(words))), -0.3, attention))
    image = QImage(64, 48, QImage.Format.Format_RGB888)
    image.fill(0x808080)
    panel = CaptionPanel()
    qtbot.addWidget(panel)
    panel.show_photo(Photo(tmp_path / "p.png", StoredCaption(result.text, "automatic", keywords=result.keywords),
                           result=result), image)
    view, cat_chip = panel.view, panel.keywords.chips()["cat"]
    cat_word, grass_word = view.word_buttons()[1], view.word_buttons()[4]
    assert "also a keyword" in cat_word.toolTip() and grass_word.toolTip() == ""  # grass: a tag, not a keyword

    qtbot.mouseClick(cat_word, Qt.MouseButton.LeftButton)  # first click: the word's attention
    assert np.array_equal(view.current_map, attention[1]) and not cat_chip.button.isChecked()
    qtbot.mouseClick(cat_word, Qt.MouseButton.LeftButton)  # second: the keyword's class activation map
    assert np.array_equal(view.current_map, result.tag("cat").cam)
    assert cat_word.isChecked() and cat_chip.button.isChecked() and view.current_word == 1
    qtbot.mouseClick(cat_word, Qt.MouseButton.LeftButton)  # third: cleared
    assert view.current_map is None and not cat_word.isChecked() and panel.keywords.current == ""

    qtbot.mouseClick(grass_word, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(grass_word, Qt.MouseButton.LeftButton)  # a word without a keyword map: cleared at once
    assert view.current_map is None


def test_panel_with_a_real_tiny_model_shows_each_keywords_cam(qtbot, tmp_path):
    """The chips and overlay for a result from the real engine (the tiny tag-aware bundle)."""
    from PySide6.QtGui import QImage

    from model.captioner import Captioner
    from model.testing import make_tiny_bundle
    from imgcap_desktop.session import Photo

    bundle = make_tiny_bundle(tmp_path / "tiny-tags", tags=True, keyword_threshold=0.0)
    photo_path = tmp_path / "photo.png"
    from skimage import data
    from PIL import Image

    Image.fromarray(data.chelsea()).save(photo_path)
    result = Captioner.from_bundle(bundle).caption([str(photo_path)], beam_size=1)[0]
    keyed = [t for t in result.tags if t.word in result.keywords]
    assert keyed and all(t.cam is not None for t in keyed)

    panel = CaptionPanel()
    qtbot.addWidget(panel)
    stored = StoredCaption(result.text, "automatic", "tiny", result.score, None, result.keywords)
    panel.show_photo(Photo(photo_path, stored, result=result), QImage(str(photo_path)))
    assert list(panel.keywords.chips()) == list(dict.fromkeys(result.keywords))
    tag = keyed[0]
    qtbot.mouseClick(panel.keywords.chips()[tag.word].button, Qt.MouseButton.LeftButton)
    assert np.array_equal(panel.view.current_map, tag.cam)
    assert panel.view.overlay_map.shape == (panel.view._photo.shape[0], panel.view._photo.shape[1])


def test_session_set_keywords_rejects_the_removed_one_for_later_runs(tmp_path):
    from PIL import Image

    photo = tmp_path / "a.jpg"
    Image.new("RGB", (32, 24), "white").save(photo)
    session = CaptionSession()
    session.open([photo])
    outcome = with_tags(fake_result(str(photo), GRID))
    plan = session.plan(None, "replace_automatic")
    session.apply_outcomes(plan, [outcome], model_name="m")
    assert session.photo(photo).keywords == ("cat", "dog")

    changed = session.set_keywords(photo, ("cat",))
    assert changed.keywords == ("cat",) and changed.state is CaptionState.AUTOMATIC
    # A run planned before the removal loses to it; one planned after keeps the person's removal.
    session.apply_outcomes(plan, [outcome], model_name="m")
    assert read_caption(photo).keywords == ("cat",)
    session.apply_outcomes(session.plan(None, "replace_automatic"), [outcome], model_name="m")
    assert read_caption(photo).keywords == ("cat",)
    assert session.photo(photo).keywords == ("cat",)

    assert session.set_keywords(photo, ("cat", "dog")).keywords == ("cat", "dog")  # put back: allowed again
    session.apply_outcomes(session.plan(None, "replace_automatic"), [outcome], model_name="m")
    assert read_caption(photo).keywords == ("cat", "dog")
    assert session.set_keywords(tmp_path / "not-here.jpg", ()) is None


def test_removing_the_last_keyword_removes_dc_subject(tmp_path):
    """A person removing every keyword (ours only) drops dc:subject in one edit (was: 'overlapping edits')."""
    from PIL import Image

    photo = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    write_caption(photo, StoredCaption("a cat", "automatic", "m", -0.5, None, ("cat", "dog")))
    write_caption(photo, StoredCaption("a cat", "automatic", "m", -0.5, None, ()), keywords_by_person=True)

    stored = read_caption(photo)
    assert stored.keywords == () and stored.source == "automatic" and stored.text == "a cat"
    rdf = xmp_edit.rdf_root(xmp_edit.parse(find_sidecar(photo).read_bytes()))
    assert xmp_edit.subject(rdf) == []
    assert sorted(xmp_edit.imgcap_value(rdf, "rejectedKeywords")) == ["cat", "dog"]
    # A person's caption without keywords does the same.
    write_caption(photo, StoredCaption("a cat", "automatic", "m", -0.5, None, ("cat",)), keywords_by_person=True)
    write_caption(photo, StoredCaption("my cat", "human", keywords=()))
    assert read_caption(photo).keywords == ()


def test_a_keyword_removed_while_held_is_rejected_when_accepted(tmp_path):
    from PIL import Image

    photo = tmp_path / "a.jpg"
    Image.new("RGB", (32, 24), "white").save(photo)
    session = CaptionSession(auto_write=False)
    session.open([photo])
    outcome = with_tags(fake_result(str(photo), GRID))
    session.apply_outcomes(session.plan(None, "replace_automatic"), [outcome], model_name="m")
    assert session.photo(photo).held and read_caption(photo) is None

    session.set_keywords(photo, ("cat",))
    assert session.set_keywords(photo, ("cat", "dog")).removed_keywords == ()  # undone: nothing removed
    session.set_keywords(photo, ("cat",))
    session.edit(photo, "a cat of my own")  # a later edit keeps the removal a person's
    assert session.photo(photo).keywords == ("cat",) and session.photo(photo).removed_keywords == ("dog",)
    assert session.accept_held() == (1, [])
    assert read_caption(photo).keywords == ("cat",) and session.photo(photo).removed_keywords == ()
    session.apply_outcomes(session.plan(None, "replace_all", write=True), [outcome], model_name="m")
    assert read_caption(photo).keywords == ("cat",)  # dog stays removed


def _shown_with_keywords(qtbot, window, photo_folder) -> None:
    """photo3.jpg, with the keywords cat and sofa, chosen in a window on screen."""
    write_caption(photo_folder / "photo3.jpg", StoredCaption("a cat on a sofa", "automatic", "m", -0.4, None,
                                                             ("cat", "sofa")))
    open_and_wait(qtbot, window, photo_folder)
    window.show()
    qtbot.waitExposed(window)
    select(qtbot, window, "photo3.jpg")


def test_the_keyboard_focus_stays_with_the_keywords_when_one_is_deleted(qtbot, window, photo_folder):
    """Delete on a chip sent the focus to the filter box at the top of the window, where Ctrl+Z
    undid nothing; and the chips came last in the Tab order, though they are under the words."""
    _shown_with_keywords(qtbot, window, photo_folder)
    qtbot.waitUntil(lambda: chip_words(window) == ["cat", "sofa"], timeout=WAIT)
    buttons = window.panel.keywords.chip_buttons()
    assert window.view.nextInFocusChain() is buttons[0] and buttons[0].nextInFocusChain() is buttons[1]

    buttons[0].setFocus()
    qtbot.waitUntil(buttons[0].hasFocus, timeout=WAIT)
    qtbot.keyClick(buttons[0], Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: chip_words(window) == ["sofa"], timeout=WAIT)
    assert QApplication.focusWidget() is window.panel.keywords.chip_buttons()[0]  # the chip now in its place
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: chip_words(window) == [], timeout=WAIT)
    assert QApplication.focusWidget() is window.view  # the last one gone: the caption's words
    qtbot.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: chip_words(window) == ["sofa"], timeout=WAIT)


def test_ctrl_z_in_the_empty_filter_box_undoes_the_last_edit(qtbot, window, photo_folder):
    _shown_with_keywords(qtbot, window, photo_folder)
    assert window.remove_keyword("cat")
    window.filter_edit.setFocus()
    qtbot.waitUntil(window.filter_edit.hasFocus, timeout=WAIT)
    qtbot.keyClick(window.filter_edit, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.session.photo(photo_folder / "photo3.jpg").keywords == ("cat", "sofa")


FOREIGN_SIDECAR = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:subject><rdf:Bag><rdf:li>{keywords}</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>"""


def _foreign_sidecar(photo, *keywords) -> None:
    (photo.parent / f"{photo.name}.xmp").write_text(FOREIGN_SIDECAR.format(keywords="</rdf:li><rdf:li>".join(keywords)))


def test_other_programs_keywords_show_after_imgcaps_and_cannot_be_removed_here(qtbot, window, photo_folder):
    """Keywords a photographer gave in Lightroom or digiKam were in the sidecar and nowhere in the
    app: the chips showed imgcap's alone, as if the photo had no others."""
    photo = photo_folder / "photo1.jpg"
    _foreign_sidecar(photo, "Vacation", "Cat")
    open_and_wait(qtbot, window, photo_folder)
    caption_all_and_wait(qtbot, window)
    select(qtbot, window, "photo1.jpg")
    keywords = window.panel.keywords
    qtbot.waitUntil(lambda: chip_words(window) == ["dog"], timeout=WAIT)  # the model's "cat" is their "Cat"
    assert keywords.other_keywords() == ["Vacation", "Cat"]  # shown once, as theirs
    other = keywords.chip_buttons()[1]
    assert other.text() == "Vacation" and "another program" in other.accessibleName()
    assert other.focusPolicy() == Qt.FocusPolicy.StrongFocus  # a keyboard (and screen reader) user reaches it
    other.setFocus()
    qtbot.keyClick(other, Qt.Key.Key_Delete)  # nothing to remove here: it is another program's
    assert keywords.other_keywords() == ["Vacation", "Cat"] and "Vacation" in xmp_edit_subject(photo)

    _foreign_sidecar(photo_folder / "photo2.jpg", "Family")
    select(qtbot, window, "photo2.jpg")
    qtbot.waitUntil(lambda: keywords.other_keywords() == ["Family"], timeout=WAIT)


def test_a_keyword_another_program_adds_shows_at_once(qtbot, window, photo_folder):
    photo = photo_folder / "photo3.jpg"
    _foreign_sidecar(photo, "Vacation")
    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo3.jpg")
    keywords = window.panel.keywords
    qtbot.waitUntil(lambda: keywords.other_keywords() == ["Vacation"], timeout=WAIT)
    _foreign_sidecar(photo, "Vacation", "Lake Como")  # the caption (none) is unchanged: only keywords
    window.watcher.check()
    qtbot.waitUntil(lambda: keywords.other_keywords() == ["Vacation", "Lake Como"], timeout=WAIT)
    assert keywords.isVisible()


def xmp_edit_subject(photo) -> list[str]:
    return xmp_edit.subject(xmp_edit.rdf_root(xmp_edit.parse(find_sidecar(photo).read_bytes())))


def test_other_keywords_of_a_photo_without_a_readable_sidecar_are_none(tmp_path):
    from tests.desktop.conftest import make_photos

    a, b, c = make_photos(tmp_path, count=3, corrupt=False)[:3]
    (tmp_path / "photo2.jpg.xmp").write_text("<x:xmpmeta this is not XML")
    _foreign_sidecar(c, "Vacation", "Vacation", "Family")
    session = CaptionSession()
    session.open([a, b, c], tmp_path)
    assert session.other_keywords(a) == () and session.other_keywords(b) == ()
    assert session.other_keywords(c) == ("Vacation", "Family")


LATER = StoredCaption("a red bus on a street", "automatic", "another-model", -0.4, None, ("bus", "street"))


@pytest.mark.parametrize("seen", [False, True], ids=["before the folder is looked at", "after"])
def test_undoing_a_keyword_removal_leaves_a_caption_written_since_alone(qtbot, window, photo_folder, seen):
    """Undo of "remove dog" put the old keywords onto whatever caption the photo had by then: the
    later run's "bus" and "street" were taken out of the sidecar and marked rejected, "dog" put in."""
    photo = captioned(qtbot, window, photo_folder)
    assert window.remove_keyword("dog")
    write_caption(photo.path, LATER)  # a later run, in the CLI or on another machine
    written = find_sidecar(photo.path).read_bytes()
    if seen:
        window.watcher.check()
        qtbot.waitUntil(lambda: window.session.photo(photo.path).text == LATER.text, timeout=WAIT)
    for step in (window.undo_stack.undo, window.undo_stack.redo):
        step()
        assert find_sidecar(photo.path).read_bytes() == written and read_caption(photo.path) == LATER
        assert window.session.photo(photo.path).keywords == ("bus", "street")
        assert "its caption was changed since (by another program" in window.statusBar().currentMessage()


def test_undoing_a_keyword_removal_keeps_a_keyword_added_since(qtbot, window, photo_folder):
    """Undo of "remove dog" set the whole list from before it: "puppy", added since (in a CSV
    imported here), was taken out again, and marked rejected."""
    photo = captioned(qtbot, window, photo_folder)  # the model's keywords: cat, dog
    assert window.remove_keyword("dog")
    out = photo_folder.parent / "captions.csv"
    with qtbot.waitSignal(window.exported, timeout=WAIT):
        window.export_csv(out)
    out.write_text(out.read_text().replace(",cat,", ",cat; puppy,", 1))  # photo1.jpg's row, the first
    assert window.import_csv(out)
    assert read_caption(photo.path).keywords == ("cat", "puppy")
    window.undo_stack.undo()
    assert read_caption(photo.path).keywords == ("cat", "puppy", "dog")
    assert set(window.session.photo(photo.path).keywords) == {"cat", "puppy", "dog"}  # "dog" where it was


def test_removing_a_keyword_leaves_one_another_program_removed_since_out(qtbot, window, photo_folder):
    """The sidecar's "cat" taken out in digiKam, and "dog" removed here before the folder was looked
    at again: the app's list from before was written, "cat" back in, and no longer rejected."""
    import re

    photo = captioned(qtbot, window, photo_folder)  # the model's keywords: cat, dog
    sidecar = find_sidecar(photo.path)
    data = sidecar.read_bytes()
    edited = re.sub(rb"(<dc:subject[^>]*>\s*<rdf:Bag[^>]*>\s*)<rdf:li>cat</rdf:li>", rb"\1", data)
    assert edited != data
    sidecar.write_bytes(edited)  # in place, as exiftool -XMP-dc:Subject-=cat does: seen at the next look
    assert window.remove_keyword("dog")
    assert read_caption(photo.path).keywords == ()
    assert window.session.photo(photo.path).keywords == ()


def _rewritten_elsewhere(photo, old: str, new: str) -> None:
    """Another program (exiftool -XMP-dc:Description=...) changes the caption's text, and nothing else."""
    sidecar = find_sidecar(photo)
    data = sidecar.read_bytes()
    assert old.encode() in data
    sidecar.write_bytes(data.replace(old.encode(), new.encode()))


@pytest.mark.parametrize("stored", [
    StoredCaption("a dog on the grass", "automatic", "fake-model", -0.5, None, ("cat", "dog")),
    StoredCaption("my own words", "human", keywords=("cat", "dog")),
], ids=["the model's caption", "a person's caption"])
def test_a_held_keyword_removal_goes_onto_the_caption_another_program_wrote_since(qtbot, window, photo_folder,
                                                                                   stored):
    """Held for review, "dog" removed, then the caption changed in another program before Accept: the
    removal was lost (Accept kept the other caption as "a person's", "dog" with it), or Accept took it
    for typing ("another program wrote … since yours was typed") and a second Accept wrote the old
    caption back over the other program's."""
    from tests.desktop.test_main_window import select

    photo = photo_folder / "photo1.jpg"
    write_caption(photo, stored)
    window.apply_settings(replace(window.settings, auto_write=False))
    open_and_wait(qtbot, window, photo_folder)
    select(qtbot, window, "photo1.jpg")
    assert window.remove_keyword("dog")  # held: not written yet
    _rewritten_elsewhere(photo, stored.text, "Typed in exiftool")
    assert window.accept_held() == 1
    after = read_caption(photo)
    assert (after.text, after.source, after.keywords) == ("Typed in exiftool", "human", ("cat",))
    rdf = xmp_edit.rdf_root(xmp_edit.parse(find_sidecar(photo).read_bytes()))
    assert xmp_edit.imgcap_value(rdf, "rejectedKeywords") in ("dog", ["dog"])
    shown = window.session.photo(photo)
    assert not shown.held and shown.text == "Typed in exiftool" and shown.keywords == ("cat",)
