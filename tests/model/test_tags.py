"""The ImageNet class -> everyday word map (resources/tags/imagenet_words.json) and TagMap."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from model.results import Tag
from model.tags import TagMap, default_tag_map_path


@pytest.fixture(scope="module")
def tag_map() -> TagMap:
    return TagMap.load()


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(default_tag_map_path().read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------- the map's shape
def test_shipped_map_has_1000_classes_with_ids_in_order(raw):
    assert raw["format_version"] == 1
    assert raw["source"]
    assert [c["id"] for c in raw["classes"]] == list(range(1000))
    synsets = [c["synset"] for c in raw["classes"]]
    assert len(set(synsets)) == 1000
    assert all(re.fullmatch(r"n\d{8}", s) for s in synsets)
    assert all(c["name"] for c in raw["classes"])


def test_words_list_is_the_sorted_set_of_used_words(raw):
    used = {c["word"] for c in raw["classes"] if c["word"] is not None}
    assert raw["words"] == sorted(used)
    assert all(re.fullmatch(r"[a-z]+", w) for w in raw["words"])


def test_shipped_file_is_canonical_so_sha256_matches_the_file(tag_map):
    data = default_tag_map_path().read_bytes()
    assert tag_map.to_json().encode("utf-8") == data
    assert tag_map.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("class_id", "synset", "name"),
    [
        (0, "n01440764", "tench"),
        (285, "n02124075", "Egyptian cat"),
        (348, "n02412080", "ram"),
        (404, "n02690373", "airliner"),
        (963, "n07873807", "pizza"),
        (967, "n07920052", "espresso"),
        (999, "n15075141", "toilet tissue"),
    ],
)
def test_class_order_matches_keras_and_torch_imagenet_ids(tag_map, class_id, synset, name):
    assert tag_map.synsets[class_id] == synset
    assert tag_map.names[class_id] == name


# ------------------------------------------------------------------------------ reviewed entries
def test_the_118_dog_breeds_are_dog(tag_map):
    assert all(tag_map.word_of(i) == "dog" for i in range(151, 269))


def test_domestic_cats_are_cat_and_big_cats_keep_their_word(tag_map):
    assert [tag_map.word_of(i) for i in range(281, 286)] == ["cat"] * 5
    assert [tag_map.word_of(i) for i in (291, 292, 288, 293)] == ["lion", "tiger", "leopard", "cheetah"]


@pytest.mark.parametrize(
    ("class_id", "word"),
    [
        (1, "fish"),  # goldfish
        (7, "chicken"),  # cock
        (15, "bird"),  # robin
        (21, "bird"),  # kite is the bird of prey, not the toy
        (134, "bird"),  # crane, the bird
        (517, "crane"),  # crane, the machine
        (145, "penguin"),
        (294, "bear"),  # brown bear
        (296, "bear"),  # ice bear
        (339, "horse"),  # sorrel
        (340, "zebra"),
        (345, "cow"),  # ox
        (348, "sheep"),  # ram
        (349, "sheep"),  # bighorn
        (386, "elephant"),
        (388, "panda"),
        (404, "airplane"),  # airliner: COCO says "airplane" more often than "plane"
        (895, "airplane"),  # warplane
        (726, None),  # plane, the carpenter's tool: not an airplane
        (779, "bus"),  # school bus
        (874, "bus"),  # trolleybus
        (654, "bus"),  # minibus
        (705, "train"),  # passenger car is a railway car
        (820, "train"),  # steam locomotive
        (717, "truck"),  # pickup
        (511, "car"),  # convertible
        (487, "phone"),  # cellular telephone
        (620, "laptop"),
        (681, "laptop"),  # notebook is the notebook computer
        (851, "tv"),  # television: COCO says "tv" more often
        (760, "refrigerator"),
        (831, "couch"),  # studio couch
        (879, "umbrella"),
        (850, "teddy"),
        (963, "pizza"),
        (967, "coffee"),  # espresso
        (968, "cup"),
        (504, "cup"),  # coffee mug: COCO says "cup" far more than "mug"
        (954, "banana"),
        (937, "broccoli"),
        (934, "hotdog"),
        (920, "traffic"),  # traffic light
        (978, "beach"),  # seashore
        (970, "mountain"),  # alp
        (752, "racket"),
        (852, "tennis"),  # tennis ball
        (795, "ski"),
        (861, "toilet"),  # toilet seat
        (896, "sink"),  # washbasin
        (676, "dog"),  # muzzle: the photos are of muzzled dogs
        (111, None),  # nematode
        (688, None),  # oscilloscope
    ],
)
def test_hand_checked_entries(tag_map, class_id, word):
    assert tag_map.word_of(class_id) == word


# ----------------------------------------------------------------------------------- TagMap API
def test_words_and_class_words_agree(tag_map):
    assert tag_map.words == tuple(sorted(tag_map.words))
    assert isinstance(tag_map.words, tuple)
    assert tag_map.class_words.shape == (1000,)
    assert tag_map.class_words.dtype.kind == "i"
    assert tag_map.class_words.min() == -1
    assert set(tag_map.class_words[tag_map.class_words >= 0]) == set(range(len(tag_map.words)))
    assert tag_map.words[tag_map.class_words[285]] == "cat"


def test_classes_of(tag_map):
    assert tag_map.classes_of("cat") == (281, 282, 283, 284, 285)
    assert tag_map.classes_of("sheep") == (348, 349)
    assert tag_map.classes_of("bus") == (654, 779, 874)
    assert len(tag_map.classes_of("dog")) == 118 + 3 + 1  # breeds, dingo/dhole/hunting dog, muzzle
    assert tag_map.classes_of("not-a-tag") == ()


def test_word_probabilities_sum_each_words_classes(tag_map):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(1000), size=3).astype(np.float32)  # (3, 1000)
    words = tag_map.word_probabilities(probs)
    assert words.shape == (3, len(tag_map.words))
    for word in ("cat", "dog", "bus", "sheep", "pizza"):
        expected = probs[:, list(tag_map.classes_of(word))].sum(axis=1)
        np.testing.assert_allclose(words[:, tag_map.index(word)], expected, rtol=1e-5)
    unmapped = probs[:, tag_map.class_words < 0].sum(axis=1)
    np.testing.assert_allclose(words.sum(axis=1) + unmapped, 1.0, rtol=1e-5)


def test_word_probabilities_of_one_photo_and_bad_shapes(tag_map):
    probs = np.zeros(1000, dtype=np.float32)
    probs[[281, 285]] = [0.25, 0.5]
    probs[963] = 0.25
    words = tag_map.word_probabilities(probs)
    assert words.shape == (len(tag_map.words),)
    assert words[tag_map.index("cat")] == pytest.approx(0.75)
    assert words[tag_map.index("pizza")] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="1000"):
        tag_map.word_probabilities(np.zeros((2, 999)))


def test_top_tags_orders_words_and_their_classes(tag_map):
    probs = np.zeros(1000, dtype=np.float32)
    probs[[281, 285, 963, 0]] = [0.2, 0.4, 0.3, 0.1]
    tags = tag_map.top_tags(probs, k=5, min_probability=0.15)
    assert [t.word for t in tags] == ["cat", "pizza"]
    assert tags[0].class_ids[:2] == (285, 281)
    assert tags[0].probability == pytest.approx(0.6)
    assert tags[0].cam is None


def test_tag_cam_is_left_out_of_repr_and_equality():
    a = Tag("cat", 0.5, (285,), cam=np.ones((2, 2), np.float32) / 4)
    b = Tag("cat", 0.5, (285,))
    assert a == b
    assert "cam" not in repr(a)
    with pytest.raises(AttributeError):
        a.word = "dog"  # frozen


def test_load_rejects_a_broken_map(tmp_path, raw):
    bad = dict(raw, words=raw["words"][:-1])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ValueError, match="words"):
        TagMap.load(path)
    bad = dict(raw, classes=[dict(c, word="Hot Dog") if c["id"] == 934 else c for c in raw["classes"]])
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ValueError, match="one lowercase token"):
        TagMap.load(path)
    path.write_text(json.dumps(dict(raw, format_version=2)), encoding="utf-8")
    with pytest.raises(ValueError, match="format_version"):
        TagMap.load(path)
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not JSON"):
        TagMap.load(path)


def test_save_and_load_round_trip(tmp_path, tag_map):
    path = tmp_path / "map.json"
    tag_map.save(path)
    again = TagMap.load(path)
    assert again.words == tag_map.words
    np.testing.assert_array_equal(again.class_words, tag_map.class_words)
    assert again.sha256 == tag_map.sha256


def test_tags_module_needs_neither_tensorflow_nor_qt():
    code = (
        "import sys; import model.tags; m = model.tags.TagMap.load(); "
        "bad = [n for n in ('tensorflow', 'keras', 'PySide6') if n in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
