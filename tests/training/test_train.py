"""The training loop on a tiny generated data set: features cached and resumable, loss falls,
checkpoints resume, MirroredStrategy runs, the chosen epoch exports to a bundle that captions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from training.features import extract_features, feature_path
from training.probes import PROBES
from training.train import TrainConfig, export, train

ROOT = Path(__file__).resolve().parents[2]


def _config(tiny_flickr, tmp_path, **overrides) -> TrainConfig:
    values = dict(data=str(tiny_flickr.root), out=str(tmp_path / "run"), encoder="tiny_test",
                  cache=str(tmp_path / "cache"), epochs=2, batch_size=4, embedding_dim=16, feature_dim=16,
                  units=32, min_count=1, learning_rate=3e-3, lr_decay=1.0, dropout=0.0, attention_reg=0.0,
                  bucket_boundaries=[8, 12], max_words=14)
    values.update(overrides)
    return TrainConfig(**values)


def test_feature_cache_is_resumable_and_rejects_partial_files(tiny_flickr, tmp_path):
    photos = sorted(tiny_flickr.images_dir.glob("*.jpg"))
    cache = tmp_path / "cache"
    computed, failures = extract_features(photos[:3], "tiny_test", cache, progress=False)
    assert (computed, failures) == (3, [])
    first = feature_path(cache, "tiny_test", photos[0])
    before = first.stat().st_mtime_ns
    # An interrupted run can leave a damaged file; it must be recomputed, not trusted.
    feature_path(cache, "tiny_test", photos[1]).write_bytes(b"\x93NUMPY garbage")
    computed, _ = extract_features(photos, "tiny_test", cache, progress=False)
    assert computed == len(photos) - 2  # the damaged one and the ones never computed
    assert first.stat().st_mtime_ns == before
    grid = np.load(feature_path(cache, "tiny_test", photos[1]))
    assert grid.shape == (16, 32) and grid.dtype == np.float16


def test_two_epochs_lower_the_loss_and_resume(tiny_flickr, tmp_path):
    config = _config(tiny_flickr, tmp_path, epochs=2)
    result = train(config)
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert (tmp_path / "run" / "best.weights.npz").is_file()

    # Asking for more epochs resumes from the checkpoint instead of starting over.
    resumed = train(_config(tiny_flickr, tmp_path, epochs=3))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][2]["train_loss"] < history[0]["train_loss"]


def test_a_resume_redoes_an_epoch_recorded_after_the_last_checkpoint_once(tiny_flickr, tmp_path):
    """history.json is written before the checkpoint: a run killed between the two wrote the epoch
    it redid on resume a second time ([1, 2, 3, 4, 4, 5, ...]), into the exported bundle too."""
    train(_config(tiny_flickr, tmp_path, epochs=1))
    history_file = tmp_path / "run" / "history.json"
    history = json.loads(history_file.read_text())
    history_file.write_text(json.dumps([*history, dict(history[0], epoch=2)]))  # killed before the checkpoint
    resumed = train(_config(tiny_flickr, tmp_path, epochs=2))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert [h["epoch"] for h in json.loads(history_file.read_text())] == [1, 2]


def test_a_run_is_resumed_only_with_its_own_settings(tiny_flickr, tmp_path):
    """Another --units crashed in the checkpoint's restore after train_config.json had been rewritten
    to say it (the run could then neither export nor be evaluated); another learning rate or minimum
    count was taken silently, and recorded as if the whole run had used it."""
    from training.train import RunSettingsError

    train(_config(tiny_flickr, tmp_path, epochs=1))
    saved = (tmp_path / "run" / "train_config.json").read_text()
    with pytest.raises(RunSettingsError, match=r"units 32 \(now 64\).*min_count 1 \(now 2\)"):
        train(_config(tiny_flickr, tmp_path, epochs=2, units=64, min_count=2))
    assert (tmp_path / "run" / "train_config.json").read_text() == saved
    from training.train import check_resumable

    with pytest.raises(RunSettingsError, match="holds a run of the tf trainer, not the jax one"):
        check_resumable(_config(tiny_flickr, tmp_path, epochs=2), "jax")
    moved = tmp_path / "moved-cache"
    (tmp_path / "cache").rename(moved)  # where the files are, and how long it goes, may change
    assert [h["epoch"] for h in train(_config(tiny_flickr, tmp_path, epochs=2, cache=str(moved)))["history"]] == [1, 2]


def test_training_errors_are_one_line_and_a_batch_larger_than_the_data_is_refused(tiny_flickr, tmp_path, capsys):
    """A batch larger than the captions dropped every batch and "trained" random weights, marked
    best; a missing data folder or an --export-decoding that is no object gave tracebacks."""
    from training.train import main

    with pytest.raises(ValueError, match="--batch-size 500: no caption length has that many"):
        train(_config(tiny_flickr, tmp_path, epochs=1, batch_size=500))
    with pytest.raises(ValueError, match="--batch-size 20: no caption length"):  # fewer than the 25 captions,
        train(_config(tiny_flickr, tmp_path, epochs=1, batch_size=20))  # more than any one bucket's
    capsys.readouterr()
    common = ["--out", str(tmp_path / "r"), "--encoder", "tiny_test", "--cache", str(tmp_path / "cache")]
    assert main(["--data", str(tmp_path / "nowhere"), *common]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m training.train: error: the data folder {tmp_path / 'nowhere'} does not exist\n"
    with pytest.raises(SystemExit):
        main(["--data", str(tiny_flickr.root), *common, "--export", str(tmp_path / "b"), "--export-decoding", "[1]"])
    assert "a JSON object is expected" in capsys.readouterr().err


def test_export_gives_a_bundle_that_captions_and_evaluates(tiny_flickr, tmp_path):
    config = _config(tiny_flickr, tmp_path, epochs=1)
    train(config)
    bundle = export(config, tmp_path / "bundle", name="tiny-trained", description="test")
    before = (bundle / "config.json").read_bytes()
    from model.bundle import BundleError

    with pytest.raises(BundleError, match="max_length 250 is not between 1 and 200"):  # one the app refuses to load:
        export(config, tmp_path / "bundle", name="tiny-trained", description="test",  # it replaced a good one
               decoding_changes={"max_length": 250})
    assert (bundle / "config.json").read_bytes() == before
    written = json.loads((bundle / "config.json").read_text())
    assert written["encoder"]["name"] == "tiny_test" and written["weights"]["dtype"] == "float16"
    assert written["training"]["history"][0]["epoch"] == 1

    from training.evaluate import main as evaluate_main

    report_file = tmp_path / "report.json"
    code = evaluate_main(["--bundle", str(bundle), "--data", str(tiny_flickr.root), "--split", "dev",
                          "--beam", "2", "--no-java", "--json", str(report_file)])
    assert code == 0
    report = json.loads(report_file.read_text())
    assert report["n_images"] == len(tiny_flickr.dev)
    assert set(report["metrics"]) >= {"BLEU-4", "CIDEr", "ROUGE-L"}


def test_a_decoder_without_deep_output_trains_exports_and_captions(tiny_flickr, tmp_path):
    """``--no-deep-output`` (the ablation of Show, Attend and Tell's deep output layer) reaches the
    bundle: the exported decoder has no deep output layer and captions on both runtimes alike."""
    from model.captioner import Captioner

    config = _config(tiny_flickr, tmp_path, epochs=1, deep_output=False)
    history = train(config)["history"]
    assert np.isfinite(history[-1]["train_loss"])
    bundle = export(config, tmp_path / "bundle", name="tiny-shallow", description="test")
    written = json.loads((bundle / "config.json").read_text())
    assert written["decoder"]["deep_output"] is False
    with np.load(bundle / "decoder.weights.npz") as weights:
        assert not any("deep_output" in k for k in weights.files)
    photos = [np.full((40, 60, 3), v, np.uint8) for v in (30, 200)]
    by_onnx = Captioner.from_bundle(bundle, device="cpu").caption(photos)
    by_tf = Captioner.from_bundle(bundle, device="cpu", runtime="tf").caption(photos)
    assert [o.words for o in by_onnx] == [o.words for o in by_tf]


def test_mirrored_strategy_over_two_cpu_devices(tiny_flickr, tmp_path):
    """Logical devices must be set before TensorFlow starts, so this runs in a fresh process."""
    script = textwrap.dedent(f"""
        import json, sys, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path.insert(0, {str(ROOT)!r})
        from training.train import TrainConfig, train
        config = TrainConfig(data={str(tiny_flickr.root)!r}, out={str(tmp_path / "mirrored")!r},
            encoder="tiny_test", cache={str(tmp_path / "cache")!r}, epochs=3, batch_size=4,
            embedding_dim=16, feature_dim=16, units=32, min_count=1, learning_rate=3e-3, lr_decay=1.0,
            dropout=0.0, attention_reg=0.0, bucket_boundaries=[8, 12], max_words=14, strategy="mirrored")
        result = train(config)
        print("RESULT", json.dumps([result["replicas"], [h["train_loss"] for h in result["history"]]]))
    """)
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    replicas, losses = json.loads(done.stdout.split("RESULT", 1)[1])
    assert replicas == 2
    assert len(losses) == 3 and losses[-1] < losses[0]


# -- tag-aware training: tags from the classifier, text-only sentences, copying ------------------------

def _text_file(tmp_path: Path) -> Path:
    """Text-only sentences about a zebra, a word no training photo's caption uses."""
    lines = [f"{i:012d}.jpg#{j}\tA zebra {action} ." for i, action in enumerate(
        ["runs on the grass", "walks on the beach", "plays in the water", "sits near the street"]) for j in range(3)]
    path = tmp_path / "text.token.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tag_aware_training_learns_a_word_from_text_only_and_copies_it(tiny_flickr, tmp_path):
    """The copy path on a tiny fixture: "zebra" appears only in text-only sentences, yet a photo whose
    tags say zebra gets it in its caption; without the tag it does not."""
    from model.bundle import load_bundle
    from model.decoding import SearchDecoder
    from model.tags import TagMap

    config = _config(tiny_flickr, tmp_path, epochs=12, tags=True, text_captions=str(_text_file(tmp_path)),
                     grid_dropout=0.3)
    result = train(config)
    assert all(np.isfinite(h["train_loss"]) for h in result["history"])
    bundle = load_bundle(export(config, tmp_path / "bundle", name="tiny-tags", description="test"))
    assert "zebra" not in " ".join(c for name in tiny_flickr.train[:5] for c in tiny_flickr.captions[name]).lower()
    assert "zebra" in bundle.vocab and bundle.config["decoder"]["num_tags"] == len(TagMap.load().words)
    assert bundle.classifier is not None and bundle.classifier[0].shape == (32, 1000)
    rules = bundle.config["decoding"]["absent"]  # concepts from their probes; each animal from its tags, summed
    assert [r["probe"] for r in rules if "probe" in r] == list(PROBES) and set(bundle.probes) == set(PROBES)
    bird = next(r for r in rules if "bird" in r.get("tags", ()))
    assert {"duck", "eagle"} <= set(bird["tags"]) and {"bird", "birds", "duck"} <= set(bird["words"])
    assert any(r.get("tags") == ["cat"] for r in rules) and any(r.get("tags") == ["dog"] for r in rules)

    decoder = bundle.build_decoder()
    vocab = bundle.vocab
    search = SearchDecoder(decoder, start_id=vocab.start_id, end_id=vocab.end_id, max_length=10,
                           banned_ids=(vocab.pad_id, vocab.start_id, vocab.unk_id))
    features = np.random.default_rng(0).uniform(0, 1, (2, 16, 32)).astype(np.float32)
    tags = np.zeros((2, decoder.num_tags), np.float32)
    tags[0, bundle.config["tags"]["words"].index("zebra")] = 0.9
    decoded = search.greedy(features, tags)
    words = [[vocab.word_of(int(t)) for t in decoded.tokens[row, 0, :decoded.lengths[row, 0]]] for row in range(2)]
    assert "zebra" in words[0], words
    assert "zebra" not in words[1], words


def test_ungrounded_words_are_concept_words_no_photo_caption_or_tag_supports(tiny_flickr, tmp_path):
    """"giraffe" and "fork" (in the vocabulary through text-only sentences, never in a photo's caption,
    no tag for them) are banned; "zebra" has a tag and a word the photo captions use is kept."""
    from model.vocab import Vocabulary
    from training.train import ungrounded_words

    used = next(w for w in tiny_flickr.captions[tiny_flickr.train[0]][0].lower().split() if w.isalpha())
    vocab = Vocabulary(["giraffe", "giraffes", "fork", "zebra", "dog", used], min_count=1)
    banned = ungrounded_words(_config(tiny_flickr, tmp_path), vocab, tag_words=("zebra", "dog"))
    assert {"giraffe", "giraffes", "fork"} <= set(banned)
    assert not {"zebra", "dog", used} & set(banned)


def test_banned_words_never_appear_in_captions(tmp_path):
    import json as _json

    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle_dir = make_tiny_bundle(tmp_path / "b")
    photos = [np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8) for i in range(6)]
    said = {w for r in Captioner(load_bundle(bundle_dir), device="cpu").caption(photos) for w in r.words}
    config = _json.loads((bundle_dir / "config.json").read_text())
    config["decoding"]["banned_words"] = sorted(said)[:2]
    (bundle_dir / "config.json").write_text(_json.dumps(config))
    for result in Captioner(load_bundle(bundle_dir), device="cpu").caption(photos):
        assert not set(result.words) & set(sorted(said)[:2]), result.words


