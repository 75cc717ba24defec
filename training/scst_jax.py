"""Self-critical training on the JAX backend: SCST on a GPU machine that has no TensorFlow.

    KERAS_BACKEND=jax python -m training.scst_jax --data ../shared/data/flickr8k --out runs/scst-gpu \\
        --init runs/lite2 --scst-candidates guarded --epochs 10 --batch-size 50 --text-every 4

The same run as :mod:`training.scst` (its settings, reward, candidates and baseline; the data and
vocabulary of the ``--init`` cross-entropy run), with the decoder, Adam and the text-only step of
:class:`training.train_jax.JaxTrainer`. Candidates come from the shared numpy search
(:class:`model.search.Search`) driving the decoder through :class:`JaxDecoderSteps`, under the
exported bundle's decoding and guards with ``--scst-candidates guarded``; the update is one
``jax.jit`` step (teacher forcing as a ``lax.scan``). Every epoch ends with dev captions (beam
``--eval-beam``, under the guarded search when candidates are guarded) scored with BLEU-4 and CIDEr-D
without Java, and, for each ``--watch`` folder, concept F1 and hallucination; each epoch's weights are
written as ``epochNN.weights.npz``, so ``python -m training.train --scst --out RUN --export DIR
--export-weights RUN/epochNN.weights.npz`` (TensorFlow) turns the chosen one into a bundle. A run
stopped part-way resumes from its last epoch's weights (with a fresh optimiser).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from training.scst import (
    BASELINES,
    SCSTConfig,
    GuardedSearch,
    Reward,
    best_captions,
    candidate_rows,
    concept_figures,
    frozen_mask,
    init_weights_path,
    mean_of_others,
    prepare_scst_run,
    start_run_folder,
)

log = logging.getLogger(__name__)


def _bucket(rows: int, quantum: int = 64) -> int:
    """Rows padded up to a multiple of ``quantum``, so each compiled step serves many batch sizes."""
    return max(quantum, int(math.ceil(rows / quantum)) * quantum)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if len(x) == rows:
        return x
    return np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)])


class JaxDecoderSteps:
    """A Keras decoder's ``prepare``/``step`` on JAX for :class:`model.search.Search`: compiled over
    the trainer's current weights (``weights()`` returns ``(trainable, non_trainable)`` values), with
    rows padded to multiples of 64 so a search's changing row counts reuse a few compiled shapes."""

    def __init__(self, decoder, weights):
        import jax
        import keras

        from model.onnx_export import decoder_functions

        self.decoder, self.weights = decoder, weights
        self.num_tags = int(getattr(decoder, "num_tags", 0) or 0)
        prepare, step = decoder_functions(decoder)

        def bind(fn):
            def run(tv, ntv, *args):
                mapping = list(zip(decoder.trainable_variables, tv)) + list(zip(decoder.non_trainable_variables, ntv))
                with keras.StatelessScope(state_mapping=mapping):
                    return fn(*args)

            return jax.jit(run)

        self._prepare, self._step = bind(prepare), bind(step)
        self._memory_key, self._memory_host, self._memory = None, None, None

    def _device_memory(self, memory: tuple[np.ndarray, ...], rows: int):
        """The memory on the accelerator, sent once while the search passes the same arrays step
        after step (it passes new ones only when it gathers the rows still alive)."""
        import jax.numpy as jnp

        key = tuple(id(m) for m in memory) + (rows,)
        if key != self._memory_key:
            self._memory = tuple(jnp.asarray(_pad_rows(m, rows)) for m in memory)
            self._memory_key, self._memory_host = key, memory  # held, so the ids stay theirs
        return self._memory

    def prepare(self, features: np.ndarray, tags: np.ndarray | None = None):
        n = len(features)
        rows = _bucket(n)
        args = [_pad_rows(np.asarray(features, np.float32), rows)]
        if self.num_tags:
            args.append(_pad_rows(np.asarray(tags, np.float32), rows))
        *memory, hidden = self._prepare(*self.weights(), *args)
        return tuple(np.asarray(m)[:n] for m in memory), np.asarray(hidden)[:n]

    def step(self, tokens: np.ndarray, hidden: np.ndarray, memory: tuple[np.ndarray, ...]):
        n = len(tokens)
        rows = _bucket(n)
        hidden, scores, attention = self._step(
            *self.weights(), _pad_rows(np.asarray(tokens, np.int32), rows), _pad_rows(hidden, rows),
            *self._device_memory(memory, rows))
        return np.asarray(hidden)[:n], np.asarray(scores)[:n], np.asarray(attention)[:n]


