"""Greedy and beam search in numpy around a decoder step function: the one search both runtimes use.

The step function is whatever the runtime provides (an ONNX Runtime session, or the Keras decoder
for ``--runtime tf``)::

    hidden (rows, units), scores (rows, vocab), attention (rows, locations) = step(tokens (rows,), hidden, memory)

where ``memory`` is a tuple of per-photo arrays (batch first) that the search tiles for the beam.
``scores`` are logits or log-probabilities: the search applies ``log_softmax(scores + ban)`` either
way, which is what :mod:`model.decoding` (the TensorFlow graph search) does, so both give the same
captions. Semantics, identical to that module: a hypothesis that has emitted ``<end>`` stays in the
beam at no further cost; ties go to the lower index (``top_k``); the final ranking divides each
hypothesis' log-probability by ``(length + 1) ** length_penalty``. Unlike the graph search, this one
stops as soon as every hypothesis has ended (the outputs are padded to ``max_length``: pad tokens
and zero attention after the end, which no caller reads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

StepFunction = Callable[[np.ndarray, np.ndarray, tuple[np.ndarray, ...]], tuple[np.ndarray, np.ndarray, np.ndarray]]

NEG_INF = np.float32(-1e9)
# Wider beams stop paying long before this (the model card measures 3 and 5), and memory grows with
# the width times the vocabulary: 100,000 took 22 GB before the kernel killed it.
MAX_BEAM_SIZE = 100


def check_beam_size(beam_size: int) -> int:
    """``beam_size`` when it is from 1 to :data:`MAX_BEAM_SIZE`.

    Raises:
        ValueError: it is not.
    """
    if not 1 <= beam_size <= MAX_BEAM_SIZE:
        raise ValueError(f"the beam size must be from 1 to {MAX_BEAM_SIZE}, not {beam_size}")
    return beam_size


@dataclass(frozen=True)
class DecodedBatch:
    """Raw search output for a batch of photos, before ids become words.

    ``tokens`` (batch, beams, max_len) int32, padded with ``pad_id`` after ``<end>``;
    ``scores`` (batch, beams) length-normalised, best first; ``lengths`` (batch, beams) words
    before ``<end>``; ``attention`` (batch, beams, max_len, locations) float32.
    """

    tokens: np.ndarray
    scores: np.ndarray
    lengths: np.ndarray
    attention: np.ndarray


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in float32."""
    x = x.astype(np.float32, copy=False)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, indices)`` of the ``k`` largest entries of each row, largest first; equal values
    come in index order (TensorFlow's ``top_k`` rule), so both runtimes break ties alike."""
    kth = -np.partition(-values, k - 1, axis=1)[:, k - 1:k]  # (rows, 1) the k-th largest value
    out_idx = np.empty((values.shape[0], k), np.int64)
    for row in range(values.shape[0]):
        candidates = np.flatnonzero(values[row] >= kth[row])  # ascending index order
        order = np.argsort(-values[row, candidates], kind="stable")[:k]
        out_idx[row] = candidates[order]
    return np.take_along_axis(values, out_idx, axis=1), out_idx


class Search:
    """Greedy and beam search over a step function.

    Args:
        step: the runtime's step function (see the module docstring).
        vocab_size: number of tokens.
        start_id, end_id, pad_id: special token ids.
        max_length: most words generated (``<end>`` included).
        length_penalty: exponent of the length normalisation of the final ranking.
        banned_ids: tokens never emitted (e.g. ``<pad>``, ``<start>``, ``<unk>``).
        no_repeat_ngram: a hypothesis never repeats an n-gram of this size (0: off), the usual guard
            against "on a dock on a dock"; from 2 on, no word follows itself either ("coffee coffee").
        once_ids: tokens a hypothesis emits at most once (content words: "a toilet with a toilet").
        no_end_after_ids: tokens a caption never ends on: ``<end>`` is banned right after them
            ("a man is standing in front").
    """

    def __init__(self, step: StepFunction, *, vocab_size: int, start_id: int, end_id: int, pad_id: int = 0,
                 max_length: int = 30, length_penalty: float = 1.0, banned_ids: tuple[int, ...] = (),
                 no_repeat_ngram: int = 0, once_ids: tuple[int, ...] = (), no_end_after_ids: tuple[int, ...] = ()):
        self.step = step
        self.vocab_size = vocab_size
        self.start_id, self.end_id, self.pad_id = start_id, end_id, pad_id
        self.max_length = max_length
        self.length_penalty = length_penalty
        self.ban = np.zeros(vocab_size, np.float32)
        self.ban[list(banned_ids)] = NEG_INF
        self.no_repeat_ngram = int(no_repeat_ngram)
        self.once = np.zeros(vocab_size, bool)
        self.once[list(once_ids)] = True
        self.no_end_after = np.zeros(vocab_size, bool)
        self.no_end_after[list(no_end_after_ids)] = True

    def _history_ban(self, history: np.ndarray, t: int) -> np.ndarray | None:
        """``(rows, vocab)`` additive ban for tokens that would repeat an n-gram or a once-only word,
        and for ``<end>`` after a word no caption ends on, given each row's first ``t`` tokens
        ``history (rows, >= t)``; None when nothing is banned."""
        n = self.no_repeat_ngram
        use_once = self.once.any()
        use_end = self.no_end_after.any()
        if t == 0 or (n < 1 and not use_once and not use_end):
            return None
        seq = history[:, :t]
        ban = np.zeros((seq.shape[0], self.vocab_size), np.float32)
        if use_end:
            ban[self.no_end_after[seq[:, t - 1]], self.end_id] = NEG_INF
        if use_once:
            rows, cols = np.nonzero(self.once[seq])
            ban[rows, seq[rows, cols]] = NEG_INF
        if n >= 2:  # and never the same word twice in a row ("coffee coffee")
            ban[np.arange(seq.shape[0]), seq[:, t - 1]] = NEG_INF
        if n >= 1 and t >= n:
            if n == 1:
                rows, cols = np.nonzero(np.ones_like(seq, bool))
                ban[rows, seq[rows, cols]] = NEG_INF
            else:
                # windows: (rows, starts, n-1)
                windows = np.lib.stride_tricks.sliding_window_view(seq, n - 1, axis=1)[:, : t - n + 1]
                prefix = seq[:, t - n + 1:]  # (rows, n-1): the last n-1 tokens
                rows, starts = np.nonzero((windows == prefix[:, None, :]).all(axis=2))
                ban[rows, seq[rows, starts + n - 1]] = NEG_INF
        return ban

    def _step_active(self, tokens: np.ndarray, hidden: np.ndarray, memory: tuple[np.ndarray, ...],
                     active: np.ndarray):
        """The step function on the rows whose output matters (``active``: alive and not finished);
        the others keep their state and get zero scores, which the search masks anyway. All rows go
        through when at most a quarter could be skipped: gathering the memory costs too."""
        if active.sum() > 0.75 * len(active) or not active.any():
            return self.step(tokens, hidden, memory)
        rows = np.flatnonzero(active)
        part_hidden, part_scores, part_weights = self.step(tokens[rows], hidden[rows], tuple(m[rows] for m in memory))
        new_hidden = hidden.copy()
        new_hidden[rows] = part_hidden
        scores = np.zeros((len(tokens), part_scores.shape[-1]), np.float32)
        scores[rows] = part_scores
        weights = np.zeros((len(tokens), part_weights.shape[-1]), np.float32)
        weights[rows] = part_weights
        return new_hidden, scores, weights

    def _normalise(self, log_prob: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        denom = np.power(np.maximum(lengths.astype(np.float32) + 1.0, 1.0), np.float32(self.length_penalty))
        return (log_prob / denom).astype(np.float32)  # (+1: the <end> token is part of the caption's probability)

    def greedy(self, memory: tuple[np.ndarray, ...], hidden: np.ndarray, ban: np.ndarray | None = None) -> DecodedBatch:
        """Argmax decoding: ``memory`` and ``hidden (batch, units)`` from the runtime's ``prepare``;
        ``ban (batch, vocab)``: per-photo additive scores (``NEG_INF`` for words a photo must not get)."""
        batch = hidden.shape[0]
        photo_ban = self.ban if ban is None else self.ban + ban
        tokens = np.full(batch, self.start_id, np.int32)
        finished = np.zeros(batch, bool)
        log_prob = np.zeros(batch, np.float32)
        lengths = np.zeros(batch, np.int32)
        out_tokens = np.full((batch, self.max_length), self.pad_id, np.int32)
        out_attention = None
        for t in range(self.max_length):
            hidden, scores, weights = self.step(tokens, hidden, memory)
            if out_attention is None:
                out_attention = np.zeros((batch, self.max_length, weights.shape[-1]), np.float32)
            logp = log_softmax(scores + photo_ban)  # (batch, vocab)
            history_ban = self._history_ban(out_tokens, t)
            if history_ban is not None:
                logp = logp + history_ban
            next_tokens = logp.argmax(axis=-1).astype(np.int32)
            step_logp = np.take_along_axis(logp, next_tokens[:, None], axis=1)[:, 0]
            log_prob += np.where(finished, np.float32(0), step_logp)
            lengths += (~finished & (next_tokens != self.end_id)).astype(np.int32)
            out_tokens[:, t] = np.where(finished, self.pad_id, next_tokens)
            out_attention[:, t] = weights
            finished |= next_tokens == self.end_id
            tokens = next_tokens
            if finished.all():
                break
        scores = self._normalise(log_prob, lengths)[:, None]
        return DecodedBatch(out_tokens[:, None], scores, lengths[:, None], out_attention[:, None])

    def beam(self, memory: tuple[np.ndarray, ...], hidden: np.ndarray, beam_size: int,
             ban: np.ndarray | None = None, must: np.ndarray | None = None, unmet_rows: int = 1) -> DecodedBatch:
        """Beam search keeping ``beam_size`` hypotheses per photo; the n-best list comes back best first.
        ``ban (batch, vocab)``: per-photo additive scores, as for :meth:`greedy`.

        ``must (batch, vocab)`` bool: constrained beam search (Anderson et al. 2017, "Guided Open
        Vocabulary Image Captioning with Constrained Beam Search") with one disjunctive constraint per
        photo, to name one of its ``must`` words. Each photo then keeps ``unmet_rows`` hypotheses that
        have not named one yet besides the ``beam_size`` that have; a hypothesis moves over by emitting
        a ``must`` word. Those that have come back first, so a photo whose search never meets the
        constraint gets its unmet captions; a photo without ``must`` words gets plain beam search."""
        check_beam_size(beam_size)
        k, vocab, batch = beam_size, self.vocab_size, hidden.shape[0]
        if must is None or not must.any():
            start = np.full((batch, k), NEG_INF, np.float32)
            start[:, 0] = 0.0  # only the first copy of each photo's beam is alive, so the k beams differ

            def select(total):  # (batch, k, vocab) -> the k best continuations
                best, flat = top_k(total.reshape(batch, k * vocab), k)
                return best, flat // vocab, flat % vocab

            return self._run_beam(memory, hidden, ban, start, select, k, met_from=0)
        k0 = max(1, int(unmet_rows))
        constrained = must.any(axis=1)
        start = np.full((batch, k0 + k), NEG_INF, np.float32)
        start[constrained, 0] = 0.0  # the first unmet row
        start[~constrained, k0] = 0.0  # the first met row: plain beam search
        only_must = np.where(must, np.float32(0), NEG_INF)[:, None, :]  # (batch, 1, vocab)
        never_must = np.where(must, NEG_INF, np.float32(0))[:, None, :]

        def select_banks(total):  # (batch, k0 + k, vocab): unmet rows stay unmet, met rows come from both
            unmet_best, unmet_flat = top_k((total[:, :k0] + never_must).reshape(batch, k0 * vocab), k0)
            met = np.concatenate([total[:, :k0] + only_must, total[:, k0:]], axis=1)
            met_best, met_flat = top_k(met.reshape(batch, (k0 + k) * vocab), k)
            flat = np.concatenate([unmet_flat, met_flat], axis=1)
            return np.concatenate([unmet_best, met_best], axis=1), flat // vocab, flat % vocab

        return self._run_beam(memory, hidden, ban, start, select_banks, k, met_from=k0)

    def _run_beam(self, memory, hidden, ban, beam_logp: np.ndarray, select, k: int, met_from: int) -> DecodedBatch:
        """The beam loop over ``rows`` hypotheses per photo (``beam_logp (batch, rows)``: their starting
        log-probabilities, ``NEG_INF`` for a dead one). ``select(total (batch, rows, vocab))`` gives the
        next ``(log-probabilities, origin rows, tokens)``, each ``(batch, rows)``. Returns the ``k`` best
        live hypotheses, those from row ``met_from`` on ranked before the others."""
        batch, rows_per = beam_logp.shape
        vocab = self.vocab_size
        photo_ban = np.repeat(np.broadcast_to(self.ban if ban is None else self.ban + ban, (batch, vocab)),
                              rows_per, axis=0)
        memory = tuple(np.repeat(m, rows_per, axis=0) for m in memory)  # (batch * rows, ...)
        hidden = np.repeat(hidden, rows_per, axis=0)
        tokens = np.full(batch * rows_per, self.start_id, np.int32)
        finished = np.zeros((batch, rows_per), bool)
        lengths = np.zeros((batch, rows_per), np.int32)
        history = np.full((batch, rows_per, self.max_length), self.pad_id, np.int32)
        attn_history = None
        end_only = np.full(vocab, NEG_INF, np.float32)
        end_only[self.end_id] = 0.0
        rows = np.arange(batch)[:, None]
        for t in range(self.max_length):
            active = ((beam_logp > NEG_INF / 2) & ~finished).reshape(-1)
            hidden, scores, weights = self._step_active(tokens, hidden, memory, active)
            if attn_history is None:
                attn_history = np.zeros((batch, rows_per, self.max_length, weights.shape[-1]), np.float32)
            logp = log_softmax(scores + photo_ban)
            history_ban = self._history_ban(history.reshape(batch * rows_per, -1), t)
            if history_ban is not None:
                logp = logp + history_ban
            logp = logp.reshape(batch, rows_per, vocab)
            # A finished hypothesis can only "emit" <end> again, at no cost.
            logp = np.where(finished[..., None], end_only, logp)
            beam_logp, origin, next_tokens = select(beam_logp[..., None] + logp)
            next_tokens = next_tokens.astype(np.int32)
            was_finished = finished[rows, origin]
            lengths = lengths[rows, origin] + (~was_finished & (next_tokens != self.end_id)).astype(np.int32)
            finished = was_finished | (next_tokens == self.end_id)
            history = history[rows, origin]
            history[:, :, t] = np.where(was_finished, self.pad_id, next_tokens)
            weights = weights.reshape(batch, rows_per, -1)
            attn_history = attn_history[rows, origin]
            attn_history[:, :, t] = weights[rows, origin]
            hidden = hidden[(origin + np.arange(batch)[:, None] * rows_per).reshape(-1)]
            tokens = next_tokens.reshape(-1)
            if (finished | (beam_logp <= NEG_INF / 2)).all():
                break
        scores = self._normalise(beam_logp, lengths)
        alive = beam_logp > NEG_INF / 2
        met = np.arange(rows_per)[None, :] >= met_from
        # float64: a float32 bonus of 1e6 would round the scores away and reorder near ties
        key = np.where(alive, scores.astype(np.float64), -1e30) + np.where(met & alive, 1e6, 0.0)
        order = np.argsort(-key, axis=1, kind="stable")[:, :k]
        pick = lambda x: np.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)  # noqa: E731
        return DecodedBatch(pick(history), pick(scores), pick(lengths), pick(attn_history))
