"""The grid's item models follow Qt's contract and report each photo's caption state."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from imgcap_desktop.metadata.sidecar import StoredCaption
from imgcap_desktop.photo_model import CaptionState, PhotoFilterModel, PhotoListModel, Roles
from imgcap_desktop.thumbnails import ThumbnailCache
from tests.desktop.conftest import fake_result


def filled_model(paths):
    model = PhotoListModel()
    model.set_photos(paths)
    return model


def test_models_pass_qmodeltester(qapp, qtmodeltester, tmp_path):
    model = filled_model([tmp_path / f"p{i}.jpg" for i in range(5)])
    model.update(tmp_path / "p1.jpg", caption=StoredCaption("a dog", "automatic", "m", -0.3))
    model.update(tmp_path / "p2.jpg", error="corrupt")
    qtmodeltester.check(model)
    proxy = PhotoFilterModel()
    proxy.setSourceModel(model)
    proxy.set_filter_text("dog")
    qtmodeltester.check(proxy)
    assert proxy.rowCount() == 1


def test_models_with_thumbnails_pass_qmodeltester(qtmodeltester, qtbot, photo_folder, no_threads_left):
    cache = ThumbnailCache()
    model = PhotoListModel(cache)
    model.set_photos(sorted(photo_folder.iterdir()))
    qtmodeltester.check(model)
    with qtbot.waitSignal(cache.image_ready, timeout=10_000):
        model.index(2).data(Qt.ItemDataRole.DecorationRole)


def test_states_and_roles(tmp_path):
    path = tmp_path / "a.jpg"
    model = filled_model([path])
    index = model.index(0)
    assert index.data(Roles.STATE) == "none"
    model.update(path, caption=StoredCaption("x", "embedded"))
    assert index.data(Roles.STATE) == "embedded"
    model.update(path, caption=StoredCaption("x y", "human"))
    assert index.data(Roles.STATE) == "edited"
    assert index.data(Roles.CAPTION) == "x y"
    assert "x y" in index.data(Qt.ItemDataRole.ToolTipRole)
    model.update(path, error="not an image")
    assert index.data(Roles.STATE) == "error"
    assert "not an image" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert index.data(Roles.PATH) == str(path)
    assert model.index(5).data() is None
    assert model.update(tmp_path / "missing.jpg", error="x") is None


def test_attention_matches_only_the_models_own_caption(tmp_path):
    path = tmp_path / "a.jpg"
    model = filled_model([path])
    result = fake_result(str(path))
    item = model.update(path, caption=StoredCaption(result.text, "automatic"), result=result)
    assert item.attention_matches and item.state is CaptionState.AUTOMATIC
    item = model.update(path, caption=StoredCaption("typed by hand", "human"))
    assert not item.attention_matches


def test_data_changed_is_emitted_on_update(qtbot, tmp_path):
    model = filled_model([Path(tmp_path / "a.jpg"), Path(tmp_path / "b.jpg")])
    with qtbot.waitSignal(model.dataChanged) as changed:
        model.update(tmp_path / "b.jpg", error="x")
    assert changed.args[0].row() == 1
