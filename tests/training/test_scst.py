"""Self-critical training on the tiny data set: a two-step run whose loss is finite, that resumes
from its checkpoint, keeps the best dev epoch and exports; the baseline and the sampled decode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from training.scst import SCSTConfig, mean_of_others, run_scst
from training.train import TrainConfig
from training.train import main as train_main


def _scst_args(tiny_flickr, ce_run, out: Path, epochs: int) -> list[str]:
    return ["--data", str(tiny_flickr.root), "--out", str(out), "--scst", "--init", ce_run.out,
            "--epochs", str(epochs), "--batch-size", "3", "--samples", "3", "--eval-beam", "1",
            "--learning-rate", "1e-2", "--no-java"]


def test_two_step_scst_run_has_a_finite_loss_resumes_and_exports(tiny_flickr, ce_run, tmp_path):
    out = tmp_path / "scst"
    # 5 training photos in batches of 3: two steps per epoch.
    assert train_main(_scst_args(tiny_flickr, ce_run, out, epochs=1)) == 0
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]  # epoch 0: the cross-entropy model before SCST
    first = history[1]["train"]
    assert all(math.isfinite(first[key]) for key in ("loss", "reward", "cider", "grad_norm"))
    assert first["seconds_per_1000_photos"] > 0
    assert set(history[1]["dev"]) >= {"BLEU-4", "CIDEr", "METEOR"}
    assert set(history[1]["dev_guards"]) == {"captions", "ends_in_function_word", "repeated_bigram",
                                             "adjacent_repeat", "mean_length", "distinct_captions",
                                             "distinct_words"}
    assert (out / "best.weights.npz").is_file() and (out / "checkpoints" / "checkpoint").is_file()
    with np.load(Path(ce_run.out) / "best.weights.npz") as before:
        initial = {k: before[k] for k in before.files}
    with np.load(out / "best.weights.npz") as kept:
        assert set(kept.files) == set(initial)

    # Asking for a second epoch resumes from the checkpoint: epoch 1 is not redone.
    assert train_main(_scst_args(tiny_flickr, ce_run, out, epochs=2)) == 0
    resumed = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in resumed] == [0, 1, 2]
    assert resumed[1] == history[1]
    assert math.isfinite(resumed[2]["train"]["loss"])
    # A resume with another --init is refused: it kept the first init silently and wrote
    # the other into scst_config.json.
    other = [*_scst_args(tiny_flickr, ce_run, out, epochs=3)]
    other[other.index("--init") + 1] = str(tmp_path / "no-such-run")
    saved = (out / "scst_config.json").read_text()
    assert train_main(other) == 2
    assert (out / "scst_config.json").read_text() == saved
    # Without --init, or with the same one spelled otherwise, it resumes (here: nothing left to do).
    same = _scst_args(tiny_flickr, ce_run, out, epochs=2)
    without = same[:same.index("--init")] + same[same.index("--init") + 2:]
    assert train_main(without) == 0 and json.loads((out / "scst_config.json").read_text())["init"] == ce_run.out
    same[same.index("--init") + 1] = str(Path(ce_run.out).resolve()) + "/"
    assert train_main(same + ["--eval-beam", "2"]) == 0
    # The kept weights are those of the best dev CIDEr so far (epoch 0 counts: SCST must beat it).
    best_cider = max(h["dev"]["CIDEr"] for h in resumed)
    assert [h["epoch"] for h in resumed[1:] if h["best"]] == [
        h["epoch"] for h in resumed[1:] if h["dev"]["CIDEr"] > max(p["dev"]["CIDEr"] for p in resumed[:h["epoch"]])]
    assert best_cider >= resumed[0]["dev"]["CIDEr"]

    # The run folder exports its best epoch as a bundle, with the SCST settings and history on record.
    bundle = tmp_path / "bundle"
    assert train_main(["--data", str(tiny_flickr.root), "--out", str(out), "--scst", "--export", str(bundle),
                       "--name", "tiny-scst"]) == 0
    config = json.loads((bundle / "config.json").read_text())
    assert config["training"]["scst"]["settings"]["samples"] == 3
    from model.bundle import load_bundle

    assert set(load_bundle(bundle).weights) == set(initial)

    # Every epoch's weights are kept; --export-weights exports a chosen one instead of the best.
    assert sorted(p.name for p in out.glob("epoch*.weights.npz")) == ["epoch01.weights.npz", "epoch02.weights.npz"]
    chosen = tmp_path / "chosen"
    assert train_main(["--data", str(tiny_flickr.root), "--out", str(out), "--scst", "--export", str(chosen),
                       "--export-weights", str(out / "epoch02.weights.npz"),
                       "--export-decoding", '{"length_penalty": 0.6, "prefer_tags_above": null}']) == 0
    with np.load(out / "epoch02.weights.npz") as epoch2:
        for key, value in load_bundle(chosen).weights.items():
            np.testing.assert_allclose(value, epoch2[key].astype(np.float16), rtol=0, atol=0)
    # --export-decoding changes the bundle's decoding settings and nothing else of them.
    default, changed = (load_bundle(b).config["decoding"] for b in (bundle, chosen))
    assert changed["length_penalty"] == 0.6 and "prefer_tags_above" not in changed
    assert {k: v for k, v in default.items() if k not in ("length_penalty", "prefer_tags_above")} == \
        {k: v for k, v in changed.items() if k != "length_penalty"}


def test_text_every_interleaves_cross_entropy_on_the_init_runs_text_sentences(tiny_flickr, ce_run, tmp_path):
    """With --text-every, the run keeps learning the init run's text-only sentences between SCST steps."""
    import shutil

    init = tmp_path / "ce-text"
    shutil.copytree(ce_run.out, init)
    text = tmp_path / "text.token.txt"
    text.write_text("".join(f"{i:012d}.jpg#0\tA dog runs on the grass .\n" for i in range(6)), encoding="utf-8")
    settings = json.loads((init / "train_config.json").read_text())
    (init / "train_config.json").write_text(json.dumps(settings | {"text_captions": str(text)}))

    runs = {}
    for every in (0, 1):
        args = _scst_args(tiny_flickr, ce_run, tmp_path / f"scst-{every}", epochs=1)
        args[args.index("--init") + 1] = str(init)
        assert train_main([*args, "--text-every", str(every)]) == 0
        runs[every] = json.loads((tmp_path / f"scst-{every}" / "history.json").read_text())[1]["train"]
    assert "text_loss" not in runs[0]
    assert math.isfinite(runs[1]["text_loss"]) and runs[1]["text_loss"] > 0


