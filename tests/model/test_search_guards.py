"""The shared numpy search: per-photo bans, no repeated n-grams, words said once, words never last."""

from __future__ import annotations

import numpy as np

from model.search import Search

VOCAB, START, END = 12, 1, 2


def _step(preferences):
    """A step function whose scores always favour ``preferences`` in that order (then <end>)."""
    scores = np.full(VOCAB, -10.0, np.float32)
    for rank, token in enumerate(preferences):
        scores[token] = 10.0 - rank
    scores[END] = 0.0

    def step(tokens, hidden, memory):
        rows = tokens.shape[0]
        return hidden, np.tile(scores, (rows, 1)), np.full((rows, 4), 0.25, np.float32)

    return step


def _search(preferences, **kwargs):
    return Search(_step(preferences), vocab_size=VOCAB, start_id=START, end_id=END, max_length=8,
                  banned_ids=(0, START), **kwargs)


def _captions(decoded):
    out = []
    for row in range(decoded.tokens.shape[0]):
        n = int(decoded.lengths[row, 0])
        out.append(decoded.tokens[row, 0, :n].tolist())
    return out


def _inputs(batch):
    return (np.zeros((batch, 4, 3), np.float32),), np.zeros((batch, 5), np.float32)


def _bigrams(seq):
    return [tuple(seq[i:i + 2]) for i in range(len(seq) - 1)]


def test_without_guards_the_favourite_word_repeats():
    memory, hidden = _inputs(1)
    assert _captions(_search([5, 6]).greedy(memory, hidden))[0] == [5] * 8


def test_no_repeated_bigram_in_greedy_and_beam():
    memory, hidden = _inputs(2)
    search = _search([5, 6, 7], no_repeat_ngram=2)
    for decoded in (search.greedy(memory, hidden), search.beam(memory, hidden, 3)):
        for caption in _captions(decoded):
            assert len(_bigrams(caption)) == len(set(_bigrams(caption))), caption
            assert all(a != b for a, b in _bigrams(caption)), caption


def test_once_only_words_are_said_once():
    memory, hidden = _inputs(1)
    caption = _captions(_search([5, 6, 7], once_ids=(5, 6)).beam(memory, hidden, 2))[0]
    assert caption.count(5) == 1 and caption.count(6) == 1


def test_per_photo_ban_keeps_a_word_out_of_one_photo_only():
    memory, hidden = _inputs(2)
    ban = np.zeros((2, VOCAB), np.float32)
    ban[0, 5] = -1e9
    search = _search([5, 6])
    for decoded in (search.greedy(memory, hidden, ban), search.beam(memory, hidden, 3, ban)):
        first, second = _captions(decoded)
        assert 5 not in first and 5 in second


def _chain_step(next_of):
    """A step function that favours ``next_of[token]`` after ``token`` (then <end>, then the rest)."""
    def step(tokens, hidden, memory):
        scores = np.full((tokens.shape[0], VOCAB), -10.0, np.float32)
        for row, token in enumerate(tokens):
            for rank, favoured in enumerate(next_of.get(int(token), ())):
                scores[row, favoured] = 10.0 - rank
        return hidden, scores, np.full((tokens.shape[0], 4), 0.25, np.float32)

    return step


def test_no_caption_ends_on_a_no_end_after_word():
    # After 5 the decoder would rather stop; after 6 it stops; so "5" alone is its caption.
    step = _chain_step({START: (5,), 5: (END, 6), 6: (END,)})
    memory, hidden = _inputs(2)
    plain = Search(step, vocab_size=VOCAB, start_id=START, end_id=END, max_length=8, banned_ids=(0, START))
    guarded = Search(step, vocab_size=VOCAB, start_id=START, end_id=END, max_length=8, banned_ids=(0, START),
                     no_end_after_ids=(5,))
    assert _captions(plain.greedy(memory, hidden)) == [[5], [5]]
    for decoded in (guarded.greedy(memory, hidden), guarded.beam(memory, hidden, 3)):
        assert _captions(decoded) == [[5, 6], [5, 6]]


def test_decoding_search_reads_the_bundles_word_lists():
    from model.captioner import decoding_search
    from model.vocab import Vocabulary

    vocab = Vocabulary(["a", "man", "in", "front", "coffee"], min_count=1)
    decoding = {"max_length": 12, "length_penalty": 0.6, "no_repeat_ngram": 2, "banned_words": ["coffee"],
                "once_words": ["man"], "no_end_after": ["front", "not-a-word"]}
    search = decoding_search(_step([5]), vocab, decoding)
    assert (search.max_length, search.length_penalty, search.no_repeat_ngram) == (12, 0.6, 2)
    assert np.flatnonzero(search.no_end_after).tolist() == [vocab.id_of("front")]
    assert np.flatnonzero(search.once).tolist() == [vocab.id_of("man")]
    assert search.ban[vocab.id_of("coffee")] < -1e8 and search.ban[vocab.unk_id] < -1e8
