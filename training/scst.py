"""Self-critical sequence training (SCST): fine-tune a cross-entropy decoder on the CIDEr-D reward.

    python -m training.train --data ../shared/data/flickr8k --out runs/scst --scst --init runs/lite2 --epochs 8
    python -m training.train --data ../shared/data/flickr8k --out runs/scst --scst --export resources/models/NAME

REINFORCE (Rennie et al., 2017, "Self-critical Sequence Training for Image Captioning"): for each
training photo the decoder's beam search gives its ``samples`` best captions (the captions the app's
beam search chooses among; Cornia et al., 2020, "Meshed-Memory Transformer for Image Captioning",
train the same way), or, with ``--scst-candidates sample``, the decoder samples ``samples`` captions
(multinomial from its log-probabilities divided by ``--temperature``, one compiled graph over the
whole batch, stopping when every caption has ended); each caption's reward
is its CIDEr-D against the photo's references (:class:`training.cider.CiderD`, vectorised, document
frequencies of the training references computed once) minus the guard penalties of
:mod:`training.guards` (a dangling function word or an unfinished caption, repeated bigrams, length
far from the references'); the baseline is the mean reward of the photo's *other* samples (Luo,
2020, "A Better Variant of Self-Critical Sequence Training") or the reward of the greedy caption
(Rennie et al.; ``--scst-baseline greedy``). The loss ``-(r - b) log p(caption)``, averaged over the
sampled tokens, is minimised by the run's Adam optimiser. With ``--text-every N`` a cross-entropy
step on a batch of the init run's text-only sentences follows every N SCST steps.

What works on the shipped tag-aware model (Flickr8k dev, see the model card): beam candidates at a
learning rate of 5e-5 (dev CIDEr 0.452 -> 0.48-0.49 in 300-500 steps of 20 photos, under the shipped
decoding). Samples at temperature 1 are mostly garbled for a decoder that also learnt from
text-only sentences ("two and dogs the water staring carrying a passengers in gym"), and their
gradient lowered dev CIDEr within 60 steps; at temperature 0.5 the greedy captions gained, the beam's
did not.

The run starts from the best epoch of the cross-entropy run ``--init`` (its ``best.weights.npz``,
vocabulary and ``train_config.json``); the run folder gets the same files, so ``training.train
--export`` writes its best epoch as a bundle. A ``tf.train.CheckpointManager`` in the run folder
(decoder, optimiser, epoch, best dev CIDEr, sampling generator) lets an interrupted run resume.
Every epoch ends with dev captions (beam ``--eval-beam``), scored with BLEU-4, METEOR and CIDEr by
:func:`training.metrics.score_captions`, and the guard figures of :func:`training.guards.caption_guards`;
the epoch with the best dev CIDEr is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.vocab import Vocabulary
from training.cider import CiderD
from training.concepts import ReferenceConcepts
from training.data import load_dataset
from training.guards import (
    ConfidentTags,
    NounForms,
    ReferenceWords,
    caption_guards,
    function_word_mask,
    guard_penalties,
)

log = logging.getLogger(__name__)

BASELINES = ("mean", "greedy")
CANDIDATES = ("beam", "guarded", "sample")


@dataclass
class SCSTConfig:
    """Settings of a self-critical run; the model's own settings come from the ``init`` run."""

    data: str
    out: str
    # A cross-entropy run folder or a model bundle (needed for a new run; a resumed run reads its own copy).
    init: str | None = None
    cache: str | None = None  # feature cache (default: the init run's, else the user cache)
    epochs: int = 8
    batch_size: int = 20  # photos per step; each gets `samples` captions
    samples: int = 5
    # Sharpens the sampling distribution (log-probs / temperature); 1 samples the model itself. A
    # cross-entropy model that also learnt from text-only sentences samples many garbled captions at 1.
    temperature: float = 1.0
    # "beam": the ``samples`` best captions of a beam search (the captions the app's beam search chooses
    # among; as in Cornia et al. 2020); "guarded": the same under the decoding the exported bundle gets
    # (its length penalty, no repeated bigram, banned words, and the person and animal guards of each
    # photo); "sample": ``samples`` captions drawn from the decoder.
    candidates: str = "beam"
    baseline: str = "mean"  # "mean" of the other samples (Luo 2020) or "greedy" (Rennie et al. 2017)
    learning_rate: float = 5e-5  # Rennie et al.'s; 1e-4 lost dev CIDEr in a first epoch here
    lr_decay: float = 1.0  # multiplied into the learning rate once per epoch
    clip_norm: float = 5.0
    # Reward penalties, against sampled CIDEr-D of about 0.2 (0 to 3). A dangling ending (or none within
    # max_words) is in no reference: it outweighs nearly any CIDEr gain. Each repeated bigram costs 0.2:
    # pricing only immediate repeats ("with a with a"), the policy stacked "in a ... on a ... in a" (20 %
    # -> 68 % of dev captions in one epoch). A caption more than 2 words from its references' mean
    # length costs 0.1 per word.
    dangling_penalty: float = 1.0
    repeat_penalty: float = 0.2  # per repeated bigram occurrence
    length_penalty: float = 0.1  # per word
    length_tolerance: float = 2.0
    # A count before a singular noun ("a group of bus are sitting", which guarded SCST made twice as
    # frequent): :func:`training.guards.agreement_errors`. 0 leaves the reward as before.
    agreement_penalty: float = 0.0
    # Concept terms (issue 14; :class:`training.concepts.ReferenceConcepts`): the price of each concept
    # the caption names that none of its photo's references names (CHAIR's hallucination, which the
    # CIDEr-D reward barely sees: "a man" in a photo of a bench shares most n-grams with "a bench"), and
    # a bonus times the share of the photo's present concepts (named by 2 references) it names.
    hallucination_penalty: float = 0.0
    concept_bonus: float = 0.0
    # The price of each content word no reference of the photo uses in any form
    # (:class:`training.guards.ReferenceWords`): pricing concepts alone made the policy fill captions
    # with a common phrase the photo does not show ("in the air": 33 -> 112 of 1,000 dev captions).
    unsupported_penalty: float = 0.0
    # A bonus times the share of the photo's confident classifier tags (at or above ``tag_bonus_above``)
    # the caption names (:class:`training.guards.ConfidentTags`), counted against the classifier, not
    # the references: CIDEr-D alone made the decoder forget the everyday words only the text taught.
    # Measured at 0.2 / 0.5, it did not keep them, and cost dev CIDEr (model card, twentieth round).
    tag_bonus: float = 0.0
    tag_bonus_above: float = 0.5
    # A cross-entropy step on a batch of the init run's text-only sentences after every ``text_every``
    # SCST steps (0: none), so the words only the text taught (COCO's everyday things) are not
    # forgotten while the reward, computed on Flickr8k's references, pulls towards Flickr8k's.
    text_every: int = 0
    # Parameters kept at the init weights: every one that one of these names (:func:`names_parameter`:
    # its name in a weights file, "copy_gate/kernel", or the part after a "/", starts with it).
    # Freezing the tag path ("copy_", "tag_embedding") keeps how the cross-entropy model names what the
    # classifier sees, which CIDEr-D on Flickr8k's photos alone wears away. Measured in stage 1: the cat
    # is kept, and the classifier's wrong tags are named as readily as its right ones (model card,
    # twenty-first round).
    freeze: tuple[str, ...] = ()
    eval_beam: int = 3  # dev captions each epoch: 1 is greedy
    eval_batch_size: int = 100
    use_java: bool = True  # PTB tokenizer and METEOR for the dev scores
    seed: int = 1234
    limit: int | None = None  # only the first N training photos (quick experiments)
    max_steps: int | None = None  # stop each epoch after N steps (tests, timing)