TAG_WORDS = ("dog", "cat", "ball")


def _tiny_scst(tmp_path, baseline: str, samples: int = 4, temperature: float = 1.0, candidates: str = "sample",
               freeze: tuple[str, ...] = ()):
    """An SCSTTrainer over a random-weight tiny tag-aware decoder (copy path on three tag words) and
    four photos with made-up references."""
    from model.testing import TINY_WORDS
    from model.vocab import Vocabulary
    from training.cider import CiderD
    from training.scst import SCSTTrainer
    from training.train import Trainer

    vocab = Vocabulary.build([list(TINY_WORDS)], min_count=1)
    config = TrainConfig(data="", out=str(tmp_path / "run"), encoder="tiny_test", embedding_dim=8, feature_dim=8,
                         units=16, dropout=0.0, max_words=10, learning_rate=1e-2, tags=True, copy=True)
    trainer = Trainer(config, vocab, channels=32, tag_words=TAG_WORDS)
    references = [["a dog runs on the grass".split(), "a black dog on the beach".split()],
                  ["two people sit near the water".split()],
                  ["a man in a red shirt".split(), "a man on the street".split()],
                  ["a white cat".split(), "a cat sits in the grass".split()]]
    cider = CiderD(references)
    lengths = np.asarray([np.mean([len(r) for r in refs]) for refs in references])
    scst_config = SCSTConfig(data="", out=config.out, samples=samples, baseline=baseline, temperature=temperature,
                              candidates=candidates, freeze=freeze)
    return SCSTTrainer(trainer, vocab, cider, lengths, scst_config), vocab


def _photos(seed: int, count: int = 4):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(count, 16, 32)).astype(np.float32),
            rng.dirichlet(np.ones(len(TAG_WORDS)), size=count).astype(np.float32))


