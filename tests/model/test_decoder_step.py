"""The tag-aware decoder's step: its GRU with the tags' input projection precomputed in ``prepare``."""

from __future__ import annotations

import numpy as np


def _decoder(num_tags: int):
    import keras

    from model.decoder import CaptionDecoder

    keras.utils.set_random_seed(3)
    kwargs = {"num_tags": num_tags, "copy_ids": list(range(4, 4 + num_tags))} if num_tags else {}
    decoder = CaptionDecoder(vocab_size=40, encoder_channels=12, embedding_dim=8, feature_dim=16, units=10, **kwargs)
    decoder.build()
    for var in decoder.weights:  # biases and the "no photo" grid start at zero: make every term count
        var.assign(np.random.default_rng(len(var.path)).normal(0, 0.3, var.shape).astype(np.float32))
    return decoder


def test_tag_aware_step_equals_the_gru_cell_on_the_whole_input():
    from keras import ops

    decoder = _decoder(num_tags=6)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 5, 12)).astype(np.float32)
    tags = rng.uniform(size=(3, 6)).astype(np.float32)
    memory, hidden = decoder.prepare(features, tags)
    tokens = np.array([1, 7, 9], np.int32)
    new_hidden, context, embedded, _ = decoder.step(tokens, hidden, memory)

    tag_context = decoder.tag_embedding(tags)
    x = ops.concatenate([embedded, context, tag_context], axis=-1)
    _, states = decoder.gru(x, [hidden])
    expected = states[0] if isinstance(states, (list, tuple)) else states
    np.testing.assert_allclose(ops.convert_to_numpy(new_hidden), ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-6)


def test_plain_decoder_step_still_uses_the_cell():
    decoder = _decoder(num_tags=0)
    features = np.random.default_rng(1).normal(size=(2, 5, 12)).astype(np.float32)
    memory, hidden = decoder.prepare(features)
    assert memory[3].shape == (2, 0)
    new_hidden, *_ = decoder.step(np.array([1, 2], np.int32), hidden, memory)
    assert new_hidden.shape == (2, 10)
