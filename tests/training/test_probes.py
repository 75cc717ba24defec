"""Absence evidence: the concept probes and the decoding rules that keep absent things out of captions."""

from __future__ import annotations

import numpy as np
import pytest

from training.probes import (PROBES, ProbeRecipe, concept_labels, concept_words, main, probe_rules, refit_bundle,
                             train_probe, train_probes)


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
    kernel, bias = train_probes(x, captions, {"person": PROBES["person"]})["person"]
    p = 1.0 / (1.0 + np.exp(-(x @ kernel + bias)))
    assert p[named == 1].min() > 0.5 and p[named == 0].max() < 0.5


def test_each_probe_learns_its_own_concept():
    """Photos by the water and photos on a street, each marked by a feature of its own: the water probe
    reads the first, the street probe the second."""
    rng = np.random.default_rng(1)
    place = rng.integers(0, 3, 400)  # 0: neither, 1: water, 2: street
    words = {0: "A dog runs on the grass .", 1: "A dog swims in the water .", 2: "A dog runs down the road ."}
    captions = [[words[int(k)]] * 5 for k in place]
    x = np.c_[place == 1, place == 2, rng.normal(0.0, 1.0, (400, 2))].astype(np.float32)
    recipes = {concept: ProbeRecipe(below=0.2) for concept in ("water", "street")}
    probes = train_probes(x, captions, recipes)
    for concept, marked in (("water", 1), ("street", 2)):
        kernel, bias = probes[concept]
        p = 1.0 / (1.0 + np.exp(-(x @ kernel + bias)))
        assert p[place == marked].min() > 0.5 and p[place != marked].max() < 0.5


def test_probe_rules_follow_the_recipes():
    rules = probe_rules()
    assert [rule["probe"] for rule in rules] == list(PROBES)
    for rule in rules:
        assert rule["below"] == PROBES[rule["probe"]].below and rule["words"] == concept_words(rule["probe"])
    assert rules[0]["probe"] == "person" and {"man", "women", "people"} <= set(rules[0]["words"])
    street = probe_rules({"street": ProbeRecipe(below=0.2)})
    assert street[0]["below"] == 0.2 and {"street", "road", "streets"} <= set(street[0]["words"])


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



def _bundle_with_probe_rules(directory):
    """A tag-aware tiny bundle whose decoding has a tag rule and an old person-probe rule."""
    import json

    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(directory, tags=True)
    config = json.loads((bundle_dir / "config.json").read_text())
    config["decoding"]["absent"] = [{"probe": "person", "below": 0.9, "words": ["man", "people"]},
                                    {"tags": ["dog"], "below": 0.15, "words": ["dog", "dogs"]}]
    config["metrics"] = {"flickr8k_dev_beam3": {"CIDEr": 0.5}}
    (bundle_dir / "config.json").write_text(json.dumps(config))
    return bundle_dir


def test_refit_trains_the_probes_and_leaves_the_decoder(tiny_flickr, tmp_path):
    from model.bundle import load_bundle
    from model.captioner import Captioner

    bundle_dir = _bundle_with_probe_rules(tmp_path / "b")
    before = {name: (bundle_dir / name).read_bytes() for name in ("decoder.weights.npz", "vocab.json")}
    classifier_before = load_bundle(bundle_dir).classifier

    record = refit_bundle(bundle_dir, tiny_flickr.root, cache=tmp_path / "cache")

    bundle = load_bundle(bundle_dir)  # the classifier file's new checksum is in the config
    assert set(bundle.probes) == set(PROBES)
    for kernel, bias in bundle.probes.values():
        assert kernel.shape == (32,) and np.isfinite(kernel).all() and np.isfinite(bias)
    for got, want in zip(bundle.classifier, classifier_before):
        np.testing.assert_array_equal(got, want)
    assert all((bundle_dir / name).read_bytes() == data for name, data in before.items())
    # the old probe rule is replaced by today's; the tag rule stays
    assert bundle.config["decoding"]["absent"] == [{"tags": ["dog"], "below": 0.15, "words": ["dog", "dogs"]},
                                                   *probe_rules()]
    assert bundle.config["training"]["probes"] == record and record["person"] == {
        "below": PROBES["person"].below, "min_references": 1, "l2": PROBES["person"].l2, "photos": 5}
    assert bundle.config["metrics"] == {}  # the captions change: measured again, not carried over
    Captioner(bundle, device="cpu", runtime="tf").caption([np.zeros((40, 40, 3), np.uint8)], beam_size=2)


def test_refit_stopped_before_its_config_leaves_the_bundle_loadable(tiny_flickr, tmp_path, monkeypatch):
    """The new classifier file is written beside the old one: a refit killed before its config is
    written leaves the bundle as it was, and the next refit clears the stray file."""
    import model.bundle
    from model.bundle import load_bundle

    bundle_dir = _bundle_with_probe_rules(tmp_path / "b")
    config_before = (bundle_dir / "config.json").read_bytes()
    probes_before = load_bundle(bundle_dir).probes

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(model.bundle, "write_config", killed)
        with pytest.raises(KeyboardInterrupt):
            refit_bundle(bundle_dir, tiny_flickr.root, cache=tmp_path / "cache")

    assert (bundle_dir / "config.json").read_bytes() == config_before
    bundle = load_bundle(bundle_dir)  # before the fix: "classifier.npz: checksum mismatch"
    assert set(bundle.probes) == set(probes_before)
    for name, (kernel, _bias) in probes_before.items():
        np.testing.assert_array_equal(bundle.probes[name][0], kernel)
    assert len(list(bundle_dir.glob("classifier*.npz"))) == 2  # the old file and the stray new one

    refit_bundle(bundle_dir, tiny_flickr.root, cache=tmp_path / "cache")
    bundle = load_bundle(bundle_dir)
    assert set(bundle.probes) == set(PROBES)
    assert [file.name for file in bundle_dir.glob("classifier*.npz")] == [bundle.config["tags"]["classifier"]["file"]]


def test_refit_drops_the_probes_the_recipes_no_longer_have(tiny_flickr, tmp_path):
    from model.bundle import load_bundle

    bundle_dir = _bundle_with_probe_rules(tmp_path / "b")
    refit_bundle(bundle_dir, tiny_flickr.root, cache=tmp_path / "cache")
    refit_bundle(bundle_dir, tiny_flickr.root, cache=tmp_path / "cache", recipes={"water": ProbeRecipe(below=0.3)})
    bundle = load_bundle(bundle_dir)
    assert set(bundle.probes) == {"water"}
    assert [rule.get("probe") for rule in bundle.config["decoding"]["absent"]] == [None, "water"]


def test_refit_refuses_a_bundle_without_a_probe_rule(tiny_flickr, tmp_path, capsys):
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b", tags=True)
    config_before = (bundle_dir / "config.json").read_bytes()
    assert main(["--bundle", str(bundle_dir), "--data", str(tiny_flickr.root), "--cache", str(tmp_path / "c")]) == 2
    assert "no probes to train" in capsys.readouterr().err
    assert (bundle_dir / "config.json").read_bytes() == config_before


def test_a_probe_with_nothing_to_learn_from_is_refused():
    """Captions that never name a person used to give a probe near 0 for every photo, exit 0, and a
    rule that banned the person words everywhere."""
    from training.probes import train_probes

    pooled = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="no training photo's captions name 'person'"):
        train_probes(pooled, [["a dog runs on the grass"] * 5] * 6)
