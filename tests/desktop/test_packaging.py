"""Packaging: the desktop entry, the self-test, the frozen launcher's dispatch and the PyInstaller spec.

PyInstaller itself never runs here (scripts/ci_build.sh builds and checks the frozen app).
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcap_desktop import desktop_entry, selftest
from model.resources import resource_path


@pytest.fixture(autouse=True)
def _a_qapplication_first(qapp):
    """The self-test runs the caption service, which makes a QCoreApplication when none exists;
    widget tests later in the same process need that first application to be a QApplication."""

ROOT = Path(__file__).resolve().parents[2]


def _load_launcher():
    spec = importlib.util.spec_from_file_location("imgcap_launcher", ROOT / "packaging" / "launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- desktop entry -------------------------------------------------------------------------------

def test_install_desktop_entry_respects_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    written = desktop_entry.install_desktop_entry("/opt/imgcap/imgcap")

    entry = tmp_path / "applications" / "imgcap-desktop.desktop"
    icon = tmp_path / "icons" / "hicolor" / "scalable" / "apps" / "imgcap.svg"
    assert written[:2] == [entry, icon]
    assert icon.read_bytes() == resource_path("icons", "imgcap.svg").read_bytes()
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.optionxform = str
    parsed.read_string(entry.read_text())
    section = parsed["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"] == "/opt/imgcap/imgcap %F"
    assert section["Icon"] == "imgcap"
    assert section["StartupWMClass"] == "imgcap-desktop"


def test_the_entry_runs_the_script_of_a_virtual_environment_not_on_the_path(tmp_path, monkeypatch):
    """``.venv/bin/imgcap-desktop --install-desktop-entry`` wrote the bare name, which the desktop
    neither finds (TryExec hides the entry) nor can start."""
    script = tmp_path / "venv" / "bin" / "imgcap-desktop"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "argv", [str(script), "--install-desktop-entry"])
    assert desktop_entry.default_command() == str(script)


def test_install_desktop_entry_ignores_relative_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert desktop_entry.data_home() == tmp_path / ".local" / "share"


def test_exec_key_quotes_a_path_with_spaces():
    text = desktop_entry.desktop_entry_text("/home/me/My Apps/imgcap")
    assert 'Exec="/home/me/My Apps/imgcap" %F' in text


@pytest.mark.parametrize("folder", ["imgcap%20linux", "My $stuff", "R&D", "it's", 'say "hi"', "back\\slash", "`x`"])
def test_exec_key_of_any_folder_name_is_valid(tmp_path, folder):
    """A browser's "imgcap%20linux" gave Exec=.../imgcap%20linux/imgcap, whose %2 the desktop read as a
    field code (nothing launched); a $ or & went unescaped or unquoted (rejected by validators)."""
    text = desktop_entry.desktop_entry_text(f"/opt/{folder}/imgcap")
    if "%" in folder:  # through env: GLib looks for the program before it undoes %%
        assert "Exec=env /opt/imgcap%%20linux/imgcap %F" in text
    if "$" in folder:
        assert 'Exec="/opt/My \\\\$stuff/imgcap" %F' in text
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.skip("desktop-file-validate is not installed")
    entry = tmp_path / "imgcap-desktop.desktop"
    entry.write_text(text)
    checked = subprocess.run([validate, str(entry)], capture_output=True, text=True)
    assert checked.returncode == 0 and "error" not in checked.stdout, checked.stdout


def test_an_entry_that_cannot_be_installed_leaves_nothing_and_says_why(tmp_path, monkeypatch, capsys):
    """A data folder that cannot be written (left root's by a sudo run) ended in three tracebacks,
    with the icon installed and no entry."""
    from imgcap_desktop.app import main

    (tmp_path / "icons").write_text("a file where the icons folder goes")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["--install-desktop-entry"]) == 1
    assert capsys.readouterr().err.startswith("imgcap-desktop: cannot install the desktop entry: ")
    assert not (tmp_path / "applications" / "imgcap-desktop.desktop").exists()

    (tmp_path / "icons").unlink()
    assert main(["--install-desktop-entry"]) == 0
    icon = tmp_path / "icons" / "hicolor" / "scalable" / "apps" / "imgcap.svg"
    icon.unlink()
    icon.mkdir()  # a failed install again: the entry of the one before stays
    assert main(["--install-desktop-entry"]) == 1
    assert (tmp_path / "applications" / "imgcap-desktop.desktop").is_file()


def test_shipped_desktop_file_matches_the_template():
    assert (ROOT / "packaging" / "imgcap.desktop").read_text() == desktop_entry.desktop_entry_text()


def test_app_flag_installs_the_entry(tmp_path, monkeypatch, capsys):
    from imgcap_desktop.app import main

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["--install-desktop-entry"]) == 0
    assert (tmp_path / "applications" / "imgcap-desktop.desktop").is_file()
    assert "imgcap-desktop.desktop" in capsys.readouterr().out


# -- self-test -----------------------------------------------------------------------------------

def test_shipped_samples_are_small_licensed_photos():
    samples = selftest.sample_photos()
    assert len(samples) >= 3
    for photo in samples:
        assert photo.stat().st_size < 150_000
        with Image.open(photo) as image:
            assert image.mode == "RGB"
    licences = (resource_path("samples") / "LICENSES.md").read_text()
    assert all(photo.name in licences for photo in samples)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from model.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"))


class _Outcome:
    def __init__(self, words, attention):
        self.words, self.attention = words, attention


def test_selftest_passes_on_a_tiny_bundle(tiny_bundle, tmp_path, monkeypatch):
    # Random weights may end a caption at once; the check under test is the pipeline, so make
    # every caption at least one word by stubbing nothing but the model's output when empty.
    from model.captioner import Captioner

    real_caption = Captioner.caption

    def caption(self, images, beam_size=3, batch_size=8):
        outcomes = real_caption(self, images, beam_size, batch_size)
        grid = self.grid
        uniform = np.full((1, *grid), 1.0 / (grid[0] * grid[1]), np.float32)
        return [o if getattr(o, "words", None) else _Outcome(("word",), uniform) for o in outcomes]

    monkeypatch.setattr(Captioner, "caption", caption)
    out, err = io.StringIO(), io.StringIO()
    assert selftest.main(tiny_bundle, out=out, err=err) == 0, err.getvalue()
    text = out.getvalue()
    assert "self-test passed" in text
    for photo in selftest.sample_photos():
        assert f"{photo.name}: " in text


def test_selftest_fails_with_the_reason_on_a_bad_attention_map(tiny_bundle, monkeypatch):
    from model.captioner import Captioner

    def caption(self, images, beam_size=3, batch_size=8):
        return [_Outcome(("a", "dog"), np.full((2, *self.grid), 0.5, np.float32)) for _ in images]

    monkeypatch.setattr(Captioner, "caption", caption)
    err = io.StringIO()
    assert selftest.main(tiny_bundle, out=io.StringIO(), err=err) == 1
    assert "attention map sums to" in err.getvalue()


def test_selftest_fails_on_an_empty_caption(tiny_bundle, monkeypatch):
    from model.captioner import Captioner

    def caption(self, images, beam_size=3, batch_size=8):
        return [_Outcome((), np.zeros((0, *self.grid), np.float32)) for _ in images]

    monkeypatch.setattr(Captioner, "caption", caption)
    err = io.StringIO()
    assert selftest.main(tiny_bundle, out=io.StringIO(), err=err) == 1
    assert "empty caption" in err.getvalue()


def test_selftest_fails_without_samples(tmp_path):
    err = io.StringIO()
    assert selftest.main(samples=tmp_path, out=io.StringIO(), err=err) == 1
    assert "no sample photos" in err.getvalue()


def test_selftest_fails_on_a_missing_bundle(tmp_path):
    err = io.StringIO()
    assert selftest.main(tmp_path / "missing", out=io.StringIO(), err=err) == 1
    assert "FAILED" in err.getvalue()


# -- launcher ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "target"), [
    (["caption", "photos/"], "cli"),
    (["import-csv", "captions.csv"], "cli"),
    (["--selftest"], "selftest"),
    (["--selftest", "--bundle", "b"], "selftest"),
    ([], "gui"),
    (["~/Pictures"], "gui"),
    (["--install-desktop-entry"], "gui"),
    (["archive", "caption", "/x", "--out", "r"], "cli"),  # went to the window's parser: "unrecognized"
    (["captoin", "photos"], "typo"),  # opened the window on a folder called "captoin"
    (["caption.jpg"], "gui"),  # not there, but not a command's name either: the window says so
    (["."], "gui"),
])
def test_launcher_dispatch(argv, target):
    assert _load_launcher().choose(argv) == target


def test_a_lone_command_word_that_is_a_folder_here_opens_it(tmp_path, monkeypatch):
    # An archivist's folder named "archive": "imgcap archive" ran the archive command's usage error.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "archive").mkdir()
    launcher = _load_launcher()
    assert launcher.choose(["archive"]) == "gui" and launcher.choose(["archive", "caption", "x"]) == "cli"


def test_launcher_says_a_typo_and_its_help_names_the_commands(monkeypatch, capsys):
    import imgcap_desktop.app

    launcher = _load_launcher()
    assert launcher.main(["captoin", "photos"]) == 2
    assert "did you mean 'caption'?" in capsys.readouterr().err
    monkeypatch.setattr(imgcap_desktop.app, "main", lambda argv: 0)
    assert launcher.main(["--help"]) == 0
    assert "imgcap caption PATH" in capsys.readouterr().out


def test_launcher_runs_the_chosen_entry(monkeypatch):
    import imgcap_desktop.app
    import imgcap_desktop.selftest

    launcher = _load_launcher()
    calls = []
    monkeypatch.setattr(imgcap_desktop.selftest, "cli", lambda argv: calls.append(("selftest", argv)) or 0)
    monkeypatch.setattr(imgcap_desktop.app, "main", lambda argv: calls.append(("gui", argv)) or 0)
    assert launcher.main(["--selftest"]) == 0
    assert launcher.main(["folder"]) == 0
    assert calls == [("selftest", ["--selftest"]), ("gui", ["folder"])]


# -- build.spec ----------------------------------------------------------------------------------

def test_build_spec_parses_and_ships_the_resources():
    text = (ROOT / "build.spec").read_text()
    ast.parse(text)
    for needed in ('"resources/models"', '"resources/icons"', '"resources/samples"', '"resources/encoders"',
                   "launcher.py", 'name="imgcap"', '"torch"', '"tkinter"', '"matplotlib"', '"tensorboard"'):
        assert needed in text, needed
    assert (ROOT / "packaging" / "launcher.py").is_file()
    assert resource_path("models", "flickr8k-lite2", "config.json").is_file()


@pytest.mark.slow
def test_selftest_passes_on_the_shipped_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path / "cache"))
    out, err = io.StringIO(), io.StringIO()
    assert selftest.main(out=out, err=err) == 0, err.getvalue()
    assert "model flickr8k-lite2" in out.getvalue()
