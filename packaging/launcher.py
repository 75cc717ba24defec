"""The frozen ``imgcap`` executable: one binary for the window, the batch CLI and the self-test.

``imgcap caption ...`` and ``imgcap import-csv ...`` run the command-line tool
(:func:`imgcap_desktop.cli.main`); ``imgcap --selftest`` checks the model headlessly; anything
else opens the window (:func:`imgcap_desktop.app.main`), so ``imgcap ~/Pictures`` works as usual.
"""

from __future__ import annotations

import sys

#: First arguments that belong to the command-line tool rather than the window.
CLI_COMMANDS = frozenset({"caption", "import-csv"})


def choose(argv: list[str]) -> str:
    """``"cli"``, ``"selftest"`` or ``"gui"`` for the arguments after the program name."""
    if argv and argv[0] in CLI_COMMANDS:
        return "cli"
    if "--selftest" in argv:
        return "selftest"
    return "gui"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    target = choose(argv)
    if target == "cli":
        from imgcap_desktop.cli import main as cli_main

        return cli_main(argv)
    if target == "selftest":
        # Straight to the self-test: no Qt is loaded for it.
        from imgcap_desktop.selftest import cli as selftest_cli

        return selftest_cli(argv)
    from imgcap_desktop.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    # PyInstaller's multiprocessing hook is not needed: imgcap never forks workers.
    sys.exit(main())
