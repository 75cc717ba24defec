"""The numpy search (both runtimes' search) against the TensorFlow graph search of model.decoding.

The same decoder drives both: the graph search compiles the decoder's steps into one tf.function,
the numpy search calls the decoder's step function once per word. Tokens, lengths, scores and
attention maps must agree for greedy and beam search, with early and late stopping, banned ids and
length penalties.
"""

from __future__ import annotations

import numpy as np
import pytest

from model.search import MAX_BEAM_SIZE, Search, log_softmax, top_k

VOCAB, CHANNELS, LOCATIONS = 24, 12, 6
START, END, PAD = 1, 2, 0


def _decoder(seed: int, end_bias: float, bias: dict[int, float] | None = None):
    import keras

    from model.decoder import CaptionDecoder

    keras.utils.set_random_seed(seed)
    decoder = CaptionDecoder(VOCAB, CHANNELS, embedding_dim=8, feature_dim=8, units=16, dropout=0.0)
    decoder.build()
    values = decoder.logits_dense.bias.numpy()
    values[END] = end_bias
    for token, value in (bias or {}).items():
        values[token] = value
    decoder.logits_dense.bias.assign(values)
    return decoder


def _pair(decoder, **kwargs):
    """(graph search, numpy search, prepare) over the same decoder and settings."""
    import tensorflow as tf

    from model.decoding import SearchDecoder
    from model.onnx_export import decoder_functions

    settings = dict(start_id=START, end_id=END, pad_id=PAD, max_length=kwargs.pop("max_length", 9),
                    banned_ids=kwargs.pop("banned_ids", (PAD, START)), **kwargs)
    prepare, step = decoder_functions(decoder)
    step = tf.function(step, reduce_retracing=True)

    def step_np(tokens, hidden, memory):
        return tuple(x.numpy() for x in step(tf.constant(tokens), hidden, *memory))

    def prepare_np(features):
        *memory, hidden = (x.numpy() for x in prepare(tf.constant(features)))
        return tuple(memory), hidden

    return SearchDecoder(decoder, **settings), Search(step_np, vocab_size=VOCAB, **settings), prepare_np


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).uniform(0, 3, (5, LOCATIONS, CHANNELS)).astype(np.float32)


def _assert_same(graph, numpy_batch):
    np.testing.assert_array_equal(numpy_batch.lengths, graph.lengths)
    np.testing.assert_allclose(numpy_batch.scores, graph.scores, atol=1e-5)
    for photo in range(graph.tokens.shape[0]):
        for beam in range(graph.tokens.shape[1]):
            n = graph.lengths[photo, beam]
            np.testing.assert_array_equal(numpy_batch.tokens[photo, beam, :n + 1], graph.tokens[photo, beam, :n + 1])
            np.testing.assert_allclose(numpy_batch.attention[photo, beam, :n + 1], graph.attention[photo, beam, :n + 1],
                                       atol=1e-6)


@pytest.mark.parametrize("end_bias", [-3.0, 1.0, 4.0], ids=["runs-to-max-length", "mixed-lengths", "stops-early"])
@pytest.mark.parametrize("beam_size", [1, 2, 3, 5])
def test_numpy_search_matches_the_graph_search(features, end_bias, beam_size):
    graph_search, numpy_search, prepare = _pair(_decoder(seed=3, end_bias=end_bias))
    memory, hidden = prepare(features)
    if beam_size == 1:
        _assert_same(graph_search.greedy(features), numpy_search.greedy(memory, hidden))
    _assert_same(graph_search.beam(features, beam_size), numpy_search.beam(memory, hidden, beam_size))


def test_banned_ids_and_length_penalty_match(features):
    favourite = 7
    graph_search, numpy_search, prepare = _pair(_decoder(seed=5, end_bias=1.0, bias={favourite: 20.0}),
                                                banned_ids=(PAD, START, favourite), length_penalty=0.6)
    memory, hidden = prepare(features)
    beam = numpy_search.beam(memory, hidden, 3)
    _assert_same(graph_search.beam(features, 3), beam)
    assert favourite not in beam.tokens and START not in beam.tokens


def test_search_stops_once_every_hypothesis_has_ended(features):
    calls = []
    _, numpy_search, prepare = _pair(_decoder(seed=3, end_bias=4.0), max_length=20)
    step = numpy_search.step

    def counting(*args):
        calls.append(1)
        return step(*args)

    numpy_search.step = counting
    memory, hidden = prepare(features)
    out = numpy_search.beam(memory, hidden, 3)
    assert out.tokens.shape == (5, 3, 20) and out.attention.shape == (5, 3, 20, LOCATIONS)
    assert len(calls) == out.lengths.max() + 1 < 20
    assert (out.tokens[:, :, len(calls):] == PAD).all()


def test_top_k_breaks_ties_by_index_like_tensorflow():
    import tensorflow as tf

    values = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]], np.float32)
    for k in (1, 2, 3, 4):
        got_values, got_idx = top_k(values, k)
        want = tf.math.top_k(values, k=k)
        np.testing.assert_array_equal(got_idx, want.indices.numpy())
        np.testing.assert_array_equal(got_values, want.values.numpy())


def test_log_softmax_matches_tensorflow():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(0, 10, (4, 50)).astype(np.float32)
    x[:, 3] = -1e9
    np.testing.assert_allclose(log_softmax(x), tf.nn.log_softmax(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("beam_size", [0, MAX_BEAM_SIZE + 1])
def test_beam_size_must_be_from_1_to_the_limit(beam_size):
    search = Search(lambda *a: None, vocab_size=VOCAB, start_id=START, end_id=END)
    with pytest.raises(ValueError, match=f"the beam size must be from 1 to {MAX_BEAM_SIZE}, not {beam_size}"):
        search.beam((), np.zeros((1, 4), np.float32), beam_size)
