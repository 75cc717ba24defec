"""The ``imgcap-desktop`` command line."""

from __future__ import annotations

from pathlib import Path

from imgcap_desktop.app import build_parser


def test_parser_takes_a_folder_and_a_bundle():
    args = build_parser().parse_args(["~/Pictures/trip", "--bundle", "/b"])
    assert args.paths == [Path("~/Pictures/trip")] and args.bundle == Path("/b")
    assert build_parser().parse_args([]).paths == []


def test_open_with_several_photos_is_taken():
    # The desktop entry runs "imgcap-desktop %F": two items selected in a file manager ended in
    # "unrecognized arguments" before any window was shown.
    assert build_parser().parse_args(["/p/a.jpg", "/p/b.jpg"]).paths == [Path("/p/a.jpg"), Path("/p/b.jpg")]


def test_icon_is_shipped():
    from imgcap_desktop.main_window import ICON_PATH

    assert ICON_PATH.is_file() and ICON_PATH.read_text().lstrip().startswith("<svg")


def test_without_a_display_it_says_so_instead_of_aborting(monkeypatch, capsys):
    """Over ssh (no DISPLAY), Qt aborted (SIGABRT, exit 134) with a message about xcb plugins and
    reinstalling; the CLI is what works there."""
    from imgcap_desktop.app import main, no_display

    assert no_display({}, "linux") and not no_display({"DISPLAY": ":0"}, "linux")
    assert not no_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux") and not no_display({}, "win32")
    assert not no_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert no_display({"QT_QPA_PLATFORM": "xcb"}, "linux")  # X11 chosen, no X display: Qt aborted the same
    assert no_display({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "linux")
    assert not no_display({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}, "linux")  # a list, tried in turn
    assert not no_display({"QT_QPA_PLATFORM": "xcb:display=:1"}, "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    assert "imgcap caption FOLDER" in capsys.readouterr().err
