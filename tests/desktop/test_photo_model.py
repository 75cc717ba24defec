"""The grid's item models follow Qt's contract and show each photo's state from the caption session."""

from __future__ import annotations

import os
import threading

from PySide6.QtCore import Qt

from imgcap_desktop.metadata.sidecar import StoredCaption
from imgcap_desktop.photo_model import PhotoFilterModel, PhotoListModel, Roles, SessionSignals
from imgcap_desktop.session import CaptionSession, CaptionState
from imgcap_desktop.thumbnails import ThumbnailCache
from tests.desktop.conftest import fake_result


def filled_model(paths, thumbnails=None):
    session = CaptionSession()
    signals = SessionSignals(session)
    model = PhotoListModel(session, signals, thumbnails)
    session.open(paths)
    model._keep = signals
    return session, model


def test_models_pass_qmodeltester(qapp, qtmodeltester, tmp_path):
    session, model = filled_model([tmp_path / f"p{i}.jpg" for i in range(5)])
    session._update(tmp_path / "p1.jpg", caption=StoredCaption("a dog", "automatic", "m", -0.3))
    session._update(tmp_path / "p2.jpg", error="corrupt")
    qtmodeltester.check(model)
    proxy = PhotoFilterModel()
    proxy.setSourceModel(model)
    proxy.set_filter_text("dog")
    qtmodeltester.check(proxy)
    assert proxy.rowCount() == 1


def test_models_with_thumbnails_pass_qmodeltester(qtmodeltester, qtbot, photo_folder, no_threads_left):
    cache = ThumbnailCache()
    _session, model = filled_model(sorted(photo_folder.iterdir()), cache)
    qtmodeltester.check(model)
    with qtbot.waitSignal(cache.image_ready, timeout=10_000):
        model.index(2).data(Qt.ItemDataRole.DecorationRole)


def test_a_name_that_is_not_utf8_shows_and_gets_its_thumbnail(qtbot, tmp_path, no_threads_left):
    """A Latin-1 "vacances été.jpg" (an old disk's, a zip's): Qt dropped the bytes that are not
    UTF-8, so the grid said "vacances t.jpg", and the thumbnail decoded for it was never shown: the
    path the cache announced matched no photo."""
    from PIL import Image

    path = tmp_path / os.fsdecode(b"vacances \xe9t\xe9.jpg")
    Image.new("RGB", (40, 30), (200, 90, 30)).save(path)
    cache = ThumbnailCache()
    _session, model = filled_model([path], cache)
    assert model.index(0).data() == "vacances \\xe9t\\xe9.jpg"  # as the CLI prints it
    repainted = []
    model.dataChanged.connect(lambda first, _last, _roles: repainted.append(first.row()))
    with qtbot.waitSignal(cache.image_ready, timeout=10_000) as ready:
        model.index(0).data(Qt.ItemDataRole.DecorationRole)
    assert ready.args[0] == str(path) and repainted == [0]
    assert not model.index(0).data(Qt.ItemDataRole.DecorationRole).isNull()


def test_the_filter_finds_a_name_in_either_unicode_form(qapp, tmp_path):
    # macOS stores "é" in a file name as "e" and a combining accent: typing "café" missed it.
    composed, decomposed = tmp_path / "caf\u00e9 1.jpg", tmp_path / "cafe\u0301 2.jpg"
    session, model = filled_model([composed, decomposed, tmp_path / "other.jpg"])
    session._update(tmp_path / "other.jpg", caption=StoredCaption("Cafe\u0301 au lait", "human"))
    proxy = PhotoFilterModel()
    proxy.setSourceModel(model)
    proxy.set_filter_text("CAF\u00c9")
    assert proxy.rowCount() == 3


def test_states_and_roles(qapp, tmp_path):
    path = tmp_path / "a.jpg"
    session, model = filled_model([path])
    index = model.index(0)
    assert index.data(Roles.STATE) == "none"
    session._update(path, caption=StoredCaption("x", "embedded"))
    assert index.data(Roles.STATE) == "embedded"
    session._update(path, caption=StoredCaption("x y", "human"))
    assert index.data(Roles.STATE) == "human"
    assert index.data(Roles.CAPTION) == "x y"
    assert "x y" in index.data(Qt.ItemDataRole.ToolTipRole)
    session._update(path, error="not an image")
    assert index.data(Roles.STATE) == "error"
    assert "not an image" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert model.index(5).data() is None
    assert model.item_at(tmp_path / "missing.jpg") is None


