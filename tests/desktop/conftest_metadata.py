"""Fixtures for the metadata tests (sidecars, CSV, folder scans); imported by those test modules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import strategies as st
from PIL import Image

from imgcap_desktop.metadata.sidecar import is_blank

EXIFTOOL = shutil.which("exiftool")

needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None,
    reason="exiftool is not installed (Debian package libimage-exiftool-perl; .ci/run installs it)",
)


# Captions XMP can hold: no surrogates, no C0 controls but tab, LF and CR, no DEL, no U+FFFE/U+FFFF.
xmp_text = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(0x20) if c not in (9, 10, 13)] + ["\x7f", "\ufffe", "\uffff"],
    ),
    min_size=1,
    max_size=60,
)
#: What a caption can be: text XMP can hold that says something (white space and zero-width
#: characters alone read as no caption: ``sidecar.is_blank``).
caption_text = xmp_text.filter(lambda text: not is_blank(text))


needs_exiv2 = pytest.mark.skipif(shutil.which("exiv2") is None, reason="needs exiv2 (apt-get install exiv2)")


def exiv2_reads(sidecar: Path) -> str:
    """What Exiv2 (the library darktable and digiKam read XMP with) prints for a sidecar's XMP, or
    raises AssertionError when it cannot decode it."""
    done = subprocess.run(["exiv2", "-px", str(sidecar)], capture_output=True, text=True, timeout=60)
    assert "Failed to decode XMP" not in done.stderr and "XMP Toolkit error" not in done.stderr, done.stderr
    return done.stdout


def pause_sidecar_moves(monkeypatch, name_end: str = ".xmp", seconds: float = 0.5) -> threading.Event:
    """Make a worker thread's sidecar write (of a name ending ``name_end``) pause after it read the
    sidecar, just before its new file takes the sidecar's place (renamed over the old one, or linked
    as a new one). The returned event is set once one pauses."""
    paused = threading.Event()

    def slow(real):
        def move(src, dst):
            if threading.current_thread() is not threading.main_thread() and str(dst).endswith(name_end):
                paused.set()
                time.sleep(seconds)
            real(src, dst)
        return move

    monkeypatch.setattr(os, "replace", slow(os.replace))
    monkeypatch.setattr(os, "link", slow(os.link))
    return paused


def refuse_listing(monkeypatch, name: str) -> None:
    """Make every folder called ``name`` unlistable (``PermissionError``), as a folder without read
    permission is for a user who is not root (tests here often run as root, which reads anything)."""
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) == name:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def make_photo(path: Path, size: tuple[int, int] = (16, 12), **save_args) -> Path:
    """A small real photo in whatever format ``path``'s extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 120, 40)).save(path, **save_args)
    return path


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return make_photo(tmp_path / "photo.jpg")


class Snapshot:
    """The bytes and modification time of some files, to prove they never change."""

    def __init__(self, paths):
        self.state = {Path(p): (Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in paths}

    def assert_unchanged(self):
        for path, (data, mtime) in self.state.items():
            assert path.read_bytes() == data, f"{path.name} changed"
            assert os.stat(path).st_mtime_ns == mtime, f"{path.name} was touched"


def exiftool(*args: str | Path) -> str:
    """Run exiftool and return its standard output."""
    done = subprocess.run([EXIFTOOL, *map(str, args)], capture_output=True, text=True, check=True, timeout=60)
    return done.stdout


def exiftool_tags(path: Path) -> dict:
    """Every XMP tag exiftool sees in a file, by group and name."""
    return json.loads(exiftool("-j", "-G1", "-struct", "-XMP:all", path))[0]


def write_hand_made_csv(path: Path, rows) -> None:
    """A caption CSV as a person or another program made it: the rows' cells without imgcap's
    ``check`` column, so that import takes every cell that differs from what is stored as an edit."""
    import csv
    import io

    from imgcap_desktop.metadata.csvio import format_rows

    table = list(csv.reader(io.StringIO(format_rows(rows), newline="")))
    drop = table[0].index("check")
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows([cells[:drop] + cells[drop + 1:] for cells in table])
    Path(path).write_bytes(buffer.getvalue().encode("utf-8", "surrogateescape"))


def edit_csv_cells(path: Path, edits: dict[str, dict[str, str]]) -> None:
    """Change cells of an exported caption CSV as a spreadsheet would, the rest (its ``check`` column
    too) left as exported: ``{relative path: {column: new text}}``."""
    import csv
    import io

    from imgcap_desktop.metadata.csvio import neutralise

    raw = Path(path).read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig", "surrogateescape"), newline="")))
    header = table[0]
    for cells in table[1:]:
        for column, text in edits.get(cells[header.index("relative path")], {}).items():
            cells[header.index(column)] = neutralise(text)
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(table)
    Path(path).write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().encode("utf-8", "surrogateescape"))