# ---------------------------------------------------------------------------------------------------
# Through the decoder API of model/decoder.py: prepare / step / log_probs with a `memory` tuple.


def names_parameter(pattern: str, name: str) -> bool:
    """Whether ``pattern`` names the parameter ``name`` (its key in a weights file, "copy_gate/kernel"):
    the name, or its part after a "/", starts with the pattern. So "copy_" names the copy path's
    layers, "attention/score_dense" one layer, "bias" every bias, and "embedding" the word embedding
    but not "tag_embedding" (which a plain substring match would freeze too)."""
    parts = name.split("/")
    return any("/".join(parts[i:]).startswith(pattern) for i in range(len(parts)))


def frozen_mask(decoder, patterns: Sequence[str]) -> list[bool]:
    """Which of ``decoder.trainable_variables`` :attr:`SCSTConfig.freeze` keeps: those that one of
    ``patterns`` names (:func:`names_parameter`). A pattern that names no variable is refused."""
    from model.bundle import weight_key

    names = [weight_key(var) for var in decoder.trainable_variables]
    unknown = [p for p in patterns if not any(names_parameter(p, name) for name in names)]
    if unknown:
        raise ValueError(f"--freeze {' '.join(unknown)}: no decoder parameter is named so "
                         f"(they are {', '.join(names)})")
    return [any(names_parameter(p, name) for p in patterns) for name in names]


def mean_of_others(reward: np.ndarray) -> np.ndarray:
    """Luo (2020)'s baseline: for ``reward (photos, k)``, each sample's mean over the photo's other samples."""
    k = reward.shape[1]
    return (reward.sum(axis=1, keepdims=True) - reward) / (k - 1)


def _tile(structure, k: int):
    import tensorflow as tf

    return tf.nest.map_structure(lambda x: None if x is None else tf.repeat(x, k, axis=0), structure)


class Reward:
    """A caption's reward: its CIDEr-D against the photo's references (``cider``, over the training
    references) minus the guard penalties of :func:`training.guards.guard_penalties` (dangling or
    unfinished ending, repeated bigrams, length far from the references'). The same for both trainers
    (TensorFlow here, JAX in :mod:`training.scst_jax`)."""

    def __init__(self, vocab: Vocabulary, cider: CiderD, reference_lengths: np.ndarray, config: SCSTConfig,
                 references: Sequence[Sequence[Sequence[str]]] | None = None,
                 photo_tags: np.ndarray | None = None, tag_words: Sequence[str] = ()):
        """``references``: each training photo's reference captions as words, needed by the concept
        terms (``hallucination_penalty``, ``concept_bonus``) and ``unsupported_penalty``;
        ``photo_tags (photos, tags)`` and ``tag_words``: each training photo's tag probabilities and
        the tag vocabulary, needed by ``tag_bonus``."""
        self.words = [vocab.word_of(i) for i in range(len(vocab))]
        self.cider, self.config = cider, config
        self.reference_lengths = np.asarray(reference_lengths, np.float64)
        self.to_cider = cider.lookup_table(self.words)  # (vocab,)
        self.function_mask = function_word_mask(self.words)
        self.noun_masks = NounForms(self.words).masks(self.words) if config.agreement_penalty else None
        concept_terms = bool(config.hallucination_penalty or config.concept_bonus)
        if (concept_terms or config.unsupported_penalty) and references is None:
            raise ValueError("the reward's concept and unsupported-word terms need the training references")
        self.concepts = (ReferenceConcepts([[" ".join(r) for r in refs] for refs in references])
                         if concept_terms else None)
        self.reference_words = ReferenceWords(self.words, references) if config.unsupported_penalty else None
        if config.tag_bonus and photo_tags is None:
            raise ValueError("the reward's tag bonus needs a tag-aware run (each training photo's tags)")
        self.confident_tags = (ConfidentTags(self.words, tag_words, photo_tags, config.tag_bonus_above)
                               if config.tag_bonus else None)

    def __call__(self, photos: np.ndarray, tokens: np.ndarray, lengths: np.ndarray, finished: np.ndarray):
        """``(reward, cider, parts)`` for captions of training ``photos``, each ``(captions,)``."""
        cider = self.cider.score(photos, self.to_cider[tokens], lengths)
        config = self.config
        penalty, parts = guard_penalties(
            tokens, lengths, finished, self.function_mask, self.reference_lengths[photos],
            dangling=config.dangling_penalty, repeat=config.repeat_penalty,
            length=config.length_penalty, length_tolerance=config.length_tolerance,
            agreement=config.agreement_penalty, noun_masks=self.noun_masks)
        if self.concepts is not None:
            captions = [" ".join(self.words[t] for t in row[:n]) for row, n in zip(tokens, lengths)]
            hallucinated, recall = self.concepts.score(photos, captions)
            penalty = penalty + config.hallucination_penalty * hallucinated - config.concept_bonus * recall
            parts = parts | {"hallucinated": hallucinated, "concept_recall": recall}
        if self.reference_words is not None:
            unsupported = self.reference_words.unsupported(photos, tokens, lengths)
            penalty = penalty + config.unsupported_penalty * unsupported
            parts = parts | {"unsupported": unsupported}
        if self.confident_tags is not None:
            named = self.confident_tags.named_share(photos, tokens, lengths)
            penalty = penalty - config.tag_bonus * named
            parts = parts | {"tags_named": named}
        return cider - penalty, cider, parts