def test_attention_matches_only_the_models_own_caption(qapp, tmp_path):
    path = tmp_path / "a.jpg"
    session, _model = filled_model([path])
    result = fake_result(str(path))
    item = session._update(path, caption=StoredCaption(result.text, "automatic"), result=result)
    assert item.attention_matches and item.state is CaptionState.AUTOMATIC
    item = session._update(path, caption=StoredCaption("typed by hand", "human"))
    assert not item.attention_matches


def test_a_change_made_on_another_thread_reaches_the_model_on_the_gui_thread(qtbot, tmp_path):
    session, model = filled_model([tmp_path / "a.jpg", tmp_path / "b.jpg"])
    seen = []
    model.dataChanged.connect(lambda first, last: seen.append((first.row(), threading.current_thread())))
    with qtbot.waitSignal(model.dataChanged, timeout=5000):
        worker = threading.Thread(target=session.edit, args=(tmp_path / "b.jpg", "typed"))
        worker.start()
        worker.join()
    assert seen == [(1, threading.main_thread())]
    assert model.index(1).data(Roles.CAPTION) == "typed"


def test_a_photos_badges_are_told_in_words_to_a_screen_reader_and_in_the_tooltip(qapp, tmp_path):
    """The state was shown by badge colours only: a screen reader read just the file name."""
    path = tmp_path / "a.jpg"
    session, model = filled_model([path])
    index = model.index(0)
    role = Qt.ItemDataRole.AccessibleDescriptionRole
    assert index.data(role) == "no caption"
    session._update(path, caption=StoredCaption("a dog", "automatic", "m", -0.3), held=True)
    assert index.data(role) == "automatic caption, held for review: a dog"  # the caption too, as the eye sees it
    assert index.data(Qt.ItemDataRole.ToolTipRole) == "a.jpg (automatic caption, held for review)\na dog"
    session._update(path, caption=StoredCaption("my dog", "human"), held=True, write_error="read-only folder")
    assert index.data(role) == "edited caption, not written: read-only folder: my dog"


def test_a_photo_without_a_preview_is_said_to_have_none(qtbot, tmp_path, no_threads_left):
    """A thumbnail that could not be made differed from one still loading only by a shade."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    cache = ThumbnailCache()
    _session, model = filled_model([broken], cache)
    index = model.index(0)
    with qtbot.waitSignal(cache.image_failed, timeout=10_000):
        index.data(Qt.ItemDataRole.DecorationRole)
    assert index.data(Qt.ItemDataRole.AccessibleDescriptionRole) == "no caption; no preview"


def _contrast(a, b) -> float:
    def luminance(colour):
        channels = [c / 255 for c in (colour.red(), colour.green(), colour.blue())]
        r, g, b_ = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b_

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_badge_letters_read_at_wcag_contrast_in_the_grid_and_the_legend(qapp):
    """White on the green "E" was 3.3:1, on the blue "A" 3.7:1; the legend's letters were drawn in
    the badge colours on the window: its yellow "H" at 1.2:1 on a light one."""
    from imgcap_desktop.photo_grid import badge_legend, badge_letter_colour, badge_size
    from imgcap_desktop.photo_model import BADGE_COLOURS, BADGE_LETTERS, HELD_COLOUR, HELD_LETTER

    badges = [(BADGE_COLOURS[state], letter) for state, letter in BADGE_LETTERS.items() if letter]
    for colour, letter in [*badges, (HELD_COLOUR, HELD_LETTER)]:
        assert _contrast(colour, badge_letter_colour(letter)) >= 4.5, letter
    legend = badge_legend().text()
    for colour, letter in [*badges, (HELD_COLOUR, HELD_LETTER)]:
        assert f"background-color:{colour.name()}; color:{badge_letter_colour(letter).name()}" in legend
    assert badge_size(12) == 14 and badge_size(30) == 30  # a large font, a larger badge
