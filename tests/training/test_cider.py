"""The vectorised CIDEr-D against pycocoevalcap's CIDEr-D on fixed captions, and its batch behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from training.cider import CiderD
from training.data import clean_caption

_WORDS = ("a the dog dogs man woman girl boy in on with red blue black white shirt runs jumps grass water "
          "ball plays two street beach snow sits near").split()


def _fixed_set(seed: int = 0, photos: int = 60):
    """Deterministic references (1 to 5 per photo) and candidates, with the awkward cases included:
    an empty caption, a one-word caption, an exact reference, words no reference holds, repeats,
    a caption far longer than its references."""
    rng = np.random.default_rng(seed)

    def caption(low, high):
        return [str(w) for w in rng.choice(_WORDS, size=int(rng.integers(low, high)))]

    references = [[caption(2, 14) for _ in range(int(rng.integers(1, 6)))] for _ in range(photos)]
    candidates = [caption(1, 16) for _ in range(photos)]
    candidates[1] = []
    candidates[2] = ["dog"]
    candidates[3] = list(references[3][0])
    candidates[4] = ["zebra", "a", "zebra", "xylophone"]
    candidates[5] = ["with", "a", "with", "a", "with", "a"]
    candidates[6] = caption(25, 26)
    return references, candidates


def _coco_cider(references, candidates) -> np.ndarray:
    gts = {i: [" ".join(ref) for ref in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(words)] for i, words in enumerate(candidates)}
    return Cider().compute_score(gts, res)[1]


def test_matches_pycocoevalcap_on_a_fixed_set():
    references, candidates = _fixed_set()
    expected = _coco_cider(references, candidates)
    scores = CiderD(references).score_captions(range(len(candidates)), candidates)
    assert expected.max() > 1.0  # some candidates do score
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


def test_matches_pycocoevalcap_on_the_tiny_flickr_captions(tiny_flickr):
    names = tiny_flickr.images
    references = [[clean_caption(c) for c in tiny_flickr.captions[name]] for name in names]
    # Each photo's candidate: another photo's first caption (some overlap, some not), and its own.
    candidates = [references[(i + 1) % len(names)][0] for i in range(len(names))]
    candidates[0] = references[0][2]
    scores = CiderD(references).score_captions(range(len(names)), candidates)
    np.testing.assert_allclose(scores, _coco_cider(references, candidates), rtol=0, atol=1e-6)


def test_a_candidate_scores_the_same_in_any_batch_and_by_id():
    references, candidates = _fixed_set(seed=3)
    cider = CiderD(references)
    everything = cider.score_captions(range(len(candidates)), candidates)
    order = np.random.default_rng(0).permutation(len(candidates))[:17]
    subset = cider.score_captions(order, [candidates[i] for i in order])
    np.testing.assert_allclose(subset, everything[order], rtol=0, atol=1e-12)
    # The same captions as model vocabulary ids through a lookup table, padded past their length.
    vocab = ["<pad>", "<end>"] + sorted({w for c in candidates for w in c})
    table = cider.lookup_table(vocab)
    ids = np.zeros((len(candidates), 30), np.int64)
    for row, words in enumerate(candidates):
        ids[row, :len(words)] = [vocab.index(w) for w in words]
        ids[row, len(words)] = 1  # <end> and padding after the caption are not read
    lengths = np.asarray([len(c) for c in candidates])
    np.testing.assert_allclose(cider.score(np.arange(len(candidates)), table[ids], lengths), everything, atol=1e-12)


def test_document_frequencies_come_from_the_scorers_references():
    references, candidates = _fixed_set(seed=5, photos=40)
    # Scored with the frequencies of all 40 photos, the first 10 differ from pycocoevalcap on those 10
    # alone, which computes its frequencies from the 10: the frequencies are the scorer's, fixed once.
    wide = CiderD(references).score_captions(range(10), candidates[:10])
    narrow = _coco_cider(references[:10], candidates[:10])
    assert np.abs(wide - narrow).max() > 1e-3
    np.testing.assert_allclose(CiderD(references[:10]).score_captions(range(10), candidates[:10]), narrow,
                               atol=1e-6)


def test_bad_references_are_refused():
    with pytest.raises(ValueError, match="at least one photo"):
        CiderD([])
    with pytest.raises(ValueError, match="no reference"):
        CiderD([[["a", "dog"]], []])