class PlainSearch:
    """Beam search with only ``<pad>``, ``<start>`` and ``<unk>`` banned (``--scst-candidates beam``)."""

    def __init__(self, steps: JaxDecoderSteps, vocab, max_length: int):
        from model.search import Search

        self.steps = steps
        self.search = Search(steps.step, vocab_size=len(vocab), start_id=vocab.start_id, end_id=vocab.end_id,
                             pad_id=vocab.pad_id, max_length=max_length,
                             banned_ids=(vocab.pad_id, vocab.start_id, vocab.unk_id))

    def beam(self, features: np.ndarray, tags: np.ndarray | None, beam_size: int):
        memory, hidden = self.steps.prepare(features, tags)
        return self.search.beam(memory, hidden, beam_size)


def check_settings(config: SCSTConfig) -> None:
    """Refuse the settings this trainer cannot run, before any data is read.

    Raises:
        ValueError: an unknown baseline, sampled candidates, or the mean baseline with one sample.
    """
    if config.baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {config.baseline!r}")
    if config.candidates == "sample":
        raise ValueError("the JAX trainer scores beam candidates (beam or guarded); sampling is in training.scst")
    if config.samples < 2 and config.baseline == "mean":
        raise ValueError("the mean-of-other-samples baseline needs at least 2 samples per photo")