def concept_figures(parts: dict) -> dict[str, float]:
    """A step's concept figures from the reward's ``parts`` (none without the concept terms)."""
    figures = {}
    if "hallucinated" in parts:
        figures |= {"hallucinating": float((parts["hallucinated"] > 0).mean()),
                    "concept_recall": float(parts["concept_recall"].mean())}
    if "unsupported" in parts:
        figures["unsupported_words"] = float(parts["unsupported"].mean())
    if "tags_named" in parts:
        figures["tags_named"] = float(parts["tags_named"].mean())
    return figures


def best_captions(decoded, vocab: Vocabulary) -> list[list[str]]:
    """Each photo's best caption of a search (``decoded.tokens (batch, k, time)``), as words."""
    return [[vocab.word_of(int(t)) for t in decoded.tokens[row, 0, :int(decoded.lengths[row, 0])]]
            for row in range(decoded.tokens.shape[0])]


def candidate_rows(decoded, max_length: int, vocab: Vocabulary):
    """A search's ``k`` best captions per photo (``decoded.tokens (batch, k, time)``) as rows
    ``(tokens (batch*k, max_length), lengths, finished)``: ``<end>`` after the words, then ``<pad>``;
    photo ``i``'s captions are rows ``i*k .. i*k+k-1``, as sampled captions are laid out."""
    lengths = decoded.lengths.reshape(-1).astype(np.int32)  # (batch*k,)
    found = decoded.tokens.reshape(len(lengths), -1)
    tokens = np.full((len(lengths), max_length), vocab.pad_id, np.int32)
    width = min(found.shape[1], max_length)
    tokens[:, :width] = found[:, :width]
    tokens[np.arange(max_length)[None, :] >= lengths[:, None]] = vocab.pad_id
    finished = lengths < max_length
    rows = np.flatnonzero(finished)
    tokens[rows, lengths[rows]] = vocab.end_id
    return tokens, lengths, finished


