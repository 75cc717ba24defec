"""The caption decoder: encoder projection, attention and a GRU emitting one word at a time.

Show, Attend and Tell (Xu et al., 2015) with a GRU: at step t the previous hidden state attends over
the projected feature grid; the context vector and the previous word's embedding feed the GRU; a
deep output layer maps the new hidden state and the context to word scores. The initial hidden
state is predicted from the mean feature vector, as in the paper.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from model.attention import BahdanauAttention


@keras.saving.register_keras_serializable(package="imgcap")
class EncoderProjection(layers.Layer):
    """Projects each location's CNN feature vector to the decoder's feature size (Dense + ReLU)."""

    def __init__(self, feature_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = feature_dim
        self.dropout_rate = dropout
        self.dense = layers.Dense(feature_dim, activation="relu", name="dense")
        self.dropout = layers.Dropout(dropout)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, features, training=False):
        return self.dropout(self.dense(features), training=training)  # (batch, locations, feature_dim)

    def get_config(self):
        return {**super().get_config(), "feature_dim": self.feature_dim, "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="imgcap")
class CaptionDecoder(keras.Model):
    """All trainable parts after the (frozen) CNN encoder.

    With ``num_tags > 0`` the decoder is *tag-aware*: it also reads the photo's tag vector (the
    probabilities of everyday words from the encoder's ImageNet classifier, see :mod:`model.tags`).
    The tags shape the initial state and enter the GRU at every step, and with ``copy_ids`` a copy
    path can emit a tag word directly (LSTM-C, Yao et al. 2017): the output distribution is a gated
    mixture of the generator's softmax over the vocabulary and a softmax over the tag words, whose
    scores add ``copy_prior * log p(tag)`` so a confident tag can be named even when the caption data
    rarely paired that word with a photo. A learned "no photo" grid stands in for the features of
    text-only training sentences (DCC / NOC: language of unseen objects from text).

    Args:
        vocab_size: number of tokens, ``<pad>``/``<start>``/``<end>``/``<unk>`` included.
        encoder_channels: depth of the CNN feature grid (1280 for EfficientNet-Lite).
        embedding_dim: word embedding size.
        feature_dim: size of the projected feature vectors.
        units: GRU and attention size.
        dropout: dropout before the output layer and on the projected features while training.
        num_tags: size of the tag vocabulary; 0 gives the plain decoder of the first bundles.
        copy_ids: the vocabulary id of every tag word (``num_tags`` ids), enabling the copy path.
        grid_dropout: while training, the share of photos whose grid is replaced by the "no photo"
            grid, so the decoder learns to caption from the tags alone too.
        context_gate: scale the attention context by a gate computed from the previous hidden state,
            ``sigmoid(W h_{t-1})`` per feature (the "f_beta" gate of Show, Attend and Tell, section 4.2.1),
            so the decoder can turn the photo down for words such as "a" and "of".
        deep_output: predict the next word from a tanh layer over the hidden state, the context and
            the previous word's embedding (the "deep output" of Show, Attend and Tell, eq. 7; on by
            default, as in every shipped bundle); off, the output layer reads the hidden state alone.
    """

    def __init__(self, vocab_size: int, encoder_channels: int, embedding_dim: int = 256,
                 feature_dim: int = 256, units: int = 512, dropout: float = 0.3, num_tags: int = 0,
                 copy_ids: list[int] | None = None, grid_dropout: float = 0.0, context_gate: bool = False,
                 deep_output: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.encoder_channels = encoder_channels
        self.embedding_dim = embedding_dim
        self.feature_dim = feature_dim
        self.units = units
        self.dropout_rate = dropout
        self.num_tags = int(num_tags)
        self.copy_ids = [int(i) for i in copy_ids] if copy_ids is not None else None
        if self.copy_ids is not None and len(self.copy_ids) != self.num_tags:
            raise ValueError(f"copy_ids has {len(self.copy_ids)} ids for {self.num_tags} tags")
        self.grid_dropout = float(grid_dropout)
        self.context_gate = bool(context_gate)
        self.use_deep_output = bool(deep_output)
        self.projection = EncoderProjection(feature_dim, dropout=dropout / 2, name="projection")
        self.attention = BahdanauAttention(units, name="attention")
        self.embedding = layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.init_hidden = layers.Dense(units, activation="tanh", name="init_hidden")
        self.gru = layers.GRUCell(units, name="gru")
        if self.use_deep_output:
            self.deep_output = layers.Dense(embedding_dim, activation="tanh", name="deep_output")
        self.out_dropout = layers.Dropout(dropout)
        self.logits_dense = layers.Dense(vocab_size, name="logits")
        if self.context_gate:
            self.gate_dense = layers.Dense(feature_dim, activation="sigmoid", name="context_gate")
        if self.num_tags:
            self.tag_embedding = layers.Dense(feature_dim, activation="relu", name="tag_embedding")
            self.seed_generator = keras.random.SeedGenerator(17)
        if self.copy_ids is not None:
            self.copy_scores = layers.Dense(self.num_tags, name="copy_scores")
            self.copy_gate = layers.Dense(1, name="copy_gate")
            # Vocabulary id -> index of its tag word, or num_tags (a zero column) for other words.
            lookup = np.full(vocab_size, self.num_tags, np.int32)
            lookup[self.copy_ids] = np.arange(self.num_tags, dtype=np.int32)
            self._copy_lookup = lookup

    def build(self, input_shape=None):
        feats = (None, None, self.encoder_channels)
        self.projection.build(feats)
        self.attention.build((None, None, self.feature_dim), (None, self.units))
        self.embedding.build((None,))
        tag_dim = self.feature_dim if self.num_tags else 0
        self.init_hidden.build((None, self.feature_dim + tag_dim))
        self.gru.build((None, self.embedding_dim + self.feature_dim + tag_dim))
        out_dim = self.embedding_dim if self.use_deep_output else self.units  # what the output layer reads
        if self.use_deep_output:
            self.deep_output.build((None, self.units + self.feature_dim + self.embedding_dim))
        self.logits_dense.build((None, out_dim))
        if self.context_gate:
            self.gate_dense.build((None, self.units))
        if self.num_tags:
            self.tag_embedding.build((None, self.num_tags))
            self.null_grid = self.add_weight(shape=(1, self.feature_dim), initializer="zeros", name="null_grid")
        if self.copy_ids is not None:
            self.copy_scores.build((None, out_dim))
            self.copy_gate.build((None, self.units + self.feature_dim + self.embedding_dim))
            self.copy_prior = self.add_weight(shape=(), initializer=keras.initializers.Constant(1.0), name="copy_prior")
        self.built = True

    # -- the pieces that training and decoding share ------------------------------------------

    def prepare(self, features, tags=None, training=False):
        """Per-photo work done once.

        Args:
            features: ``(batch, locations, channels)``, or None for text-only sentences (the learned
                "no photo" grid of one location is used; needs ``num_tags``).
            tags: ``(batch, num_tags)`` word probabilities (ignored by a plain decoder).

        Returns:
            ``(memory, hidden (batch, units))`` where ``memory`` is the tuple ``(projected (batch,
            locations, feature_dim), keys (batch, locations, units), tags (batch, num_tags),
            tag_input (batch, 3 * units or 0))`` that :meth:`step` and :meth:`log_probs` read.
            ``tag_input`` is the tags' share of the GRU's input projection (plus its input bias): the
            tags are the same at every step, so their part of ``x @ kernel`` is computed here once.
        """
        if features is None:
            if not self.num_tags or tags is None:
                raise ValueError("a decoder without tags needs features")
            batch = ops.shape(tags)[0]
            projected = ops.broadcast_to(self.null_grid[None], (batch, 1, self.feature_dim))
        else:
            projected = self.projection(features, training=training)  # (batch, locations, feature_dim)
            if self.num_tags and training and self.grid_dropout > 0:
                drop = keras.random.uniform((ops.shape(projected)[0], 1, 1),
                                            seed=self.seed_generator) < self.grid_dropout
                projected = ops.where(drop, ops.broadcast_to(self.null_grid[None], ops.shape(projected)), projected)
        keys = self.attention.keys(projected)  # (batch, locations, units)
        pooled = ops.mean(projected, axis=1)  # (batch, feature_dim)
        batch = ops.shape(pooled)[0]
        if self.num_tags:
            tags = ops.cast(tags, pooled.dtype)
            tag_context = self.tag_embedding(tags)  # (batch, feature_dim)
            hidden = self.init_hidden(ops.concatenate([pooled, tag_context], axis=-1))
            step_inputs = self.embedding_dim + self.feature_dim  # the GRU input is [word, context, tags]
            tag_input = ops.matmul(tag_context, self.gru.kernel[step_inputs:]) + self.gru.bias[0]
        else:
            tags = ops.zeros((batch, 0), pooled.dtype)
            tag_input = ops.zeros((batch, 0), pooled.dtype)
            hidden = self.init_hidden(pooled)
        return (projected, keys, tags, tag_input), hidden

    def step(self, tokens, hidden, memory, training=False):
        """One decoding step: ``tokens (batch,)`` are the previous words.

        Returns ``(hidden (batch, units), context (batch, feature_dim), embedded (batch, embedding_dim),
        attention (batch, locations))``.
        """
        projected, keys, _, tag_input = memory
        context, weights = self.attention(keys, projected, hidden)
        if self.context_gate:
            context = context * self.gate_dense(hidden)  # (batch, feature_dim), gated by h_{t-1}
        embedded = self.embedding(tokens)  # (batch, embedding_dim)
        x = ops.concatenate([embedded, context], axis=-1)
        if self.num_tags:
            new_hidden = self._gru_step(x, tag_input, hidden)
        else:
            _, states = self.gru(x, [hidden], training=training)
            new_hidden = states[0] if isinstance(states, (list, tuple)) else states
        return new_hidden, context, embedded, weights

    def _gru_step(self, x, tag_input, hidden):
        """The GRU cell's step (Keras' ``GRUCell``, ``reset_after=True``) with the input projection of
        the tags precomputed: ``[x, tags] @ kernel + b = x @ kernel[:len(x)] + tag_input``. A third of
        the cell's input multiply-adds are saved at every step, and the weights stay the cell's own."""
        cell, units = self.gru, self.units
        xz = ops.matmul(x, cell.kernel[: self.embedding_dim + self.feature_dim]) + tag_input  # (batch, 3 units)
        inner = ops.matmul(hidden, cell.recurrent_kernel) + cell.bias[1]
        z = ops.sigmoid(xz[:, :units] + inner[:, :units])
        r = ops.sigmoid(xz[:, units:2 * units] + inner[:, units:2 * units])
        candidate = ops.tanh(xz[:, 2 * units:] + r * inner[:, 2 * units:])
        return z * hidden + (1.0 - z) * candidate

    def log_probs(self, hidden, context, embedded, memory, training=False):
        """Log-probabilities of the next word, ``(batch, vocab)`` or ``(batch, time, vocab)``."""
        state = ops.concatenate([hidden, context, embedded], axis=-1)
        if self.use_deep_output:
            deep = self.out_dropout(self.deep_output(state), training=training)  # (…, embedding_dim)
        else:
            deep = self.out_dropout(hidden, training=training)  # (…, units)
        generated = self.logits_dense(deep)  # (…, vocab)
        if self.copy_ids is None:
            return ops.log_softmax(generated, axis=-1)
        tags = memory[2]  # (batch, num_tags)
        if len(deep.shape) == 3:
            tags = tags[:, None, :]  # (batch, 1, num_tags)
        copy = self.copy_scores(deep) + self.copy_prior * ops.log(tags + 1e-4)  # (…, num_tags)
        copy = ops.softmax(copy, axis=-1)
        copy = ops.concatenate([copy, ops.zeros_like(copy[..., :1])], axis=-1)  # (…, num_tags + 1)
        copy = ops.take(copy, self._copy_lookup, axis=-1)  # (…, vocab): each tag's mass on its word
        gate = ops.sigmoid(self.copy_gate(state))  # (…, 1)
        return ops.log((1.0 - gate) * ops.softmax(generated, axis=-1) + gate * copy + 1e-9)

    def call(self, inputs, training=False):
        """Teacher forcing: ``(features, tokens (batch, time)[, tags])`` -> ``(log_probs (batch, time,
        vocab), attention (batch, time, locations))``, where ``tokens`` are the inputs (``<start> w1 …``)."""
        features, tokens, *rest = inputs
        tags = rest[0] if rest else None
        memory, hidden = self.prepare(features, tags, training=training)
        hiddens, contexts, embeddeds, attentions = [], [], [], []
        for t in range(tokens.shape[1]):
            hidden, context, embedded, weights = self.step(tokens[:, t], hidden, memory, training=training)
            hiddens.append(hidden)
            contexts.append(context)
            embeddeds.append(embedded)
            attentions.append(weights)
        stack = lambda xs: ops.stack(xs, axis=1)  # noqa: E731
        log_probs = self.log_probs(stack(hiddens), stack(contexts), stack(embeddeds), memory, training=training)
        return log_probs, stack(attentions)

    def get_config(self):
        config = {
            "vocab_size": self.vocab_size, "encoder_channels": self.encoder_channels,
            "embedding_dim": self.embedding_dim, "feature_dim": self.feature_dim,
            "units": self.units, "dropout": self.dropout_rate, "name": self.name,
        }
        if self.num_tags:  # older bundles have no tag fields: keep their config unchanged
            config |= {"num_tags": self.num_tags, "copy_ids": self.copy_ids, "grid_dropout": self.grid_dropout}
        if self.context_gate:  # likewise: only a gated decoder's config names the gate
            config["context_gate"] = True
        if not self.use_deep_output:  # and only a decoder without the deep output names it
            config["deep_output"] = False
        return config


def masked_nll(targets, log_probs, pad_id: int = 0, label_smoothing: float = 0.0):
    """Negative log-likelihood averaged over real tokens only: padding neither counts nor dilutes
    the mean. ``log_probs (batch, time, vocab)`` are normalised log-probabilities."""
    mask = ops.cast(ops.not_equal(targets, pad_id), log_probs.dtype)
    picked = ops.take_along_axis(log_probs, ops.expand_dims(ops.cast(targets, "int32"), -1), axis=-1)[..., 0]
    per_token = -picked
    if label_smoothing:
        per_token = (1.0 - label_smoothing) * per_token - label_smoothing * ops.mean(log_probs, axis=-1)
    return ops.sum(per_token * mask) / ops.maximum(ops.sum(mask), 1.0)


def attention_regularizer(attention, targets, pad_id: int = 0):
    """Doubly stochastic attention (Xu et al.): every location should receive about one unit of
    attention over the caption. ``attention (batch, time, locations)``."""
    mask = ops.cast(ops.not_equal(targets, pad_id), attention.dtype)[..., None]
    total = ops.sum(attention * mask, axis=1)  # (batch, locations)
    return ops.mean(ops.square(1.0 - total))
