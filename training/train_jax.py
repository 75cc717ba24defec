"""Train the caption decoder with Keras on the JAX backend: a GPU machine needs no TensorFlow.

    KERAS_BACKEND=jax python -m training.train_jax --data ../shared/data/flickr8k --out runs/tagaware \\
        --tags --text-captions ../shared/data/coco-captions-text/captions_val2017_text.token.txt --epochs 20

The same :class:`~model.decoder.CaptionDecoder` (written with ``keras.ops``), the same data, vocabulary,
tags and text-only sentences as :mod:`training.train`; only the loop differs: one ``jax.jit``-compiled
step per kind of batch (photos, text-only sentences) over ``stateless_call``, each batch cut after
its longest caption to a width that is a multiple of 4 (:func:`trimmed`), so each step compiles a few
times and no step runs over columns that are padding in every row. Feature grids are computed here
too (the encoder runs on the GPU through JAX) into the same cache as :mod:`training.features`; on a
CPU, fill that cache with :mod:`training.features` first (TensorFlow encoded 52 photos a second on
this project's 2-core CPU, the encoder on XLA:CPU about 4). Each epoch writes ``epochNN.weights.npz``
(variables by path, as a bundle stores them), so ``python -m training.train --export DIR
--export-weights runs/X/epochNN.weights.npz`` (TensorFlow) turns any epoch into a bundle.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from training.train import (
    TRAINING_ERRORS,
    TrainConfig,
    _tag_setup,
    build_decoder,
    check_resumable,
    describe,
    load_text_corpus,
    prepare_run,
)

log = logging.getLogger(__name__)


def compute_features(config: TrainConfig, splits: tuple[str, ...] = ("train", "dev"), batch_size: int = 64) -> int:
    """Cache the grids of every photo of ``splits`` not cached yet, with the encoder on JAX."""
    import jax
    import keras

    from model.encoders import build_encoder, get_encoder_spec
    from model.images import ImageLoadError, load_image
    from training.data import load_dataset
    from training.features import _atomic_save, _valid, default_cache_dir, feature_path

    cache = Path(config.cache) if config.cache else default_cache_dir()
    paths = []
    for split in splits:
        items, _ = load_dataset(config.data, split)
        paths += [p for p, _ in items]
    todo = [p for p in dict.fromkeys(paths) if not _valid(feature_path(cache, config.encoder, p))]
    if not todo:
        return 0
    if jax.default_backend() == "cpu":
        log.warning("encoding %d photos on the CPU through JAX (about 4 a second on a 2-core CPU); "
                    "`python -m training.features --data %s --splits ...` fills the same cache about 12x faster",
                    len(todo), config.data)
    spec = get_encoder_spec(config.encoder)
    encoder = build_encoder(config.encoder)
    tv = [v.value for v in encoder.trainable_variables]
    ntv = [v.value for v in encoder.non_trainable_variables]
    run = jax.jit(lambda tv, ntv, x: encoder.stateless_call(tv, ntv, x, training=False)[0])
    (cache / config.encoder).mkdir(parents=True, exist_ok=True)
    from concurrent.futures import ThreadPoolExecutor

    def load(path):
        try:
            return path, load_image(path, spec.input_size)
        except ImageLoadError:
            return path, None

    done, started = 0, time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for i in range(0, len(todo), batch_size):
            loaded = [(p, a) for p, a in pool.map(load, todo[i:i + batch_size]) if a is not None]
            pixels = np.stack([a for _, a in loaded]).astype(np.float32)
            if len(pixels) < batch_size:  # one compiled shape
                pixels = np.concatenate([pixels, np.zeros((batch_size - len(pixels),) + pixels.shape[1:], np.float32)])
            out = run(tv, ntv, pixels)
            grids = np.asarray(keras.ops.convert_to_numpy(out[0] if isinstance(out, (list, tuple)) else out))
            grids = grids[:len(loaded)].reshape(len(loaded), -1, grids.shape[-1]).astype(np.float16)
            for (path, _), grid in zip(loaded, grids):
                _atomic_save(feature_path(cache, config.encoder, path), grid)
            done += len(loaded)
    log.info("features: %d grids in %.0f s", done, time.perf_counter() - started)
    return done


def _batches(n: int, batch_size: int, rng: np.random.Generator, *, shuffle: bool, drop_remainder: bool):
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def _padded(sequences: list[list[int]], length: int) -> np.ndarray:
    out = np.zeros((len(sequences), length), np.int32)
    for i, seq in enumerate(sequences):
        out[i, :len(seq)] = seq[:length]
    return out


def trimmed(batch: np.ndarray, pad_id: int = 0, multiple: int = 4) -> np.ndarray:
    """``batch (captions, length)`` cut after its longest caption, the width rounded up to
    ``multiple`` so that a few widths compile: the columns cut are padding in every row, which the
    loss masks, so the step computes the same loss and gradients on fewer time steps. Random
    batches of Flickr8k and COCO captions need about 27 of the 32 padded columns."""
    used = np.flatnonzero((batch != pad_id).any(axis=0))
    width = 0 if used.size == 0 else int(used[-1]) + 1
    width = min(batch.shape[1], max(-(-width // multiple) * multiple, 2))
    return batch[:, :width]


class JaxTrainer:
    """The decoder, Adam and two compiled steps (photos; text-only sentences), all stateless."""

    def __init__(self, config: TrainConfig, vocab, channels: int, tag_words: tuple[str, ...], steps_per_epoch: int):
        import jax
        import keras

        from model.decoder import attention_regularizer, masked_nll

        keras.utils.set_random_seed(config.seed)
        self.config, self.vocab = config, vocab
        self.decoder = build_decoder(config, vocab, channels, tag_words)
        schedule = keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, decay_steps=max(steps_per_epoch, 1), decay_rate=config.lr_decay)
        self.optimizer = keras.optimizers.Adam(schedule, global_clipnorm=config.clip_norm)
        self.optimizer.build(self.decoder.trainable_variables)
        decoder, optimizer, pad = self.decoder, self.optimizer, vocab.pad_id

        import jax.numpy as jnp

        def forward(tv, ntv, feats, tags, inputs, training):
            """Teacher forcing with the time loop as one ``lax.scan`` (a Python loop would unroll 31
            steps into the compiled graph and take minutes to compile)."""
            mapping = list(zip(decoder.trainable_variables, tv)) + list(zip(decoder.non_trainable_variables, ntv))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                memory, hidden = decoder.prepare(feats, tags, training=training)

                def body(h, token):
                    h, context, embedded, weights = decoder.step(token, h, memory, training=training)
                    return h, (h, context, embedded, weights)

                _, outs = jax.lax.scan(body, hidden, jnp.transpose(inputs))  # each (time, batch, …)
                hs, contexts, embeddeds, attention = (jnp.swapaxes(x, 0, 1) for x in outs)
                log_probs = decoder.log_probs(hs, contexts, embeddeds, memory, training=training)
            new_ntv = [scope.get_current_value(v) for v in decoder.non_trainable_variables]
            return log_probs, attention, new_ntv

        def loss_fn(tv, ntv, feats, tags, seq, key, word_dropout):
            inputs, targets = seq[:, :-1], seq[:, 1:]
            # Scheduled word dropout: input words after <start> become <unk> at rate ``word_dropout``.
            dropped = jax.random.uniform(key, inputs.shape) < word_dropout  # (batch, time)
            dropped = dropped.at[:, 0].set(False)
            inputs = jnp.where(dropped & (inputs != pad), vocab.unk_id, inputs)
            log_probs, attention, ntv = forward(tv, ntv, feats, tags, inputs, True)
            xent = masked_nll(targets, log_probs, pad)
            loss = masked_nll(targets, log_probs, pad, config.label_smoothing) if config.label_smoothing else xent
            if feats is not None:
                loss = loss + config.attention_reg * attention_regularizer(attention, targets, pad)
            return loss, (xent, ntv)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def step(state, feats, tags, seq, key, word_dropout):
            tv, ntv, ov = state
            (_, (xent, ntv)), grads = grad_fn(tv, ntv, feats, tags, seq, key, word_dropout)
            tv, ov = optimizer.stateless_apply(ov, grads, tv)
            return (tv, ntv, ov), xent

        self._paired = jax.jit(step)
        self._text = jax.jit(lambda state, tags, seq, key, rate: step(state, None, tags, seq, key, rate))
        self._key = jax.random.PRNGKey(config.seed)
        self.word_dropout = 0.0  # this epoch's rate (:meth:`set_epoch`)
        self.state = ([v.value for v in decoder.trainable_variables],
                      [v.value for v in decoder.non_trainable_variables],
                      [v.value for v in optimizer.variables])

    def set_epoch(self, epoch: int) -> None:
        """The scheduled word-dropout rate of ``epoch`` (1-based): rising linearly to the configured
        rate over the first half of the epochs, then constant."""
        ramp = max(self.config.epochs // 2, 1)
        self.word_dropout = self.config.word_dropout * min(epoch / ramp, 1.0)

    def _next_key(self):
        import jax

        self._key, key = jax.random.split(self._key)
        return key

    def paired_step(self, feats, tags, seq) -> float:
        seq = trimmed(seq, self.vocab.pad_id)
        self.state, xent = self._paired(self.state, feats, tags, seq, self._next_key(), np.float32(self.word_dropout))
        return xent

    def text_step(self, tags, seq) -> float:
        seq = trimmed(seq, self.vocab.pad_id)
        self.state, xent = self._text(self.state, tags, seq, self._next_key(), np.float32(self.word_dropout))
        return xent

    def load_weights(self, path: str | Path) -> None:
        """Start from saved decoder weights (:meth:`save_weights`' format); the optimizer starts afresh."""
        from model.bundle import assign_variables

        with np.load(path) as stored:
            assign_variables(self.decoder, {key: stored[key] for key in stored.files})
        self.state = ([v.value for v in self.decoder.trainable_variables],
                      [v.value for v in self.decoder.non_trainable_variables], self.state[2])

    def sync(self) -> None:
        """Write the compiled state back into the Keras variables (for decoding and saving)."""
        tv, ntv, ov = self.state
        for var, value in zip(self.decoder.trainable_variables, tv):
            var.assign(value)
        for var, value in zip(self.decoder.non_trainable_variables, ntv):
            var.assign(value)
        for var, value in zip(self.optimizer.variables, ov):
            var.assign(value)

    def greedy(self, features: np.ndarray, tags: np.ndarray | None, batch_size: int = 500) -> list[list[str]]:
        """Greedy captions (``<unk>`` banned), with the current variables."""
        import jax
        import jax.numpy as jnp

        dec, vocab = self.decoder, self.vocab
        ban = np.zeros(len(vocab), np.float32)
        ban[[vocab.pad_id, vocab.start_id, vocab.unk_id]] = -1e9
        tv = [v.value for v in dec.trainable_variables]
        ntv = [v.value for v in dec.non_trainable_variables]
        max_len = self.config.max_words + 1

        def run(tv, ntv, feats, tag_rows):
            mapping = list(zip(dec.trainable_variables, tv)) + list(zip(dec.non_trainable_variables, ntv))
            import keras

            with keras.StatelessScope(state_mapping=mapping):
                memory, hidden = dec.prepare(feats, tag_rows)

                def body(carry, _):
                    hidden, token = carry
                    hidden, context, embedded, _w = dec.step(token, hidden, memory)
                    token = jnp.argmax(dec.log_probs(hidden, context, embedded, memory) + ban,
                                       axis=-1).astype(jnp.int32)
                    return (hidden, token), token

                start = jnp.full((feats.shape[0],), vocab.start_id, jnp.int32)
                _, tokens = jax.lax.scan(body, (hidden, start), None, length=max_len)
                return jnp.transpose(tokens)  # (batch, time)

        if getattr(self, "_greedy_compiled", None) is None:
            self._greedy_compiled = jax.jit(run)
        compiled = self._greedy_compiled
        captions = []
        for i in range(0, len(features), batch_size):
            feats = features[i:i + batch_size].astype(np.float32)
            n = len(feats)
            tag_rows = (tags[i:i + batch_size] if tags is not None else np.zeros((n, 0), np.float32)).astype(np.float32)
            if n < batch_size:
                feats = np.concatenate([feats, np.zeros((batch_size - n,) + feats.shape[1:], np.float32)])
                tag_rows = np.concatenate([tag_rows, np.zeros((batch_size - n, tag_rows.shape[1]), np.float32)])
            tokens = np.asarray(compiled(tv, ntv, feats, tag_rows))[:n]
            for row in tokens:
                words = []
                for t in row:
                    if int(t) == vocab.end_id:
                        break
                    words.append(vocab.word_of(int(t)))
                captions.append(words)
        return captions

    def save_weights(self, path: Path, dtype=np.float32) -> None:
        import keras

        from model.bundle import variables_by_path

        arrays = {k: np.asarray(keras.ops.convert_to_numpy(v.value), dtype)
                  for k, v in variables_by_path(self.decoder).items()}
        tmp = Path(path).with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)