def test_jax_trainer_fine_tunes_from_an_epoch_with_a_share_of_the_text(tiny_flickr, tmp_path):
    """``train_jax --init-weights`` starts from a run's epoch (its vocabulary copied) and records
    ``--text-share`` in the run's config; the loss stays finite. Keras on JAX, in its own process; JAX
    is no dependency of the project (the JAX trainer is for GPU machines without TensorFlow)."""
    jax = pytest.importorskip("jax")
    common = ["--data", str(tiny_flickr.root), "--encoder", "tiny_test", "--cache", str(tmp_path / "cache"),
              "--tags", "--text-captions", str(_text_file(tmp_path)), "--batch-size", "4", "--embedding-dim", "16",
              "--feature-dim", "16", "--units", "32", "--min-count", "1", "--max-words", "14"]
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "training.train_jax", *common, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    first = run("--out", str(tmp_path / "first"), "--epochs", "1")
    if jax.default_backend() == "cpu":  # the grids were encoded on the CPU: it names the faster way
        assert "python -m training.features" in first.stderr
    start = tmp_path / "first" / "epoch01.weights.npz"
    run("--out", str(tmp_path / "tuned"), "--epochs", "1", "--init-weights", str(start), "--text-share", "0.5")
    tuned = tmp_path / "tuned"
    assert (tuned / "vocab.json").read_text() == (tmp_path / "first" / "vocab.json").read_text()
    config = json.loads((tuned / "train_config.json").read_text())
    assert config["init_weights"] == str(start) and config["text_share"] == 0.5
    history = json.loads((tuned / "history.json").read_text())
    assert np.isfinite(history[0]["train_loss"]) and (tuned / "epoch01.weights.npz").is_file()
    with np.load(start) as before, np.load(tuned / "epoch01.weights.npz") as after:
        assert set(before.files) == set(after.files)
        assert any(not np.array_equal(before[k], after[k]) for k in before.files)  # it trained

    # Into a run folder of other settings: refused in a line, before the init's vocabulary replaced
    # the folder's own (its weights then no longer matched it).
    vocab = (tmp_path / "first" / "vocab.json").read_text()
    refused = subprocess.run([sys.executable, "-m", "training.train_jax", *common, "--out", str(tmp_path / "first"),
                              "--epochs", "1", "--min-count", "2", "--init-weights", str(start)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "min_count 1 (now 2)" in refused.stderr and "Traceback" not in refused.stderr
    assert (tmp_path / "first" / "vocab.json").read_text() == vocab


def test_jax_trainer_refuses_a_batch_larger_than_the_training_captions(tiny_flickr, tmp_path):
    """Every JAX step takes a whole batch: 25 training captions and batches of 64 make no step. It used to
    train nothing and report a NaN loss for each epoch."""
    pytest.importorskip("jax")
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "training.train_jax", "--data", str(tiny_flickr.root), "--encoder",
                           "tiny_test", "--cache", str(tmp_path / "cache"), "--out", str(out), "--epochs", "1",
                           "--batch-size", "64", "--min-count", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "25 training captions do not fill one batch of 64: lower --batch-size" in done.stderr
    assert not list(out.glob("epoch*.weights.npz"))


def test_scheduled_word_dropout_rises_and_changes_the_inputs(tmp_path):
    """``--word-dropout``: the rate rises linearly to its setting over the first half of the epochs,
    and a step at rate 1 (every input word after ``<start>`` is ``<unk>``) has another loss than at
    rate 0, while rate 0 ignores the dropout key. Keras on JAX, in its own process."""
    pytest.importorskip("jax")
    script = textwrap.dedent("""
        import json
        import numpy as np
        import jax
        from model.vocab import Vocabulary
        from training.train import TrainConfig
        from training.train_jax import JaxTrainer

        vocab = Vocabulary(["a", "dog", "runs", "on", "grass"], min_count=1)
        config = TrainConfig(data="unused", out="unused", embedding_dim=8, feature_dim=8, units=16, epochs=4,
                             word_dropout=0.5, dropout=0.0)
        trainer = JaxTrainer(config, vocab, channels=6, tag_words=(), steps_per_epoch=1)
        rates = []
        for epoch in range(1, 5):
            trainer.set_epoch(epoch)
            rates.append(trainer.word_dropout)
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(3, 4, 6)).astype(np.float32)
        tags = np.zeros((3, 0), np.float32)
        seq = np.asarray([vocab.encode(["a", "dog", "runs", "on", "grass"])] * 3, np.int32)
        def loss(rate, seed):
            return float(trainer._paired(trainer.state, feats, tags, seq, jax.random.PRNGKey(seed),
                                         np.float32(rate))[1])
        print(json.dumps({"rates": rates, "off": [loss(0.0, 1), loss(0.0, 2)], "all": loss(1.0, 1)}))
    """)
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["rates"] == [0.25, 0.5, 0.5, 0.5]
    assert got["off"][0] == got["off"][1]  # rate 0: the key draws nothing
    assert abs(got["all"] - got["off"][0]) > 1e-4


def test_trimmed_batches_keep_every_caption_and_train_the_same(tmp_path):
    """The JAX trainer cuts each batch after its longest caption (a width that is a multiple of 4):
    the loss and the updated weights equal those of the full 32-column batch, since the columns
    cut are padding in every row. Keras on JAX, in its own process."""
    pytest.importorskip("jax")
    script = textwrap.dedent("""
        import json
        import numpy as np
        import jax
        from model.vocab import Vocabulary
        from training.train import TrainConfig
        from training.train_jax import JaxTrainer, _padded, trimmed

        words = ["a", "dog", "runs", "on", "grass", "cat", "sits"]
        vocab = Vocabulary(words, min_count=1)
        config = TrainConfig(data="unused", out="unused", embedding_dim=8, feature_dim=8, units=16, epochs=1,
                             dropout=0.0, grid_dropout=0.0, label_smoothing=0.1)
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(3, 4, 6)).astype(np.float32)
        tags = np.zeros((3, 0), np.float32)
        seq = _padded([vocab.encode(words[:5]), vocab.encode(words[:2]), vocab.encode(words)], 32)
        cut = trimmed(seq, vocab.pad_id)
        results = []
        for batch in (seq, cut):
            trainer = JaxTrainer(config, vocab, channels=6, tag_words=(), steps_per_epoch=1)
            state, xent = trainer._paired(trainer.state, feats, tags, batch, jax.random.PRNGKey(1), np.float32(0))
            results.append((float(xent), [np.asarray(v) for v in state[0]]))
        (full, full_weights), (short, short_weights) = results
        print(json.dumps({"shape": list(cut.shape), "same_rows": bool((cut == seq[:, :cut.shape[1]]).all()),
                          "rest_padding": bool((seq[:, cut.shape[1]:] == vocab.pad_id).all()),
                          "loss": [full, short],
                          "weights": max(float(np.abs(a - b).max()) for a, b in zip(full_weights, short_weights)),
                          "moved": max(float(np.abs(a - np.asarray(v)).max()) for a, v in
                                       zip(full_weights, JaxTrainer(config, vocab, 6, (), 1).state[0])),
                          "empty": list(trimmed(np.zeros((2, 32), np.int32)).shape)}))
    """)
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["shape"] == [3, 12]  # the longest caption: 7 words, <start> and <end>
    assert got["same_rows"] and got["rest_padding"]
    assert got["loss"][0] == pytest.approx(got["loss"][1], rel=1e-5)
    assert got["weights"] < 1e-6 < got["moved"]  # the same update, and an update at all
    assert got["empty"] == [2, 2]


def test_tensorflow_trainer_refuses_word_dropout(tmp_path):
    config = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), word_dropout=0.1)
    with pytest.raises(ValueError, match="JAX trainer"):
        train(config)
