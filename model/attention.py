"""Bahdanau (additive) attention over the encoder's feature grid."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="imgcap")
class BahdanauAttention(layers.Layer):
    """score(h, f_i) = v^T tanh(W_f f_i + W_h h); weights = softmax over the grid's locations.

    The keys ``W_f f`` depend only on the photo, so they are computed once per photo with
    :meth:`keys` and reused at every decoding step.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.feature_dense = layers.Dense(units, name="feature_dense")
        self.hidden_dense = layers.Dense(units, name="hidden_dense")
        self.score_dense = layers.Dense(1, name="score_dense")

    def build(self, features_shape, hidden_shape=None):
        self.feature_dense.build(features_shape)
        if hidden_shape is not None:
            self.hidden_dense.build(hidden_shape)
        self.score_dense.build((None, None, self.units))

    def keys(self, features):
        return self.feature_dense(features)  # (batch, locations, units)

    def call(self, keys, features, hidden):
        """Returns ``(context (batch, feature_dim), weights (batch, locations))``."""
        query = ops.expand_dims(self.hidden_dense(hidden), 1)  # (batch, 1, units)
        scores = ops.squeeze(self.score_dense(ops.tanh(keys + query)), -1)  # (batch, locations)
        # softmax, written out: Keras warns about a softmax over one location (text-only sentences)
        weights = ops.exp(scores - ops.logsumexp(scores, axis=-1, keepdims=True))  # (batch, locations)
        # a batched matmul, not einsum: tf2onnx turns this einsum into a transpose of the whole
        # (batch, locations, feature_dim) memory at every step, 20% of an ONNX step's time
        context = ops.squeeze(ops.matmul(ops.expand_dims(weights, 1), features), 1)  # (batch, feature_dim)
        return context, weights

    def get_config(self):
        return {**super().get_config(), "units": self.units}
