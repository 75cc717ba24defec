"""Greedy and beam search on a tiny random decoder: agreement, determinism, stopping, attention."""

from __future__ import annotations

import numpy as np
import pytest

VOCAB, CHANNELS, LOCATIONS = 24, 12, 6  # grid 2x3
START, END, PAD = 1, 2, 0


def _decoder(seed: int = 0, end_bias: float | None = None, bias: dict[int, float] | None = None):
    import keras

    from model.decoder import CaptionDecoder

    keras.utils.set_random_seed(seed)
    decoder = CaptionDecoder(VOCAB, CHANNELS, embedding_dim=8, feature_dim=8, units=16, dropout=0.0)
    decoder.build()
    values = decoder.logits_dense.bias.numpy()
    values[END] = -3.0 if end_bias is None else end_bias  # long captions unless a test says otherwise
    for token, value in (bias or {}).items():
        values[token] = value
    decoder.logits_dense.bias.assign(values)
    return decoder


def _search(decoder, **kwargs):
    from model.decoding import SearchDecoder

    kwargs.setdefault("banned_ids", (PAD, START))
    return SearchDecoder(decoder, start_id=START, end_id=END, pad_id=PAD, max_length=kwargs.pop("max_length", 7),
                         **kwargs)


@pytest.fixture(scope="module")
def decoder():
    return _decoder()


@pytest.fixture(scope="module")
def search(decoder):
    """Long captions (runs to max_length); compiled graphs are reused by every test."""
    return _search(decoder)


@pytest.fixture(scope="module")
def stopping():
    """A decoder whose <end> is likely but not certain: captions of several lengths, then padding."""
    return _search(_decoder(seed=3, end_bias=1.0), max_length=10)


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).uniform(0, 3, (5, LOCATIONS, CHANNELS)).astype(np.float32)



