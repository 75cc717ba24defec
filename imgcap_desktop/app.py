"""The ``imgcap-desktop`` entry point: parse the command line, show the window, open a folder."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command line. Packaging adds its own flags here (``--selftest``, ``--install-desktop-entry``)."""
    parser = argparse.ArgumentParser(prog="imgcap-desktop", description="Caption photos and see where the model looked.")
    parser.add_argument("folder", nargs="?", type=Path, help="a photo folder to open")
    parser.add_argument("--bundle", type=Path, default=None, help="a model bundle (default: the shipped one)")
    parser.add_argument("--verbose", action="store_true", help="log debugging details")
    # -- extra flags (packaging: --selftest, --install-desktop-entry) go below this line --
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from imgcap_desktop.settings import APPLICATION, ORGANIZATION

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setDesktopFileName("imgcap-desktop")

    from imgcap_desktop.caption_service import CaptionService
    from imgcap_desktop.main_window import MainWindow

    window = MainWindow(service=CaptionService(bundle=args.bundle))
    window.show()
    if args.folder is not None:
        # After the first paint, so the window appears at once even for a large folder.
        QTimer.singleShot(0, lambda: window.open_folder(args.folder))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
