"""Train the caption decoder on cached encoder features, and export the chosen epoch as a bundle.

    python -m training.features --data ../shared/data/flickr8k \\
        --splits Flickr_8k.trainImages.txt Flickr_8k.devImages.txt
    python -m training.train --data ../shared/data/flickr8k --out runs/lite2 --epochs 12
    python -m training.train --data ../shared/data/flickr8k --out runs/lite2 --export resources/models/flickr8k-lite2

The photos' grids come from the feature cache (``training.features``), so an epoch only runs the
decoder. Captions are bucketed by length and padded to their bucket's boundary, so every batch has
one of a few static shapes and the step compiles once per bucket (with XLA on CPU by default).
Each epoch ends with the dev loss and a dev BLEU-4 of greedy captions; the epoch with the best
BLEU-4 is kept. A ``tf.train.CheckpointManager`` lets an interrupted run resume where it stopped.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import logging
import math
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from model.vocab import Vocabulary, pad_sequences
from training.data import clean_caption, load_dataset
from training.features import default_cache_dir, extract_features, load_features
from training.metrics import bleu4_fast

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str
    out: str
    encoder: str = "efficientnet_lite2"
    cache: str | None = None
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 5e-4
    lr_decay: float = 0.9  # multiplied into the learning rate once per epoch
    clip_norm: float = 5.0
    embedding_dim: int = 256
    feature_dim: int = 256
    units: int = 512
    dropout: float = 0.3
    attention_reg: float = 1.0
    min_count: int = 5
    drop_one_letter: bool = False
    max_words: int = 30
    bucket_boundaries: list[int] = field(default_factory=lambda: [12, 15, 18, 22, 32])
    strategy: str = "default"
    xla: bool = False  # measured here: XLA made the CPU step 2.2x slower than oneDNN's kernels
    seed: int = 1234
    limit: int | None = None  # use only the first N training photos (quick experiments)
    # Tag-aware decoding (issue 14): tags from the encoder's ImageNet classifier, a copy path, and
    # text-only sentences whose tags come from their own words.
    tags: bool = False
    copy: bool = True
    text_captions: str | None = None  # a token file of captions without photos (COCO captions)
    text_limit: int | None = None
    grid_dropout: float = 0.15
    label_smoothing: float = 0.0
    context_gate: bool = False  # the "f_beta" gate on the attention context (Show, Attend and Tell)
    deep_output: bool = True  # the output layer reads tanh(L [h, context, word]), not the hidden state alone
    # Scheduled dropout of the input word (JAX trainer): each teacher-forced input word after <start>
    # becomes <unk> with a probability that rises linearly from 0 to ``word_dropout`` over the first
    # half of the epochs, so the decoder leans less on the previous word and more on the photo.
    word_dropout: float = 0.0


# The TrainConfig fields that shape the decoder, named as CaptionDecoder's arguments are.
DECODER_FIELDS = ("embedding_dim", "feature_dim", "units", "dropout", "grid_dropout", "context_gate", "deep_output")


@dataclass
class SplitData:
    images: list[Path]
    features: np.ndarray  # (photos, locations, channels) float16
    references: list[list[list[str]]]  # per photo, its cleaned reference captions
    pairs_image: np.ndarray  # (captions,) index into images
    sequences: list[list[int]]  # (captions,) <start> ... <end> ids
    tags: np.ndarray | None = None  # (photos, tags) float32, for a tag-aware decoder


def load_text_corpus(config: TrainConfig) -> list[list[str]]:
    """The cleaned text-only sentences (none unless ``config.text_captions``)."""
    if not config.text_captions:
        return []
    from training.tagdata import load_text_captions

    sentences = [clean_caption(c, drop_one_letter=config.drop_one_letter)
                 for c in load_text_captions(config.text_captions)]
    sentences = [s for s in sentences if 0 < len(s) <= config.max_words]
    return sentences[:config.text_limit] if config.text_limit else sentences


def build_vocabulary(config: TrainConfig, extra_words: tuple[str, ...] = ()) -> Vocabulary:
    """Words seen ``min_count`` times in the training captions and text-only sentences, then every
    tag word (so the copy path can emit it) that is not among them yet."""
    items, _ = load_dataset(config.data, "train")
    if config.limit:
        items = items[:config.limit]
    token_lists = [clean_caption(c, drop_one_letter=config.drop_one_letter) for _, caps in items for c in caps]
    vocab = Vocabulary.build(token_lists + load_text_corpus(config), min_count=config.min_count)
    missing = [w for w in extra_words if w not in vocab]
    return Vocabulary([*vocab.words[4:], *missing], min_count=config.min_count) if missing else vocab


def prepare_split(config: TrainConfig, split: str, vocab: Vocabulary | None, limit: int | None = None,
                  tagger=None):
    items, skipped = load_dataset(config.data, split)
    if limit:
        items = items[:limit]
    cache = Path(config.cache) if config.cache else default_cache_dir()
    computed, failures = extract_features([p for p, _ in items], config.encoder, cache)
    if failures:
        bad = {f.split(":")[0] for f in failures}
        items = [(p, c) for p, c in items if p.name not in bad]
        log.warning("%s: %d photos unreadable, left out", split, len(failures))
    if not items:
        raise ValueError(f"{config.data}: the {split} split has no photo that can be read "
                         f"({skipped} listed without one)")
    cleaned = [[clean_caption(c, drop_one_letter=config.drop_one_letter) for c in caps] for _, caps in items]
    if vocab is None:
        vocab = Vocabulary.build([words for caps in cleaned for words in caps], min_count=config.min_count)
    pairs_image, sequences = [], []
    for i, caps in enumerate(cleaned):
        for words in caps:
            if 0 < len(words) <= config.max_words:
                pairs_image.append(i)
                sequences.append(vocab.encode(words))
    features = load_features(cache, config.encoder, [p for p, _ in items])
    tags = tagger(features) if tagger is not None else None
    log.info("%s: %d photos, %d captions (%d ids skipped, %d grids computed now)",
             split, len(items), len(sequences), skipped, computed)
    return SplitData([p for p, _ in items], features, cleaned, np.asarray(pairs_image, np.int32), sequences,
                     tags), vocab


def _bucket_boundaries(config: TrainConfig) -> list[int]:
    """The upper length bounds of :func:`make_dataset`'s buckets (token ids, <start> and <end> included)."""
    return [b for b in config.bucket_boundaries if b < config.max_words + 2] + [config.max_words + 3]