class JaxSCST:
    """The policy-gradient update, and the candidates' search, around a :class:`~training.train_jax.JaxTrainer`."""

    def __init__(self, trainer, vocab, reward: Reward, config: SCSTConfig, search):
        import jax
        import jax.numpy as jnp
        import keras

        check_settings(config)
        self.trainer, self.vocab, self.reward, self.config, self.search = trainer, vocab, reward, config, search
        self.max_length = trainer.config.max_words
        decoder, optimizer, k, pad = trainer.decoder, trainer.optimizer, config.samples, vocab.pad_id
        ban = np.zeros(len(vocab), np.float32)
        ban[[vocab.pad_id, vocab.start_id, vocab.unk_id]] = -1e9
        ban = jnp.asarray(ban)

        def loss_fn(tv, ntv, feats, tags, inputs, targets, advantages):
            """``-(r - b) log p(caption)`` over the candidates' tokens (as :mod:`training.scst`): the
            per-photo work of ``prepare`` once, then tiled over the photo's ``k`` captions."""
            mapping = list(zip(decoder.trainable_variables, tv)) + list(zip(decoder.non_trainable_variables, ntv))
            with keras.StatelessScope(state_mapping=mapping):
                memory, hidden = decoder.prepare(feats, tags, training=False)
                memory = jax.tree_util.tree_map(lambda m: jnp.repeat(m, k, axis=0), memory)
                hidden = jnp.repeat(hidden, k, axis=0)

                def body(h, token):
                    h, context, embedded, _ = decoder.step(token, h, memory, training=False)
                    return h, (h, context, embedded)

                _, outs = jax.lax.scan(body, hidden, jnp.transpose(inputs))
                hs, contexts, embeddeds = (jnp.swapaxes(x, 0, 1) for x in outs)
                log_probs = decoder.log_probs(hs, contexts, embeddeds, memory, training=False)
            log_probs = jax.nn.log_softmax(log_probs + ban)
            picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
            mask = (targets != pad).astype(jnp.float32)
            return -jnp.sum(picked * mask * advantages[:, None]) / jnp.maximum(jnp.sum(mask), 1.0)

        grad_fn = jax.value_and_grad(loss_fn)
        self._frozen = frozen = frozen_mask(decoder, config.freeze)

        def update(state, feats, tags, inputs, targets, advantages):
            tv, ntv, ov = state
            loss, grads = grad_fn(tv, ntv, feats, tags, inputs, targets, advantages)
            grads = [jnp.zeros_like(g) if f else g for g, f in zip(grads, frozen)]
            norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in grads))
            new, ov = optimizer.stateless_apply(ov, grads, tv)  # Adam clips to the run's global norm
            # Frozen parameters keep their values (Adam's moments from cross-entropy would still move them).
            return ([old if f else v for old, v, f in zip(tv, new, frozen)], ntv, ov), loss, norm

        self._update = jax.jit(update)

    def train_step(self, photos: np.ndarray, features: np.ndarray, tags: np.ndarray | None) -> dict[str, float]:
        k, vocab = self.config.samples, self.vocab
        timer = time.perf_counter()
        features = np.asarray(features, np.float32)
        tags = None if tags is None else np.asarray(tags, np.float32)
        tokens, lengths, finished = candidate_rows(self.search.beam(features, tags, k), self.max_length, vocab)
        searched = time.perf_counter()
        reward, cider, parts = self.reward(np.repeat(photos, k), tokens, lengths, finished)
        reward = reward.reshape(-1, k)
        if self.config.baseline == "mean":
            baseline = mean_of_others(reward)
        else:  # the best (first) beam caption's reward stands in for the greedy caption's
            baseline = reward[:, :1]
        advantages = (reward - baseline).reshape(-1).astype(np.float32)
        scored = time.perf_counter()
        steps = min(self.max_length, int(math.ceil((lengths.max() + 1) / 8.0) * 8))  # few compiled lengths
        targets = tokens[:, :steps]
        inputs = np.concatenate([np.full((len(tokens), 1), vocab.start_id, np.int32), targets[:, :-1]], axis=1)
        tag_in = tags if tags is not None else np.zeros((len(features), 0), np.float32)
        self.trainer.state, loss, norm = self._update(self.trainer.state, features, tag_in, inputs, targets, advantages)
        loss = float(loss)
        return {"loss": loss, "reward": float(reward.mean()), "cider": float(cider.mean()), "grad_norm": float(norm),
                "dangling": float(parts["dangling"].mean()), "repeats": float((parts["repeats"] > 0).mean()),
                "agreement": float(parts["agreement"].mean()), "length": float(lengths.mean()),
                **concept_figures(parts), "search_s": searched - timer, "reward_s": scored - searched,
                "update_s": time.perf_counter() - scored}

    def text_step(self, tags, tokens) -> float:
        """The trainer's cross-entropy step on text-only sentences (``text_every``), the frozen
        parameters put back after it."""
        kept = [v for v, f in zip(self.trainer.state[0], self._frozen) if f]
        loss = self.trainer.text_step(tags, tokens)
        tv, ntv, ov = self.trainer.state
        values = iter(kept)
        self.trainer.state = ([next(values) if f else v for v, f in zip(tv, self._frozen)], ntv, ov)
        return loss

    def captions(self, features: np.ndarray, tags: np.ndarray | None, beam: int, batch_size: int = 200):
        out = []
        for i in range(0, len(features), batch_size):
            chunk_tags = None if tags is None else tags[i:i + batch_size]
            out += best_captions(self.search.beam(np.asarray(features[i:i + batch_size], np.float32), chunk_tags, beam),
                                 self.vocab)
        return out


