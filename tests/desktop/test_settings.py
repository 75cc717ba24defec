"""Settings round-trip through QSettings (in a temporary folder), and bad values fall back to defaults."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QByteArray, QSettings

from imgcap_desktop.settings import AppSettings, load_settings, qsettings, save_settings
from imgcap_desktop.settings_dialog import SettingsDialog


def test_defaults_when_nothing_is_stored():
    assert load_settings() == AppSettings()


def test_round_trip(fresh_settings):
    settings = AppSettings(sidecar_style="base", beam_size=5, batch_size=16, device="cpu",
                           overwrite_policy="replace_all", auto_write=False, include_subfolders=True,
                           overlay_opacity=30, recent_folders=("/a", "/b"))
    save_settings(settings)
    assert load_settings() == settings
    assert str(fresh_settings) in qsettings().fileName()


def test_invalid_values_fall_back_to_defaults():
    store = qsettings()
    store.setValue("beam_size", "lots")
    store.setValue("batch_size", 100000)
    store.setValue("device", "tpu")
    store.setValue("auto_write", "maybe")
    store.setValue("recent_folders", "/only/one")
    store.sync()
    problems = []
    settings = load_settings(problems=problems)
    assert settings.beam_size == 3 and settings.batch_size == 8 and settings.device == "auto"
    assert settings.auto_write is True
    assert settings.recent_folders == ("/only/one",)
    assert problems == ["beam_size='lots'", "batch_size=100000", "device='tpu'", "auto_write='maybe'"]


def test_recent_folders_move_to_front_without_duplicates():
    settings = AppSettings(recent_folders=("/a", "/b", "/c"))
    assert settings.with_recent_folder("/b").recent_folders == ("/b", "/a", "/c")
    many = AppSettings()
    for i in range(20):
        many = many.with_recent_folder(f"/f{i}")
    assert len(many.recent_folders) == 8 and many.recent_folders[0] == "/f19"


def test_settings_dialog_edits_a_copy(qtbot):
    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    dialog.beam_size.setValue(7)
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.sidecar_style.setCurrentIndex(dialog.sidecar_style.findData("base"))
    dialog.auto_write.setChecked(False)
    result = dialog.result_settings()
    assert (result.beam_size, result.device, result.sidecar_style, result.auto_write) == (7, "cpu", "base", False)
    assert result.batch_size == AppSettings().batch_size


def test_tests_never_touch_the_real_settings(fresh_settings):
    path = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "imgcap", "imgcap-desktop").fileName()
    assert path.startswith(str(fresh_settings))


def test_a_recent_list_written_elsewhere_is_capped_and_without_duplicates(fresh_settings):
    from imgcap_desktop.settings import MAX_RECENT_FOLDERS

    store = qsettings()
    store.setValue("recent_folders", ["/a", "/b", "/a", *(f"/f{i}" for i in range(20))])
    store.sync()
    recent = load_settings().recent_folders
    assert recent[:3] == ("/a", "/b", "/f0") and len(recent) == MAX_RECENT_FOLDERS


@pytest.mark.parametrize(("no", "yes"), [("0", "1"), ("no", " On")])  # "no" was not understood: write at once
def test_booleans_written_as_numbers_or_words_are_read(fresh_settings, no, yes):
    store = qsettings()
    store.setValue("auto_write", no)
    store.setValue("include_subfolders", yes)
    store.sync()
    settings = load_settings()
    assert (settings.auto_write, settings.include_subfolders) == (False, True)


def test_the_window_says_which_settings_it_could_not_read_and_an_opened_folder_does_not_hide_it(
        qtbot, service, photo_folder, fresh_settings):
    from PySide6.QtWidgets import QMessageBox

    from imgcap_desktop.main_window import MainWindow

    store = qsettings()
    store.setValue("overwrite_policy", "replace-all")  # a later version's, say
    store.sync()
    window = MainWindow(service=service)
    window._ask_about_held = lambda count, before="closing": QMessageBox.StandardButton.Discard
    qtbot.addWidget(window)
    note = "Settings not understood, their defaults used: overwrite_policy='replace-all'."
    assert window.statusBar().currentMessage() == note
    with qtbot.waitSignal(window.reader.finished, timeout=10_000):
        window.open_folder(photo_folder)
    assert window.statusBar().currentMessage().endswith(note)


def test_a_recent_folder_whose_name_is_not_utf8_comes_back_as_it_was(fresh_settings):
    """A Latin-1 "tripé" (an old card's) lost its byte in QSettings: Open Recent then opened another
    folder, "trip", or said it did not exist."""
    import os

    folder = os.fsdecode(b"/photos/trip\xe9")
    save_settings(AppSettings(recent_folders=(folder, "/photos/plain")))
    assert load_settings().recent_folders == (folder, "/photos/plain")
    store = qsettings()
    store.setValue("recent_folders", [QByteArray(b"/x")])  # one stored by hand as bytes: a path, not "b'/'"
    store.sync()
    assert load_settings().recent_folders == ("/x",)


def test_status_messages_name_a_folder_that_is_not_utf8_as_it_is(qtbot, window, tmp_path):
    """Qt dropped the byte: "Cannot open .../trip" named another folder than the one meant."""
    import os

    missing = tmp_path / os.fsdecode(b"trip\xe9")
    assert not window.open_folder(missing)
    assert window.statusBar().currentMessage().startswith(f"Cannot open {tmp_path}/trip\\xe9: ")
