"""The caption decoder: encoder projection, attention and a GRU emitting one word at a time.

Show, Attend and Tell (Xu et al., 2015) with a GRU: at step t the previous hidden state attends over
the projected feature grid; the context vector and the previous word's embedding feed the GRU; a
deep output layer maps the new hidden state and the context to word scores. The initial hidden
state is predicted from the mean feature vector, as in the paper.
"""

from __future__ import annotations

import keras
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

    Args:
        vocab_size: number of tokens, ``<pad>``/``<start>``/``<end>``/``<unk>`` included.
        encoder_channels: depth of the CNN feature grid (1280 for EfficientNet-Lite).
        embedding_dim: word embedding size.
        feature_dim: size of the projected feature vectors.
        units: GRU and attention size.
        dropout: dropout before the output layer and on the projected features while training.
    """

    def __init__(self, vocab_size: int, encoder_channels: int, embedding_dim: int = 256,
                 feature_dim: int = 256, units: int = 512, dropout: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.encoder_channels = encoder_channels
        self.embedding_dim = embedding_dim
        self.feature_dim = feature_dim
        self.units = units
        self.dropout_rate = dropout
        self.projection = EncoderProjection(feature_dim, dropout=dropout / 2, name="projection")
        self.attention = BahdanauAttention(units, name="attention")
        self.embedding = layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.init_hidden = layers.Dense(units, activation="tanh", name="init_hidden")
        self.gru = layers.GRUCell(units, name="gru")
        self.deep_output = layers.Dense(embedding_dim, activation="tanh", name="deep_output")
        self.out_dropout = layers.Dropout(dropout)
        self.logits_dense = layers.Dense(vocab_size, name="logits")

    def build(self, input_shape=None):
        feats = (None, None, self.encoder_channels)
        self.projection.build(feats)
        self.attention.build((None, None, self.feature_dim), (None, self.units))
        self.embedding.build((None,))
        self.init_hidden.build((None, self.feature_dim))
        self.gru.build((None, self.embedding_dim + self.feature_dim))
        self.deep_output.build((None, self.units + self.feature_dim + self.embedding_dim))
        self.logits_dense.build((None, self.embedding_dim))
        self.built = True

    # -- the pieces that training and decoding share ------------------------------------------

    def prepare(self, features, training=False):
        """Per-photo work done once: ``features (batch, locations, channels)`` ->
        ``(projected (batch, locations, feature_dim), keys (batch, locations, units),
        hidden (batch, units))``."""
        projected = self.projection(features, training=training)
        keys = self.attention.keys(projected)
        hidden = self.init_hidden(ops.mean(projected, axis=1))
        return projected, keys, hidden

    def step(self, tokens, hidden, projected, keys):
        """One decoding step: ``tokens (batch,)`` are the previous words.

        Returns ``(hidden (batch, units), context (batch, feature_dim), embedded (batch, embedding_dim),
        attention (batch, locations))``.
        """
        context, weights = self.attention(keys, projected, hidden)
        embedded = self.embedding(tokens)  # (batch, embedding_dim)
        x = ops.concatenate([embedded, context], axis=-1)
        _, states = self.gru(x, [hidden])
        new_hidden = states[0] if isinstance(states, (list, tuple)) else states
        return new_hidden, context, embedded, weights

    def logits(self, hidden, context, embedded, training=False):
        """Word scores from the deep output layer; works on ``(batch, …)`` or ``(batch, time, …)``."""
        deep = self.deep_output(ops.concatenate([hidden, context, embedded], axis=-1))
        return self.logits_dense(self.out_dropout(deep, training=training))  # (…, vocab_size)

    def call(self, inputs, training=False):
        """Teacher forcing: ``(features, tokens (batch, time))`` -> ``(logits (batch, time, vocab),
        attention (batch, time, locations))``, where ``tokens`` are the inputs (``<start> w1 …``)."""
        features, tokens = inputs
        projected, keys, hidden = self.prepare(features, training=training)
        hiddens, contexts, embeddeds, attentions = [], [], [], []
        for t in range(tokens.shape[1]):
            hidden, context, embedded, weights = self.step(tokens[:, t], hidden, projected, keys)
            hiddens.append(hidden)
            contexts.append(context)
            embeddeds.append(embedded)
            attentions.append(weights)
        stack = lambda xs: ops.stack(xs, axis=1)  # noqa: E731
        logits = self.logits(stack(hiddens), stack(contexts), stack(embeddeds), training=training)
        return logits, stack(attentions)

    def get_config(self):
        return {
            "vocab_size": self.vocab_size, "encoder_channels": self.encoder_channels,
            "embedding_dim": self.embedding_dim, "feature_dim": self.feature_dim,
            "units": self.units, "dropout": self.dropout_rate, "name": self.name,
        }


def masked_loss(targets, logits, pad_id: int = 0):
    """Cross-entropy averaged over real tokens only: padding neither counts nor dilutes the mean."""
    mask = ops.cast(ops.not_equal(targets, pad_id), logits.dtype)
    per_token = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    return ops.sum(per_token * mask) / ops.maximum(ops.sum(mask), 1.0)


def attention_regularizer(attention, targets, pad_id: int = 0):
    """Doubly stochastic attention (Xu et al.): every location should receive about one unit of
    attention over the caption. ``attention (batch, time, locations)``."""
    mask = ops.cast(ops.not_equal(targets, pad_id), attention.dtype)[..., None]
    total = ops.sum(attention * mask, axis=1)  # (batch, locations)
    return ops.mean(ops.square(1.0 - total))
