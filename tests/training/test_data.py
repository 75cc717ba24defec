"""Tests for training.data: the Flickr8k-layout reader and caption cleaning."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tests.training.conftest import MISSING_IMAGE
from training.data import clean_caption, load_captions, load_dataset, load_items, load_split


def test_load_captions_reads_every_id_in_file_order(tiny_flickr):
    captions = load_captions(tiny_flickr.token_file)
    assert captions == tiny_flickr.captions
    assert list(captions) == list(tiny_flickr.captions)
    assert all(len(texts) == 5 for texts in captions.values())


def test_load_captions_keeps_the_quirk_id_as_its_own_name(tiny_flickr):
    captions = load_captions(tiny_flickr.token_file)
    assert captions[MISSING_IMAGE][0] == "people waiting for the subway"
    assert "2258277193_586949ec62.jpg" not in captions


def test_load_captions_tolerates_bom_crlf_blank_lines_and_spaces(tmp_path, caplog):
    token_file = tmp_path / "tokens.txt"
    token_file.write_bytes(
        "\ufeffa.jpg#0\tA dog .\r\n\r\na.jpg#1\tA cat .\r\nb.jpg#0 Spaces instead of a tab\r\nc.jpg#0\t\r\n".encode()
    )
    with caplog.at_level(logging.WARNING, logger="training.data"):
        captions = load_captions(token_file)
    assert captions == {"a.jpg": ["A dog .", "A cat ."], "b.jpg": ["Spaces instead of a tab"]}
    assert "c.jpg#0" in caplog.text


def test_load_split_keeps_order_and_drops_blanks_and_repeats(tmp_path):
    list_file = tmp_path / "split.txt"
    list_file.write_text("b.jpg\n\n a.jpg \nb.jpg\n", encoding="utf-8")
    assert load_split(list_file) == ["b.jpg", "a.jpg"]


def test_load_dataset_skips_and_counts_the_id_without_photo(tiny_flickr, caplog):
    with caplog.at_level(logging.WARNING, logger="training.data"):
        items, n_skipped = load_dataset(tiny_flickr.root, "train")
    assert n_skipped == 1
    assert MISSING_IMAGE in caplog.text and "5 captions" in caplog.text
    assert [path.name for path, _ in items] == tiny_flickr.train[:-1]
    for path, captions in items:
        assert path == tiny_flickr.images_dir / path.name and path.is_file()
        assert captions == tiny_flickr.captions[path.name]


def test_load_dataset_dev_and_all(tiny_flickr):
    dev, n_skipped = load_dataset(tiny_flickr.root, "dev")
    assert [path.name for path, _ in dev] == tiny_flickr.dev and n_skipped == 0
    everything, n_skipped = load_dataset(tiny_flickr.root, None)
    assert [path.name for path, _ in everything] == tiny_flickr.images and n_skipped == 1


def test_load_dataset_errors(tiny_flickr):
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset(tiny_flickr.root, "val")
    with pytest.raises(FileNotFoundError):
        load_dataset(tiny_flickr.root, "test")  # no test list, as in the shared copy
    with pytest.raises(FileNotFoundError):
        load_dataset(tiny_flickr.root / "nowhere", "dev")


def test_load_items_counts_listed_images_without_captions(tiny_flickr, caplog):
    names = [tiny_flickr.dev[0], "uncaptioned.jpg", MISSING_IMAGE]
    with caplog.at_level(logging.WARNING, logger="training.data"):
        items, n_skipped = load_items(tiny_flickr.images_dir, tiny_flickr.token_file, names)
    assert [path.name for path, _ in items] == [tiny_flickr.dev[0]]
    assert n_skipped == 2
    assert "uncaptioned.jpg" in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A child in a pink dress .", ["a", "child", "in", "a", "pink", "dress"]),
        ("A black and WHITE dog's ball , 2 dogs", ["a", "black", "and", "white", "dogs", "ball", "dogs"]),
        ("A tri-colored dog plays 4x4 \u201cfetch\u201d!", ["a", "tricolored", "dog", "plays", "fetch"]),
        ("Two men 's hats in 1999", ["two", "men", "s", "hats", "in"]),
        ("  . , !  ", []),
        ("Café crème", ["café", "crème"]),
    ],
)
def test_clean_caption(text, expected):
    assert clean_caption(text) == expected


def test_clean_caption_can_drop_one_letter_words():
    assert clean_caption("A dog 's ball in a park .", drop_one_letter=True) == ["dog", "ball", "in", "park"]
    assert clean_caption("A dog 's ball", drop_one_letter=False) == ["a", "dog", "s", "ball"]


def test_data_metrics_and_vocab_import_neither_tensorflow_nor_qt():
    code = (
        "import sys, training.data, training.metrics, training.evaluate, model.vocab; "
        "bad = [m for m in ('tensorflow', 'keras', 'PySide6') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