@pytest.mark.parametrize("baseline, candidates", [("mean", "sample"), ("greedy", "sample"), ("mean", "beam")])
def test_a_step_has_a_finite_loss_and_moves_the_weights(tmp_path, baseline, candidates):
    scst, _ = _tiny_scst(tmp_path, baseline, candidates=candidates)
    features, tags = _photos(0)
    before = [v.numpy().copy() for v in scst.decoder.trainable_variables]
    figures = scst.train_step(np.arange(4), features.astype(np.float16), tags)
    assert all(math.isfinite(value) for value in figures.values())
    after = [v.numpy() for v in scst.decoder.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_frozen_parameters_keep_their_values_through_scst_and_text_steps(tmp_path):
    """``freeze`` keeps the tag path at the init weights while the rest trains; a name matching no
    parameter is refused."""
    scst, vocab = _tiny_scst(tmp_path, "mean", freeze=("copy_", "tag_embedding"))
    names = [v.path.split("/", 1)[1] for v in scst.decoder.trainable_variables]
    frozen = {n for n in names if n.startswith(("copy_", "tag_embedding"))}
    assert frozen >= {"copy_prior", "copy_gate/kernel", "copy_scores/kernel", "tag_embedding/kernel"}
    before = {n: v.numpy().copy() for n, v in zip(names, scst.decoder.trainable_variables)}
    features, tags = _photos(0)
    scst.train_step(np.arange(4), features, tags)
    tokens = np.asarray([vocab.encode("a dog runs on the grass".split())] * 4, np.int32)
    assert math.isfinite(float(scst.text_step(tags, tokens)))
    after = {n: v.numpy() for n, v in zip(names, scst.decoder.trainable_variables)}
    assert all(np.array_equal(before[n], after[n]) for n in frozen)
    assert any(not np.array_equal(before[n], after[n]) for n in set(names) - frozen)

    with pytest.raises(ValueError, match="--freeze copy_gates: no decoder parameter"):
        _tiny_scst(tmp_path / "bad", "mean", freeze=("copy_gates",))


@pytest.mark.parametrize(("pattern", "named"), [
    ("copy_", {"copy_gate/kernel", "copy_gate/bias", "copy_prior"}),
    ("embedding", {"embedding/embeddings"}),  # a substring match also froze tag_embedding/kernel
    ("attention/score_dense", {"attention/score_dense/kernel", "attention/score_dense/bias"}),
    ("score_dense", {"attention/score_dense/kernel", "attention/score_dense/bias"}),
    ("bias", {"copy_gate/bias", "attention/score_dense/bias"}),
])
def test_a_freeze_name_names_whole_parts_of_a_parameter_name(pattern, named):
    from training.scst import names_parameter

    names = ["copy_gate/kernel", "copy_gate/bias", "copy_prior", "embedding/embeddings", "tag_embedding/kernel",
             "attention/score_dense/kernel", "attention/score_dense/bias", "gru/recurrent_kernel"]
    assert {name for name in names if names_parameter(pattern, name)} == named


def test_sampled_captions_are_well_formed_and_greedy_matches_the_search(tmp_path):
    import tensorflow as tf

    from model.decoding import SearchDecoder

    scst, vocab = _tiny_scst(tmp_path, "mean", samples=3)
    features, tags = _photos(1)
    tokens, lengths, finished = (x.numpy() for x in scst._sample(tf.constant(features), tf.constant(tags)))
    assert tokens.shape == (12, 10)
    for row, n, done in zip(tokens, lengths, finished):
        assert vocab.end_id not in row[:n] and not {vocab.pad_id, vocab.start_id, vocab.unk_id} & set(row[:n])
        if done:
            assert row[n] == vocab.end_id and (row[n + 1:] == vocab.pad_id).all()
        else:
            assert n == 10
    greedy_tokens, greedy_lengths, _ = (x.numpy() for x in scst._greedy(tf.constant(features), tf.constant(tags)))
    search = SearchDecoder(scst.decoder, start_id=vocab.start_id, end_id=vocab.end_id, max_length=10,
                           banned_ids=(vocab.pad_id, vocab.start_id, vocab.unk_id)).greedy(features, tags)
    np.testing.assert_array_equal(greedy_lengths, search.lengths[:, 0])
    for row, n, expected in zip(greedy_tokens, greedy_lengths, search.tokens[:, 0]):
        np.testing.assert_array_equal(row[:n], expected[:n])


def test_a_low_temperature_samples_the_greedy_caption_and_temperature_one_varies(tmp_path):
    import tensorflow as tf

    features, tags = _photos(3)
    cold, _ = _tiny_scst(tmp_path / "cold", "mean", samples=5, temperature=1e-3)
    greedy = cold._greedy(tf.constant(features), tf.constant(tags))[0].numpy()
    sampled = cold._sample(tf.constant(features), tf.constant(tags))[0].numpy()
    np.testing.assert_array_equal(sampled, np.repeat(greedy, 5, axis=0))
    # The same weights at temperature 1: the five samples of a photo are not all its greedy caption.
    warm, _ = _tiny_scst(tmp_path / "warm", "mean", samples=5)
    for a, b in zip(warm.decoder.weights, cold.decoder.weights):
        a.assign(b)
    varied = warm._sample(tf.constant(features), tf.constant(tags))[0].numpy()
    assert not np.array_equal(varied, np.repeat(greedy, 5, axis=0))


def test_beam_candidates_are_the_searchs_best_captions_laid_out_like_samples(tmp_path):
    from model.decoding import SearchDecoder

    scst, vocab = _tiny_scst(tmp_path, "mean", samples=3, candidates="beam")
    features, tags = _photos(4)
    tokens, lengths, finished = scst._beam_candidates(features, tags)
    assert tokens.shape == (12, 10) and lengths.shape == finished.shape == (12,)
    search = SearchDecoder(scst.decoder, start_id=vocab.start_id, end_id=vocab.end_id, max_length=10,
                           banned_ids=(vocab.pad_id, vocab.start_id, vocab.unk_id)).beam(features, 3, tags)
    np.testing.assert_array_equal(lengths, search.lengths.reshape(-1))
    for row, n, done, expected in zip(tokens, lengths, finished, search.tokens.reshape(12, -1)):
        np.testing.assert_array_equal(row[:n], expected[:n])
        assert vocab.end_id not in row[:n]
        if done:
            assert row[n] == vocab.end_id and (row[n + 1:] == vocab.pad_id).all()


def test_guarded_candidates_obey_the_bundles_absence_rules(tmp_path):
    """Under the export's guards a photo whose dog tag is weak gets no "dog" in any candidate, though
    the decoder (pushed towards "dog") says it among every photo's unguarded candidates; a photo with a strong dog tag
    keeps it."""
    from training.scst import GuardedSearch

    scst, vocab = _tiny_scst(tmp_path, "mean", samples=3, candidates="beam")
    dog = vocab.id_of("dog")
    bias = scst.decoder.logits_dense.bias
    bias.assign(bias.numpy() + 8.0 * (np.arange(len(vocab)) == dog))
    guarded_scst, _ = _tiny_scst(tmp_path / "guarded", "mean", samples=3, candidates="guarded")
    for a, b in zip(guarded_scst.decoder.weights, scst.decoder.weights):
        a.assign(b)
    features, _ = _photos(5)
    tags = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.05, 0.9], [0.6, 0.2, 0.2]], np.float32)
    plain, lengths, _ = scst._beam_candidates(features, tags)
    for photo in range(4):
        assert any(dog in plain[r, :lengths[r]] for r in range(photo * 3, photo * 3 + 3))

    class Tags:  # the tag map's one method the rules read
        index = staticmethod(TAG_WORDS.index)

    decoding = {"max_length": 10, "no_repeat_ngram": 2,
                "absent": [{"tags": ["dog"], "below": 0.5, "words": ["dog"]}]}
    scst = guarded_scst
    with pytest.raises(RuntimeError, match="GuardedSearch"):
        scst._beam_candidates(features, tags)
    scst.guarded = GuardedSearch(scst.decoder, vocab, decoding, probes={}, tag_map=Tags())
    guarded, lengths, finished = scst._beam_candidates(features, tags)
    assert guarded.shape == (12, 10)
    for photo in range(4):
        rows = range(photo * 3, photo * 3 + 3)
        named = [dog in guarded[r, :lengths[r]] for r in rows]
        assert not any(named) if tags[photo, 0] < 0.5 else any(named)
    for row, n, done in zip(guarded, lengths, finished):
        if done:
            assert row[n] == vocab.end_id and (row[n + 1:] == vocab.pad_id).all()
    # A step scores the guarded candidates: never a sample.
    scst._sample = None
    figures = scst.train_step(np.arange(4), features, tags)
    assert all(math.isfinite(value) for value in figures.values())