def train(config: TrainConfig, *, watch: list[tuple[str, np.ndarray, np.ndarray | None, list, list]] = (),
          init_weights: str | Path | None = None, text_share: float = 1.0) -> dict:
    """Train for ``config.epochs`` epochs; returns the history. ``watch``: extra ``(name, features, tags,
    references)`` sets whose greedy captions are scored (BLEU-4 and, where the references allow,
    concept F1) every epoch, for selection on more than one dev set. ``init_weights``: start from an
    epoch's weights (``runs/X/epochNN.weights.npz``, same vocabulary) instead of from scratch, with a
    fresh optimizer: fine-tuning. ``text_share``: the share of the text-only batches drawn each epoch
    (1.0: all of them; less tilts the mix towards the photo captions' style)."""
    if not 0.0 <= text_share <= 1.0:
        raise ValueError(f"text_share must be in [0, 1], got {text_share}")
    check_resumable(config, "jax")  # before the init's vocabulary goes into the run folder
    if init_weights is not None:  # the weights' own vocabulary, so token ids keep their meaning
        source_vocab = Path(init_weights).parent / "vocab.json"
        if not source_vocab.is_file():
            raise FileNotFoundError(f"{source_vocab}: fine-tuning needs the vocabulary of {init_weights}")
        Path(config.out).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_vocab, Path(config.out) / "vocab.json")
    from training.metrics import bleu4_fast

    out = Path(config.out)
    tag_map, tag_words, vocab, train_data, dev_data = prepare_run(config, trainer="jax")
    length = config.max_words + 2
    pairs = _padded(train_data.sequences, length)
    no_tags = lambda n: np.zeros((n, 0), np.float32)  # noqa: E731
    train_tags = train_data.tags if train_data.tags is not None else no_tags(len(train_data.features))

    text_pairs, text_named, sentence_tagger = None, [], None
    if config.tags and config.text_captions:
        from training.tagdata import SentenceTagger

        sentence_tagger = SentenceTagger(tag_map)
        sentences = load_text_corpus(config)
        text_pairs = _padded([vocab.encode(w) for w in sentences], length)
        text_named = [sentence_tagger.named(w) for w in sentences]
        log.info("text-only sentences: %d", len(sentences))

    steps = len(pairs) // config.batch_size
    if steps == 0:  # every step takes a whole batch (one compiled shape): the epochs would train nothing
        raise ValueError(f"{len(pairs)} training captions do not fill one batch of {config.batch_size}: "
                         f"lower --batch-size")
    trainer = JaxTrainer(config, vocab, train_data.features.shape[-1], tag_words, steps)
    if init_weights is not None:
        trainer.load_weights(init_weights)
        log.info("initialised from %s", init_weights)
    import jax.numpy as jnp

    features = jnp.asarray(train_data.features)  # on the accelerator once; batches are gathered there
    train_tags = jnp.asarray(train_tags)
    if init_weights is not None or text_share != 1.0:
        run_config = json.loads((out / "train_config.json").read_text())
        run_config.update(init_weights=None if init_weights is None else str(init_weights), text_share=text_share)
        (out / "train_config.json").write_text(json.dumps(run_config, indent=2))
    history = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        trainer.set_epoch(epoch)
        rng = np.random.default_rng(config.seed + epoch)
        jobs = [("p", b) for b in _batches(len(pairs), config.batch_size, rng, shuffle=True, drop_remainder=True)]
        if text_pairs is not None:
            text_tags = sentence_tagger.tags(text_named, rng)
            text_batches = _batches(len(text_pairs), config.batch_size, rng, shuffle=True, drop_remainder=True)
            jobs += [("t", b) for b in text_batches[:round(text_share * len(text_batches))]]
        order = rng.permutation(len(jobs))
        losses, text_losses = [], []
        for j in order:
            kind, idx = jobs[j]
            if kind == "p":
                photos = jnp.asarray(train_data.pairs_image[idx])
                losses.append(trainer.paired_step(features[photos], train_tags[photos], pairs[idx]))
            else:
                text_losses.append(trainer.text_step(text_tags[idx], text_pairs[idx]))
        train_loss = float(np.mean([float(x) for x in losses]))
        text_loss = float(np.mean([float(x) for x in text_losses])) if text_losses else None
        seconds = time.perf_counter() - started
        trainer.sync()
        captions = trainer.greedy(dev_data.features, dev_data.tags)
        record = {"epoch": epoch, "train_loss": train_loss, "text_loss": text_loss,
                  "word_dropout": trainer.word_dropout,
                  "dev_bleu4_greedy": bleu4_fast(dev_data.references, captions), "train_seconds": round(seconds, 1),
                  "distinct_dev_captions": len({" ".join(c) for c in captions})}
        for name, feats, tags, refs, raw_refs in watch:
            got = trainer.greedy(feats, tags)
            record[f"{name}_bleu4_greedy"] = bleu4_fast(refs, got)
            try:
                from training.concepts import concept_scores

                scores = concept_scores(raw_refs, [" ".join(c) for c in got])
                record[f"{name}_concept_f1"] = scores["concept-F1"]
                record[f"{name}_hallucination"] = scores["hallucination"]
            except Exception as exc:  # noqa: BLE001 - the concept metrics are optional here
                record[f"{name}_concepts_error"] = repr(exc)[:200]
            record[f"{name}_examples"] = [" ".join(c) for c in got[:4]]
        trainer.save_weights(out / f"epoch{epoch:02d}.weights.npz", np.float16)
        history.append(record)
        (out / "history.json").write_text(json.dumps(history, indent=2))
        log.info("epoch %s", json.dumps(record))
    return {"history": history}


