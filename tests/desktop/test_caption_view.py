"""The attention overlay: smooth upsampling, colour map, blending, and the word buttons and keys."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from imgcap_desktop.caption_view import (
    MAX_WORD_WIDTH,
    CaptionView,
    array_to_qimage,
    blend,
    colorize,
    qimage_to_array,
    upsample_map,
)
from imgcap_desktop.flow_layout import FlowLayout
from tests.desktop.conftest import fake_result


def test_upsampling_is_smooth_and_keeps_the_peak():
    grid = np.zeros((4, 4), np.float32)
    grid[1, 2] = 1.0
    up = upsample_map(grid, (80, 120))
    assert up.shape == (80, 120) and up.min() == 0.0 and up.max() == 1.0
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert 20 <= y < 40 and 60 <= x < 90
    # not blocky: many distinct levels, neighbouring pixels close together
    assert len(np.unique(np.round(up, 3))) > 50
    assert np.abs(np.diff(up, axis=1)).max() < 0.2


def test_flat_map_gives_no_overlay():
    assert not upsample_map(np.full((3, 3), 1 / 9, np.float32), (10, 10)).any()


def test_colour_map_and_blend():
    ramp = np.linspace(0, 1, 11, dtype=np.float32).reshape(1, 11)
    colours = colorize(ramp)
    assert colours.shape == (1, 11, 3) and colours.dtype == np.uint8
    brightness = colours.astype(int).sum(axis=-1)[0]
    assert (np.diff(brightness) > 0).all()  # brighter where the model looked more
    photo = np.full((1, 11, 3), 128, np.uint8)
    assert (blend(photo, ramp, 0.0) == photo).all()
    assert (blend(photo, ramp, 1.0) == colours).all()


def test_qimage_round_trip():
    array = np.random.default_rng(0).integers(0, 255, (7, 13, 3), dtype=np.uint8)  # odd stride
    assert (qimage_to_array(array_to_qimage(array)) == array).all()


def make_view(qtbot, size=(60, 80)):
    view = CaptionView()
    qtbot.addWidget(view)
    image = QImage(size[1], size[0], QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.gray)
    view.set_photo(image)
    result = fake_result("/photos/x.jpg")
    view.set_caption(result.words, result.attention)
    return view, result


def test_clicking_each_word_shows_its_own_map(qtbot):
    view, result = make_view(qtbot)
    for i, button in enumerate(view.word_buttons()):
        with qtbot.waitSignal(view.word_selected) as selected:
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert selected.args == [i]
        expected = upsample_map(result.attention[i], (60, 80))
        np.testing.assert_allclose(view.overlay_map, expected)
        assert button.isChecked() and sum(b.isChecked() for b in view.word_buttons()) == 1
    qtbot.mouseClick(view.word_buttons()[-1], Qt.MouseButton.LeftButton)  # clicking again clears
    assert view.current_word == -1


def test_keys_move_between_words_and_escape_clears(qtbot):
    view, result = make_view(qtbot)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.current_word == 0
    for _ in range(10):
        qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.current_word == len(result.words) - 1
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.current_word == len(result.words) - 2
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert view.current_word == -1 and view.overlay_map is None


def test_opacity_changes_the_blend_and_strip_has_every_word(qtbot):
    view, result = make_view(qtbot)
    view.select_word(0)
    view.opacity_slider.setValue(0)
    plain = qimage_to_array(view.canvas._pixmap.toImage())
    view.opacity_slider.setValue(100)
    full = qimage_to_array(view.canvas._pixmap.toImage())
    assert (plain == plain[0, 0]).all()  # opacity 0: the photo alone
    assert full.std() > 10
    assert [tile.text() for tile in view.strip_tiles()] == list(result.words)


def test_caption_without_attention_has_disabled_words(qtbot):
    view, _ = make_view(qtbot)
    view.set_caption(("typed", "words"), None)
    assert [b.isEnabled() for b in view.word_buttons()] == [False, False]
    view.select_word(1)
    assert view.current_word == -1 and view.overlay_map is None


def _darkest(widget) -> int:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    return int(qimage_to_array(image.convertToFormat(QImage.Format.Format_RGB888)).min())


def test_words_without_maps_are_as_legible_as_words_with_them(qtbot):
    # They were drawn greyed out, as disabled buttons are: 1.6:1 against the window, for the
    # caption of every photo reopened (a stored caption has no maps).
    view, result = make_view(qtbot)
    view.show()
    with_maps = _darkest(view.word_buttons()[0])
    view.set_caption(result.words, None)
    assert not view.word_buttons()[0].isEnabled()
    assert _darkest(view.word_buttons()[0]) <= with_maps + 40


def test_a_photo_without_a_caption_says_so_where_the_words_take_the_focus(qtbot):
    # The words' tab stop had nothing to frame (an empty bar is 0 px high) and nothing to say.
    view, _ = make_view(qtbot)
    view.show()
    view.set_caption((), None)
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    assert view.accessibleDescription() == "No caption."
    assert view._word_hint.isVisible() and view._word_hint.height() > 0
    assert "border" in view._word_hint.styleSheet()
    view.set_caption(("a", "cat"), None)
    assert "border" in view._word_bar.styleSheet() and not view._word_hint.styleSheet()


def test_a_long_caption_wraps_instead_of_widening_the_window(qtbot):
    view, result = make_view(qtbot)
    words = tuple(f"word{i}" for i in range(41))
    attention = np.full((41, 4, 4), 1 / 16, np.float32)
    view.set_caption(words, attention)
    view.resize(500, 700)
    view.show()
    qtbot.waitExposed(view)
    assert view.minimumSizeHint().width() < 600
    buttons = view.word_buttons()
    assert max(b.geometry().right() for b in buttons) <= view.width()
    assert len({b.geometry().top() for b in buttons}) > 1  # several lines


def test_clicking_a_tile_of_the_all_words_strip_selects_its_word(qtbot):
    view, result = make_view(qtbot, size=(120, 60))  # portrait
    tiles = view.strip_tiles()
    assert len(tiles) == len(result.words)
    qtbot.mouseClick(tiles[2], Qt.MouseButton.LeftButton)
    assert view.current_word == 2
    assert all(tile.text() == word for tile, word in zip(tiles, result.words, strict=True))
    tile = tiles[0]
    assert tile.sizeHint().height() <= view.strip_height()  # a portrait tile's label is not cut


def test_a_new_photo_and_caption_never_show_the_old_words_as_windows_of_their_own(qtbot):
    """The old strip tiles, added and taken out before their delayed show, were shown as top-level
    windows for a moment on every photo change, and took the keyboard focus."""
    from PySide6.QtWidgets import QApplication, QToolButton

    view, _ = make_view(qtbot)
    view.show()
    qtbot.waitExposed(view)
    for name in ("/photos/y.jpg", "/photos/z.jpg"):
        image = QImage(80, 60, QImage.Format.Format_RGB888)
        image.fill(Qt.GlobalColor.darkGray)
        view.set_photo(image)  # the strip is rebuilt with the old words first, as the panel does
        result = fake_result(name)
        view.set_caption(result.words, result.attention)
        QApplication.processEvents()
        strays = [w for w in QApplication.topLevelWidgets() if isinstance(w, QToolButton) and w.isVisible()]
        assert strays == []


def test_the_words_can_be_used_by_keyboard_and_a_screen_reader_is_told_the_chosen_one(qtbot):
    view, result = make_view(qtbot)
    assert view.accessibleName() == "Caption words" and "←/→" in view.accessibleDescription()

    qtbot.keyClick(view, Qt.Key.Key_End)
    last = len(result.words) - 1
    assert view.current_word == last
    assert view.accessibleDescription().startswith(f"Word {last + 1} of {len(result.words)}: {result.words[last]}")
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.current_word == 0
    view.set_word_maps({0: np.ones((4, 4), np.float32)})
    qtbot.keyClick(view, Qt.Key.Key_Space)  # as a second click: the word's keyword map
    assert view.current_word == 0 and "keyword's map" in view.accessibleDescription()
    qtbot.keyClick(view, Qt.Key.Key_Return)  # and a third: the word's attention again, or clear
    assert view.current_word in (-1, 0)


def test_the_keys_move_on_from_the_last_word_chosen_after_the_overlay_is_cleared(qtbot):
    view, result = make_view(qtbot)
    for _ in range(3):
        qtbot.keyClick(view, Qt.Key.Key_Right)
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert view.current_word == -1
    qtbot.keyClick(view, Qt.Key.Key_Right)  # on to the fourth word, not back to the first
    assert view.current_word == 3


def test_a_word_longer_than_a_line_is_cut_short_and_never_widens_the_window(qtbot):
    view, _ = make_view(qtbot)
    link = "https://example.org/" + "very-long-path/" * 30
    view.set_caption(("see", link, "测试" * 200), None)
    assert view.minimumSizeHint().width() < MAX_WORD_WIDTH + 100
    see, cut, chinese = view.word_buttons()
    assert see.text() == "see" and see.toolTip() == ""
    assert "…" in cut.text() and cut.toolTip() == link and cut.accessibleName() == link
    assert chinese.toolTip() == "测试" * 200


def test_a_long_caption_is_laid_out_a_few_times_not_once_per_word(qtbot, monkeypatch):
    view, _ = make_view(qtbot)
    view.resize(500, 700)
    view.show()
    qtbot.waitExposed(view)
    arranged = []
    arrange = FlowLayout._arrange

    def counted(self, rect, move):
        arranged.append(move)
        return arrange(self, rect, move)

    monkeypatch.setattr(FlowLayout, "_arrange", counted)
    view.set_caption(tuple(f"word{i}" for i in range(300)), None)
    qtbot.wait(10)
    assert len(arranged) < 30  # once per word before: 900 arrangements, seconds for a pasted page


def test_the_chosen_word_stays_when_the_photos_preview_arrives_and_goes_with_the_photo(qtbot):
    from pathlib import Path

    from imgcap_desktop.caption_panel import CaptionPanel
    from imgcap_desktop.metadata.sidecar import StoredCaption
    from imgcap_desktop.session import Photo

    panel = CaptionPanel()
    qtbot.addWidget(panel)
    result = fake_result("/photos/a.jpg")
    text = " ".join(result.words)
    a = Photo(Path("/photos/a.jpg"), StoredCaption(text, "automatic", "m"), result=result)
    panel.show_photo(a)
    panel.view.select_word(1)
    panel.show_photo(a, array_to_qimage(np.zeros((30, 40, 3), np.uint8)))  # its preview arrived
    assert panel.view.current_word == 1 and panel.view.word_buttons()[1].isChecked()

    typed = StoredCaption("team photo with dog", "human")
    panel.show_photo(Photo(a.path, typed, result=result))  # typed: no word maps
    panel.view.show_map(np.eye(4, dtype=np.float32))  # its keyword's map
    b = Photo(Path("/photos/b.jpg"), typed)  # the same words typed for another photo
    panel.show_photo(b)
    assert panel.view.current_word == -1 and panel.view.current_map is None  # nothing of a's over b


def test_a_window_at_its_smallest_never_draws_the_words_over_the_photo(qtbot, window, photo_folder):
    """Qt's box layouts leave height-for-width out of their minimum: at the window's smallest size
    the wrapped lines under the photo (the words, the hint, the state line) were given one line's
    height, and drew the rest over the photo and each other."""
    from imgcap_desktop.metadata.sidecar import StoredCaption, write_caption
    from tests.desktop.test_main_window import open_and_wait

    long = " ".join(["a", "tabby", "cat", "sleeping", "on", "a", "red", "sofa", "beside", "a", "window"] * 3)
    write_caption(photo_folder / "photo1.jpg", StoredCaption(long, "human"))
    open_and_wait(qtbot, window, photo_folder)
    window.grid.setCurrentIndex(window.filtered.mapFromSource(
        window.photos.index(window.photos.row_of(photo_folder / "photo1.jpg"))))
    view, panel = window.panel.view, window.panel
    for width in (1024, 800):
        window.resize(width, 100)  # as small as it lets itself be
        qtbot.wait(50)
        stack = [view.canvas, view._word_bar, view._word_hint, view.opacity_slider, panel.state_label,
                 panel.caption_edit]
        edges = [(w.mapTo(window, w.rect().topLeft()).y(), w.mapTo(window, w.rect().bottomLeft()).y()) for w in stack]
        assert len(view.words) == 33 and view._word_bar.height() > 2 * view.word_buttons()[0].height()
        for (_, bottom), (top, _) in zip(edges, edges[1:]):
            assert bottom < top, (width, edges)


def test_the_caption_box_gives_way_to_two_lines_in_a_short_window(qtbot):
    """Six lines of caption box beside the photo made the window taller than a 768 px laptop screen
    at a large font; it now shrinks to two lines there (and scrolls), as tall as its text otherwise."""
    from imgcap_desktop.caption_panel import CaptionEdit

    box = CaptionEdit()
    qtbot.addWidget(box)
    box.resize(300, 100)
    box.setText("\n".join(f"line {i}" for i in range(8)))
    box.show()
    line = box.fontMetrics().lineSpacing()
    assert box.sizeHint().height() - box.minimumSizeHint().height() == 4 * line
    box.setText("one line")
    assert box.sizeHint().height() == box.minimumSizeHint().height()


def test_a_right_to_left_captions_words_read_from_the_right(qtbot):
    """A Hebrew caption's words were laid out from the left: the word bar read the sentence backwards
    (the caption box under it, right to left), also on a right-to-left desktop."""
    view, result = make_view(qtbot)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    hebrew = tuple("כלב רץ על החוף".split())  # "a dog runs on the beach"
    view.set_caption(hebrew, result.attention[:4])
    qtbot.waitUntil(lambda: all(b.isVisible() for b in view.word_buttons()))
    xs = [button.geometry().x() for button in view.word_buttons()]
    assert len({b.geometry().y() for b in view.word_buttons()}) == 1 and xs == sorted(xs, reverse=True), xs
    qtbot.keyClick(view, Qt.Key.Key_Left)  # the next word lies to the left
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.current_word == 1
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.current_word == 0
    view.set_caption(result.words, result.attention)  # a left-to-right caption: from the left again

    def from_the_left() -> bool:
        xs = [button.geometry().x() for button in view.word_buttons()[:3]]
        return len(set(xs)) == 3 and xs == sorted(xs)

    qtbot.waitUntil(from_the_left)


def test_the_all_words_strip_fits_a_font_chosen_while_the_app_runs(qtbot):
    """Its height was worked out once, for the font at start: a larger one cut the words' labels off."""
    from PySide6.QtGui import QFont

    view, _ = make_view(qtbot)
    start = view._strip_scroll.height()
    font = QFont(view.font())
    font.setPixelSize(view.fontMetrics().height() + 30)
    view.setFont(font)
    assert view._strip_scroll.height() >= start + 30
