"""Known failure modes of CIDEr optimisation, measured on captions and priced in the SCST reward.

Self-critical training on CIDEr (Rennie et al., 2017) is known to drift towards captions that end in
a dangling function word ("a man in a"), repeat an n-gram ("with a with a"), or grow or shrink in
length. :func:`caption_guards` measures these on a set of captions (words) for the reports;
:func:`guard_penalties` prices them on batches of sampled token ids, vectorised, for the reward in
:mod:`training.scst`, so the model learns not to produce them (captions are never edited after
decoding).

``FUNCTION_WORDS`` are closed-class words that a finished English caption does not end with. Words
that do end Flickr8k references ("looks on", "hugging her", "one another", "looks around", "walks
by", "from behind") are left out: with this list 0.1 % of the train references end in a function word.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

FUNCTION_WORDS = frozenset(
    "a an the this that these those his their its my your our some each every "
    "and or but while as than who which whose "
    "of in at to with from for into onto through under near next across along between beside "
    "towards toward against among during "
    "is are was were be being been has have".split()
)


def ends_in_function_word(words: Sequence[str]) -> bool:
    """Whether the caption's last word is a function word (``"a man in a"``)."""
    return bool(words) and words[-1] in FUNCTION_WORDS


def repeated_ngrams(words: Sequence[str], n: int = 2) -> int:
    """How many n-gram occurrences repeat an earlier one in the same caption (``"with a with a"``: 1)."""
    counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return sum(count - 1 for count in counts.values())


def adjacent_repeats(words: Sequence[str], max_n: int = 2) -> int:
    """How many times an n-gram (n <= ``max_n``) is immediately repeated: ``"a a dog"``, ``"with a with a"``.

    No Flickr8k dev reference has one, while 4 % repeat a bigram further apart ("a man in a red shirt
    sits in a chair"): reported beside :func:`repeated_ngrams`."""
    return sum(tuple(words[i:i + n]) == tuple(words[i + n:i + 2 * n])
               for n in range(1, max_n + 1) for i in range(len(words) - 2 * n + 1))


def caption_guards(captions: Iterable[Sequence[str]]) -> dict[str, float]:
    """The guard figures of a set of captions (each a word list).

    Returns:
        ``captions`` (how many), ``ends_in_function_word``, ``repeated_bigram`` and ``adjacent_repeat``
        (shares in [0, 1] of captions ending in a function word / holding some bigram twice / repeating
        a word or bigram at once), ``mean_length`` (words), ``distinct_captions`` and ``distinct_words``.
    """
    captions = [list(words) for words in captions]
    n = len(captions)
    if n == 0:
        return {"captions": 0, "ends_in_function_word": 0.0, "repeated_bigram": 0.0, "adjacent_repeat": 0.0,
                "mean_length": 0.0, "distinct_captions": 0, "distinct_words": 0}
    return {
        "captions": n,
        "ends_in_function_word": sum(ends_in_function_word(words) for words in captions) / n,
        "repeated_bigram": sum(repeated_ngrams(words, 2) > 0 for words in captions) / n,
        "adjacent_repeat": sum(adjacent_repeats(words) > 0 for words in captions) / n,
        "mean_length": sum(len(words) for words in captions) / n,
        "distinct_captions": len({" ".join(words) for words in captions}),
        "distinct_words": len({word for words in captions for word in words}),
    }


def function_word_mask(words: Sequence[str]) -> np.ndarray:
    """``mask[i]`` is True when ``words[i]`` (a vocabulary in id order) is a function word."""
    return np.asarray([word in FUNCTION_WORDS for word in words], bool)


def guard_penalties(tokens: np.ndarray, lengths: np.ndarray, finished: np.ndarray, function_mask: np.ndarray,
                    target_lengths: np.ndarray, *, dangling: float = 1.0, repeat: float = 0.2,
                    length: float = 0.1, length_tolerance: float = 2.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reward penalties for sampled captions, vectorised over the batch.

    Args:
        tokens: ``(captions, time)`` vocabulary ids; the first ``lengths[i]`` of row ``i`` are the words.
        lengths: ``(captions,)`` words before ``<end>``.
        finished: ``(captions,)`` whether the caption emitted ``<end>`` (an unfinished one was cut at
            the length limit and is treated as dangling).
        function_mask: ``(vocab,)`` True for function words (:func:`function_word_mask`).
        target_lengths: ``(captions,)`` mean reference length of each caption's photo.
        dangling: penalty for a caption ending in a function word, or unfinished.
        repeat: penalty per repeated bigram occurrence (:func:`repeated_ngrams`; an immediate repeat
            such as "with a with a" is one).
        length: penalty per word of distance from ``target_lengths`` beyond ``length_tolerance``.

    Returns:
        ``(penalty (captions,) >= 0, parts)``: ``parts`` holds the per-caption booleans/counts
        ``dangling``, ``repeats`` and ``length_excess`` that priced it.
    """
    tokens = np.asarray(tokens, np.int64)
    lengths = np.asarray(lengths, np.int64)
    count, time = tokens.shape
    rows = np.arange(count)
    last = tokens[rows, np.clip(lengths - 1, 0, max(time - 1, 0))] if time else np.zeros(count, np.int64)
    is_dangling = ((lengths > 0) & function_mask[last]) | ~np.asarray(finished, bool)
    # Bigram codes; positions past the caption get distinct negative codes so they never match.
    vocab = int(function_mask.shape[0])
    if time >= 2:
        codes = tokens[:, :-1] * vocab + tokens[:, 1:]  # (captions, time - 1)
        valid = np.arange(time - 1)[None, :] + 1 < lengths[:, None]
        codes = np.where(valid, codes, -1 - np.arange(time - 1)[None, :])
        codes.sort(axis=1)
        repeats = ((np.diff(codes, axis=1) == 0) & (codes[:, 1:] >= 0)).sum(axis=1)
    else:
        repeats = np.zeros(count, np.int64)
    excess = np.maximum(np.abs(lengths - np.asarray(target_lengths, np.float64)) - length_tolerance, 0.0)
    penalty = dangling * is_dangling + repeat * repeats + length * excess
    return penalty, {"dangling": is_dangling, "repeats": repeats, "length_excess": excess}