def full_batches(split: SplitData, config: TrainConfig) -> int:
    """How many whole batches an epoch of :func:`make_dataset` gives (a bucket's remainder is dropped)."""
    boundaries = _bucket_boundaries(config)
    buckets = np.bincount([bisect.bisect_right(boundaries, len(s)) for s in split.sequences],
                          minlength=len(boundaries) + 1)
    return int((buckets // config.batch_size).sum())


def make_dataset(split: SplitData, config: TrainConfig, *, shuffle: bool, seed: int):
    """tf.data over (photo index, token ids): bucketed by length, padded to the bucket boundary,
    shuffled at the caption and batch level, features gathered from memory, prefetched."""
    import tensorflow as tf

    padded = pad_sequences(split.sequences)  # (captions, longest)
    lengths = np.asarray([len(s) for s in split.sequences], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((split.pairs_image, padded, lengths))
    ds = ds.map(lambda idx, seq, n: (idx, seq[:n]))  # variable-length again, for bucketing
    if shuffle:
        ds = ds.shuffle(len(split.sequences), seed=seed, reshuffle_each_iteration=True)
    boundaries = _bucket_boundaries(config)
    ds = ds.bucket_by_sequence_length(
        lambda idx, seq: tf.shape(seq)[0],
        bucket_boundaries=boundaries[:-1] + [boundaries[-1]],
        bucket_batch_sizes=[config.batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True, drop_remainder=shuffle,
    )
    if shuffle:
        ds = ds.shuffle(64, seed=seed + 1)
    features = split.features
    tags = split.tags if split.tags is not None else np.zeros((len(features), 0), np.float32)

    def gather(idx):
        return features[idx], tags[idx]

    def attach(idx, seq):
        feats, tag_rows = tf.numpy_function(gather, [idx], (tf.float16, tf.float32))
        feats.set_shape([None, features.shape[1], features.shape[2]])
        tag_rows.set_shape([None, tags.shape[1]])
        return feats, tag_rows, seq

    return ds.map(attach, num_parallel_calls=2).prefetch(4)


def make_text_dataset(sequences: list[list[int]], tags: np.ndarray, config: TrainConfig, *, seed: int):
    """tf.data over text-only sentences: ``(tags, token ids)`` batches, bucketed like the paired data."""
    split = SplitData([], np.zeros((len(sequences), 1, 1), np.float16), [], np.arange(len(sequences), dtype=np.int32),
                      sequences, tags)
    return make_dataset(split, config, shuffle=True, seed=seed).map(lambda feats, tag_rows, seq: (tag_rows, seq))


def build_decoder(config: TrainConfig, vocab: Vocabulary, channels: int, tag_words: tuple[str, ...] = ()):
    """The :class:`~model.decoder.CaptionDecoder` a run's hyperparameters describe, built (random weights);
    tag-aware with ``config.tags`` (the tag words' vocabulary ids feed the copy path)."""
    from model.decoder import CaptionDecoder

    tag_args = {}
    if config.tags:
        tag_args = {"num_tags": len(tag_words), "grid_dropout": config.grid_dropout,
                    "copy_ids": [vocab.id_of(w) for w in tag_words] if config.copy else None}
    decoder = CaptionDecoder(vocab_size=len(vocab), encoder_channels=channels,
                             embedding_dim=config.embedding_dim, feature_dim=config.feature_dim,
                             units=config.units, dropout=config.dropout, name="caption_decoder",
                             context_gate=config.context_gate, deep_output=config.deep_output, **tag_args)
    decoder.build()
    return decoder


class Trainer:
    def __init__(self, config: TrainConfig, vocab: Vocabulary, channels: int, steps_per_epoch: int = 1000,
                 tag_words: tuple[str, ...] = ()):
        import keras
        import tensorflow as tf

        self.config = config
        self.vocab = vocab
        self.strategy = (tf.distribute.MirroredStrategy() if config.strategy == "mirrored"
                         else tf.distribute.get_strategy())
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.decoder = build_decoder(config, vocab, channels, tag_words)
            schedule = keras.optimizers.schedules.ExponentialDecay(
                config.learning_rate, decay_steps=max(steps_per_epoch, 1), decay_rate=config.lr_decay)
            self.optimizer = keras.optimizers.Adam(schedule)
            self.optimizer.build(self.decoder.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_bleu = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_bleu")
        self.checkpoint = tf.train.Checkpoint(decoder=self.decoder, optimizer=self.optimizer,
                                              epoch=self.epoch, best_bleu=self.best_bleu)
        self.manager = tf.train.CheckpointManager(self.checkpoint, Path(config.out) / "checkpoints", max_to_keep=2)
        self._train_step = self._make_train_step()
        self._eval_step = self._make_eval_step()
        self._text_step = self._make_text_step()

    def restore(self) -> bool:
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
            log.info("resumed from %s (epoch %d done)", self.manager.latest_checkpoint, int(self.epoch.numpy()))
            return True
        return False

    def _loss(self, feats, tags, seq, training):
        """``feats`` None: text-only sentences (no attention regulariser: one "no photo" location)."""
        import tensorflow as tf

        from model.decoder import attention_regularizer, masked_nll

        feats = tf.cast(feats, tf.float32) if feats is not None else None
        inputs, targets = seq[:, :-1], seq[:, 1:]
        log_probs, attention = self.decoder((feats, inputs, tags), training=training)
        xent = masked_nll(targets, log_probs, self.vocab.pad_id)
        loss = xent
        if training and self.config.label_smoothing:
            loss = masked_nll(targets, log_probs, self.vocab.pad_id, label_smoothing=self.config.label_smoothing)
        if feats is None:
            return xent, loss
        return xent, loss + self.config.attention_reg * attention_regularizer(attention, targets, self.vocab.pad_id)

    def _make_train_step(self):
        import tensorflow as tf

        strategy, decoder, optimizer = self.strategy, self.decoder, self.optimizer
        replicas = strategy.num_replicas_in_sync

        def replica_step(feats, tags, seq):
            with tf.GradientTape() as tape:
                xent, loss = self._loss(feats, tags, seq, training=True)
                scaled = loss / replicas
            grads = tape.gradient(scaled, decoder.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, self.config.clip_norm)
            optimizer.apply_gradients(zip(grads, decoder.trainable_variables))
            return xent

        if self.config.xla and self.config.strategy == "default":
            replica_step = tf.function(replica_step, jit_compile=True)

        # No reduce_retracing: each length bucket gets its own graph with a static time axis.
        @tf.function
        def step(feats, tags, seq):
            per_replica = strategy.run(replica_step, args=(feats, tags, seq))
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

        return step

    def _make_text_step(self):
        """The train step for text-only sentences (single device: they are cheap)."""
        import tensorflow as tf

        decoder, optimizer = self.decoder, self.optimizer

        @tf.function
        def step(tags, seq):
            with tf.GradientTape() as tape:
                xent, loss = self._loss(None, tags, seq, training=True)
            variables = decoder.trainable_variables
            grads = tape.gradient(loss, variables)
            # The projection never sees text-only sentences: its gradients are None.
            pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
            clipped, _ = tf.clip_by_global_norm([g for g, _ in pairs], self.config.clip_norm)
            optimizer.apply_gradients(zip(clipped, [v for _, v in pairs]))
            return xent

        return step

    def _make_eval_step(self):
        import tensorflow as tf

        # No reduce_retracing: each length bucket gets its own graph with a static time axis.
        @tf.function
        def step(feats, tags, seq):
            xent, _ = self._loss(feats, tags, seq, training=False)
            return xent

        return step

    def train_epoch(self, dataset, steps_hint: int | None = None, text_dataset=None, seed: int = 0) -> float:
        """One pass over the paired batches, with the text-only batches (if any) interleaved at random."""
        from tqdm import tqdm

        dist = self.strategy.experimental_distribute_dataset(dataset) if self.config.strategy != "default" else dataset
        paired, text = iter(dist), iter(text_dataset) if text_dataset is not None else None
        text_batches = int(text_dataset.cardinality()) if text_dataset is not None else 0
        if text_batches < 0:  # unknown cardinality (bucketing): count once
            text_batches = sum(1 for _ in text_dataset)
        rng = np.random.default_rng(seed)
        losses, text_losses = [], []
        total = (steps_hint or 0) + text_batches
        with tqdm(total=total or None, unit="batch", desc=f"epoch {int(self.epoch.numpy()) + 1}",
                  mininterval=5.0) as bar:
            paired_left, text_left = True, text is not None
            while paired_left or text_left:
                use_text = text_left and (not paired_left or rng.random() < text_batches / max(total, 1))
                try:
                    if use_text:
                        tags, seq = next(text)
                        text_losses.append(float(self._text_step(tags, seq)))
                    else:
                        feats, tags, seq = next(paired)
                        losses.append(float(self._train_step(feats, tags, seq)))
                except StopIteration:
                    if use_text:
                        text_left = False
                    else:
                        paired_left = False
                    continue
                bar.update(1)
                if (len(losses) + len(text_losses)) % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:] or [math.nan]):.3f}",
                                    text=f"{np.mean(text_losses[-20:] or [math.nan]):.3f}")
        if text_losses:
            log.info("text-only sentences: mean loss %.3f over %d batches", np.mean(text_losses), len(text_losses))
        return float(np.mean(losses)) if losses else math.nan

    def evaluate_loss(self, dataset) -> float:
        losses = [float(self._eval_step(feats, tags, seq)) for feats, tags, seq in dataset]
        return float(np.mean(losses)) if losses else math.nan

    def greedy_captions(self, features: np.ndarray, tags: np.ndarray | None = None,
                        batch_size: int = 250) -> list[list[str]]:
        from model.decoding import SearchDecoder

        search = SearchDecoder(self.decoder, start_id=self.vocab.start_id, end_id=self.vocab.end_id,
                               pad_id=self.vocab.pad_id, max_length=self.config.max_words,
                               banned_ids=(self.vocab.pad_id, self.vocab.start_id, self.vocab.unk_id))
        out = []
        for i in range(0, len(features), batch_size):
            decoded = search.greedy(features[i:i + batch_size].astype(np.float32),
                                    None if tags is None else tags[i:i + batch_size])
            for row in range(decoded.tokens.shape[0]):
                n = int(decoded.lengths[row, 0])
                out.append([self.vocab.word_of(int(t)) for t in decoded.tokens[row, 0, :n]])
        return out

    def best_weights_path(self) -> Path:
        return Path(self.config.out) / "best.weights.npz"

    def save_best(self) -> None:
        self.save_weights(self.best_weights_path())

    def save_weights(self, path: Path) -> None:
        from model.bundle import variables_by_path

        arrays = {k: v.numpy() for k, v in variables_by_path(self.decoder).items()}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)

    def load_best(self, path: Path | None = None) -> None:
        from model.bundle import assign_variables

        with np.load(path or self.best_weights_path(), allow_pickle=False) as npz:
            assign_variables(self.decoder, {k: npz[k] for k in npz.files})