def build_parser() -> argparse.ArgumentParser:
    from training.train import build_parser as tf_parser

    parser = tf_parser()
    parser.prog = "python -m training.train_jax"
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--init-weights", type=Path, default=None,
                        help="fine-tune: start from these decoder weights (runs/X/epochNN.weights.npz)")
    parser.add_argument("--text-share", type=float, default=1.0,
                        help="share of the text-only batches drawn each epoch (default 1.0)")
    parser.add_argument("--watch", nargs=2, action="append", default=[], metavar=("IMAGES", "TOKENS"),
                        help="also score greedy captions on this captioned folder every epoch")
    return parser


# Options the JAX trainers share with the TensorFlow commands' parsers that only an export reads
# (exports are written by ``training.train``, with TensorFlow).
EXPORT_ONLY = ("scst", "export", "export_weights", "export_decoding", "keyword_threshold", "name", "description")


def parse_jax_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> dict:
    """The options of a JAX trainer's command line, less :data:`EXPORT_ONLY`; selects Keras' JAX
    backend (unless one is set) and sets up logging."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for key in EXPORT_ONLY:
        args.pop(key, None)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_jax_args(build_parser(), argv)
    watch_args, init_weights, text_share = args.pop("watch"), args.pop("init_weights"), args.pop("text_share")
    config = TrainConfig(**args)
    try:
        check_resumable(config, "jax")  # before minutes of features
        compute_features(config)
        watch = [_watch_set(config, Path(images), Path(tokens)) for images, tokens in watch_args]
        train(config, watch=watch, init_weights=init_weights, text_share=text_share)
    except TRAINING_ERRORS as exc:  # a setting, a file or the data: said in a line, no traceback
        print(f"python -m training.train_jax: error: {describe(exc)}", file=sys.stderr)
        return 2
    return 0


def _watch_set(config: TrainConfig, images: Path, tokens: Path):
    """``(name, features, tags, references)`` of a captioned folder, features computed here."""
    from training.data import clean_caption, load_captions
    from training.features import default_cache_dir, load_features

    captions = load_captions(tokens)
    names = [n for n in captions if (images / n).is_file()]
    sub = TrainConfig(**(asdict(config) | {"data": str(images.parent)}))
    cache = Path(config.cache) if config.cache else default_cache_dir()
    _features_for(sub, [images / n for n in names], cache)
    feats = load_features(cache, config.encoder, [images / n for n in names])
    _, tagger = _tag_setup(config)
    refs = [[clean_caption(c) for c in captions[n]] for n in names]
    return images.parent.name, feats, tagger(feats) if tagger else None, refs, [captions[n] for n in names]


def _features_for(config: TrainConfig, paths: list[Path], cache: Path) -> None:
    import jax
    import keras

    from model.encoders import build_encoder, get_encoder_spec
    from model.images import load_image
    from training.features import _atomic_save, _valid, feature_path

    todo = [p for p in paths if not _valid(feature_path(cache, config.encoder, p))]
    if not todo:
        return
    spec = get_encoder_spec(config.encoder)
    encoder = build_encoder(config.encoder)
    (cache / config.encoder).mkdir(parents=True, exist_ok=True)
    for i in range(0, len(todo), 32):
        chunk = todo[i:i + 32]
        out = encoder(np.stack([load_image(p, spec.input_size) for p in chunk]).astype(np.float32), training=False)
        grids = np.asarray(keras.ops.convert_to_numpy(out[0] if isinstance(out, (list, tuple)) else out))
        for path, grid in zip(chunk, grids.reshape(len(chunk), -1, grids.shape[-1]).astype(np.float16)):
            _atomic_save(feature_path(cache, config.encoder, path), grid)
    del jax


if __name__ == "__main__":
    raise SystemExit(main())