def test_teacher_forced_log_probs_equal_the_decoders_on_repeated_photos(tmp_path):
    import tensorflow as tf

    scst, vocab = _tiny_scst(tmp_path, "mean", samples=3)
    features, tags = _photos(2, count=2)
    tokens = scst._sample(tf.constant(features), tf.constant(tags))[0].numpy()
    inputs = np.concatenate([np.full((6, 1), vocab.start_id, np.int32), tokens[:, :-1]], axis=1)
    ours = scst.sequence_log_probs(tf.constant(features), tf.constant(tags), tf.constant(inputs)).numpy()
    log_probs, _ = scst.decoder((np.repeat(features, 3, 0), inputs, np.repeat(tags, 3, 0)))
    expected = tf.nn.log_softmax(log_probs + scst._ban).numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_a_new_run_without_init_is_refused(tiny_flickr, tmp_path):
    with pytest.raises(ValueError, match="--init"):
        run_scst(SCSTConfig(data=str(tiny_flickr.root), out=str(tmp_path / "scst")))


def test_a_run_starts_from_a_model_bundle_with_its_weights_and_architecture(tiny_flickr, ce_run, tmp_path):
    """``--init BUNDLE``: fine-tuning a shipped model. The run takes the bundle's vocabulary, its
    recorded training settings with the decoder's architecture, and its (float16) weights."""
    from model.bundle import load_bundle

    bundle = tmp_path / "bundle"
    assert train_main(["--data", str(tiny_flickr.root), "--out", ce_run.out, "--export", str(bundle)]) == 0
    config = json.loads((bundle / "config.json").read_text())
    config["training"]["hyperparameters"]["feature_dim"] = 99  # the decoder's own 16 wins
    (bundle / "config.json").write_text(json.dumps(config))

    out = tmp_path / "scst"
    args = _scst_args(tiny_flickr, ce_run, out, epochs=1)
    args[args.index("--init") + 1] = str(bundle)
    assert train_main(args) == 0
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1] and math.isfinite(history[1]["train"]["loss"])
    assert (out / "vocab.json").read_text() == (bundle / "vocab.json").read_text()
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["feature_dim"] == 16 and settings["out"] == str(out) and settings["tags"] is True
    with np.load(out / "init.weights.npz") as start:
        weights = load_bundle(bundle).weights
        assert set(start.files) == set(weights)
        for key, value in weights.items():
            assert start[key].dtype == np.float32
            np.testing.assert_array_equal(start[key], value.astype(np.float32))


