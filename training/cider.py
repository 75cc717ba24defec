"""Vectorised CIDEr-D (numpy, no Java): the reward of self-critical training.

CIDEr-D (Vedantam et al., 2015) as pycocoevalcap's ``CiderScorer`` and the ``CiderD`` that Rennie et
al. (2017) trained with compute it: tf-idf vectors of the 1..4-grams, the *clipped* cosine
``min(v_hyp, v_ref) * v_ref / (|v_hyp| |v_ref|)`` against each reference, a Gaussian length penalty
``exp(-delta^2 / (2 sigma^2))`` with sigma = 6, the mean over n, the mean over references, times 10.
Two details of that code are kept on purpose so the scores agree with it: the length in the penalty
is the caption's number of *bigrams* (``max(words - 1, 0)``), and an n-gram no reference set holds
gets the document frequency 1 (``log(max(1, df))``).

Here the document frequencies (how many photos' reference sets hold each n-gram) and every
reference's tf-idf norm are computed **once**, when the scorer is built over a set of photos (the
training references, for SCST). :meth:`CiderD.score` then scores any number of candidates, each
against the references of one of those photos, with a handful of numpy calls: the candidates'
n-grams are packed into int64 codes, looked up with ``searchsorted`` in sorted tables, and summed
with ``bincount``; there is no Python loop over captions.

With the document frequencies of the photos being evaluated (the scorer built on exactly their
references) the scores equal pycocoevalcap's ``Cider`` to floating-point rounding
(``tests/training/test_cider.py``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

_MAX_CODE_BITS = 62  # n-gram codes must fit an int64


class CiderD:
    """CIDEr-D scorer whose document frequencies come from ``references``.

    Args:
        references: per photo, its reference captions as token lists (words, or any hashable
            tokens). Photo ``i`` here is photo ``i`` in :meth:`score`.
        n: the longest n-gram (4).
        sigma: width of the Gaussian length penalty (6).
        capacity: the most distinct tokens (reference tokens plus those first seen in candidates)
            that n-gram codes can hold; ``capacity ** n`` must fit 62 bits.

    Raises:
        ValueError: no photo, a photo without references, or too many distinct tokens.
    """

    def __init__(self, references: Sequence[Sequence[Sequence[Hashable]]], n: int = 4, sigma: float = 6.0,
                 capacity: int = 1 << 15):
        if not references:
            raise ValueError("CIDEr-D needs the references of at least one photo")
        if any(len(refs) == 0 for refs in references):
            raise ValueError("a photo has no reference caption")
        if n < 1 or capacity ** n >= (1 << _MAX_CODE_BITS):
            raise ValueError(f"{capacity} tokens do not fit {n}-gram codes in {_MAX_CODE_BITS} bits")
        self.n = n
        self.sigma = float(sigma)
        self.base = int(capacity)
        # Token 0 pads; real tokens are 1.., so n-grams of different orders never share a code.
        self.token_ids: dict[Hashable, int] = {}
        for refs in references:
            for ref in refs:
                for token in ref:
                    if token not in self.token_ids:
                        self.token_ids[token] = len(self.token_ids) + 1
        if len(self.token_ids) >= self.base:
            raise ValueError(f"{len(self.token_ids)} distinct reference tokens exceed capacity {self.base}")
        self.n_photos = len(references)
        self.n_refs = np.asarray([len(refs) for refs in references], np.int64)  # (photos,)
        self.max_refs = int(self.n_refs.max())
        self.ref_len = float(np.log(float(self.n_photos)))  # log of the number of "documents"

        flat = [ref for refs in references for ref in refs]
        ref_photo = np.repeat(np.arange(self.n_photos), self.n_refs)  # (refs,)
        ref_slot = np.concatenate([np.arange(m) for m in self.n_refs])  # (refs,) which of its photo's refs
        tokens, lengths = self._pack([[self.token_ids[t] for t in ref] for ref in flat])
        row, code, order = self._ngrams(tokens, lengths)
        # Document frequency: in how many photos' reference sets each n-gram occurs.
        photo_code = np.unique(np.stack([ref_photo[row], code]), axis=1)  # (2, distinct (photo, gram))
        self._codes, df = np.unique(photo_code[1], return_counts=True)  # sorted n-gram codes, (grams,)
        self._idf = self.ref_len - np.log(np.maximum(1.0, df))  # (grams,)
        self._code_order = self._order_of(self._codes)  # (grams,) n - 1
        gram = np.searchsorted(self._codes, code)  # (ref n-grams,) every one is in the table

        # Per (photo, gram): its count in each of the photo's references, (pairs, max_refs).
        key = ref_photo[row] * len(self._codes) + gram
        self._ref_keys, inverse = np.unique(key, return_inverse=True)
        self._ref_tf = np.zeros((len(self._ref_keys), self.max_refs), np.float64)
        np.add.at(self._ref_tf, (inverse, ref_slot[row]), 1.0)
        # Each reference's tf-idf norm per order and its length (bigrams), (photos, max_refs, n).
        (ref_row, ref_gram), ref_count = np.unique(np.stack([row, gram]), axis=1, return_counts=True)
        sq = np.zeros((len(flat), n))
        np.add.at(sq, (ref_row, self._code_order[ref_gram]), (ref_count * self._idf[ref_gram]) ** 2)
        self._ref_norm = np.zeros((self.n_photos, self.max_refs, n))
        self._ref_norm[ref_photo, ref_slot] = np.sqrt(sq)
        self._ref_length = np.zeros((self.n_photos, self.max_refs))
        self._ref_length[ref_photo, ref_slot] = np.maximum(lengths - 1, 0)
        self._ref_mask = np.arange(self.max_refs)[None, :] < self.n_refs[:, None]  # (photos, max_refs)

    # -- tokens ---------------------------------------------------------------------------------

    def token_id(self, token: Hashable) -> int:
        """The scorer's id of ``token``; a token no reference holds gets a new id (it matches nothing)."""
        found = self.token_ids.get(token)
        if found is None:
            if len(self.token_ids) + 1 >= self.base:
                raise ValueError(f"more than {self.base - 1} distinct tokens")
            found = self.token_ids[token] = len(self.token_ids) + 1
        return found

    def encode(self, captions: Sequence[Sequence[Hashable]]) -> tuple[np.ndarray, np.ndarray]:
        """Token lists -> ``(ids (captions, longest) int64 padded with 0, lengths (captions,))``."""
        return self._pack([[self.token_id(t) for t in caption] for caption in captions])

    def lookup_table(self, words: Sequence[Hashable]) -> np.ndarray:
        """``table[i]`` = the scorer's id of ``words[i]``: maps model vocabulary ids to scorer ids."""
        return np.asarray([self.token_id(word) for word in words], np.int64)

    @staticmethod
    def _pack(id_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.asarray([len(ids) for ids in id_lists], np.int64)
        tokens = np.zeros((len(id_lists), max(int(lengths.max(initial=0)), 1)), np.int64)
        for i, ids in enumerate(id_lists):
            tokens[i, : len(ids)] = ids
        return tokens, lengths

    # -- n-grams --------------------------------------------------------------------------------

    def _ngrams(self, tokens: np.ndarray, lengths: np.ndarray):
        """Every n-gram occurrence (n = 1..self.n) of the padded ``tokens (captions, time)``.

        Returns ``(row, code, order)``, one entry per occurrence: the caption's row, the n-gram's
        int64 code (tokens in base ``self.base``) and its order ``n - 1``.
        """
        rows, codes, orders = [], [], []
        time = tokens.shape[1]
        code = np.zeros_like(tokens)
        for k in range(self.n):
            if k >= time:
                break
            code = tokens[:, : time - k] if k == 0 else code[:, : time - k] * self.base + tokens[:, k:]
            valid = np.arange(time - k)[None, :] + k < lengths[:, None]  # (captions, starts)
            r, c = np.nonzero(valid)
            rows.append(r)
            codes.append(code[r, c])
            orders.append(np.full(len(r), k))
        if not rows:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty
        return np.concatenate(rows), np.concatenate(codes), np.concatenate(orders)

    def _order_of(self, codes: np.ndarray) -> np.ndarray:
        """n - 1 for each n-gram code (tokens are >= 1, so a code of order k is >= base ** k)."""
        order = np.zeros(codes.shape, np.int64)
        for k in range(1, self.n):
            order += codes >= self.base ** k
        return order

    # -- scoring --------------------------------------------------------------------------------

    def score(self, photos: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """CIDEr-D of each candidate against the references of its photo.

        Args:
            photos: ``(candidates,)`` index of each candidate's photo in ``references``.
            tokens: ``(candidates, time)`` scorer ids (see :meth:`encode`, :meth:`lookup_table`);
                only the first ``lengths[i]`` of row ``i`` are read.
            lengths: ``(candidates,)`` words in each candidate.

        Returns:
            ``(candidates,)`` float64 scores.
        """
        photos = np.asarray(photos, np.int64)
        tokens = np.asarray(tokens, np.int64)
        lengths = np.minimum(np.asarray(lengths, np.int64), tokens.shape[1])
        count = len(photos)
        row, code, order = self._ngrams(tokens, lengths)
        # Term frequencies: distinct (candidate, n-gram) pairs and their counts.
        pairs, tf = np.unique(np.stack([row, code]), axis=1, return_counts=True)
        row, code = pairs
        order = self._order_of(code)
        tf = tf.astype(np.float64)
        at = np.minimum(np.searchsorted(self._codes, code), len(self._codes) - 1)
        known = self._codes[at] == code
        idf = np.where(known, self._idf[at], self.ref_len)  # unseen n-gram: df 1, log 0

        cand_norm = np.zeros((count, self.n))
        np.add.at(cand_norm, (row, order), (tf * idf) ** 2)
        cand_norm = np.sqrt(cand_norm)  # (candidates, n)
        # Counts of the same n-grams in each reference of the candidate's photo, (pairs, max_refs).
        key = photos[row] * len(self._codes) + at
        where = np.minimum(np.searchsorted(self._ref_keys, key), len(self._ref_keys) - 1)
        matched = known & (self._ref_keys[where] == key)
        ref_tf = np.where(matched[:, None], self._ref_tf[where], 0.0)
        # Clipped dot product: min(tf_c * idf, tf_r * idf) * tf_r * idf = min(tf_c, tf_r) * tf_r * idf^2.
        contribution = np.minimum(tf[:, None], ref_tf) * ref_tf * (idf ** 2)[:, None]  # (pairs, max_refs)
        dot = np.zeros((count, self.n, self.max_refs))
        np.add.at(dot, (row, order), contribution)

        ref_norm = self._ref_norm[photos]  # (candidates, max_refs, n)
        denom = cand_norm[:, :, None] * np.transpose(ref_norm, (0, 2, 1))  # (candidates, n, max_refs)
        cosine = np.divide(dot, denom, out=dot.copy(), where=denom != 0)
        delta = np.maximum(lengths - 1, 0)[:, None] - self._ref_length[photos]  # (candidates, max_refs)
        penalty = np.exp(-(delta ** 2) / (2 * self.sigma ** 2)) * self._ref_mask[photos]
        per_ref = cosine.mean(axis=1) * penalty  # (candidates, max_refs)
        return per_ref.sum(axis=1) / self.n_refs[photos] * 10.0

    def score_captions(self, photos: Sequence[int], captions: Sequence[Sequence[Hashable]]) -> np.ndarray:
        """:meth:`score` for token lists (words)."""
        tokens, lengths = self.encode(captions)
        return self.score(np.asarray(photos), tokens, lengths)