class SCSTTrainer:
    """The sampled decode, the reward and the policy-gradient update around a :class:`Trainer`'s decoder.

    Args:
        trainer: a ``training.train.Trainer`` built for the cross-entropy model (its decoder, Adam
            optimiser and learning-rate schedule are used).
        vocab: the model's vocabulary.
        cider: CIDEr-D scorer over the training references (photo ``i`` = training photo ``i``).
        reference_lengths: ``(train photos,)`` mean length of each photo's references (words).
        config: the SCST settings.
        references: each training photo's references as words (for the reward's concept terms).
        photo_tags, tag_words: each training photo's tag probabilities ``(train photos, tags)`` and
            the tag vocabulary (for the reward's tag bonus).
    """

    def __init__(self, trainer, vocab: Vocabulary, cider: CiderD, reference_lengths: np.ndarray,
                 config: SCSTConfig, references: Sequence[Sequence[Sequence[str]]] | None = None,
                 photo_tags: np.ndarray | None = None, tag_words: Sequence[str] = ()):
        import tensorflow as tf

        if config.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {config.baseline!r}")
        if config.candidates not in CANDIDATES:
            raise ValueError(f"candidates must be one of {CANDIDATES}, got {config.candidates!r}")
        if config.samples < 2 and config.baseline == "mean":
            raise ValueError("the mean-of-other-samples baseline needs at least 2 samples per photo")
        self.trainer = trainer
        self.decoder = trainer.decoder
        self.optimizer = trainer.optimizer
        self.vocab = vocab
        self.config = config
        self.max_length = trainer.config.max_words
        self.reward = Reward(vocab, cider, reference_lengths, config, references, photo_tags, tag_words)
        # Never sampled (as in the shipped decoding): <pad>, <start>, <unk>.
        ban = np.zeros(len(vocab), np.float32)
        ban[[vocab.pad_id, vocab.start_id, vocab.unk_id]] = -1e9
        self._ban = tf.constant(ban)
        self._frozen = frozen_mask(self.decoder, config.freeze)
        with trainer.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="scst_epoch")
            self.best_cider = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_cider")
            self.generator = tf.random.Generator.from_seed(config.seed)
        self.checkpoint = tf.train.Checkpoint(decoder=self.decoder, optimizer=self.optimizer, epoch=self.epoch,
                                              best_cider=self.best_cider, generator=self.generator)
        self.manager = tf.train.CheckpointManager(self.checkpoint, Path(config.out) / "checkpoints", max_to_keep=2)
        self._sample = tf.function(lambda f, t: self._decode_graph(f, t, config.samples, greedy=False),
                                   reduce_retracing=True)
        self._greedy = tf.function(lambda f, t: self._decode_graph(f, t, 1, greedy=True), reduce_retracing=True)
        # One graph per padded caption length (multiples of 8), so the unrolled teacher-forced pass is
        # short; no reduce_retracing, which would make the time axis unknown.
        self._update = tf.function(self._update_graph)
        self._search = None
        self.guarded: GuardedSearch | None = None  # set for "guarded" candidates (see run_scst)

    # -- graphs -------------------------------------------------------------------------------

    def _decode_graph(self, features, tags, k: int, *, greedy: bool):
        """``k`` captions per photo: sampled from the decoder's distribution, or the argmax.

        Returns ``tokens (batch*k, max_length) int32`` (``<end>`` included, then ``<pad>``),
        ``lengths (batch*k,)`` words before ``<end>`` and ``finished (batch*k,)`` bool; the copies of
        photo ``i`` are rows ``i*k .. i*k+k-1``.
        """
        import tensorflow as tf

        dec, vocab = self.decoder, self.vocab
        memory, hidden = dec.prepare(tf.cast(features, tf.float32), tags, training=False)
        if k > 1:
            memory, hidden = _tile(memory, k), tf.repeat(hidden, k, axis=0)
        count = tf.shape(hidden)[0]
        seeds = self.generator.make_seeds(self.max_length)  # (2, max_length); unused when greedy
        tokens = tf.fill([count], vocab.start_id)
        finished = tf.zeros([count], tf.bool)
        lengths = tf.zeros([count], tf.int32)
        out = tf.TensorArray(tf.int32, size=self.max_length, element_shape=[None])

        def keep_going(t, tokens, hidden, finished, lengths, out):
            return (t < self.max_length) & tf.logical_not(tf.reduce_all(finished))

        def body(t, tokens, hidden, finished, lengths, out):
            hidden, context, embedded, _ = dec.step(tokens, hidden, memory, training=False)
            log_probs = dec.log_probs(hidden, context, embedded, memory, training=False) + self._ban  # (n, vocab)
            if greedy:
                chosen = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
            else:
                chosen = tf.random.stateless_categorical(log_probs / self.config.temperature, 1, seed=seeds[:, t],
                                                         dtype=tf.int32)[:, 0]
            emitted = tf.where(finished, vocab.pad_id, chosen)
            lengths += tf.cast(tf.logical_not(finished) & (chosen != vocab.end_id), tf.int32)
            finished |= chosen == vocab.end_id
            return t + 1, emitted, hidden, finished, lengths, out.write(t, emitted)

        steps, _, _, finished, lengths, out = tf.while_loop(
            keep_going, body, (tf.constant(0), tokens, hidden, finished, lengths, out),
            maximum_iterations=self.max_length)
        tokens_out = tf.transpose(out.gather(tf.range(steps)))  # (count, steps)
        tokens_out = tf.pad(tokens_out, [[0, 0], [0, self.max_length - steps]], constant_values=vocab.pad_id)
        return tokens_out, lengths, finished

    def sequence_log_probs(self, features, tags, inputs):
        """Teacher-forced log-probabilities of each photo's ``k`` sampled captions, under the sampling
        distribution (banned ids excluded): ``inputs (batch*k, time)`` -> ``(batch*k, time, vocab)``.

        The same as ``CaptionDecoder.call`` on the photos repeated ``k`` times, but the per-photo
        work (projecting the grid, the attention keys) is done once per photo and then tiled.
        """
        import tensorflow as tf

        dec, k = self.decoder, self.config.samples
        memory, hidden = dec.prepare(tf.cast(features, tf.float32), tags, training=False)
        memory, hidden = _tile(memory, k), tf.repeat(hidden, k, axis=0)  # (batch*k, ...)
        hiddens, contexts, embeddeds = [], [], []
        for t in range(inputs.shape[1]):
            hidden, context, embedded, _ = dec.step(inputs[:, t], hidden, memory, training=False)
            hiddens.append(hidden)
            contexts.append(context)
            embeddeds.append(embedded)
        stack = lambda xs: tf.stack(xs, axis=1)  # noqa: E731
        log_probs = dec.log_probs(stack(hiddens), stack(contexts), stack(embeddeds), memory)  # (batch*k, time, vocab)
        return tf.nn.log_softmax(log_probs + self._ban)

    def _update_graph(self, features, tags, inputs, targets, advantages):
        """One REINFORCE step. ``features (batch, L, C)``, ``tags (batch, T)`` or None, ``inputs``
        and ``targets (batch*k, time)`` (the sampled captions shifted by one), ``advantages (batch*k,)``."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            log_probs = self.sequence_log_probs(features, tags, inputs)  # (batch*k, time, vocab)
            picked = tf.gather(log_probs, targets, batch_dims=2)  # (batch*k, time)
            mask = tf.cast(targets != self.vocab.pad_id, tf.float32)
            loss = -tf.reduce_sum(picked * mask * advantages[:, None]) / tf.maximum(tf.reduce_sum(mask), 1.0)
        variables = [v for v, frozen in zip(self.decoder.trainable_variables, self._frozen) if not frozen]
        # Variables used only while training with cross-entropy (the "no photo" grid) get no gradient.
        pairs = [(g, v) for g, v in zip(tape.gradient(loss, variables), variables) if g is not None]
        grads, norm = tf.clip_by_global_norm([g for g, _ in pairs], self.config.clip_norm)
        self.optimizer.apply_gradients(zip(grads, [v for _, v in pairs]))
        return loss, norm

    def text_step(self, tags, tokens) -> float:
        """The init run's cross-entropy step on a batch of text-only sentences (``text_every``), the
        frozen parameters put back after it."""
        frozen = [v for v, f in zip(self.decoder.trainable_variables, self._frozen) if f]
        kept = [v.numpy() for v in frozen]
        loss = self.trainer._text_step(tags, tokens)
        for var, value in zip(frozen, kept):
            var.assign(value)
        return loss

    # -- reward -------------------------------------------------------------------------------

    def rewards(self, photos: np.ndarray, tokens: np.ndarray, lengths: np.ndarray, finished: np.ndarray):
        """``(reward, cider, parts)`` for captions of training ``photos``, each ``(captions,)``."""
        return self.reward(photos, tokens, lengths, finished)

    def train_step(self, photos: np.ndarray, features: np.ndarray, tags: np.ndarray | None) -> dict[str, float]:
        """Sample, score and update on one batch of training photos; returns the step's figures."""
        import tensorflow as tf

        k = self.config.samples
        timer = time.perf_counter()
        tags_in = None if tags is None else tf.convert_to_tensor(tags, tf.float32)
        if self.config.candidates != "sample":  # "beam", or "guarded" (the search in self.guarded)
            tokens, lengths, finished = self._beam_candidates(features, tags_in)
        else:
            tokens, lengths, finished = (x.numpy() for x in self._sample(features, tags_in))
        sampled = time.perf_counter()
        repeated = np.repeat(photos, k)
        reward, cider, parts = self.rewards(repeated, tokens, lengths, finished)
        reward = reward.reshape(-1, k)  # (batch, k)
        if self.config.baseline == "mean":
            baseline = mean_of_others(reward)
        else:
            g_tokens, g_lengths, g_finished = (x.numpy() for x in self._greedy(features, tags_in))
            baseline = self.rewards(photos, g_tokens, g_lengths, g_finished)[0][:, None]
        advantages = (reward - baseline).reshape(-1).astype(np.float32)
        scored = time.perf_counter()
        # Teacher-forced pass over the samples, padded to a multiple of 8 steps (<end> included).
        steps = min(self.max_length, int(math.ceil((lengths.max() + 1) / 8.0) * 8))
        targets = tokens[:, :steps]
        inputs = np.concatenate([np.full((len(tokens), 1), self.vocab.start_id, np.int32), targets[:, :-1]], axis=1)
        loss, norm = self._update(features, tags_in, inputs, targets, advantages)
        loss = float(loss)
        updated = time.perf_counter()
        return {"loss": loss, "reward": float(reward.mean()), "cider": float(cider.mean()),
                "grad_norm": float(norm), "dangling": float(parts["dangling"].mean()),
                "repeats": float((parts["repeats"] > 0).mean()), "agreement": float(parts["agreement"].mean()),
                "length": float(lengths.mean()), **concept_figures(parts), "sample_s": sampled - timer,
                "reward_s": scored - sampled, "update_s": updated - scored}

    def _beam_candidates(self, features, tags):
        """The ``samples`` best captions of each photo's beam search (under the bundle's guards when a
        :class:`GuardedSearch` is set as ``guarded``), laid out as :meth:`_decode_graph`'s."""
        k, vocab = self.config.samples, self.vocab
        features = np.asarray(features, np.float32)
        if self.config.candidates == "guarded":
            if self.guarded is None:
                raise RuntimeError("guarded candidates need a GuardedSearch (SCSTTrainer.guarded)")
            decoded = self.guarded.beam(features, None if tags is None else np.asarray(tags, np.float32), k)
        else:
            decoded = self._searcher().beam(features, k, tags)
        return candidate_rows(decoded, self.max_length, vocab)

    def _searcher(self):
        from model.decoding import SearchDecoder

        if self._search is None:  # kept, so its compiled graphs serve every step and epoch
            vocab = self.vocab
            self._search = SearchDecoder(self.decoder, start_id=vocab.start_id, end_id=vocab.end_id,
                                         pad_id=vocab.pad_id, max_length=self.max_length,
                                         banned_ids=(vocab.pad_id, vocab.start_id, vocab.unk_id))
        return self._search

    # -- dev captions ---------------------------------------------------------------------------

    def captions(self, features: np.ndarray, tags: np.ndarray | None, beam: int, batch_size: int) -> list[list[str]]:
        """Captions (word lists) of ``features`` with beam search (``beam`` 1: greedy)."""
        vocab, search = self.vocab, self._searcher()
        out = []
        for i in range(0, len(features), batch_size):
            chunk = features[i:i + batch_size].astype(np.float32)
            chunk_tags = None if tags is None else tags[i:i + batch_size]
            out += best_captions(search.beam(chunk, beam, chunk_tags), vocab)
        return out