def test_an_init_that_is_neither_a_run_nor_a_bundle_is_named(tiny_flickr, tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a finished training run"):
        run_scst(SCSTConfig(data=str(tiny_flickr.root), out=str(tmp_path / "scst"), init=str(tmp_path / "photos")))


def test_mean_of_other_samples_baseline():
    reward = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    np.testing.assert_allclose(mean_of_others(reward), [[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]])
    # Advantages of one photo sum to zero times k/(k-1): the baseline adds no bias to the gradient.
    advantages = reward - mean_of_others(reward)
    np.testing.assert_allclose(advantages.sum(axis=1), (reward - reward.mean(1, keepdims=True)).sum(1) * 1.5)


def test_the_rewards_concept_terms_price_hallucinations_and_pay_for_present_concepts():
    from model.vocab import Vocabulary
    from training.cider import CiderD
    from training.scst import Reward

    references = [[r.split() for r in ["a dog runs on the grass"] * 3 + ["a dog on grass", "a brown dog runs"]],
                  [r.split() for r in ["a man rides a horse"] * 2 + ["a person on a horse"] * 3]]
    vocab = Vocabulary(sorted({w for refs in references for r in refs for w in r} | {"cat", "water"}))
    captions = ["a dog runs on the grass", "a cat runs in the water", "a man rides a dog"]
    photos = np.asarray([0, 0, 1])
    tokens = np.full((3, 10), vocab.pad_id, np.int64)
    for row, caption in enumerate(captions):
        ids = vocab.encode(caption.split())[1:]  # the words and <end>, as candidate_rows lays them out
        tokens[row, :len(ids)] = ids
    lengths = np.asarray([len(c.split()) for c in captions])
    finished = np.ones(3, bool)
    cider = CiderD(references)
    lengths_ref = np.asarray([4.6, 4.6])
    plain = Reward(vocab, cider, lengths_ref, SCSTConfig(data="", out=""))
    priced = Reward(vocab, cider, lengths_ref,
                    SCSTConfig(data="", out="", hallucination_penalty=0.5, concept_bonus=0.2), references)
    base, base_cider, _ = plain(photos, tokens, lengths, finished)
    reward, reward_cider, parts = priced(photos, tokens, lengths, finished)
    np.testing.assert_allclose(reward_cider, base_cider)
    # caption 2 names cat and water (no reference does) and neither dog nor grass; caption 3 a dog.
    assert parts["hallucinated"].tolist() == [0, 2, 1]
    np.testing.assert_allclose(parts["concept_recall"], [1.0, 0.0, 0.5])  # present: {dog, grass}, {person, horse}
    np.testing.assert_allclose(reward - base, [0.2, -1.0, -0.5 + 0.1])
    with pytest.raises(ValueError, match="training references"):
        Reward(vocab, cider, lengths_ref, SCSTConfig(data="", out="", hallucination_penalty=0.5))
    # The unsupported-word term: "cat", "water" and "in" (unpriced) / "dog" are in no reference of the photo.
    words = Reward(vocab, cider, lengths_ref, SCSTConfig(data="", out="", unsupported_penalty=0.1), references)
    reward, _, parts = words(photos, tokens, lengths, finished)
    assert parts["unsupported"].tolist() == [0, 2, 1]
    np.testing.assert_allclose(reward - base, [0.0, -0.2, -0.1])


def test_the_rewards_tag_bonus_pays_for_naming_the_classifiers_confident_tags():
    from model.vocab import Vocabulary
    from training.cider import CiderD
    from training.scst import Reward, concept_figures

    references = [[r.split() for r in ["a man sits on a sofa"] * 5]]
    vocab = Vocabulary(sorted({w for refs in references for r in refs for w in r} | {"cat", "cats"}))
    captions = ["a man sits on a sofa", "a cat sits on a sofa", "two cats on a sofa"]
    tokens = np.full((3, 10), vocab.pad_id, np.int64)
    for row, caption in enumerate(captions):
        ids = vocab.encode(caption.split())[1:]
        tokens[row, :len(ids)] = ids
    lengths = np.asarray([len(c.split()) for c in captions])
    photos, finished = np.zeros(3, np.int64), np.ones(3, bool)
    cider, lengths_ref = CiderD(references), np.asarray([6.0])
    photo_tags = np.asarray([[0.8, 0.1]])  # tags: cat (confident), sofa
    plain = Reward(vocab, cider, lengths_ref, SCSTConfig(data="", out=""))
    base, base_cider, _ = plain(photos, tokens, lengths, finished)
    named = Reward(vocab, cider, lengths_ref, SCSTConfig(data="", out="", tag_bonus=0.3), photo_tags=photo_tags,
                   tag_words=["cat", "sofa"])
    reward, reward_cider, parts = named(photos, tokens, lengths, finished)
    np.testing.assert_allclose(reward_cider, base_cider)  # counted against the classifier, not the references
    np.testing.assert_allclose(parts["tags_named"], [0.0, 1.0, 1.0])
    np.testing.assert_allclose(reward - base, [0.0, 0.3, 0.3])
    assert concept_figures(parts)["tags_named"] == pytest.approx(2 / 3)
    # A higher threshold leaves the cat unconfident: no bonus.
    strict = Reward(vocab, cider, lengths_ref, SCSTConfig(data="", out="", tag_bonus=0.3, tag_bonus_above=0.9),
                    photo_tags=photo_tags, tag_words=["cat", "sofa"])
    np.testing.assert_allclose(strict(photos, tokens, lengths, finished)[0], base)
    with pytest.raises(ValueError, match="tag-aware"):
        Reward(vocab, cider, lengths_ref, SCSTConfig(data="", out="", tag_bonus=0.3))


def test_the_module_runs_as_the_scst_command():
    """``python -m training.scst`` printed nothing and did nothing: the module had no entry point."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "training.scst", "--help"], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and "--init" in done.stdout and "--freeze" in done.stdout
