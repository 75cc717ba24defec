"""Helpers for tests: a complete model bundle with random weights and a tiny encoder.

Every code path (bundle validation, encoder, beam search, attention maps) is the real one; only the
weights are random, so captions are arbitrary words from a small vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from model.vocab import Vocabulary

TINY_WORDS = ("a", "dog", "cat", "runs", "on", "the", "grass", "beach", "man", "red", "ball", "in",
              "water", "two", "people", "sits", "near", "white", "black", "street")


def make_tiny_bundle(directory: str | Path, *, seed: int = 0, units: int = 16, max_length: int = 8,
                     name: str = "tiny-test") -> Path:
    """Write a random-weight bundle (encoder ``tiny_test``) into ``directory`` and return its path."""
    import keras

    from model.bundle import save_bundle
    from model.decoder import CaptionDecoder
    from model.encoders import get_encoder_spec

    keras.utils.set_random_seed(seed)
    tokens = [list(TINY_WORDS)] * 5
    vocab = Vocabulary.build(tokens, min_count=1)
    decoder = CaptionDecoder(vocab_size=len(vocab), encoder_channels=get_encoder_spec("tiny_test").channels,
                             embedding_dim=8, feature_dim=8, units=units, dropout=0.0, name="caption_decoder")
    decoder.build()
    # Random weights favour no token in particular; push <end> down so that captions have words
    # (they run to max_length), which is what the app and CLI tests need to show.
    logits = decoder.logits_dense
    bias = logits.bias.numpy()
    bias[vocab.end_id] -= 3.0
    logits.bias.assign(bias)
    return save_bundle(Path(directory), decoder=decoder, vocab=vocab, encoder="tiny_test", name=name,
                       description="random weights, for tests", decoding={"max_length": max_length},
                       dtype="float32")
