"""The ``imgcap-desktop`` entry point: parse the command line, show the window, open a folder."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command line. Packaging adds its own flags here (``--selftest``, ``--install-desktop-entry``)."""
    parser = argparse.ArgumentParser(prog="imgcap-desktop",
                                     description="Caption photos and see where the model looked.")
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="a photo folder to open, or a photo (its folder opens with it chosen: a file "
                             "manager's Open With); of several, the first")
    parser.add_argument("--bundle", type=Path, default=None, help="a model bundle (default: the shipped one)")
    parser.add_argument("--verbose", action="store_true", help="log debugging details")
    # -- extra flags (packaging: --selftest, --install-desktop-entry) go below this line --
    parser.add_argument("--selftest", action="store_true",
                        help="caption the sample photos without a window, check the results and exit")
    parser.add_argument("--install-desktop-entry", action="store_true",
                        help="install the .desktop entry and icon for this user (under $XDG_DATA_HOME) and exit")
    parser.add_argument("--exit-after-shown", action="store_true", help=argparse.SUPPRESS)  # start-up timing
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.selftest:
        from imgcap_desktop.selftest import main as selftest_main

        return selftest_main(args.bundle)
    if args.install_desktop_entry:
        from imgcap_desktop.desktop_entry import install_desktop_entry

        try:
            written = install_desktop_entry()
        except OSError as exc:
            print(f"imgcap-desktop: cannot install the desktop entry: {exc.filename or ''}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        for path in written:
            print(path)
        return 0

    if no_display():
        print("imgcap-desktop: no display to show the window on (no X or Wayland display for Qt's platform, as "
              "over ssh): run it in a desktop session, or caption headlessly with `imgcap caption FOLDER`",
              file=sys.stderr)
        return 2

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from imgcap_desktop.settings import APPLICATION, ORGANIZATION

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setDesktopFileName("imgcap-desktop")

    from imgcap_desktop.caption_service import CaptionService
    from imgcap_desktop.gui_gc import collecting_on_gui_thread
    from imgcap_desktop.main_window import MainWindow

    with collecting_on_gui_thread():  # a worker thread freeing a widget crashed the app
        window = MainWindow(service=CaptionService(bundle=args.bundle))
        window.show()
        if args.exit_after_shown:
            QTimer.singleShot(0, app.quit)  # after the first paint: measures start-up to window shown
        if args.paths:
            # After the first paint, so the window appears at once even for a large folder.
            QTimer.singleShot(0, lambda: window.open_paths(args.paths))
        return app.exec()


def no_display(environ=os.environ, platform: str = sys.platform) -> bool:
    """Whether a window cannot be shown here: Linux (or another X11 system) with neither an X nor a
    Wayland display for the Qt platform chosen, or for either when none is (Qt would abort with a
    message about xcb plugins)."""
    if platform.startswith(("win", "darwin")):
        return False
    chosen = [p for p in environ.get("QT_QPA_PLATFORM", "").split(";") if p]  # Qt tries a list in turn
    return not any(_can_show(p, environ) for p in chosen or ["xcb", "wayland"])


def _can_show(platform: str, environ) -> bool:
    name, _, arguments = platform.partition(":")
    if name == "xcb":  # X11 (chosen on Wayland too, a usual workaround): an X display
        return bool(environ.get("DISPLAY")) or "display=" in arguments
    if name.startswith("wayland"):
        return bool(environ.get("WAYLAND_DISPLAY"))
    return True  # offscreen, minimal, vnc, eglfs...: no display needed


if __name__ == "__main__":
    sys.exit(main())
