"""The optional "f_beta" context gate of the decoder (Show, Attend and Tell, section 4.2.1)."""

from __future__ import annotations

import numpy as np

CHANNELS = 32  # the tiny_test encoder's


def _decoder(gate: bool, vocab_size: int = 24, seed: int = 0):
    from model.testing import tiny_decoder

    return tiny_decoder(vocab_size, seed, context_gate=gate)


def _set_gate(decoder, bias: float):
    decoder.gate_dense.kernel.assign(np.zeros(decoder.gate_dense.kernel.shape, np.float32))
    decoder.gate_dense.bias.assign(np.full(decoder.gate_dense.bias.shape, bias, np.float32))


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, 6, CHANNELS)).astype(np.float32), rng.integers(1, 24, size=(2, 5)).astype(np.int32)


def test_the_gate_is_off_by_default_and_adds_nothing_then():
    from model.bundle import variables_by_path

    plain, gated = _decoder(False), _decoder(True)
    assert "context_gate" not in plain.get_config()  # bundles written before the gate read the same
    assert gated.get_config()["context_gate"] is True
    extra = set(variables_by_path(gated)) - set(variables_by_path(plain))
    assert extra and all(path.startswith("context_gate/") for path in extra)


def test_an_open_gate_is_the_plain_decoder_and_a_closed_one_ignores_the_photo():
    from model.bundle import assign_variables, variables_by_path

    plain, gated = _decoder(False), _decoder(True, seed=1)
    assign_variables(gated, {k: v.numpy() for k, v in variables_by_path(plain).items()} |
                     {k: v.numpy() for k, v in variables_by_path(gated).items() if "context_gate" in k})
    features, tokens = _inputs()
    _set_gate(gated, 30.0)  # sigmoid(30) = 1: the context passes unchanged
    np.testing.assert_allclose(gated((features, tokens))[0], plain((features, tokens))[0], atol=1e-5)
    _set_gate(gated, -30.0)  # sigmoid(-30) = 0: no context gets through to the GRU or the output
    other, _ = _inputs(seed=1)
    hidden = np.zeros((2, 16), np.float32)
    step_a = gated.step(tokens[:, 0], hidden, gated.prepare(features)[0])
    step_b = gated.step(tokens[:, 0], hidden, gated.prepare(other)[0])
    assert np.abs(np.asarray(step_a[1])).max() < 1e-9  # the context
    np.testing.assert_allclose(step_a[0], step_b[0], atol=1e-6)  # the new hidden state: the photo is shut out
    assert not np.allclose(step_a[3], step_b[3])  # though the attention still looks at different grids


def test_a_gated_decoder_round_trips_through_a_bundle(tmp_path):
    from model.bundle import load_bundle, save_bundle
    from model.testing import TINY_WORDS
    from model.vocab import Vocabulary

    vocab = Vocabulary.build([list(TINY_WORDS)], min_count=1)
    decoder = _decoder(True, vocab_size=len(vocab))
    bundle = load_bundle(save_bundle(tmp_path / "gated", decoder=decoder, vocab=vocab, encoder="tiny_test",
                                     name="gated", dtype="float32"))
    assert bundle.config["decoder"]["context_gate"] is True
    features, _ = _inputs()
    tokens = np.random.default_rng(0).integers(1, len(vocab), size=(2, 5)).astype(np.int32)
    np.testing.assert_allclose(bundle.build_decoder()((features, tokens))[0], decoder((features, tokens))[0],
                               atol=1e-6)