def _tag_setup(config: TrainConfig):
    """``(tag map, photo tagger)`` for a tag-aware run, else ``(None, None)``."""
    if not config.tags:
        return None, None
    from model.tags import TagMap
    from training.tagdata import classifier_weights, photo_tags

    tag_map = TagMap.load()
    kernel, bias = classifier_weights(config.encoder)
    return tag_map, lambda grids: photo_tags(grids, kernel, bias, tag_map)


#: The settings a run may be resumed with other values of: how long it goes, and where its files are.
RESUMABLE_CHANGES = ("data", "out", "cache", "epochs", "strategy", "xla", "text_captions")


class RunSettingsError(ValueError):
    """A run folder holds a run started with other settings than this command's."""


def check_resumable(config: TrainConfig, trainer: str = "tf") -> None:
    """Refuse to go on with a run in ``config.out`` that was started with other settings: its
    checkpoint, vocabulary and record would no longer say what was trained (another architecture
    fails to restore, after the config was already rewritten). The JAX trainer starts a run over
    (reusing its vocabulary), so there only the same settings may run again.

    Raises:
        RunSettingsError: naming each setting that differs.
    """
    how = ("Resume it with the same ones" if trainer == "tf"
           else "The JAX trainer starts a run over: run it again with the same ones")
    saved = Path(config.out) / "train_config.json"
    # The trainer is a setting too: the TF trainer on a JAX run's folder started at epoch 0 over its
    # epochs. A TF run's config names none.
    started_by = json.loads(saved.read_text()).get("trainer", "tf") if saved.is_file() else trainer
    if started_by != trainer:
        raise RunSettingsError(f"{config.out} holds a run of the {started_by} trainer, not the {trainer} one: "
                               f"give another --out")
    check_same_settings(saved, asdict(config), RESUMABLE_CHANGES, how)