class GuardedSearch:
    """Beam search over the decoder being trained, as the exported bundle's :class:`~model.captioner.Captioner`
    runs it: the bundle's ``decoding`` settings (:func:`~model.captioner.decoding_search`) and
    each photo's absence rules (a probe on the pooled grid, the summed tags of an animal's words).
    ``steps``: the decoder's ``prepare``/``step`` for :class:`~model.search.Search` (default: TensorFlow's
    :class:`~model.runtime.KerasDecoderSteps`; the JAX trainer passes its own).

    Trained on such candidates, the decoder learns what to say once a guard has banned the words it
    would have used (person words on a photo the person probe doubts, for instance)."""

    def __init__(self, decoder, vocab: Vocabulary, decoding: dict, probes: dict, tag_map, steps=None):
        from model.captioner import absence_rules, decoding_search

        if steps is None:  # TensorFlow; reads the decoder's variables: always the current weights
            from model.runtime import KerasDecoderSteps

            steps = KerasDecoderSteps(decoder)
        self.steps = steps
        self.vocab, self.probes, self.tag_map = vocab, probes, tag_map
        self.rules = absence_rules(decoding, vocab, probes, where="the init run's export settings")
        self.search = decoding_search(self.steps.step, vocab, decoding)

    def beam(self, features: np.ndarray, tags: np.ndarray | None, beam_size: int):
        from model.captioner import photo_bans

        memory, hidden = self.steps.prepare(features, tags)
        ban = photo_bans(self.rules, features, tags, len(self.vocab), self.tag_map, self.probes)
        return self.search.beam(memory, hidden, beam_size, ban)


# ---------------------------------------------------------------------------------------------------
# The run


def _train_config(config: SCSTConfig, source: Path):
    """The cross-entropy run's TrainConfig (from its ``train_config.json`` at ``source``), pointed at
    this run's folder, learning rate and data."""
    from training.train import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in json.loads(source.read_text()).items() if k in known}
    values.update(data=config.data, out=config.out, learning_rate=config.learning_rate, lr_decay=config.lr_decay,
                  clip_norm=config.clip_norm, limit=config.limit, strategy="default")
    if config.cache:
        values["cache"] = config.cache
    return TrainConfig(**values)


def _split_tags(split) -> np.ndarray | None:
    return None if split.tags is None else np.asarray(split.tags, np.float32)


