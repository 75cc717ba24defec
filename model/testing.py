"""Helpers for tests: a complete model bundle with random weights and a tiny encoder.

Every code path (bundle validation, encoder, beam search, attention maps) is the real one; only the
weights are random, so captions are arbitrary words from a small vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from model.vocab import Vocabulary

TINY_WORDS = ("a", "dog", "cat", "runs", "on", "the", "grass", "beach", "man", "red", "ball", "in",
              "water", "two", "people", "sits", "near", "white", "black", "street")


def tiny_decoder(vocab_size: int = 24, seed: int | None = 0, *, units: int = 16, **options):
    """A built random-weight decoder for the ``tiny_test`` encoder's grids (embedding and projection
    8, no dropout); ``options`` go to :class:`~model.decoder.CaptionDecoder` (``context_gate=True``,
    ``deep_output=False``, the tag arguments, ...). ``seed`` None draws from Keras' current seed."""
    import keras

    from model.decoder import CaptionDecoder
    from model.encoders import get_encoder_spec

    if seed is not None:
        keras.utils.set_random_seed(seed)
    decoder = CaptionDecoder(vocab_size, get_encoder_spec("tiny_test").channels, embedding_dim=8, feature_dim=8,
                             units=units, dropout=0.0, **options)
    decoder.build()
    return decoder


def make_tiny_bundle(directory: str | Path, *, seed: int = 0, units: int = 16, max_length: int = 8,
                     name: str = "tiny-test", tags: bool = False, keyword_threshold: float = 0.3,
                     deep_output: bool = True) -> Path:
    """Write a random-weight bundle (encoder ``tiny_test``) into ``directory`` and return its path.

    ``tags``: a tag-aware decoder (the shipped tag map, a copy path, the tiny encoder's classifier).
    ``deep_output``: False for a decoder whose output layer reads the hidden state alone.
    """
    import keras

    from model.bundle import save_bundle
    from model.encoders import classifier_head
    from model.tags import TagMap

    keras.utils.set_random_seed(seed)
    tokens = [list(TINY_WORDS)] * 5
    vocab = Vocabulary.build(tokens, min_count=1)
    tag_args, tag_config, classifier = {}, None, None
    if tags:
        tag_map = TagMap.load()
        vocab = Vocabulary([*vocab.words[4:], *(w for w in tag_map.words if w not in vocab)], min_count=1)
        tag_args = {"num_tags": len(tag_map.words), "copy_ids": [vocab.id_of(w) for w in tag_map.words]}
        tag_config = {"words": list(tag_map.words), "class_words": tag_map.class_words.tolist(),
                      "map_sha256": tag_map.sha256, "keyword_threshold": keyword_threshold}
        classifier = classifier_head("tiny_test")
    decoder = tiny_decoder(len(vocab), seed=None, units=units, name="caption_decoder", deep_output=deep_output,
                           **tag_args)
    # Random weights favour no token in particular; push <end> down so that captions have words
    # (they run to max_length), which is what the app and CLI tests need to show.
    logits = decoder.logits_dense
    bias = logits.bias.numpy()
    bias[vocab.end_id] -= 3.0
    logits.bias.assign(bias)
    return save_bundle(Path(directory), decoder=decoder, vocab=vocab, encoder="tiny_test", name=name,
                       description="random weights, for tests", decoding={"max_length": max_length},
                       dtype="float32", tags=tag_config, classifier=classifier)