def check_same_settings(saved: Path, now: dict, may_change: Sequence[str], how: str = "Resume it with the same ones"
                        ) -> None:
    """Raise :class:`RunSettingsError` where the run settings in ``saved`` (when there) differ from
    ``now`` in a setting not in ``may_change`` (``how``: what to do instead)."""
    if not saved.is_file():
        return
    before = json.loads(saved.read_text())
    differing = [f"{key} {before[key]!r} (now {now[key]!r})" for key in now
                 if key in before and key not in may_change and before[key] != now[key]]
    if differing:
        changeable = ", ".join(key for key in may_change if key != "out")
        raise RunSettingsError(f"{saved.parent} holds a run started with other settings: {'; '.join(differing)}. "
                               f"{how} (only {changeable} may change), or give another --out")


def prepare_run(config: TrainConfig, trainer: str = "tf"):
    """What both trainers start from: ``(tag map or None, tag words, vocabulary, train split, dev split)``,
    with the run folder's vocabulary (reused on resume) and ``train_config.json`` written."""
    out = Path(config.out)
    check_resumable(config, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tag_map, tagger = _tag_setup(config)
    tag_words = tag_map.words if tag_map is not None else ()
    vocab_path = out / "vocab.json"
    vocab = Vocabulary.load(vocab_path) if vocab_path.is_file() else build_vocabulary(config, tag_words)
    train_data, vocab = prepare_split(config, "train", vocab, limit=config.limit, tagger=tagger)
    dev_data, _ = prepare_split(config, "dev", vocab, limit=config.limit and max(config.limit // 6, 8), tagger=tagger)
    if trainer == "tf" and full_batches(train_data, config) == 0:  # every bucket's remainder dropped: nothing trained
        raise ValueError(f"--batch-size {config.batch_size}: no caption length has that many of the "
                         f"{len(train_data.sequences)} training captions, so no batch would be trained (a batch "
                         f"holds captions of one length bucket); give a smaller one")
    vocab.save(vocab_path)
    extra = {} if trainer == "tf" else {"trainer": trainer}
    (out / "train_config.json").write_text(json.dumps(asdict(config) | extra, indent=2))
    log.info("vocabulary: %d tokens (min count %d)", len(vocab), config.min_count)
    return tag_map, tag_words, vocab, train_data, dev_data


def train(config: TrainConfig) -> dict:
    if config.word_dropout:
        raise ValueError("--word-dropout is implemented by the JAX trainer only: python -m training.train_jax")
    out = Path(config.out)
    tag_map, tag_words, vocab, train_data, dev_data = prepare_run(config)

    text_sequences, text_named, sentence_tagger = [], [], None
    if config.tags and config.text_captions:
        from training.tagdata import SentenceTagger

        sentence_tagger = SentenceTagger(tag_map)
        sentences = load_text_corpus(config)
        text_sequences = [vocab.encode(words) for words in sentences]
        text_named = [sentence_tagger.named(words) for words in sentences]
        log.info("text-only sentences: %d, %d of them name a tag word", len(sentences), sum(map(bool, text_named)))

    steps_hint = len(train_data.sequences) // config.batch_size
    trainer = Trainer(config, vocab, channels=train_data.features.shape[-1], steps_per_epoch=steps_hint,
                      tag_words=tag_words)
    trainer.restore()
    train_ds = make_dataset(train_data, config, shuffle=True, seed=config.seed)
    dev_ds = make_dataset(dev_data, config, shuffle=False, seed=0)
    history_path = out / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    # An epoch recorded after the last checkpoint (a run killed between the two writes) is done again.
    history = [record for record in history if record["epoch"] <= int(trainer.epoch.numpy())]
    while int(trainer.epoch.numpy()) < config.epochs:
        started = time.perf_counter()
        text_ds = None
        if text_sequences:  # fresh tag noise every epoch
            rng = np.random.default_rng(config.seed + int(trainer.epoch.numpy()))
            text_ds = make_text_dataset(text_sequences, sentence_tagger.tags(text_named, rng), config,
                                        seed=config.seed + int(trainer.epoch.numpy()))
        train_loss = trainer.train_epoch(train_ds, steps_hint, text_dataset=text_ds,
                                         seed=config.seed + int(trainer.epoch.numpy()))
        train_seconds = time.perf_counter() - started
        dev_loss = trainer.evaluate_loss(dev_ds)
        captions = trainer.greedy_captions(dev_data.features, dev_data.tags)
        bleu4 = bleu4_fast(dev_data.references, captions)
        trainer.epoch.assign_add(1)
        epoch = int(trainer.epoch.numpy())
        improved = bleu4 > float(trainer.best_bleu.numpy())
        if improved:
            trainer.best_bleu.assign(bleu4)
            trainer.save_best()
        trainer.save_weights(out / f"epoch{epoch:02d}.weights.npz")  # for selection on other dev sets
        record = {"epoch": epoch, "train_loss": train_loss, "dev_loss": dev_loss, "dev_bleu4_greedy": bleu4,
                  "train_seconds": round(train_seconds, 1), "best": improved}
        history.append(record)
        history_path.write_text(json.dumps(history, indent=2))
        trainer.manager.save()
        log.info("epoch %d: train loss %.3f, dev loss %.3f, dev BLEU-4 (greedy, cleaned refs) %.4f%s, %.0f s; e.g. %r",
                 epoch, train_loss, dev_loss, bleu4, " (best)" if improved else "", train_seconds,
                 " ".join(captions[0]))
    return {"history": history, "best_bleu4": float(trainer.best_bleu.numpy()),
            "replicas": trainer.strategy.num_replicas_in_sync}


def export(config: TrainConfig, destination: Path, *, name: str, description: str,
           metrics: dict | None = None, extra_training: dict | None = None, weights: Path | None = None,
           keyword_threshold: float = 0.3, decoding: dict | None = None, absence: dict | None = None,
           decoding_changes: dict | None = None) -> Path:
    """Write the best epoch of the run in ``config.out`` (or the ``weights`` file of another epoch) as a
    model bundle (float16). ``decoding_changes``: changes to the bundle's ``"decoding"`` entry, as
    :mod:`training.sweep_decoding` writes them (``{"length_penalty": 0.6}``), for settings chosen on dev
    for this model after training (SCST's guarded candidates keep the run's own)."""
    from model.bundle import save_bundle
    from model.encoders import get_encoder_spec

    out = Path(config.out)
    vocab = Vocabulary.load(out / "vocab.json")
    tag_map, _ = _tag_setup(config)
    trainer = Trainer(config, vocab, channels=get_encoder_spec(config.encoder).channels,
                      tag_words=tag_map.words if tag_map is not None else ())
    trainer.load_best(weights)
    tags = classifier = None
    if tag_map is not None:
        from training.tagdata import classifier_weights

        tags = {"words": list(tag_map.words), "class_words": tag_map.class_words.tolist(),
                "map_sha256": tag_map.sha256, "keyword_threshold": keyword_threshold}
        classifier = classifier_weights(config.encoder)
        data = "Flickr8k train split (6000 photos, 5 captions each) and COCO 2017 val captions as text only"
    else:
        data = "Flickr8k train split (6000 photos, 5 captions each; research use, see MODEL_CARD.md)"
    probes, decoding = bundle_decoding(config, vocab, tag_map, decoding, absence)
    if decoding_changes:
        from training.sweep_decoding import patched

        decoding = patched(decoding, decoding_changes)
    from model.captioner import decoding_search

    # Refused before the bundle (maybe a good one) is replaced, as the app would refuse to load it.
    decoding_search(lambda *_: None, vocab, decoding)  # raises BundleError: a setting out of range
    history = json.loads((out / "history.json").read_text()) if (out / "history.json").is_file() else []
    training = {
        "data": data,
        "hyperparameters": {k: v for k, v in asdict(config).items() if k not in ("data", "out", "cache")},
        "history": history,
    } | (extra_training or {})
    return save_bundle(destination, decoder=trainer.decoder, vocab=vocab, encoder=config.encoder, name=name,
                       description=description, decoding=decoding, training=training,
                       metrics=metrics or {}, dtype="float16", tags=tags,
                       classifier=classifier, probes=probes)


# Decoding of tag-aware bundles, chosen on dev (coco-mini-dev and Flickr8k dev; see the model card).
TAG_DECODING = {"no_repeat_ngram": 2, "prefer_tags_above": 0.15, "length_penalty": 0.8, "relax_if_garbled": ["probe"]}
# "probes": train training.probes.PROBES and give the bundle their rules (recipes and thresholds are there).
ABSENCE = {"probes": True, "animal_tags_below": 0.15, "ungrounded_words": True}
# Animals the classifier knows (COCO concepts whose words are tag words): the decoder learnt from
# Flickr8k's dogs and COCO's cats to put one into photos without any; each is kept out of a photo
# whose tags give it less than ``animal_tags_below``.
ANIMAL_CONCEPTS = ("dog", "cat", "bird", "sheep", "cow", "horse", "elephant", "bear", "zebra")
# Tag words that are evidence for an animal without being one of its concept's words ("panda bear").
ANIMAL_EVIDENCE = {"bear": ("panda",)}


def shipped_settings(config: TrainConfig) -> dict:
    """The ``decoding`` and ``absence`` arguments a run's bundle is exported with (and SCST's guarded
    candidates searched under): the chosen decoding and guards for a tag-aware run, none otherwise."""
    return {"decoding": TAG_DECODING, "absence": None} if config.tags else {"decoding": None, "absence": {}}


def bundle_decoding(config: TrainConfig, vocab: Vocabulary, tag_map, decoding: dict | None,
                    absence: dict | None) -> tuple[dict, dict]:
    """``(probes, decoding)``: the ``"decoding"`` entry an exported bundle gets (``decoding`` with the
    run's caption length, its absence rules and, for a tag-aware run, the ungrounded words banned) and
    the probes its rules read. SCST's guarded candidates search under the same settings."""
    probes, absent = {}, []
    decoding = {"max_length": config.max_words} | (decoding or {})
    if tag_map is not None:
        probes, absent = _absence_evidence(config, absence)
        if (ABSENCE if absence is None else absence).get("ungrounded_words"):
            decoding["banned_words"] = ungrounded_words(config, vocab, tag_map.words)
    return probes, decoding | ({"absent": absent} if absent else {})


def _absence_evidence(config: TrainConfig, absence: dict | None):
    """``(probes, decoding rules)``: the rules that keep animal words out of photos without them (an
    animal's evidence: the summed tags of its words, so "duck" counts for a bird) and, with
    ``absence["probes"]``, :data:`training.probes.PROBES` trained on the training photos' pooled grids
    and captions, with their rules (today: the person probe)."""
    from training.probes import PROBES, concept_words, fit_probes, probe_rules

    absence = ABSENCE if absence is None else absence
    if not absence:
        return {}, []
    rules = []
    if absence.get("animal_tags_below") is not None:
        tag_map, _ = _tag_setup(config)
        for concept in ANIMAL_CONCEPTS:
            words = concept_words(concept)
            tags = [w for w in (*words, *ANIMAL_EVIDENCE.get(concept, ()))
                    if tag_map is not None and w in tag_map.words]
            if tags:
                rules.append({"tags": tags, "below": absence["animal_tags_below"], "words": words})
    if not absence.get("probes"):
        return {}, rules
    probes, _ = fit_probes(config.data, config.encoder, config.cache, PROBES, limit=config.limit)
    return probes, rules + probe_rules(PROBES)


def ungrounded_words(config: TrainConfig, vocab: Vocabulary, tag_words: Sequence[str]) -> list[str]:
    """Words the decoder can only have learnt from text-only sentences, for things no tag can show:
    the words of a :mod:`training.concepts` concept that no training photo's caption uses, when none
    of the concept's words is a tag word ("giraffe", "fork", "scissors"). Nothing in a photo can be
    evidence for them, so a tag-aware bundle never says them (Flickr8k dev: every "giraffe" was
    invented, for instance on a rocket on its launch tower)."""
    from training.concepts import CONCEPTS

    items, _ = load_dataset(config.data, "train")
    if config.limit:
        items = items[:config.limit]
    used = {word for _, captions in items for caption in captions for word in clean_caption(caption)}
    tags, out = set(tag_words), []
    for concept in CONCEPTS:
        words = [phrase for phrase in concept.phrases if " " not in phrase]
        if not tags.intersection(words):
            out += [w for w in words if w in vocab and w not in used and w not in out]
    return out


def config_of_run(config: TrainConfig) -> TrainConfig:
    """The run's own hyperparameters (``train_config.json`` in ``config.out``, written by either trainer),
    with this invocation's data, run and cache folders: exporting needs the architecture it was trained with."""
    saved = Path(config.out) / "train_config.json"
    if not saved.is_file():
        return config
    known = {f for f in TrainConfig.__dataclass_fields__}
    values = {k: v for k, v in json.loads(saved.read_text()).items() if k in known}
    return TrainConfig(**(values | {"data": config.data, "out": config.out, "cache": config.cache,
                                    "text_captions": config.text_captions or values.get("text_captions")}))


def json_object(text: str) -> dict:
    """An argparse type: a JSON object, as ``--export-decoding '{"length_penalty": 0.6}'``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a JSON object is expected, as '{\"length_penalty\": 0.6}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    defaults = TrainConfig(data="", out="")
    parser.add_argument("--data", required=True, help="Flickr8k-layout folder")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, history, vocabulary")
    parser.add_argument("--encoder", default=defaults.encoder)
    parser.add_argument("--cache", default=None, help="feature cache folder")
    for name in ("epochs", "batch_size", "embedding_dim", "feature_dim", "units",
                 "min_count", "max_words", "seed", "limit"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("learning_rate", "lr_decay", "clip_norm", "dropout", "attention_reg"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--drop-one-letter", action="store_true", help="also drop one-letter words such as 'a'")
    parser.add_argument("--strategy", choices=["default", "mirrored"], default="default")
    parser.add_argument("--xla", action="store_true", help="compile the train step with XLA (slower on CPU here)")
    parser.add_argument("--export", type=Path, default=None, help="write the best epoch as a bundle here and stop")
    parser.add_argument("--export-weights", type=Path, default=None,
                        help="with --export: the weights of another epoch (runs/X/epochNN.weights.npz)")
    parser.add_argument("--export-decoding", type=json_object, default=None, metavar="JSON",
                        help="with --export: changes to the bundle's decoding settings, e.g. "
                             "'{\"length_penalty\": 0.6}' (as training.sweep_decoding writes them)")
    parser.add_argument("--keyword-threshold", type=float, default=0.5,
                        help="with --export: a tag above this probability becomes a keyword")
    parser.add_argument("--tags", action="store_true",
                        help="tag-aware decoder: tags from the encoder's ImageNet classifier, with a copy path")
    parser.add_argument("--no-copy", dest="copy", action="store_false", help="tag-aware decoder without copying")
    parser.add_argument("--text-captions", default=None,
                        help="token file of captions without photos, learnt with tags made from their words")
    parser.add_argument("--text-limit", type=int, default=None)
    parser.add_argument("--grid-dropout", type=float, default=defaults.grid_dropout)
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    parser.add_argument("--word-dropout", type=float, default=defaults.word_dropout,
                        help="scheduled dropout of the input word, its final rate (JAX trainer only)")
    parser.add_argument("--context-gate", action="store_true",
                        help="gate the attention context by the previous hidden state (the f_beta gate)")
    parser.add_argument("--no-deep-output", dest="deep_output", action="store_false",
                        help="predict the next word from the hidden state alone (no deep output layer)")
    parser.add_argument("--name", default=None,
                        help="with --export: the model's name, written into every caption's sidecar "
                             "(default: the export folder's name)")
    parser.add_argument("--description", default="Show, Attend and Tell (GRU, Bahdanau attention) on Flickr8k")
    return parser


def main(argv: list[str] | None = None) -> int:
    if "--scst" in (sys.argv[1:] if argv is None else argv):  # self-critical fine-tuning: training/scst.py
        from training.scst import main as scst_main

        return scst_main(argv)
    args = vars(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    destination, name, description = args.pop("export"), args.pop("name"), args.pop("description")
    weights, threshold = args.pop("export_weights"), args.pop("keyword_threshold")
    changes = args.pop("export_decoding")
    config = TrainConfig(**args)
    try:
        if not Path(config.data).is_dir():
            raise FileNotFoundError(f"the data folder {config.data} does not exist")
        if destination:
            config = config_of_run(config)
            print(export(config, destination, name=name or Path(destination).resolve().name, description=description,
                         weights=weights, keyword_threshold=threshold, decoding_changes=changes,
                         **shipped_settings(config)))
            return 0
        result = train(config)
    except TRAINING_ERRORS as exc:  # a setting, a file or the data: said in a line, no traceback
        print(f"python -m training.train: error: {describe(exc)}", file=sys.stderr)
        return 2
    print(json.dumps({"best_dev_bleu4_greedy": result["best_bleu4"]}))
    return 0


#: What a bad setting, a missing or damaged file or data folder raise in a run or an export.
TRAINING_ERRORS = (OSError, ValueError, zipfile.BadZipFile)  # a BundleError is a ValueError


def describe(exc: BaseException) -> str:
    """An error as one line: an OSError's file and reason."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