@dataclass
class RunData:
    """What an SCST run starts from (both trainers): the cross-entropy run's settings pointed at this
    run, the vocabulary, tags, both splits, the CIDEr-D scorer over the training references."""

    train_config: object  # training.train.TrainConfig
    vocab: Vocabulary
    tag_map: object | None
    train_data: object  # training.train.SplitData
    dev_data: object
    train_tags: np.ndarray | None
    dev_tags: np.ndarray | None
    cider: CiderD
    reference_lengths: np.ndarray  # (train photos,) mean words of each photo's references
    dev_refs: dict[int, list[str]]  # dev photo index -> its raw references


@dataclass(frozen=True)
class InitSource:
    """What a new SCST run starts from: the cross-entropy settings, the vocabulary, the weights."""

    settings: dict  # TrainConfig values (``train_config.json``)
    vocab: Path
    weights: dict[str, np.ndarray]
    history: Path | None = None  # the cross-entropy run's history, when there is one


def init_source(init: str | Path) -> InitSource:
    """``init`` as an :class:`InitSource`: a finished cross-entropy run folder (``train_config.json``,
    ``vocab.json``, ``best.weights.npz``), or a model bundle made by ``training.train --export``
    (read and checked by :func:`model.bundle.load_bundle`), to fine-tune a shipped model: its settings
    are the bundle's recorded training hyperparameters with the decoder's own architecture."""
    from model.bundle import load_bundle
    from training.train import DECODER_FIELDS

    init = Path(init)
    if (init / "train_config.json").is_file():
        for name in ("vocab.json", "best.weights.npz"):
            if not (init / name).is_file():
                raise FileNotFoundError(f"{init / name} is missing: --init must be a finished training run")
        with np.load(init / "best.weights.npz", allow_pickle=False) as stored:
            weights = {k: stored[k] for k in stored.files}
        history = init / "history.json"
        return InitSource(json.loads((init / "train_config.json").read_text()), init / "vocab.json", weights,
                          history if history.is_file() else None)
    if not (init / "config.json").is_file():
        raise FileNotFoundError(f"{init} is neither a finished training run (train_config.json) nor a model bundle "
                                "(config.json)")
    bundle = load_bundle(init)
    settings = (bundle.config.get("training") or {}).get("hyperparameters")
    if not isinstance(settings, dict) or not bundle.weights:
        raise ValueError(f"{init}: a bundle without its training settings or decoder weights; --init needs a "
                         "bundle written by training.train --export")
    architecture = {k: v for k, v in bundle.config["decoder"].items() if k in DECODER_FIELDS}
    return InitSource(settings | architecture | {"encoder": bundle.config["encoder"]["name"]},
                      init / bundle.config.get("vocabulary", "vocab.json"), bundle.weights)


def init_weights_path(config: SCSTConfig) -> Path:
    """The weights a new run starts from: its own copy (runs made since the copy was kept), else the
    ``--init`` run's best epoch."""
    own = Path(config.out) / "init.weights.npz"
    return own if own.is_file() else Path(config.init) / "best.weights.npz"


