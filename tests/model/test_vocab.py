"""Tests for model.vocab: ids, ordering, encode/decode, JSON round trip and padding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.vocab import Vocabulary, pad_sequences

CAPTIONS = [
    ["a", "dog", "runs"],
    ["a", "dog", "sits"],
    ["a", "cat", "runs"],
    ["the", "cat", "sleeps"],
    ["a", "bird"],
]


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary.build(CAPTIONS, min_count=2)


def test_special_ids_are_fixed(vocab):
    assert (vocab.pad_id, vocab.start_id, vocab.end_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.words[:4] == ("<pad>", "<start>", "<end>", "<unk>")
    assert [vocab.id_of(token) for token in ("<pad>", "<start>", "<end>", "<unk>")] == [0, 1, 2, 3]


def test_build_orders_by_count_then_alphabetically_and_applies_min_count(vocab):
    # a: 4; cat, dog, runs: 2 each (alphabetical); sits, the, sleeps, bird: once -> dropped.
    assert vocab.words[4:] == ("a", "cat", "dog", "runs")
    assert len(vocab) == 8
    assert vocab.min_count == 2
    assert "bird" not in vocab and "dog" in vocab


def test_build_min_count_one_keeps_every_word_and_ignores_special_tokens():
    vocab = Vocabulary.build([*CAPTIONS, ["<unk>", "<end>"]], min_count=1)
    assert len(vocab) == 4 + 8
    assert vocab.words.count("<unk>") == 1
    with pytest.raises(ValueError):
        Vocabulary.build(CAPTIONS, min_count=0)


def test_build_is_deterministic_whatever_the_caption_order():
    assert Vocabulary.build(CAPTIONS, min_count=1) == Vocabulary.build(CAPTIONS[::-1], min_count=1)


def test_encode_adds_start_and_end_and_maps_unknown_words(vocab):
    ids = vocab.encode(["a", "bird", "runs"])
    assert ids == [vocab.start_id, vocab.id_of("a"), vocab.unk_id, vocab.id_of("runs"), vocab.end_id]
    assert vocab.encode([]) == [vocab.start_id, vocab.end_id]


def test_decode_stops_at_end_and_skips_start_and_pad(vocab):
    dog, runs = vocab.id_of("dog"), vocab.id_of("runs")
    assert vocab.decode([1, dog, 0, runs, 2, dog, dog]) == ["dog", "runs"]
    assert vocab.decode(np.array([1, dog, 3, 2, 0, 0], dtype=np.int32)) == ["dog", "<unk>"]
    assert vocab.decode([]) == []
    with pytest.raises(IndexError):
        vocab.decode([1, len(vocab)])


def test_encode_decode_round_trip(vocab):
    words = ["a", "cat", "runs", "a", "dog"]
    assert vocab.decode(vocab.encode(words)) == words


def test_json_round_trip_is_plain_json(vocab, tmp_path):
    data = json.loads(json.dumps(vocab.to_json()))
    again = Vocabulary.from_json(data)
    assert again == vocab and again.words == vocab.words and again.min_count == 2
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab
    assert json.loads(path.read_text(encoding="utf-8"))["tokens"][:5] == ["<pad>", "<start>", "<end>", "<unk>", "a"]


def test_json_keeps_unicode_words(tmp_path):
    vocab = Vocabulary.build([["café", "crème"]], min_count=1)
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").words[4:] == ("café", "crème")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"format": "imgcap-vocabulary", "version": 99, "tokens": ["<pad>", "<start>", "<end>", "<unk>"]},
        {"format": "imgcap-vocabulary", "version": 1, "tokens": ["<start>", "<pad>", "<end>", "<unk>", "a"]},
        {"format": "imgcap-vocabulary", "version": 1, "tokens": ["<pad>", "<start>", "<end>", "<unk>", "a", "a"]},
        {"format": "imgcap-vocabulary", "version": 1, "tokens": ["<pad>", "<start>", "<end>", "<unk>", 5]},
        {"format": "imgcap-vocabulary", "version": 1, "tokens": "abc"},
    ],
)
def test_from_json_rejects_malformed_data(data):
    with pytest.raises(ValueError):
        Vocabulary.from_json(data)


def test_constructor_rejects_special_tokens_among_words():
    with pytest.raises(ValueError):
        Vocabulary(["dog", "<end>"])


def test_pad_sequences_pads_with_zero_to_the_longest():
    padded = pad_sequences([[1, 5, 2], [1, 2], [1, 6, 7, 8, 2]])
    assert padded.dtype == np.int32
    np.testing.assert_array_equal(padded, [[1, 5, 2, 0, 0], [1, 2, 0, 0, 0], [1, 6, 7, 8, 2]])


def test_pad_sequences_to_a_given_length():
    assert pad_sequences([[1, 2]], length=4).tolist() == [[1, 2, 0, 0]]
    assert pad_sequences([], length=3).shape == (0, 3)
    assert pad_sequences([]).shape == (0, 0)
    with pytest.raises(ValueError):
        pad_sequences([[1, 4, 5, 2]], length=3)
