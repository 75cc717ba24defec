"""Absence evidence: the person probe and the decoding rules that keep absent things out of captions."""

from __future__ import annotations

import numpy as np
import pytest

from training.probes import concept_labels, concept_words, main, person_probe, refit_bundle, train_probe


def test_concept_labels_need_two_references():
    captions = [["A man walks .", "A person walks .", "A dog ."], ["A man .", "A dog runs .", "A cat ."]]
    np.testing.assert_array_equal(concept_labels(captions, "person"), [1.0, 0.0])
    np.testing.assert_array_equal(concept_labels(captions, "person", 1), [1.0, 1.0])


def test_person_probe_counts_a_person_that_one_caption_names():
    """The shipped recipe labels a photo "person" when one of its captions names one: a feature that
    marks exactly those photos is what the probe learns, and the photos named once come out positive."""
    rng = np.random.default_rng(0)
    named = rng.integers(0, 3, 300)  # how many of each photo's captions name a person
    captions = [[*(["A man walks ."] * int(n)), *(["A dog runs ."] * (5 - int(n)))] for n in named]
    x = np.c_[(named > 0).astype(np.float32), rng.normal(0.0, 1.0, (300, 3))].astype(np.float32)
    kernel, bias = person_probe(x, captions)
    p = 1.0 / (1.0 + np.exp(-(x @ kernel + bias)))
    assert p[named == 1].min() > 0.5 and p[named == 0].max() < 0.5


def test_probe_separates_and_folds_the_standardisation():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (400, 6)).astype(np.float32)
    y = (x[:, 2] > 5.0).astype(np.float32)
    kernel, bias = train_probe(x, y)
    p = 1.0 / (1.0 + np.exp(-(x @ kernel + bias)))  # on raw features
    assert ((p > 0.5) == (y > 0)).mean() > 0.95


def test_concept_words_are_single_tokens():
    words = concept_words("person")
    assert {"man", "woman", "people", "boy"} <= set(words) and all(" " not in w for w in words)


def test_absence_rule_keeps_person_words_out(tmp_path):
    """A tag-aware bundle whose person probe says "no person" never captions with a person word."""
    import json

    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b", tags=True)
    bundle = load_bundle(bundle_dir)
    people = ["man", "people"]
    config = json.loads((bundle_dir / "config.json").read_text())
    free = Captioner(bundle, device="cpu", runtime="tf")
    photos = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(6)]
    # Push the tiny decoder towards person words, so that only the rule can keep them out.
    bias = free.model.decoder.logits_dense.bias.numpy() if hasattr(free.model, "decoder") else None
    if bias is None:
        pytest.skip("the TF runtime exposes no decoder here")
    for w in people:
        bias[bundle.vocab.id_of(w)] += 6.0
    free.model.decoder.logits_dense.bias.assign(bias)
    said = {w for r in free.caption(photos, beam_size=2) for w in r.words}
    assert said & set(people)

    config["decoding"]["absent"] = [{"probe": "person", "below": 0.5, "words": people}]
    (bundle_dir / "config.json").write_text(json.dumps(config))
    bundle = load_bundle(bundle_dir)
    bundle.probes["person"] = (np.zeros(32, np.float32), np.float32(-20.0))  # "no person anywhere"
    ruled = Captioner(bundle, device="cpu", runtime="tf")
    ruled.model.decoder.logits_dense.bias.assign(bias)
    for result in ruled.caption(photos, beam_size=2):
        assert not set(result.words) & set(people), result.words


def test_animal_rule_sums_the_tags_of_its_words(tmp_path):
    """A rule over several tag words ("bird", "duck", …) bans its words only when their summed tag
    probability is below the threshold: a confident "duck" keeps "bird" words allowed."""
    import json

    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b", tags=True)
    config = json.loads((bundle_dir / "config.json").read_text())
    config["decoding"]["absent"] = [{"tags": ["bird", "duck"], "below": 0.15, "words": ["bird", "duck"]}]
    (bundle_dir / "config.json").write_text(json.dumps(config))
    captioner = Captioner(load_bundle(bundle_dir), device="cpu", runtime="tf")
    tag_map, vocab = captioner.tagger.tag_map, captioner.bundle.vocab
    probs = np.zeros((3, len(tag_map.words)), np.float32)
    probs[1, tag_map.index("duck")] = 0.10  # 0.10 + 0.08: together above 0.15
    probs[1, tag_map.index("bird")] = 0.08
    probs[2, tag_map.index("bird")] = 0.10  # alone below
    ban = captioner._photo_bans(np.zeros((3, 4, 8), np.float32), probs)
    banned = [{w for w in ("bird", "duck") if ban[row, vocab.id_of(w)] < 0} for row in range(3)]
    assert banned == [{"bird", "duck"}, set(), {"bird", "duck"}]



def _bundle_with_person_rule(directory):
    import json

    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(directory, tags=True)
    config = json.loads((bundle_dir / "config.json").read_text())
    config["decoding"]["absent"] = [{"probe": "person", "below": 0.9, "words": ["man", "people"]}]
    config["metrics"] = {"flickr8k_dev_beam3": {"CIDEr": 0.5}}
    (bundle_dir / "config.json").write_text(json.dumps(config))
    return bundle_dir


def test_refit_trains_the_person_probe_and_leaves_the_decoder(tiny_flickr, tmp_path):
    from model.bundle import load_bundle
    from model.captioner import Captioner
    from training.train import ABSENCE

    bundle_dir = _bundle_with_person_rule(tmp_path / "b")
    before = {name: (bundle_dir / name).read_bytes() for name in ("decoder.weights.npz", "vocab.json")}
    classifier_before = load_bundle(bundle_dir).classifier

    record = refit_bundle(bundle_dir, tiny_flickr.root, cache=tmp_path / "cache")

    bundle = load_bundle(bundle_dir)  # the classifier file's new checksum is in the config
    kernel, bias = bundle.probes["person"]
    assert kernel.shape == (32,) and np.isfinite(kernel).all() and np.isfinite(bias)
    for got, want in zip(bundle.classifier, classifier_before):
        np.testing.assert_array_equal(got, want)
    assert all((bundle_dir / name).read_bytes() == data for name, data in before.items())
    assert bundle.config["decoding"]["absent"][0]["below"] == ABSENCE["person_probe_below"]
    assert bundle.config["training"]["probes"]["person"] == record and record["photos"] == 5
    assert bundle.config["metrics"] == {}  # the captions change: measured again, not carried over
    Captioner(bundle, device="cpu", runtime="tf").caption([np.zeros((40, 40, 3), np.uint8)], beam_size=2)


def test_refit_refuses_a_bundle_without_a_person_rule(tiny_flickr, tmp_path, capsys):
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b", tags=True)
    config_before = (bundle_dir / "config.json").read_bytes()
    assert main(["--bundle", str(bundle_dir), "--data", str(tiny_flickr.root), "--cache", str(tmp_path / "c")]) == 2
    assert "no person probe to train" in capsys.readouterr().err
    assert (bundle_dir / "config.json").read_bytes() == config_before
