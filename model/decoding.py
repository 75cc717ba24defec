"""Turning a feature grid into words: greedy search and batched beam search, compiled with tf.function.

Both are deterministic. Beam search keeps ``beam_size`` hypotheses per photo; a hypothesis that has
emitted ``<end>`` stays in the beam at no further cost, and the final ranking divides each
hypothesis' log-probability by ``length ** length_penalty``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from model.decoder import CaptionDecoder


@dataclass(frozen=True)
class DecodedBatch:
    """Raw decoder output for a batch of photos, before ids become words.

    ``tokens`` (batch, beams, max_len) int32, padded with ``pad_id`` after ``<end>``;
    ``scores`` (batch, beams) length-normalised, best first; ``lengths`` (batch, beams) words
    before ``<end>``; ``attention`` (batch, beams, max_len, locations).
    """

    tokens: np.ndarray
    scores: np.ndarray
    lengths: np.ndarray
    attention: np.ndarray


class SearchDecoder:
    """Greedy and beam search over a :class:`CaptionDecoder`, with one compiled graph per setting."""

    def __init__(self, decoder: CaptionDecoder, *, start_id: int, end_id: int, pad_id: int = 0,
                 max_length: int = 30, length_penalty: float = 1.0, banned_ids: tuple[int, ...] = ()):
        self.decoder = decoder
        # Tokens never emitted (e.g. <pad>, <start>, <unk>): their scores get -1e9 before the search.
        ban = np.zeros(decoder.vocab_size, np.float32)
        ban[list(banned_ids)] = -1e9
        self._ban = tf.constant(ban)
        self.start_id, self.end_id, self.pad_id = start_id, end_id, pad_id
        self.max_length = max_length
        self.length_penalty = length_penalty
        self._compiled: dict[tuple[str, int], tf.types.experimental.GenericFunction] = {}

    def greedy(self, features, tags=None) -> DecodedBatch:
        return self._run("greedy", 1, features, tags)

    def beam(self, features, beam_size: int, tags=None) -> DecodedBatch:
        from model.search import check_beam_size

        return self._run("beam", check_beam_size(beam_size), features, tags)

    def _run(self, kind: str, beam_size: int, features, tags) -> DecodedBatch:
        """``tags (batch, num_tags)``: the photos' tag vectors, for a tag-aware decoder (None: zeros)."""
        key = (kind, beam_size)
        if key not in self._compiled:
            body = self._greedy_graph if kind == "greedy" else (lambda f, t: self._beam_graph(f, t, beam_size))
            self._compiled[key] = tf.function(body, reduce_retracing=True)
        features = tf.convert_to_tensor(features, tf.float32)
        if tags is None:
            tags = tf.zeros([features.shape[0], self.decoder.num_tags])
        tokens, scores, lengths, attention = self._compiled[key](features, tf.convert_to_tensor(tags, tf.float32))
        return DecodedBatch(tokens.numpy(), scores.numpy(), lengths.numpy(), attention.numpy())

    def _normalise(self, log_prob, lengths):
        denom = tf.pow(tf.maximum(tf.cast(lengths, tf.float32) + 1.0, 1.0), self.length_penalty)
        return log_prob / denom  # (+1: the <end> token is part of the caption's probability)

    def _greedy_graph(self, features, tags):
        dec = self.decoder
        batch = tf.shape(features)[0]
        memory, hidden = dec.prepare(features, tags)
        tokens = tf.fill([batch], self.start_id)
        finished = tf.zeros([batch], tf.bool)
        log_prob = tf.zeros([batch])
        lengths = tf.zeros([batch], tf.int32)
        out_tokens, out_attention = [], []
        for _ in range(self.max_length):
            hidden, context, embedded, weights = dec.step(tokens, hidden, memory)
            logp = tf.nn.log_softmax(dec.log_probs(hidden, context, embedded, memory) + self._ban)  # (batch, vocab)
            next_tokens = tf.argmax(logp, axis=-1, output_type=tf.int32)
            step_logp = tf.gather(logp, next_tokens, batch_dims=1)
            log_prob += tf.where(finished, 0.0, step_logp)
            emitted = tf.where(finished, self.pad_id, next_tokens)
            lengths += tf.cast(tf.logical_not(finished) & (next_tokens != self.end_id), tf.int32)
            out_tokens.append(emitted)
            out_attention.append(weights)
            finished |= next_tokens == self.end_id
            tokens = next_tokens
        tokens_out = tf.stack(out_tokens, axis=1)[:, None]  # (batch, 1, time)
        attention_out = tf.stack(out_attention, axis=1)[:, None]  # (batch, 1, time, locations)
        scores = self._normalise(log_prob, lengths)[:, None]
        return tokens_out, scores, lengths[:, None], attention_out

    def _beam_graph(self, features, tags, k: int):
        dec = self.decoder
        batch = tf.shape(features)[0]
        locations = tf.shape(features)[1]
        memory, hidden = dec.prepare(features, tags)
        tile = lambda x: tf.repeat(x, k, axis=0)  # noqa: E731  (batch*k, ...)
        memory, hidden = tf.nest.map_structure(tile, memory), tile(hidden)
        vocab = dec.vocab_size
        # Only the first copy of each photo's beam is alive at the start, so the k beams differ.
        beam_logp = tf.tile(tf.constant([[0.0] + [-1e9] * (k - 1)]), [batch, 1])  # (batch, k)
        tokens = tf.fill([batch * k], self.start_id)
        finished = tf.zeros([batch, k], tf.bool)
        lengths = tf.zeros([batch, k], tf.int32)
        history = tf.zeros([batch, k, 0], tf.int32)
        attn_history = tf.zeros([batch, k, 0, locations])
        end_only = tf.one_hot(self.end_id, vocab, on_value=0.0, off_value=-1e9)  # (vocab,)
        for _ in range(self.max_length):
            hidden, context, embedded, weights = dec.step(tokens, hidden, memory)
            logp = tf.nn.log_softmax(dec.log_probs(hidden, context, embedded, memory) + self._ban)  # (batch*k, vocab)
            logp = tf.reshape(logp, [batch, k, vocab])
            # A finished hypothesis can only "emit" <end> again, at no cost.
            logp = tf.where(finished[..., None], end_only, logp)
            total = tf.reshape(beam_logp[..., None] + logp, [batch, k * vocab])
            beam_logp, flat = tf.math.top_k(total, k=k)  # (batch, k)
            origin = flat // vocab  # which hypothesis each survivor extends
            next_tokens = flat % vocab
            was_finished = tf.gather(finished, origin, batch_dims=1)
            lengths = tf.gather(lengths, origin, batch_dims=1) + tf.cast(
                tf.logical_not(was_finished) & (next_tokens != self.end_id), tf.int32)
            finished = was_finished | (next_tokens == self.end_id)
            emitted = tf.where(was_finished, self.pad_id, next_tokens)
            history = tf.concat([tf.gather(history, origin, batch_dims=1), emitted[..., None]], axis=2)
            weights = tf.reshape(weights, [batch, k, locations])
            attn_history = tf.concat(
                [tf.gather(attn_history, origin, batch_dims=1), tf.gather(weights, origin, batch_dims=1)[:, :, None]],
                axis=2)
            flat_origin = tf.reshape(origin + tf.range(batch)[:, None] * k, [-1])
            hidden = tf.gather(hidden, flat_origin)
            tokens = tf.reshape(next_tokens, [-1])
        scores = self._normalise(beam_logp, lengths)
        order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
        pick = lambda x: tf.gather(x, order, batch_dims=1)  # noqa: E731
        return pick(history), pick(scores), pick(lengths), pick(attn_history)
