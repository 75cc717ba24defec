"""A caption whose subject never arrives ("a group of young little black are standing ...") is what
the decoder writes when the person guard bans the noun it wanted; such a photo is searched again
without the guard (decoding ``relax_if_garbled``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.captioner import garbled_subject
from model.search import DecodedBatch

# Real captions of the shipped model on Flickr8k dev and coco-mini-dev photos.
GARBLED = [
    "a group of young little black are standing in the street",
    "a group of young asian young little black are standing in the street",
    "a little young little blonde young blonde little black are sitting on a table with a picture",
    "a young small young little young blonde young two young black in a swimming pool",
    "a group of young black are standing on a snowy mountain",
    "a young little young male is doing a trick in the water",
]
FINE = [
    "two young little dogs are playing in the grass",
    "a black and white dog is running through the grass",
    "a man in black is standing on the street",
    "a little girl in a pink dress is running",
    "a white and white toilet with a toilet",  # poor, but no stand-in for a noun
    "a group of people are standing in front of a building",
    "a young boy in a red shirt is standing on a sidewalk",
]


@pytest.mark.parametrize("caption", GARBLED)
def test_describing_words_in_place_of_a_noun_are_garbled(caption):
    assert garbled_subject(caption.split())


@pytest.mark.parametrize("caption", FINE)
def test_captions_with_a_subject_are_not(caption):
    assert not garbled_subject(caption.split())


def _decoded(vocab, captions: list[str], locations: int) -> DecodedBatch:
    ids = [[vocab.id_of(w) for w in c.split()] for c in captions]
    width = max(len(x) for x in ids) + 1
    tokens = np.full((len(ids), 1, width), vocab.pad_id, np.int32)
    for row, x in enumerate(ids):
        tokens[row, 0, :len(x)] = x
        tokens[row, 0, len(x)] = vocab.end_id
    lengths = np.array([[len(x)] for x in ids], np.int32)
    attention = np.full((len(ids), 1, width, locations), 1.0 / locations, np.float32)
    return DecodedBatch(tokens=tokens, scores=np.zeros((len(ids), 1), np.float32), lengths=lengths,
                        attention=attention)


@pytest.mark.parametrize("relax", [True, False])
def test_a_garbled_caption_under_the_person_guard_is_searched_again_without_it(tmp_path, monkeypatch, relax):
    """Photos 0 and 2 get a garbled caption while person words are banned, photo 1 a good one. With
    ``relax_if_garbled: ["probe"]`` photos 0 and 2 alone are searched again, with the person guard
    lifted and the other guards (an animal's tags) kept; without it the garbled captions stay."""
    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b", tags=True)
    config = json.loads((bundle_dir / "config.json").read_text())
    config["decoding"]["absent"] = [{"probe": "person", "below": 0.5, "words": ["man", "people"]},
                                    {"tags": ["cat"], "below": 2.0, "words": ["cat"]}]  # "cat" always banned
    if relax:
        config["decoding"]["relax_if_garbled"] = ["probe"]
    (bundle_dir / "config.json").write_text(json.dumps(config))
    bundle = load_bundle(bundle_dir)
    bundle.probes["person"] = (np.zeros(32, np.float32), np.float32(-20.0))  # "no person anywhere"
    captioner = Captioner(bundle, device="cpu", runtime="tf")
    vocab, locations = bundle.vocab, captioner.grid[0] * captioner.grid[1]
    man, cat = vocab.id_of("man"), vocab.id_of("cat")
    searches = []

    def search(features, beam_size=3, tags=None, ban=None, must=None):
        searches.append(ban.copy())
        person_banned = ban[:, man] < 0
        if len(searches) == 1:
            captions = ["two white black white on the grass", "a dog runs on the grass", "a black white black sits"]
        else:
            captions = ["a man runs on the grass"] * len(features)
        return _decoded(vocab, [c if person_banned[row] or len(searches) > 1 else "a man sits" for row, c in
                                enumerate(captions)], locations)

    monkeypatch.setattr(captioner, "decode", search)
    features = np.random.default_rng(0).normal(size=(3, locations, 32)).astype(np.float32)
    results = captioner.caption_encoded(["p0", "p1", "p2"], features, None, beam_size=1)
    said = [" ".join(r.words) for r in results]
    if not relax:
        assert len(searches) == 1
        assert said == ["two white black white on the grass", "a dog runs on the grass", "a black white black sits"]
        return
    assert said == ["a man runs on the grass", "a dog runs on the grass", "a man runs on the grass"]
    assert len(searches) == 2 and searches[1].shape[0] == 2  # photos 0 and 2 only
    assert (searches[0][:, man] < 0).all() and (searches[1][:, man] == 0).all()  # the person guard lifted
    assert (searches[1][:, cat] < 0).all()  # the animal guard kept
    assert results[0].attention.shape[0] == len(results[0].words)


def test_a_caption_missing_a_confident_tag_is_searched_again_constrained_to_name_it(tmp_path, monkeypatch):
    """``name_tags_above: 0.5``: photo 0's caption leaves out its cat (0.9), photo 1's names it, photo 2
    has no tag that sure and photo 3's only sure tag is banned for it. Photo 0 alone is searched again,
    its must words the cat's forms; greedy decoding never searches again."""
    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b", tags=True)
    config = json.loads((bundle_dir / "config.json").read_text())
    config["decoding"]["name_tags_above"] = 0.5
    (bundle_dir / "config.json").write_text(json.dumps(config))
    captioner = Captioner(load_bundle(bundle_dir), device="cpu", runtime="tf")
    vocab, tag_map, locations = captioner.bundle.vocab, captioner.tagger.tag_map, captioner.grid[0] * captioner.grid[1]
    searches = []

    def search(features, beam_size=3, tags=None, ban=None, must=None):
        searches.append(must)
        if len(searches) == 1:
            return _decoded(vocab, ["a man runs on the grass", "a cat runs on the grass", "a dog runs",
                                    "a man runs"], locations)
        return _decoded(vocab, ["a cat runs on the grass"] * len(features), locations)

    monkeypatch.setattr(captioner, "decode", search)
    monkeypatch.setattr(captioner, "_photo_bans", lambda features, word_probs: ban)
    word_probs = np.zeros((4, len(tag_map.words)), np.float32)
    word_probs[[0, 1], tag_map.index("cat")] = 0.9
    word_probs[2, tag_map.index("dog")] = 0.4
    word_probs[3, tag_map.index("bus")] = 0.8
    ban = np.zeros((4, len(vocab)), np.float32)
    ban[3, [vocab.id_of(f) for f in ("bus", "buses") if f in vocab]] = -1e9
    features = np.zeros((4, locations, 32), np.float32)

    decoded, retry, again = captioner.decode_guarded(features, word_probs, beam_size=3)
    assert retry == [0] and len(searches) == 2
    assert searches[0] is None  # the first search is a plain one
    assert {vocab.word_of(int(i)) for i in np.flatnonzero(searches[1][0])} == {"cat"} | (
        {"cats"} & set(vocab.words))
    assert again.tokens.shape[0] == 1

    searches.clear()
    captioner.decode_guarded(features, word_probs, beam_size=1)
    assert len(searches) == 1