def start_run_folder(config: SCSTConfig) -> Path:
    """Make ``config.out`` a run folder: a new run copies the ``--init`` run's (or bundle's)
    vocabulary, settings (``init_train_config.json``) and weights (``init.weights.npz``, float32); a
    run that has its own copy keeps it. Returns the copy of the settings."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "init_train_config.json"
    if settings.is_file():
        return settings
    if not config.init:
        raise ValueError("a new SCST run needs --init RUN (a finished cross-entropy run folder, or a model bundle)")
    source = init_source(config.init)
    shutil.copyfile(source.vocab, out / "vocab.json")
    np.savez(out / "init.weights.npz", **{k: v.astype(np.float32) for k, v in source.weights.items()})
    if source.history is not None:
        shutil.copyfile(source.history, out / "init_history.json")
    settings.write_text(json.dumps(source.settings, indent=2))  # last: the folder is complete
    return settings


def prepare_scst_run(config: SCSTConfig) -> RunData:
    """Set up the run folder ``config.out`` (a new run copies the ``--init`` run's vocabulary and
    settings; a resumed run reads its own copy) and load the data."""
    from training.train import RunSettingsError, _tag_setup, prepare_split

    out = Path(config.out)
    # A resumed run keeps its --init (taken once, at its start) and the settings its record tells.
    # A resumed run goes on from its last epoch, with the reward, freezing and steps it is given now
    # (a stage after another: the JAX runs do so); its --init was taken once, at its start: another
    # one is refused, not kept silently.
    saved = out / "scst_config.json"
    began = json.loads(saved.read_text()).get("init") if saved.is_file() else None
    if began and config.init and Path(began).resolve() != Path(config.init).resolve():
        raise RunSettingsError(f"{out} holds a run that began from --init {began}, not {config.init}: resume it "
                               f"without --init (or with that one), or give another --out")
    if config.init is None and began:  # resumed without --init: its record keeps the one it began with
        config = dataclasses.replace(config, init=began)
    train_config = _train_config(config, start_run_folder(config))
    vocab = Vocabulary.load(out / "vocab.json")
    (out / "train_config.json").write_text(json.dumps(asdict(train_config), indent=2))
    (out / "scst_config.json").write_text(json.dumps(asdict(config), indent=2))

    # A tag-aware model reads each photo's tags, computed from its cached grid by the run's tagger.
    tag_map, tagger = _tag_setup(train_config)
    train_data, _ = prepare_split(train_config, "train", vocab, limit=config.limit, tagger=tagger)
    dev_data, _ = prepare_split(train_config, "dev", vocab, limit=config.limit and max(config.limit // 6, 8),
                                tagger=tagger)
    cider = CiderD(train_data.references)
    reference_lengths = np.asarray([np.mean([len(r) for r in refs]) for refs in train_data.references])
    raw_dev = {path.name: caps for path, caps in load_dataset(config.data, "dev")[0]}
    dev_refs = {i: raw_dev[path.name] for i, path in enumerate(dev_data.images)}
    return RunData(train_config, vocab, tag_map, train_data, dev_data, _split_tags(train_data), _split_tags(dev_data),
                   cider, reference_lengths, dev_refs)


def run_scst(config: SCSTConfig) -> dict:
    """Fine-tune with SCST for ``config.epochs`` epochs (resuming the run in ``config.out``)."""
    from model.bundle import assign_variables
    from training.metrics import score_captions
    from training.train import Trainer

    out = Path(config.out)
    run = prepare_scst_run(config)
    train_config, vocab, tag_map, train_data, dev_data = (run.train_config, run.vocab, run.tag_map, run.train_data,
                                                          run.dev_data)
    cider, reference_lengths, dev_refs = run.cider, run.reference_lengths, run.dev_refs
    train_tags, dev_tags = run.train_tags, run.dev_tags

    steps_per_epoch = math.ceil(len(train_data.images) / config.batch_size)
    if config.max_steps:
        steps_per_epoch = min(steps_per_epoch, config.max_steps)
    trainer = Trainer(train_config, vocab, channels=train_data.features.shape[-1], steps_per_epoch=steps_per_epoch,
                      tag_words=tag_map.words if tag_map is not None else ())
    scst = SCSTTrainer(trainer, vocab, cider, reference_lengths, config, run.train_data.references, train_tags,
                       tag_map.words if tag_map is not None else ())
    if config.candidates == "guarded":
        from training.train import bundle_decoding, shipped_settings

        probes, decoding = bundle_decoding(train_config, vocab, tag_map, **shipped_settings(train_config))
        scst.guarded = GuardedSearch(trainer.decoder, vocab, decoding, probes, tag_map)
    if scst.manager.latest_checkpoint:
        scst.checkpoint.restore(scst.manager.latest_checkpoint).expect_partial()
        log.info("resumed from %s (SCST epoch %d done)", scst.manager.latest_checkpoint, int(scst.epoch.numpy()))
    else:
        with np.load(init_weights_path(config), allow_pickle=False) as npz:
            assign_variables(trainer.decoder, {k: npz[k] for k in npz.files})
        log.info("starting from %s", config.init)

    text_batches = _text_batches(config, train_config, tag_map, vocab)
    history_path = out / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    # An epoch recorded after the last checkpoint (a run stopped in between) is done again.
    history = [h for h in history if h["epoch"] <= int(scst.epoch.numpy())]
    if not history:
        history.append({"epoch": 0, **_evaluate(scst, dev_data, dev_tags, dev_refs, config, score_captions)})
        scst.best_cider.assign(history[0]["dev"]["CIDEr"])
        trainer.save_best()
        history_path.write_text(json.dumps(history, indent=2))
        log.info("before SCST: dev %s", _summary(history[0]))
    while int(scst.epoch.numpy()) < config.epochs:
        epoch = int(scst.epoch.numpy()) + 1
        order = np.random.default_rng(config.seed + epoch).permutation(len(train_data.images))
        figures, photos_done = [], 0
        started = time.perf_counter()
        for step, i in enumerate(range(0, len(order), config.batch_size)):
            if config.max_steps and step >= config.max_steps:
                break
            photos = np.sort(order[i:i + config.batch_size])
            tags = None if train_tags is None else train_tags[photos]
            figures.append(scst.train_step(photos, train_data.features[photos], tags))
            if text_batches is not None and step % config.text_every == 0:
                figures[-1]["text_loss"] = float(scst.text_step(*next(text_batches)))
            photos_done += len(photos)
            if step % 20 == 0:
                log.info("epoch %d step %d: %s", epoch, step, " ".join(
                    f"{k} {v:.3f}" for k, v in figures[-1].items()))
        seconds = time.perf_counter() - started
        train = {key: float(np.mean([f[key] for f in figures if key in f])) for key in figures[0]}
        train["seconds"] = round(seconds, 1)
        train["seconds_per_1000_photos"] = round(1000.0 * seconds / max(photos_done, 1), 2)
        record = {"epoch": epoch, "train": train,
                  **_evaluate(scst, dev_data, dev_tags, dev_refs, config, score_captions)}
        scst.epoch.assign(epoch)
        record["best"] = improved = record["dev"]["CIDEr"] > float(scst.best_cider.numpy())
        if improved:
            scst.best_cider.assign(record["dev"]["CIDEr"])
            trainer.save_best()
        history.append(record)
        # Every epoch's weights, as the JAX trainer keeps them: the per-epoch dev pass is a plain search,
        # so the epoch to ship is chosen under the shipped decoding and exported with ``--export-weights``.
        trainer.save_weights(out / f"epoch{epoch:02d}.weights.npz")
        history_path.write_text(json.dumps(history, indent=2))
        scst.manager.save()
        log.info("epoch %d: reward %.3f, sample CIDEr-D %.3f, %.1f s per 1000 photos; dev %s%s",
                 epoch, train["reward"], train["cider"], train["seconds_per_1000_photos"], _summary(record),
                 " (best)" if improved else "")
    return {"history": history, "best_cider": float(scst.best_cider.numpy())}


def _text_batches(config: SCSTConfig, train_config, tag_map, vocab: Vocabulary):
    """Endless ``(tags, token ids)`` batches of the init run's text-only sentences (tags made from
    their own words, as in cross-entropy training), or None without ``text_every`` or sentences."""
    if not config.text_every or tag_map is None or not train_config.text_captions:
        return None
    from training.tagdata import SentenceTagger
    from training.train import load_text_corpus, make_text_dataset

    tagger = SentenceTagger(tag_map)
    sentences = load_text_corpus(train_config)
    sequences = [vocab.encode(words) for words in sentences]
    named = [tagger.named(words) for words in sentences]
    log.info("text-only sentences: %d, a cross-entropy batch after every %d SCST steps", len(sentences),
             config.text_every)

    def batches():
        for round_ in range(1 << 30):  # fresh tag noise every pass
            rng = np.random.default_rng(config.seed + round_)
            yield from make_text_dataset(sequences, tagger.tags(named, rng), train_config, seed=config.seed + round_)

    return batches()


def _evaluate(scst: SCSTTrainer, dev_data, dev_tags, dev_refs, config: SCSTConfig, score_captions) -> dict:
    started = time.perf_counter()
    captions = scst.captions(dev_data.features, dev_tags, config.eval_beam, config.eval_batch_size)
    decoded = time.perf_counter()
    metrics = score_captions(dev_refs, {i: " ".join(words) for i, words in enumerate(captions)},
                             use_java=config.use_java)
    return {"dev": metrics, "dev_guards": caption_guards(captions), "dev_beam": config.eval_beam,
            "dev_decode_seconds": round(decoded - started, 1), "example": " ".join(captions[0])}


def _summary(record: dict) -> str:
    dev, guards = record["dev"], record["dev_guards"]
    meteor = dev.get("METEOR")
    return (f"BLEU-4 {dev['BLEU-4']:.4f} CIDEr {dev['CIDEr']:.4f} METEOR "
            f"{'n/a' if meteor is None else f'{meteor:.4f}'}; ends in function word "
            f"{guards['ends_in_function_word']:.3f}, repeated bigram {guards['repeated_bigram']:.3f}, "
            f"immediate repeat {guards['adjacent_repeat']:.3f}, "
            f"mean length {guards['mean_length']:.2f}, {guards['distinct_captions']} distinct captions, "
            f"{guards['distinct_words']} distinct words; e.g. {record['example']!r}")


def export(out: str | Path, destination: Path, *, name: str, description: str, weights: Path | None = None,
           decoding_changes: dict | None = None) -> Path:
    """Write the best epoch of the SCST run in ``out`` (or the ``weights`` file of another epoch) as a
    bundle, as ``training.train --export`` writes a cross-entropy run's (the same decoding settings and
    evidence rules).

    The bundle's training record keeps the cross-entropy run's history and adds ``scst``: the
    settings and the per-epoch history of this run."""
    from training.train import TrainConfig, build_parser, shipped_settings
    from training.train import export as export_bundle

    out = Path(out)
    read = lambda name: json.loads((out / name).read_text()) if (out / name).is_file() else None  # noqa: E731
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in read("train_config.json").items() if k in known})
    return export_bundle(config, destination, name=name, description=description, weights=weights,
                         keyword_threshold=build_parser().get_default("keyword_threshold"),
                         decoding_changes=decoding_changes,
                         **shipped_settings(config),
                         extra_training={"history": read("init_history.json") or [],
                                         "scst": {"settings": read("scst_config.json"),
                                                  "history": read("history.json")}})


# ---------------------------------------------------------------------------------------------------
# Command line (reached through ``python -m training.train --scst ...``)


def build_parser() -> argparse.ArgumentParser:
    from training.train import json_object

    parser = argparse.ArgumentParser(prog="python -m training.train --scst", description=__doc__.splitlines()[0])
    defaults = SCSTConfig(data="", out="")
    parser.add_argument("--scst", action="store_true", required=True, help="self-critical fine-tuning")
    parser.add_argument("--data", required=True, help="Flickr8k-layout folder")
    parser.add_argument("--out", required=True, help="the SCST run folder")
    parser.add_argument("--init", default=None,
                        help="the cross-entropy run folder, or a model bundle, to start from")
    parser.add_argument("--cache", default=None, help="feature cache folder (default: the init run's)")
    for name in ("epochs", "batch_size", "samples", "text_every", "eval_beam", "eval_batch_size", "seed", "limit",
                 "max_steps"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("learning_rate", "lr_decay", "clip_norm", "temperature", "dangling_penalty", "repeat_penalty",
                 "length_penalty", "length_tolerance", "agreement_penalty", "hallucination_penalty",
                 "concept_bonus", "unsupported_penalty", "tag_bonus", "tag_bonus_above"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--freeze", nargs="+", default=list(defaults.freeze), metavar="NAME",
                        help="keep the decoder parameters whose names (or their parts after a /) start with "
                             "these at the init weights (e.g. copy_ tag_embedding: the tag path)")
    parser.add_argument("--scst-baseline", dest="baseline", choices=BASELINES, default=defaults.baseline,
                        help="mean reward of the other samples (default) or the greedy caption's reward")
    parser.add_argument("--scst-candidates", dest="candidates", choices=CANDIDATES, default=defaults.candidates,
                        help="captions scored per photo: the beam search's best (default), the same under "
                             "the exported bundle's guards, or sampled")
    parser.add_argument("--no-java", dest="use_java", action="store_false",
                        help="score dev without Java (Python tokenizer, no METEOR)")
    parser.add_argument("--export", type=Path, default=None, help="write the best epoch as a bundle here and stop")
    parser.add_argument("--export-weights", type=Path, default=None,
                        help="with --export: the weights of another epoch (runs/X/epochNN.weights.npz)")
    parser.add_argument("--export-decoding", type=json_object, default=None, metavar="JSON",
                        help="with --export: changes to the bundle's decoding settings, e.g. "
                             "'{\"length_penalty\": 0.6}' (as training.sweep_decoding writes them)")
    parser.add_argument("--name", default=None,
                        help="with --export: the model's name (default: the export folder's name)")
    parser.add_argument("--description", default="Show, Attend and Tell on Flickr8k, fine-tuned with SCST (CIDEr-D)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.pop("scst")
    destination, name, description = args.pop("export"), args.pop("name"), args.pop("description")
    weights, changes = args.pop("export_weights"), args.pop("export_decoding")
    from training.train import TRAINING_ERRORS, describe

    try:
        if destination:
            print(export(args["out"], destination, name=name or Path(destination).resolve().name,
                         description=description, weights=weights, decoding_changes=changes))
            return 0
        result = run_scst(SCSTConfig(**args))
    except TRAINING_ERRORS as exc:  # a setting, a file or the data: said in a line, no traceback
        print(f"python -m training.train --scst: error: {describe(exc)}", file=sys.stderr)
        return 2
    print(json.dumps({"best_dev_cider": result["best_cider"]}))
    return 0


if __name__ == "__main__":  # python -m training.scst ... is python -m training.train --scst ...
    raise SystemExit(main(None if "--scst" in sys.argv else [*sys.argv[1:], "--scst"]))
