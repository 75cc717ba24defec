"""The decoder with and without its "deep output" layer (Show, Attend and Tell, eq. 7)."""

from __future__ import annotations

import numpy as np
import pytest

CHANNELS = 32  # the tiny_test encoder's


def _decoder(deep_output: bool, vocab_size: int = 24, seed: int = 0):
    from model.testing import tiny_decoder

    return tiny_decoder(vocab_size, seed, deep_output=deep_output)


def test_deep_output_is_the_default_and_its_config_is_unchanged():
    from model.bundle import variables_by_path

    deep, shallow = _decoder(True), _decoder(False)
    assert "deep_output" not in deep.get_config()  # bundles written before the option read the same
    assert shallow.get_config()["deep_output"] is False
    assert {p for p in variables_by_path(deep) if p.startswith("deep_output/")} == {"deep_output/kernel",
                                                                                    "deep_output/bias"}
    assert not any(p.startswith("deep_output/") for p in variables_by_path(shallow))
    assert tuple(shallow.logits_dense.kernel.shape) == (16, 24)  # reads the hidden state (units)
    assert tuple(deep.logits_dense.kernel.shape) == (8, 24)  # reads the deep output (embedding_dim)


def test_without_deep_output_the_next_word_depends_on_the_hidden_state_alone():
    decoder = _decoder(False)
    rng = np.random.default_rng(0)
    memory, _ = decoder.prepare(rng.normal(size=(2, 6, CHANNELS)).astype(np.float32))
    hidden = rng.normal(size=(2, 16)).astype(np.float32)
    context_a, context_b = (rng.normal(size=(2, 8)).astype(np.float32) for _ in range(2))
    words_a, words_b = (rng.normal(size=(2, 8)).astype(np.float32) for _ in range(2))
    first = np.asarray(decoder.log_probs(hidden, context_a, words_a, memory))
    np.testing.assert_allclose(first, decoder.log_probs(hidden, context_b, words_b, memory), atol=1e-6)
    np.testing.assert_allclose(np.exp(first).sum(axis=-1), 1.0, atol=1e-5)
    deep = _decoder(True)
    memory, _ = deep.prepare(rng.normal(size=(2, 6, CHANNELS)).astype(np.float32))
    assert not np.allclose(deep.log_probs(hidden, context_a, words_a, memory),
                           deep.log_probs(hidden, context_b, words_b, memory))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_tag_aware_decoder_without_deep_output_exports_and_both_runtimes_agree(tmp_path, beam_size):
    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle
    from tests.model.test_runtime import _assert_same_captions, _photos

    bundle = load_bundle(make_tiny_bundle(tmp_path / "shallow", tags=True, deep_output=False))
    assert bundle.config["decoder"]["deep_output"] is False
    onnx_captioner = Captioner(bundle, device="cpu")
    tf_captioner = Captioner(bundle, device="cpu", runtime="tf")
    assert onnx_captioner.runtime == "onnx"
    _assert_same_captions(onnx_captioner.caption(_photos(), beam_size=beam_size, batch_size=3),
                          tf_captioner.caption(_photos(), beam_size=beam_size, batch_size=3))


def test_the_training_flag_builds_a_decoder_without_deep_output():
    from model.testing import TINY_WORDS
    from model.vocab import Vocabulary
    from training.train import TrainConfig, build_decoder, build_parser

    args = build_parser().parse_args(["--data", "d", "--out", "o", "--no-deep-output"])
    assert args.deep_output is False
    assert build_parser().parse_args(["--data", "d", "--out", "o"]).deep_output is True
    vocab = Vocabulary.build([list(TINY_WORDS)], min_count=1)
    config = TrainConfig(data="d", out="o", deep_output=False, embedding_dim=8, feature_dim=8, units=16)
    assert build_decoder(config, vocab, CHANNELS).get_config()["deep_output"] is False
