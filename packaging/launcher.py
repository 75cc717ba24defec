"""The frozen ``imgcap`` executable: one binary for the window, the batch CLI and the self-test.

``imgcap caption ...``, ``imgcap import-csv ...`` and ``imgcap archive ...`` run the command-line
tool (:func:`imgcap_desktop.cli.main`; the archive says what it needs that the binary has not);
``imgcap --selftest`` checks the model headlessly; a first word that is no path but nearly a
command (``captoin``) is said to be a typo; anything else opens the window
(:func:`imgcap_desktop.app.main`), so ``imgcap ~/Pictures`` works as usual.
"""

from __future__ import annotations

import difflib
import os
import sys

#: First arguments that belong to the command-line tool rather than the window.
CLI_COMMANDS = ("caption", "import-csv", "archive")

USAGE = """usage: imgcap [PATH ...]                 open the window (on a folder, or a photo's folder)
       imgcap caption PATH ... [...]     caption photos headlessly (imgcap caption --help)
       imgcap import-csv FILE [...]      apply a CSV's edited captions (imgcap import-csv --help)
       imgcap archive ...                archives on a Ray cluster (a pip install with the cluster extra)
       imgcap --selftest                 caption the sample photos and check the results
The window's options:"""


def choose(argv: list[str]) -> str:
    """``"cli"``, ``"selftest"``, ``"typo"`` or ``"gui"`` for the arguments after the program name."""
    if argv and argv[0] in CLI_COMMANDS and not (len(argv) == 1 and os.path.isdir(argv[0])):
        return "cli"  # a command; but "imgcap archive" alone, with a folder named so here, opens it
    if "--selftest" in argv:
        return "selftest"
    word = argv[0] if argv else ""
    if word.isascii() and word.replace("-", "").isalpha() and not os.path.lexists(word) \
            and difflib.get_close_matches(word, CLI_COMMANDS, n=1, cutoff=0.7):  # a word, not a path
        return "typo"
    return "gui"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    target = choose(argv)
    if target == "typo":
        (command,) = difflib.get_close_matches(argv[0], CLI_COMMANDS, n=1, cutoff=0.7)
        print(f"imgcap: {argv[0]!r} is neither a command nor a path; did you mean {command!r}?", file=sys.stderr)
        return 2
    if target == "gui" and argv[:1] in (["-h"], ["--help"]):
        print(USAGE)  # the window's own help follows
    if target == "cli":
        from imgcap_desktop.cli import main as cli_main

        return cli_main(argv)
    if target == "selftest":
        # Straight to the self-test: no window is made for it.
        from imgcap_desktop.selftest import cli as selftest_cli

        return selftest_cli(argv)
    from imgcap_desktop.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    # PyInstaller's multiprocessing hook is not needed: imgcap never forks workers.
    sys.exit(main())