def run_scst_jax(config: SCSTConfig, *, watch=()) -> dict:
    """SCST for ``config.epochs`` epochs on JAX; ``watch``: ``(name, features, tags, raw references)``
    sets (everyday photos, say) whose captions are scored each epoch beside dev. Returns the history."""
    from training.cider import CiderD
    from training.concepts import concept_scores
    from training.guards import NounForms, caption_guards
    from training.metrics import bleu4_fast
    from training.train_jax import JaxTrainer, _batches, _padded

    check_settings(config)
    out = Path(config.out)
    run = prepare_scst_run(config)
    train_config, vocab, tag_map, train_data = run.train_config, run.vocab, run.tag_map, run.train_data
    (out / "scst_config.json").write_text(json.dumps(asdict(config) | {"trainer": "jax"}, indent=2))
    photos_per_epoch = len(train_data.images) - len(train_data.images) % config.batch_size
    steps_per_epoch = photos_per_epoch // config.batch_size
    if steps_per_epoch == 0:  # every step takes a whole batch (one compiled shape): an epoch would do nothing
        raise ValueError(f"{len(train_data.images)} training photos do not fill one batch of {config.batch_size}: "
                         f"lower --batch-size")
    if config.max_steps:
        steps_per_epoch = min(steps_per_epoch, config.max_steps)
    trainer = JaxTrainer(train_config, vocab, train_data.features.shape[-1],
                         tag_map.words if tag_map is not None else (), max(steps_per_epoch, 1))
    done = sorted(out.glob("epoch[0-9][0-9].weights.npz"))
    start = done[-1] if done else init_weights_path(config)
    trainer.load_weights(start)
    first_epoch = int(done[-1].name[5:7]) + 1 if done else 1
    log.info("starting from %s", start if done else config.init)

    steps = JaxDecoderSteps(trainer.decoder, lambda: trainer.state[:2])
    if config.candidates == "guarded":
        from training.train import bundle_decoding, shipped_settings

        probes, decoding = bundle_decoding(train_config, vocab, tag_map, **shipped_settings(train_config))
        search = GuardedSearch(trainer.decoder, vocab, decoding, probes, tag_map, steps=steps)
    else:
        search = PlainSearch(steps, vocab, trainer.config.max_words)
    reward = Reward(vocab, run.cider, run.reference_lengths, config, run.train_data.references, run.train_tags,
                    tag_map.words if tag_map is not None else ())
    scst = JaxSCST(trainer, vocab, reward, config, search)

    text_pairs = None  # the init run's text-only sentences, for the cross-entropy steps
    if config.text_every and tag_map is not None and train_config.text_captions:
        from training.tagdata import SentenceTagger
        from training.train import load_text_corpus

        sentence_tagger = SentenceTagger(tag_map)
        sentences = load_text_corpus(train_config)
        text_pairs = _padded([vocab.encode(w) for w in sentences], train_config.max_words + 2)
        text_named = [sentence_tagger.named(w) for w in sentences]
        log.info("text-only sentences: %d, a cross-entropy batch after every %d SCST steps", len(sentences),
                 config.text_every)

    nouns = NounForms([vocab.word_of(i) for i in range(len(vocab))])
    dev_cider = CiderD(run.dev_data.references)  # CIDEr-D with the dev references' document frequencies
    dev_photos = np.arange(len(run.dev_data.references))

    def evaluate() -> dict:
        started = time.perf_counter()
        captions = scst.captions(run.dev_data.features, run.dev_tags, config.eval_beam)
        record = {"dev_bleu4": bleu4_fast(run.dev_data.references, captions),
                  "dev_cider_d": float(np.mean(dev_cider.score_captions(dev_photos, captions))),
                  "dev_guards": caption_guards(captions, nouns), "example": " ".join(captions[0])}
        dev_concepts = concept_scores([run.dev_refs[i] for i in range(len(captions))], [" ".join(c) for c in captions])
        record |= {"dev_concept_f1": dev_concepts["concept-F1"], "dev_hallucination": dev_concepts["hallucination"]}
        for name, feats, tags, raw in watch:
            got = [" ".join(c) for c in scst.captions(feats, tags, config.eval_beam)]
            scores = concept_scores(raw, got)
            record[name] = {"concept_f1": scores["concept-F1"], "hallucination": scores["hallucination"],
                            "quantified_singular": caption_guards([c.split() for c in got],
                                                                  nouns)["quantified_singular"],
                            "examples": got[:6]}
        record["eval_seconds"] = round(time.perf_counter() - started, 1)
        return record

    history_path = out / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    history = [h for h in history if h["epoch"] < first_epoch]
    if not history:
        history.append({"epoch": 0, **evaluate()})
        history_path.write_text(json.dumps(history, indent=2))
        log.info("before SCST: %s", _summary(history[0]))
    for epoch in range(first_epoch, config.epochs + 1):
        rng = np.random.default_rng(config.seed + epoch)
        order = rng.permutation(len(train_data.images))[:photos_per_epoch]
        if text_pairs is not None:  # fresh tag noise and order each epoch, as in cross-entropy training
            text_tags = sentence_tagger.tags(text_named, rng)
            text_batches = itertools.cycle(_batches(len(text_pairs), train_config.batch_size, rng, shuffle=True,
                                                    drop_remainder=True))
        figures, started = [], time.perf_counter()
        for step in range(steps_per_epoch):
            photos = np.sort(order[step * config.batch_size:(step + 1) * config.batch_size])
            tags = None if run.train_tags is None else run.train_tags[photos]
            figures.append(scst.train_step(photos, train_data.features[photos], tags))
            if text_pairs is not None and step % config.text_every == 0:
                idx = next(text_batches)
                figures[-1]["text_loss"] = float(scst.text_step(text_tags[idx], text_pairs[idx]))
            if step % 20 == 0:
                log.info("epoch %d step %d: %s", epoch, step, " ".join(f"{k} {v:.3f}" for k, v in figures[-1].items()))
        seconds = time.perf_counter() - started
        train = {key: float(np.mean([f[key] for f in figures if key in f])) for key in figures[0]}
        train["seconds"] = round(seconds, 1)
        trainer.sync()
        trainer.save_weights(out / f"epoch{epoch:02d}.weights.npz", np.float16)
        record = {"epoch": epoch, "train": train, **evaluate()}
        history.append(record)
        history_path.write_text(json.dumps(history, indent=2))
        log.info("epoch %d: reward %.3f, candidate CIDEr-D %.3f, %.0f s; %s", epoch, train["reward"], train["cider"],
                 seconds, _summary(record))
    return {"history": history}