def test_beam_size_one_equals_greedy(stopping, features):
    greedy, beam = stopping.greedy(features), stopping.beam(features, 1)
    assert len(set(greedy.lengths[:, 0].tolist())) > 1, "captions of one length only: a weak check"
    assert greedy.tokens.shape == beam.tokens.shape == (5, 1, 10)
    np.testing.assert_array_equal(greedy.tokens, beam.tokens)
    np.testing.assert_array_equal(greedy.lengths, beam.lengths)
    np.testing.assert_allclose(greedy.scores, beam.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(greedy.attention, beam.attention, atol=1e-6)


def test_beam_size_one_equals_greedy_on_long_captions(search, features):
    greedy, beam = search.greedy(features), search.beam(features, 1)
    np.testing.assert_array_equal(greedy.tokens, beam.tokens)
    np.testing.assert_allclose(greedy.scores, beam.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_deterministic(stopping, features, beam_size):
    first = stopping.beam(features, beam_size)
    again = stopping.beam(features.copy(), beam_size)
    for a, b in ((first.tokens, again.tokens), (first.scores, again.scores), (first.attention, again.attention)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(stopping.greedy(features).tokens, stopping.greedy(features).tokens)


def test_each_photo_is_decoded_independently_of_its_batch(stopping, features):
    search = stopping
    batch = search.beam(features, 3)
    alone = search.beam(features[2:3], 3)
    np.testing.assert_array_equal(batch.tokens[2:3], alone.tokens)
    np.testing.assert_allclose(batch.scores[2:3], alone.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beam_size", [None, 1, 4])
def test_stops_at_end(features, beam_size):
    dec = _decoder(end_bias=50.0)
    search = _search(dec, max_length=3)
    out = search.greedy(features) if beam_size is None else search.beam(features, beam_size)
    best = out.tokens[:, 0]
    assert (out.lengths[:, 0] == 0).all()  # zero-length captions
    assert (best[:, 0] == END).all()
    assert (best[:, 1:] == PAD).all()  # nothing after <end>
    assert np.all(out.scores[:, 0] <= 0)


def test_tokens_after_end_are_padding(stopping, features):
    out = stopping.beam(features, 3)
    for row in range(out.tokens.shape[0]):
        for beam in range(out.tokens.shape[1]):
            seq, n = out.tokens[row, beam], out.lengths[row, beam]
            assert END not in seq[:n]
            if n < len(seq):
                assert seq[n] == END and (seq[n + 1:] == PAD).all()


@pytest.mark.parametrize("beam_size", [None, 3])
def test_attention_maps_are_distributions(search, features, beam_size):
    out = search.greedy(features) if beam_size is None else search.beam(features, beam_size)
    assert out.attention.dtype == np.float32
    assert out.attention.shape == (5, beam_size or 1, 7, LOCATIONS)
    np.testing.assert_allclose(out.attention.sum(-1), 1.0, atol=1e-5)
    assert (out.attention >= 0).all()


def test_caption_results_carry_one_attention_map_per_word(tiny_captioner):
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(3)]
    gh, gw = tiny_captioner.grid
    for beam_size in (1, 3):
        for result in tiny_captioner.caption(photos, beam_size=beam_size, batch_size=3):
            assert result.ok
            assert len(result.words) == len(result.token_ids) > 0
            assert result.attention.shape == (len(result.words), gh, gw)
            assert result.attention.dtype == np.float32
            np.testing.assert_allclose(result.attention.sum(axis=(1, 2)), 1.0, atol=1e-5)
            assert len(result.alternatives) == beam_size
            assert result.alternatives[0].words == result.words
            assert result.alternatives[0].score == result.score


def test_n_best_sorted_by_score(stopping, features):
    out = stopping.beam(features, 3)
    assert out.scores.shape == (5, 3)
    assert (np.diff(out.scores, axis=1) <= 1e-7).all()
    # The hypotheses are distinct captions, not copies of one.
    for row in range(5):
        assert len({tuple(seq) for seq in out.tokens[row]}) == 3


def test_banned_ids_never_emitted(features):
    favourite = 7
    dec = _decoder(bias={favourite: 20.0})  # without the ban, every word would be this one
    assert (_search(dec, banned_ids=(PAD, START), max_length=1).greedy(features).tokens[:, 0, 0] == favourite).all()
    search = _search(dec, banned_ids=(PAD, START, favourite, 3), max_length=4)
    for out in (search.greedy(features), search.beam(features, 3)):
        assert favourite not in out.tokens
        assert START not in out.tokens and 3 not in out.tokens
        assert (out.lengths > 0).all()


def test_beam_size_zero_is_refused(search, features):
    with pytest.raises(ValueError):
        search.beam(features, 0)


def test_max_length_bounds_the_caption(decoder, features):
    out = _search(decoder, max_length=3).beam(features, 3)
    assert out.tokens.shape[-1] == 3
    assert (out.lengths <= 3).all()


# --- training's masked loss ---------------------------------------------------------------------

def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def masked_loss(targets, logits):
    from model.decoder import masked_nll

    return masked_nll(targets, _log_softmax(np.asarray(logits, np.float32)))


def test_masked_loss_ignores_padding():
    rng = np.random.default_rng(0)
    targets = np.array([[5, 6, 7, END, 0], [8, END, 0, 0, 0]], np.int32)
    logits = rng.normal(size=(2, 5, VOCAB)).astype(np.float32)
    base = float(masked_loss(targets, logits))

    longer_targets = np.concatenate([targets, np.zeros((2, 4), np.int32)], axis=1)
    longer_logits = np.concatenate([logits, rng.normal(size=(2, 4, VOCAB)).astype(np.float32) * 10], axis=1)
    assert float(masked_loss(longer_targets, longer_logits)) == pytest.approx(base, rel=1e-6)

    # The mean is over the 6 real tokens, not the 10 padded positions.
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = [(b, t) for b in range(2) for t in range(5) if targets[b, t] != 0]
    expected = -np.mean([logp[b, t, targets[b, t]] for b, t in real])
    assert base == pytest.approx(expected, rel=1e-5)


def test_masked_loss_changes_when_a_real_token_logit_changes():
    targets = np.array([[5, END, 0]], np.int32)
    logits = np.zeros((1, 3, VOCAB), np.float32)
    before = float(masked_loss(targets, logits))
    logits[0, 2, 9] = 100.0  # a padded position: no effect
    assert float(masked_loss(targets, logits)) == pytest.approx(before)
    logits[0, 0, 5] = 5.0  # a real position: lower loss
    assert float(masked_loss(targets, logits)) < before


def test_teacher_forcing_matches_step_by_step_decoding(decoder, features):
    """The training graph (``call``) and the inference pieces (``prepare``/``step``/``log_probs``) agree."""
    tokens = np.array([[START, 5, 6, 7]] * 5, np.int32)
    log_probs, attention = decoder((features, tokens), training=False)
    memory, hidden = decoder.prepare(features)
    for t in range(tokens.shape[1]):
        hidden, context, embedded, weights = decoder.step(tokens[:, t], hidden, memory)
        np.testing.assert_allclose(np.asarray(decoder.log_probs(hidden, context, embedded, memory)),
                                   np.asarray(log_probs[:, t]), atol=1e-5)
        np.testing.assert_allclose(np.asarray(weights), np.asarray(attention[:, t]), atol=1e-6)


def test_decoder_config_round_trip(decoder):
    from model.decoder import CaptionDecoder

    config = decoder.get_config()
    clone = CaptionDecoder(**config)
    assert clone.get_config() == config


# -- the tag-aware decoder (tags in the state and the GRU input, copy path, "no photo" grid) ----------

TAGS = 5
COPY_IDS = [7, 8, 9, 10, 11]


def _tag_decoder(seed: int = 0):
    import keras

    from model.decoder import CaptionDecoder

    keras.utils.set_random_seed(seed)
    decoder = CaptionDecoder(VOCAB, CHANNELS, embedding_dim=8, feature_dim=8, units=16, dropout=0.0,
                             num_tags=TAGS, copy_ids=COPY_IDS)
    decoder.build()
    return decoder


@pytest.fixture(scope="module")
def tag_decoder():
    return _tag_decoder()


def _tags(batch: int, hot: int | None = None) -> np.ndarray:
    tags = np.full((batch, TAGS), 0.01, np.float32)
    if hot is not None:
        tags[:, hot] = 0.95
    return tags


def test_tag_aware_teacher_forcing_matches_step_by_step(tag_decoder, features):
    tokens = np.array([[START, 5, 8, 7]] * 5, np.int32)
    tags = _tags(5, hot=1)
    log_probs, attention = tag_decoder((features, tokens, tags), training=False)
    memory, hidden = tag_decoder.prepare(features, tags)
    for t in range(tokens.shape[1]):
        hidden, context, embedded, weights = tag_decoder.step(tokens[:, t], hidden, memory)
        np.testing.assert_allclose(np.asarray(tag_decoder.log_probs(hidden, context, embedded, memory)),
                                   np.asarray(log_probs[:, t]), atol=1e-5)


def test_tag_aware_log_probs_are_a_distribution(tag_decoder, features):
    tokens = np.array([[START, 5, 6]] * 5, np.int32)
    log_probs, _ = tag_decoder((features, tokens, _tags(5, hot=2)), training=False)
    np.testing.assert_allclose(np.exp(np.asarray(log_probs)).sum(-1), 1.0, atol=1e-4)


def test_copy_path_puts_a_confident_tags_mass_on_its_word(features):
    """With the gate open, the copied word's probability follows its tag: the word of a confident
    tag becomes likely even though nothing in the generator favours it."""
    decoder = _tag_decoder(seed=1)
    decoder.copy_gate.bias.assign(np.array([20.0], np.float32))  # always copy
    tokens = np.array([[START]] * 5, np.int32)
    for hot in range(TAGS):
        log_probs, _ = decoder((features, tokens, _tags(5, hot=hot)), training=False)
        assert (np.asarray(log_probs)[:, 0].argmax(-1) == COPY_IDS[hot]).all()


def test_tags_change_the_caption_state(tag_decoder, features):
    a, _ = tag_decoder.prepare(features, _tags(5, hot=0))
    b, _ = tag_decoder.prepare(features, _tags(5, hot=3))
    assert not np.allclose(np.asarray(a[3]), np.asarray(b[3]))


def test_text_only_sentences_use_the_no_photo_grid(tag_decoder):
    memory, hidden = tag_decoder.prepare(None, _tags(4, hot=1))
    projected = np.asarray(memory[0])
    assert projected.shape == (4, 1, 8)
    tokens = np.array([[START, 5]] * 4, np.int32)
    log_probs, attention = tag_decoder((None, tokens, _tags(4, hot=1)), training=False)
    assert np.asarray(attention).shape == (4, 2, 1)
    assert np.isfinite(np.asarray(log_probs)).all()


def test_plain_decoder_refuses_text_only_input(decoder):
    with pytest.raises(ValueError, match="needs features"):
        decoder.prepare(None, None)


def test_tag_aware_search_and_config_round_trip(tag_decoder, features):
    from model.decoder import CaptionDecoder

    config = tag_decoder.get_config()
    assert config["num_tags"] == TAGS and config["copy_ids"] == COPY_IDS
    assert CaptionDecoder(**config).get_config() == config
    search = _search(tag_decoder)
    greedy, beam = search.greedy(features, _tags(5, hot=0)), search.beam(features, 1, _tags(5, hot=0))
    np.testing.assert_array_equal(greedy.tokens, beam.tokens)


def test_plain_decoder_keeps_the_first_bundles_variables(decoder):
    """Bundles written before tags existed still load: a decoder without tags has exactly their variables."""
    from model.bundle import variables_by_path

    assert sorted(variables_by_path(decoder)) == sorted([
        "attention/feature_dense/bias", "attention/feature_dense/kernel", "attention/hidden_dense/bias",
        "attention/hidden_dense/kernel", "attention/score_dense/bias", "attention/score_dense/kernel",
        "deep_output/bias", "deep_output/kernel", "embedding/embeddings", "gru/bias", "gru/kernel",
        "gru/recurrent_kernel", "init_hidden/bias", "init_hidden/kernel", "logits/bias", "logits/kernel",
        "projection/dense/bias", "projection/dense/kernel",
    ])
    assert "num_tags" not in decoder.get_config()
