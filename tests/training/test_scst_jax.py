"""Self-critical training on JAX (the GPU machine's trainer): a two-step guarded run on the tiny data
set has a finite loss, moves the weights, scores dev and a watched folder, and resumes from its last
epoch. Keras on JAX runs in its own process; JAX is no dependency of the project, so these skip
where it is absent."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.vocab import Vocabulary

ROOT = Path(__file__).resolve().parents[2]


def _run(tiny_flickr, ce_run, out: Path, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    args = ["--data", str(tiny_flickr.root), "--out", str(out), "--init", ce_run.out, "--epochs", str(epochs),
            "--batch-size", "2", "--samples", "3", "--eval-beam", "2", "--learning-rate", "1e-2",
            "--scst-candidates", "guarded", "--watch", str(tiny_flickr.root / "images"),
            str(tiny_flickr.root / "Flickr8k.token.txt"), *extra]
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "training.scst_jax", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def test_guarded_jax_scst_trains_scores_and_resumes(tiny_flickr, ce_run, tmp_path):
    pytest.importorskip("jax")
    # The random decoder's beam runs every caption to the length limit: all candidates score alike
    # and no advantage is left. A likelier <end> gives them different lengths, so different rewards.
    weights = Path(ce_run.out) / "best.weights.npz"
    with np.load(weights) as stored:
        arrays = {k: stored[k] for k in stored.files}
    end_id = Vocabulary.load(Path(ce_run.out) / "vocab.json").end_id
    arrays["logits/bias"] = arrays["logits/bias"].copy()
    arrays["logits/bias"][end_id] += 2.0
    np.savez(weights, **arrays)
    text = tmp_path / "text.token.txt"  # text-only sentences for the run's cross-entropy steps
    text.write_text("".join(f"{i:012d}.jpg#0\tA dog runs on the grass .\n" for i in range(8)), encoding="utf-8")
    settings = Path(ce_run.out) / "train_config.json"
    settings.write_text(json.dumps(json.loads(settings.read_text()) | {"text_captions": str(text)}))
    out = tmp_path / "scst"
    _run(tiny_flickr, ce_run, out, 1, "--agreement-penalty", "0.5",  # 5 training photos in pairs: two steps
         "--hallucination-penalty", "0.5", "--concept-bonus", "0.1", "--unsupported-penalty", "0.1")
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]  # epoch 0: the cross-entropy model before SCST
    train = history[1]["train"]
    assert all(math.isfinite(train[k]) for k in ("loss", "reward", "cider", "grad_norm")) and train["grad_norm"] > 0
    assert 0.0 <= train["agreement"] <= 1.0  # the share of candidates priced for "a group of bus"
    assert 0.0 <= train["hallucinating"] <= 1.0 and 0.0 <= train["concept_recall"] <= 1.0  # the concept terms
    assert train["unsupported_words"] >= 0.0
    assert json.loads((out / "scst_config.json").read_text())["agreement_penalty"] == 0.5
    assert json.loads((out / "scst_config.json").read_text())["hallucination_penalty"] == 0.5
    for record in history:
        assert 0.0 <= record["dev_bleu4"] <= 1.0 and record["dev_cider_d"] >= 0.0
        assert record["dev_guards"]["captions"] > 0 and "quantified_singular" in record["dev_guards"]
        assert "dev_concept_f1" in record and "dev_hallucination" in record  # from the same dev captions
        assert set(record[tiny_flickr.root.name]) >= {"concept_f1", "hallucination", "examples"}  # the watched folder
    with np.load(Path(ce_run.out) / "best.weights.npz") as before, np.load(out / "epoch01.weights.npz") as after:
        assert set(before.files) == set(after.files)
        assert any(not np.allclose(before[k], after[k], atol=1e-3) for k in before.files)  # it trained
    settings = json.loads((out / "scst_config.json").read_text())
    assert settings["trainer"] == "jax" and settings["candidates"] == "guarded"

    resumed = _run(tiny_flickr, ce_run, out, 2, "--text-every", "1", "--freeze", "copy_", "tag_embedding")
    assert "epoch01.weights.npz" in resumed.stderr  # started from the last epoch, not from --init
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2] and "text_loss" in history[2]["train"]
    assert math.isfinite(history[2]["train"]["text_loss"]) and (out / "epoch02.weights.npz").is_file()
    # The tag path stayed as epoch 1 left it, through the SCST and the text steps; the rest trained.
    with np.load(out / "epoch01.weights.npz") as one, np.load(out / "epoch02.weights.npz") as two:
        frozen = [k for k in one.files if k.startswith(("copy_", "tag_embedding"))]
        assert len(frozen) == 7 and all(np.array_equal(one[k], two[k]) for k in frozen)
        assert any(not np.array_equal(one[k], two[k]) for k in set(one.files) - set(frozen))


def test_sampled_candidates_are_refused_on_jax(tiny_flickr, ce_run, tmp_path):
    pytest.importorskip("jax")
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "training.scst_jax", "--data", str(tiny_flickr.root), "--out",
                           str(tmp_path / "s"), "--init", ce_run.out, "--scst-candidates", "sample"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "sampling is in training.scst" in done.stderr


def test_a_batch_larger_than_the_training_photos_is_refused_before_anything_runs(tiny_flickr, ce_run, tmp_path):
    """Every JAX step takes a whole batch: with 5 training photos and batches of 8 an epoch has no step.
    It used to evaluate dev, train nothing and fail on an empty list (IndexError)."""
    pytest.importorskip("jax")
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / "s"
    done = subprocess.run([sys.executable, "-m", "training.scst_jax", "--data", str(tiny_flickr.root), "--out",
                           str(out), "--init", ce_run.out, "--scst-candidates", "guarded", "--batch-size", "8"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "5 training photos do not fill one batch of 8: lower --batch-size" in done.stderr
    assert not (out / "history.json").exists() and not list(out.glob("epoch*.weights.npz"))
