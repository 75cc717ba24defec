"""Tests for training.metrics: the fast BLEU-4 and the COCO caption evaluation wrapper."""

from __future__ import annotations

import shutil
import warnings

import pytest
from pycocoevalcap.bleu.bleu import Bleu

from training import metrics
from training.metrics import METRIC_NAMES, bleu4_fast, ptb_tokenize, score_captions, simple_tokenize

REFERENCES = {
    "img1": ["A black dog runs on the grass .", "A dog is running through a field .",
             "The black dog runs outside .", "A dog running in the grass", "A dark dog is on a lawn ."],
    "img2": ["Two children play in the water .", "Kids splash in a pool .", "Two kids are swimming .",
             "Two young children playing in the water .", "Children in a swimming pool ."],
    "img3": ["A man in a red shirt sits on a bench .", "A man sits on a park bench .",
             "A man wearing red is sitting down .", "A man sitting outside on a bench .",
             "Someone in red sits on a wooden bench ."],
}
CANDIDATES = {
    "img1": "a black dog runs on the grass",
    "img2": "two children are playing in a pool",
    "img3": "a man sits on a bench",
}

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")


def _tokens(captions):
    return {key: [text.split() for text in texts] for key, texts in simple_tokenize(captions).items()}


def test_bleu4_fast_agrees_with_pycocoevalcap():
    refs = simple_tokenize(REFERENCES)
    cands = simple_tokenize({key: [text] for key, text in CANDIDATES.items()})
    expected = Bleu(4).compute_score(refs, cands, verbose=0)[0][3]
    got = bleu4_fast(
        [[ref.split() for ref in refs[key]] for key in refs], [cands[key][0].split() for key in refs]
    )
    assert expected > 0.3
    assert got == pytest.approx(expected, rel=1e-6)


def test_bleu4_fast_agrees_with_pycocoevalcap_when_the_brevity_penalty_applies():
    refs = {"a": ["a dog runs on the green grass today"], "b": ["two kids play in the blue water"]}
    cands = {"a": ["a dog runs on the"], "b": ["two kids play in"]}
    expected = Bleu(4).compute_score(refs, cands, verbose=0)[0][3]
    got = bleu4_fast([[r.split() for r in refs[k]] for k in refs], [cands[k][0].split() for k in refs])
    assert 0 < got < 1
    assert got == pytest.approx(expected, rel=1e-6)


def test_bleu4_fast_edge_cases():
    refs = [[["a", "dog", "runs", "on", "grass"]]]
    assert bleu4_fast(refs, [["a", "dog", "runs", "on", "grass"]]) == pytest.approx(1.0)
    assert bleu4_fast(refs, [["grass", "on", "runs", "dog", "a"]]) == 0.0  # no 4-gram in common
    assert bleu4_fast(refs, [[]]) == 0.0
    assert bleu4_fast([], []) == 0.0
    with pytest.raises(ValueError):
        bleu4_fast(refs, [])
    with pytest.raises(ValueError):
        bleu4_fast([[]], [["a"]])


def test_bleu4_fast_takes_vocabulary_ids():
    words = bleu4_fast([[["a", "dog", "runs", "on", "grass"], ["a", "dog", "is", "here"]]],
                       [["a", "dog", "runs", "here"]])
    ids = bleu4_fast([[[4, 5, 6, 7, 8], [4, 5, 9, 10]]], [[4, 5, 6, 10]])
    assert ids == words


def test_simple_tokenize_follows_ptb_conventions():
    out = simple_tokenize({"k": ["A man's tri-colored hat, (red) \"yes\" .", "Don't"]})
    assert out == {"k": ["a man 's tri-colored hat red yes", "do n't"]}


def test_score_captions_without_java_reports_all_metrics_but_meteor():
    scores = score_captions(REFERENCES, CANDIDATES, use_java=False)
    assert tuple(scores) == METRIC_NAMES
    assert scores["METEOR"] is None
    for name in METRIC_NAMES:
        if name != "METEOR":
            assert 0.0 < scores[name] < 10.0, name
    assert scores["BLEU-1"] >= scores["BLEU-2"] >= scores["BLEU-3"] >= scores["BLEU-4"]


def test_score_captions_of_a_reference_itself_is_perfect_bleu():
    refs = {"a": ["a dog runs on the grass"], "b": ["two kids play in the water"]}
    scores = score_captions(refs, {"a": refs["a"][0], "b": refs["b"][0]}, use_java=False)
    assert scores["BLEU-4"] == pytest.approx(1.0)
    assert scores["ROUGE-L"] == pytest.approx(1.0)


def test_score_captions_rejects_mismatched_keys_and_empty_input():
    with pytest.raises(ValueError, match="different keys"):
        score_captions(REFERENCES, {"img1": "a dog"}, use_java=False)
    with pytest.raises(ValueError):
        score_captions({}, {}, use_java=False)
    with pytest.raises(ValueError):
        score_captions({"a": []}, {"a": "a dog"}, use_java=False)


def test_score_captions_without_java_on_the_path_warns_and_reports_meteor_unavailable(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning) as record:
        scores = score_captions(REFERENCES, CANDIDATES)
    messages = " | ".join(str(warning.message) for warning in record)
    assert "PTB tokenizer unavailable" in messages and "METEOR unavailable" in messages
    assert scores["METEOR"] is None
    assert scores == score_captions(REFERENCES, CANDIDATES, use_java=False)


@pytest.fixture(scope="module")
def java_scores():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither the tokenizer nor METEOR may fall back
        return score_captions(REFERENCES, CANDIDATES)


@needs_java
def test_score_captions_with_java_computes_meteor(java_scores):
    assert tuple(java_scores) == METRIC_NAMES
    assert 0.1 < java_scores["METEOR"] < 1.0
    python = score_captions(REFERENCES, CANDIDATES, use_java=False)
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        # These captions tokenize the same way in Java and in Python.
        assert java_scores[name] == pytest.approx(python[name], rel=1e-6), name


@needs_java
def test_ptb_tokenize_lowercases_splits_clitics_and_drops_punctuation():
    out = ptb_tokenize({"k": ["A man's tri-colored hat, \"yes\" .", "", "Don't\nstop"], "j": ["Two DOGS !"]})
    assert out == {"k": ["a man 's tri-colored hat yes", "", "do n't stop"], "j": ["two dogs"]}


@needs_java
def test_a_failing_meteor_jar_is_reported_unavailable(monkeypatch):
    monkeypatch.setattr(metrics, "_METEOR_JAR", "no-such-meteor.jar")
    with pytest.warns(UserWarning, match="METEOR unavailable"):
        scores = score_captions(REFERENCES, CANDIDATES)
    assert scores["METEOR"] is None
    assert scores["BLEU-4"] > 0