def _summary(record: dict) -> str:
    guards = record["dev_guards"]
    text = (f"dev BLEU-4 {record['dev_bleu4']:.4f} CIDEr-D {record['dev_cider_d']:.4f}, ends in function word "
            f"{guards['ends_in_function_word']:.3f}, {guards['distinct_captions']} distinct captions")
    for key, value in record.items():
        if isinstance(value, dict) and "concept_f1" in value:
            f1, halluc = (("n/a" if x is None else f"{x:.3f}") for x in (value["concept_f1"], value["hallucination"]))
            text += f"; {key} F1 {f1} halluc {halluc}"
    return text + f"; e.g. {record['example']!r}"


def build_parser() -> argparse.ArgumentParser:
    from training.scst import build_parser as tf_parser

    parser = tf_parser()
    parser.prog = "python -m training.scst_jax"
    parser.description = __doc__.splitlines()[0]
    for action in parser._actions:  # noqa: SLF001 - the same options, --scst implied
        if action.dest == "scst":
            action.required = False
    parser.add_argument("--watch", nargs=2, action="append", default=[], metavar=("IMAGES", "TOKENS"),
                        help="also score captions of this captioned folder every epoch (concept F1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from training.scst import _train_config
    from training.train_jax import _watch_set, compute_features, parse_jax_args

    args = parse_jax_args(build_parser(), argv)
    watch_args = args.pop("watch")
    config = SCSTConfig(**args)

    if not (Path(config.out) / "init_train_config.json").is_file() and not config.init:  # not a resumed run
        raise SystemExit("a new SCST run needs --init RUN (a finished cross-entropy run folder, or a model bundle)")
    init_config = _train_config(config, start_run_folder(config))
    compute_features(init_config)  # the grids not cached yet, with the encoder on JAX
    watch = []
    if watch_args:
        for images, tokens in watch_args:
            name, feats, tags, _refs, raw = _watch_set(init_config, Path(images), Path(tokens))
            watch.append((name, feats, tags, raw))
    run_scst_jax(config, watch=watch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
