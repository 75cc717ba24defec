"""Folder scans: which files are photos, in which order, and what is skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgcap_desktop.metadata.folder import base_style_collisions, is_photo, natural_key, scan_folder
from model.images import SUPPORTED_EXTENSIONS
from tests.desktop.conftest_metadata import refuse_listing


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _names(photos: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in photos]


def test_photos_are_sorted_naturally_and_case_insensitively(tmp_path):
    _touch(tmp_path, "img10.jpg", "img2.jpg", "IMG1.JPG", "b.png", "a.webp", "img2b.jpg")
    expected = ["a.webp", "b.png", "IMG1.JPG", "img2.jpg", "img2b.jpg", "img10.jpg"]
    assert _names(scan_folder(tmp_path), tmp_path) == expected


def test_other_files_hidden_files_and_sidecars_are_skipped(tmp_path):
    _touch(tmp_path, "a.jpg", "a.jpg.xmp", "a.xmp", "notes.txt", "captions.csv", ".hidden.jpg",
           "._a.jpg", ".a.jpg.xmp.x1y2.tmp", "noext")  # fmt: skip
    (tmp_path / "folder.jpg").mkdir()
    assert _names(scan_folder(tmp_path), tmp_path) == ["a.jpg"]


def test_every_supported_extension_is_found(tmp_path):
    names = [f"p{i}{ext}" for i, ext in enumerate(sorted(SUPPORTED_EXTENSIONS))]
    _touch(tmp_path, *names)
    assert len(scan_folder(tmp_path)) == len(names)
    assert all(is_photo(n.upper()) for n in names)


def test_recursion_is_optional_and_skips_hidden_folders(tmp_path):
    _touch(tmp_path, "top.jpg", "sub2/b.jpg", "sub10/a.jpg", "sub2/deeper/c.png", ".thumbnails/t.jpg")
    assert _names(scan_folder(tmp_path), tmp_path) == ["top.jpg"]
    assert _names(scan_folder(tmp_path, recursive=True), tmp_path) == [
        "sub2/b.jpg", "sub2/deeper/c.png", "sub10/a.jpg", "top.jpg"
    ]  # fmt: skip


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_symlink_loops_do_not_hang(tmp_path):
    _touch(tmp_path, "sub/a.jpg")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    assert _names(scan_folder(tmp_path, recursive=True), tmp_path) == ["sub/a.jpg"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_broken_links_to_photos_are_listed_so_they_can_be_reported(tmp_path):
    # A folder of links into an archive drive that is not mounted: the photos must show as
    # unreadable, not vanish, so the user learns why the folder looks empty.
    _touch(tmp_path, "a.jpg")
    os.symlink(tmp_path / "unmounted" / "b.jpg", tmp_path / "b.jpg")
    os.symlink(tmp_path / "unmounted" / "notes.txt", tmp_path / "notes.txt")
    os.symlink(tmp_path / "unmounted" / "c.jpg", tmp_path / ".c.jpg")
    assert _names(scan_folder(tmp_path), tmp_path) == ["a.jpg", "b.jpg"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_links_to_photos_that_loop_are_listed_so_they_can_be_reported(tmp_path):
    # They used to vanish without a word: testing them for a file raises ELOOP.
    from model.images import broken_link_reason

    _touch(tmp_path, "a.jpg")
    os.symlink(tmp_path / "c.jpg", tmp_path / "b.jpg")
    os.symlink(tmp_path / "b.jpg", tmp_path / "c.jpg")
    assert _names(scan_folder(tmp_path), tmp_path) == ["a.jpg", "b.jpg", "c.jpg"]
    assert broken_link_reason(tmp_path / "b.jpg") == "symbolic link loop"


def test_a_subfolder_that_cannot_be_listed_is_named_in_problems(tmp_path, monkeypatch):
    _touch(tmp_path, "top.jpg", "locked/a.jpg", "open/b.jpg")
    refuse_listing(monkeypatch, "locked")
    problems: list[str] = []
    assert _names(scan_folder(tmp_path, recursive=True, problems=problems), tmp_path) == ["open/b.jpg", "top.jpg"]
    assert problems == [f"{tmp_path / 'locked'}: cannot list the folder (Permission denied); its photos are skipped"]
    assert _names(scan_folder(tmp_path, recursive=True), tmp_path) == ["open/b.jpg", "top.jpg"]


def test_not_a_folder_is_an_error(tmp_path):
    _touch(tmp_path, "a.jpg")
    with pytest.raises(NotADirectoryError):
        scan_folder(tmp_path / "a.jpg")
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a recent folder moved away, say
        scan_folder(tmp_path / "missing")


def test_natural_key_compares_numbers_as_numbers():
    assert sorted(["x/10.jpg", "x/9.jpg", "X/1.jpg", "w/100.jpg"], key=natural_key) == [
        "w/100.jpg", "X/1.jpg", "x/9.jpg", "x/10.jpg"
    ]  # fmt: skip


def test_base_style_collisions_are_listed(tmp_path):
    photos = [tmp_path / n for n in ("a.jpg", "a.png", "b.jpg", "sub/a.jpg")]
    assert base_style_collisions(photos) == {tmp_path / "a.xmp": [tmp_path / "a.jpg", tmp_path / "a.png"]}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_link_to_a_folder_is_named_not_silently_skipped(tmp_path):
    """Recursive scans (Include Subfolders, imgcap archive) do not follow links to folders, so a loop
    cannot hang them; the linked folder's photos were left out without a word."""
    from imgcap_desktop.metadata.folder import scan_folder

    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.jpg").write_bytes(b"x")
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    problems: list[str] = []
    assert scan_folder(tmp_path / "root", recursive=True, problems=problems) == []
    assert problems == [f"{tmp_path / 'root' / 'linked'}: a link to a folder, not followed (give "
                        f"{tmp_path / 'elsewhere'} itself to include its photos)"]
