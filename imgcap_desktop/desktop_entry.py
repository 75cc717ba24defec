"""Install imgcap's ``.desktop`` entry and icon for the current user (Linux desktops).

``imgcap-desktop --install-desktop-entry`` calls :func:`install_desktop_entry`. Files go under
``$XDG_DATA_HOME`` (default ``~/.local/share``), as the XDG base-directory spec asks.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from model.resources import resource_path

DESKTOP_FILE_NAME = "imgcap-desktop.desktop"  # matches QGuiApplication.setDesktopFileName("imgcap-desktop")
ICON_NAME = "imgcap"

_TEMPLATE = """\
[Desktop Entry]
Type=Application
Name=imgcap
GenericName=Photo Captioner
Comment=Caption photos and see where the model looked
Exec={exec} %F
TryExec={try_exec}
Icon={icon}
Terminal=false
Categories=Graphics;Photography;Viewer;
MimeType=image/jpeg;image/png;image/webp;image/tiff;image/bmp;image/gif;image/heic;image/heif;inode/directory;
StartupWMClass=imgcap-desktop
Keywords=caption;photo;alt text;
"""


def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset or not absolute (per the spec)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".local" / "share"


def default_command() -> str:
    """The command the entry runs: the frozen executable itself, else the ``imgcap-desktop`` script:
    the one on the PATH, else the one beside this Python (a virtual environment not activated, as
    ``.venv/bin/imgcap-desktop`` is run; the bare name would neither pass TryExec nor start)."""
    if getattr(sys, "frozen", False):
        return sys.executable
    found = shutil.which("imgcap-desktop")
    if found:
        return found
    for candidate in (Path(sys.argv[0]), Path(sys.executable).with_name("imgcap-desktop")):
        if candidate.name == "imgcap-desktop" and candidate.is_file():
            return str(candidate.absolute())
    return "imgcap-desktop"


def desktop_entry_text(command: str = "imgcap-desktop", icon: str = ICON_NAME) -> str:
    """The ``.desktop`` file's contents for ``command``, written as the desktop-entry spec asks.

    A program whose path holds a literal % is run through ``env``: GLib looks for the program before
    it undoes the spec's %%, and finds none (GNOME launched nothing from "imgcap%20linux")."""
    run = f"env {_exec_argument(command)}" if "%" in command else _exec_argument(command)
    return _TEMPLATE.format(exec=run, try_exec=_string_value(command), icon=icon)


# Characters that make an Exec argument quoted (the desktop-entry spec's reserved ones).
_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")


def _exec_argument(argument: str) -> str:
    """One argument of an Exec key: quoted where it holds a reserved character (inside the quotes
    ", `, $ and \\ take a backslash), a literal % doubled (%2 would be a field code), and then
    written as a string value (its backslashes doubled once more, as the spec's four for one)."""
    if any(c in _RESERVED for c in argument):
        argument = '"' + "".join("\\" + c if c in '"`$\\' else c for c in argument) + '"'
    return _string_value(argument.replace("%", "%%"))


def _string_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def install_desktop_entry(command: str | None = None, *, destination: Path | None = None) -> list[Path]:
    """Write the ``.desktop`` entry and the icon under ``destination`` (default :func:`data_home`).

    Returns:
        The files written: ``applications/imgcap-desktop.desktop`` and the hicolor icon.

    Raises:
        FileNotFoundError: the shipped icon is missing.
        OSError: a folder cannot be written (nothing is left installed).
    """
    root = data_home() if destination is None else Path(destination)
    icon_source = resource_path("icons", f"{ICON_NAME}.svg")
    if not icon_source.is_file():
        raise FileNotFoundError(f"icon not found: {icon_source}")
    copies = [(icon_source, root / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg")]
    for size in (64, 128, 256):  # PNG renderings, when the icon set has them
        png = resource_path("icons", f"{ICON_NAME}-{size}.png")
        if png.is_file():
            copies.append((png, root / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"))
    entry = root / "applications" / DESKTOP_FILE_NAME
    written: list[Path] = []
    new: list[Path] = []  # made by this install: what a failed one takes back (an older install stays)
    try:  # a folder that cannot be written (left root's by a sudo run) leaves no half install
        for target in (entry, *(target for _, target in copies)):
            if not target.exists():
                new.append(target)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text(desktop_entry_text(command or default_command()), encoding="utf-8")
        written.append(entry)
        entry.chmod(0o755)  # some desktops only launch entries that are executable
        for source, target in copies:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
    except OSError:
        for path in written:
            if path in new:
                path.unlink(missing_ok=True)
        raise
    return written
