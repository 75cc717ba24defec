"""Install imgcap's ``.desktop`` entry and icon for the current user (Linux desktops).

``imgcap-desktop --install-desktop-entry`` calls :func:`install_desktop_entry`. Files go under
``$XDG_DATA_HOME`` (default ``~/.local/share``), as the XDG base-directory spec asks.
"""

from __future__ import annotations

import os
import shlex
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
MimeType=image/jpeg;image/png;image/webp;image/tiff;inode/directory;
StartupWMClass=imgcap-desktop
Keywords=caption;photo;alt text;
"""


def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset or not absolute (per the spec)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".local" / "share"


def default_command() -> str:
    """The command the entry runs: the frozen executable itself, else the ``imgcap-desktop`` script."""
    if getattr(sys, "frozen", False):
        return sys.executable
    found = shutil.which("imgcap-desktop")
    return found or "imgcap-desktop"


def desktop_entry_text(command: str = "imgcap-desktop", icon: str = ICON_NAME) -> str:
    """The ``.desktop`` file's contents for ``command`` (quoted for the Exec key when needed)."""
    quoted = shlex.quote(command) if any(c in command for c in " \t\"'\\") else command
    # The Exec key's own escaping: a quoted argument uses double quotes, not shell single quotes.
    if quoted.startswith("'"):
        quoted = '"' + command.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _TEMPLATE.format(exec=quoted, try_exec=command, icon=icon)


def install_desktop_entry(command: str | None = None, *, destination: Path | None = None) -> list[Path]:
    """Write the ``.desktop`` entry and the icon under ``destination`` (default :func:`data_home`).

    Returns:
        The files written: ``applications/imgcap-desktop.desktop`` and the hicolor icon.

    Raises:
        FileNotFoundError: the shipped icon is missing.
    """
    root = data_home() if destination is None else Path(destination)
    icon_source = resource_path("icons", f"{ICON_NAME}.svg")
    if not icon_source.is_file():
        raise FileNotFoundError(f"icon not found: {icon_source}")
    icon_target = root / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg"
    icon_target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(icon_source, icon_target)
    written = [icon_target]
    for size in (64, 128, 256):  # PNG renderings, when the icon set has them
        png = resource_path("icons", f"{ICON_NAME}-{size}.png")
        if png.is_file():
            target = root / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target)
            written.append(target)

    entry = root / "applications" / DESKTOP_FILE_NAME
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(desktop_entry_text(command or default_command()), encoding="utf-8")
    entry.chmod(0o755)  # some desktops only launch entries that are executable
    written.insert(0, entry)
    return written
