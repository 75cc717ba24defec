"""Tags from the encoder's own classifier, keywords with class activation maps, and tag-aware bundles."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.model.conftest import skimage_photo


@pytest.fixture(scope="module")
def tag_bundle(tmp_path_factory):
    from model.testing import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-tags", tags=True, keyword_threshold=0.0)


def _lite2_tagger():
    from model.encoders import classifier_head
    from model.tags import TagMap, Tagger

    return Tagger(*classifier_head("efficientnet_lite2"), TagMap.load(), keyword_threshold=0.3)


@pytest.mark.slow
@pytest.mark.parametrize(("photo", "word"), [("chelsea", "cat"), ("coffee", "coffee")])
def test_lite2_tags_from_the_pooled_grid_name_the_photo(lite2_classifier, photo, word):
    """The tagger applies the classifier to the pooled grid: the same probabilities as the encoder's
    own ImageNet head, with no second pass; chelsea is a cat, coffee is coffee."""
    from model.images import resize_array

    pixels = resize_array(skimage_photo(photo), 260)[None].astype(np.float32)
    grid, logits = (np.asarray(x) for x in lite2_classifier(pixels, training=False))
    grids = grid.reshape(1, -1, grid.shape[-1])
    tagger = _lite2_tagger()
    probs = tagger.class_probabilities(grids)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    tags, keywords = tagger.tags(grids[0], probs[0], (9, 9))
    assert tags[0].word == word and keywords[0] == word
    cam = tags[0].cam
    assert cam.shape == (9, 9) and cam.sum() == pytest.approx(1.0, abs=1e-5) and cam.max() > 2.0 / 81


def test_word_probabilities_sum_their_classes():
    from model.tags import TagMap, Tagger

    tagger = Tagger(np.zeros((4, 1000), np.float32), np.zeros(1000, np.float32), TagMap.load())
    probs = np.full((1, 1000), 1e-3, np.float32)
    words = tagger.word_probabilities(probs)
    dog = TagMap.load().words.index("dog")
    assert words[0, dog] == pytest.approx(1e-3 * len(TagMap.load().classes_of("dog")))


def test_cam_is_a_distribution_that_follows_the_class_weights():
    from model.tags import TagMap, Tagger

    kernel = np.zeros((3, 1000), np.float32)
    kernel[0, 285] = 1.0  # "cat" reads channel 0
    tagger = Tagger(kernel, np.zeros(1000, np.float32), TagMap.load())
    grid = np.zeros((4, 3), np.float32)
    grid[2, 0] = 5.0  # channel 0 fires at location 2 only
    probs = np.zeros(1000, np.float32)
    probs[285] = 1.0
    cam = tagger.cam(grid, probs, (285,), (2, 2))
    np.testing.assert_allclose(cam.ravel(), [0, 0, 1, 0])


def test_tag_aware_bundle_round_trip_and_captions_carry_tags(tag_bundle):
    from model.bundle import load_bundle
    from model.captioner import Captioner

    bundle = load_bundle(tag_bundle)
    assert bundle.classifier is not None and bundle.config["decoder"]["num_tags"] == len(bundle.config["tags"]["words"])
    captioner = Captioner(bundle, device="cpu")
    photos = [skimage_photo("chelsea"), skimage_photo("coffee")]
    results = captioner.caption(photos, beam_size=2)
    for result in results:
        assert result.ok and result.words and result.tagged and result.says_keywords
        assert result.tags and list(result.keywords) == [t.word for t in result.tags]  # threshold 0
        assert [t.probability for t in result.tags] == sorted((t.probability for t in result.tags), reverse=True)
        for tag in result.tags:
            assert tag.cam.shape == captioner.grid and tag.cam.sum() == pytest.approx(1.0, abs=1e-5)
            assert result.tag(tag.word) is tag


def test_tags_change_the_caption_of_a_tag_aware_bundle(tag_bundle):
    """The search feeds the photo's tag vector to the decoder: other tags, other word scores."""
    from model.bundle import load_bundle
    from model.decoding import SearchDecoder

    bundle = load_bundle(tag_bundle)
    decoder = bundle.build_decoder()
    search = SearchDecoder(decoder, start_id=bundle.vocab.start_id, end_id=bundle.vocab.end_id, max_length=6)
    features = np.random.default_rng(0).uniform(0, 1, (1, 16, 32)).astype(np.float32)
    a = np.zeros((1, decoder.num_tags), np.float32)
    b = a.copy()
    b[0, 3] = 1.0
    da, db = search.greedy(features, a), search.greedy(features, b)
    assert not np.allclose(da.scores, db.scores)


def test_bundle_without_tags_still_loads_and_captions(tiny_bundle, tiny_captioner):
    config = json.loads((tiny_bundle / "config.json").read_text())
    assert "tags" not in config and "num_tags" not in config["decoder"]
    result = tiny_captioner.caption([skimage_photo("astronaut")])[0]
    assert result.ok and result.words



def test_results_say_whether_the_model_tags_at_all(tiny_captioner, monkeypatch):
    """With a tagger, no tags is the model's word (the photo has no keywords); without one, none."""
    photo = skimage_photo("astronaut")
    assert tiny_captioner.tagger is not None and tiny_captioner.caption([photo])[0].tagged is True
    monkeypatch.setattr(tiny_captioner, "tagger", None)
    for result in (tiny_captioner.caption([photo])[0], tiny_captioner.attend([photo], ["a man"])[0]):
        assert result.tags == () and result.tagged is False and not result.says_keywords


def test_damaged_classifier_file_is_refused(tag_bundle, tmp_path):
    from model.bundle import BundleError, load_bundle

    copy = tmp_path / "b"
    shutil.copytree(tag_bundle, copy)
    (copy / "classifier.npz").write_bytes(b"not an npz")
    with pytest.raises(BundleError, match="classifier.npz: checksum mismatch"):
        load_bundle(copy)
    (copy / "classifier.npz").unlink()
    with pytest.raises(BundleError, match="missing classifier file"):
        load_bundle(copy)
