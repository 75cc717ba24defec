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

from model.tags import word_forms

FUNCTION_WORDS = frozenset(
    "a an the this that these those his their its my your our some each every "
    "and or but while as than who which whose "
    "of in at to with from for into onto through under near next across along between beside "
    "towards toward against among during "
    "is are was were be being been has have".split()
)


# A count (``"two"``, ``"a group of"``) wants a plural noun. CIDEr optimisation made "a group of" more
# frequent, and with it "a group of bus are sitting on a bus": :class:`NounForms` finds such a
# quantified singular, and the SCST reward can price it (``agreement``).
COLLECTIVES = frozenset("group crowd herd flock pack team bunch couple pair number lot line row".split())
NUMBERS = frozenset("two three four five six seven eight nine ten several many".split())
IRREGULAR_PLURALS = {"man": "men", "woman": "women", "child": "children", "person": "people", "foot": "feet",
                     "mouse": "mice", "goose": "geese", "tooth": "teeth", "ox": "oxen", "fireman": "firemen",
                     "policeman": "policemen", "gentleman": "gentlemen"}
AGREEMENT_WINDOW = 3  # words after the count in which its noun is looked for ("two young little dogs")


class NounForms:
    """Which words of a vocabulary are singular nouns and which plural, by the vocabulary itself: a word
    is singular when its plural (``+s``, ``+es``, ``y -> ies`` or an irregular one) is also a word;
    that plural is then a plural noun. Function words and words of two letters or fewer are neither."""

    def __init__(self, words: Sequence[str]):
        known = set(words)
        self.singular, self.plural = set(), set()
        for word in known:
            if len(word) <= 2 or word in FUNCTION_WORDS:
                continue
            forms = [word + "s", word + "es", IRREGULAR_PLURALS.get(word, "")]
            if word.endswith("y"):
                forms.append(word[:-1] + "ies")
            found = [form for form in forms if form and form in known and form != word]
            if found:
                self.singular.add(word)
                self.plural.update(found)
        self.plural |= {"people"} & known
        self.singular -= self.plural  # a word that is some other word's plural is not singular too

    def quantified_singular(self, words: Sequence[str]) -> bool:
        """Whether a count (``"two"``, ``"a group of"``) is followed by an article (``"a group of a
        couple"``) or by a singular head noun before any plural one within :data:`AGREEMENT_WINDOW`
        words (``"a group of bus"``, ``"two young dog"``); a singular noun right before another noun
        is a modifier, not the head."""
        for i, word in enumerate(words):
            counted = word in NUMBERS or (word == "of" and i > 0 and words[i - 1] in COLLECTIVES)
            if not counted:
                continue
            if i + 1 < len(words) and words[i + 1] in ("a", "an"):  # "a group of a couple"
                return True
            for at in range(i + 1, min(i + 1 + AGREEMENT_WINDOW, len(words))):
                if words[at] in self.plural:
                    break
                # A singular noun before another noun modifies it ("two green balloons", "a group
                # of dog walkers"): the head decides.
                if words[at] in self.singular and not (at + 1 < len(words) and self.is_noun(words[at + 1])):
                    return True
        return False

    def is_noun(self, word: str) -> bool:
        return word in self.singular or word in self.plural

    def masks(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """Boolean ``(vocab,)`` masks over ``words`` (a vocabulary in id order) for :func:`agreement_errors`."""
        return {"singular": np.asarray([w in self.singular for w in words], bool),
                "plural": np.asarray([w in self.plural for w in words], bool),
                "number": np.asarray([w in NUMBERS for w in words], bool),
                "collective": np.asarray([w in COLLECTIVES for w in words], bool),
                "of": np.asarray([w == "of" for w in words], bool),
                "article": np.asarray([w in ("a", "an") for w in words], bool)}


def agreement_errors(tokens: np.ndarray, lengths: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
    """:meth:`NounForms.quantified_singular` of each row of ``tokens (captions, time)`` (the first
    ``lengths[i]`` ids of row ``i`` are its words), vectorised: ``(captions,)`` bool."""
    tokens = np.asarray(tokens, np.int64)
    count, time = tokens.shape
    inside = np.arange(time)[None, :] < np.asarray(lengths)[:, None]  # (captions, time)
    previous = np.concatenate([np.zeros((count, 1), bool), masks["collective"][tokens[:, :-1]]], axis=1)
    counted = (masks["number"][tokens] | (masks["of"][tokens] & previous)) & inside
    singular, plural = masks["singular"][tokens] & inside, masks["plural"][tokens] & inside
    noun_next = np.concatenate([(singular | plural)[:, 1:], np.zeros((count, 1), bool)], axis=1)
    head = singular & ~noun_next  # a singular noun before another noun modifies it
    after_article = np.concatenate([masks["article"][tokens[:, 1:]] & inside[:, 1:], np.zeros((count, 1), bool)],
                                   axis=1)
    flagged = (counted & after_article).any(axis=1)  # "a group of a couple"
    for start in range(time):
        active = counted[:, start].copy()
        for offset in range(1, AGREEMENT_WINDOW + 1):
            at = start + offset
            if at >= time or not active.any():
                break
            flagged |= active & head[:, at]
            active &= ~(head[:, at] | plural[:, at])
    return flagged


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


def caption_guards(captions: Iterable[Sequence[str]], nouns: NounForms | None = None) -> dict[str, float]:
    """The guard figures of a set of captions (each a word list).

    Returns:
        ``captions`` (how many), ``ends_in_function_word``, ``repeated_bigram`` and ``adjacent_repeat``
        (shares in [0, 1] of captions ending in a function word / holding some bigram twice / repeating
        a word or bigram at once), ``mean_length`` (words), ``distinct_captions`` and ``distinct_words``;
        with ``nouns`` (the model vocabulary's :class:`NounForms`) also ``quantified_singular``, the
        share of captions with a count before a singular noun ("a group of bus").
    """
    captions = [list(words) for words in captions]
    n = len(captions)
    if n == 0:
        return {"captions": 0, "ends_in_function_word": 0.0, "repeated_bigram": 0.0, "adjacent_repeat": 0.0,
                "mean_length": 0.0, "distinct_captions": 0, "distinct_words": 0}
    extra = {} if nouns is None else {
        "quantified_singular": sum(nouns.quantified_singular(words) for words in captions) / n}
    return extra | {
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
                    length: float = 0.1, length_tolerance: float = 2.0, agreement: float = 0.0,
                    noun_masks: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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
        agreement: penalty for a count before a singular noun ("a group of bus"; :func:`agreement_errors`
            over ``noun_masks``, :meth:`NounForms.masks` of the vocabulary; needed when non-zero).

    Returns:
        ``(penalty (captions,) >= 0, parts)``: ``parts`` holds the per-caption booleans/counts
        ``dangling``, ``repeats``, ``length_excess`` and ``agreement`` that priced it.
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
    if agreement and noun_masks is None:
        raise ValueError("an agreement penalty needs the vocabulary's noun masks")
    disagrees = agreement_errors(tokens, lengths, noun_masks) if agreement else np.zeros(count, bool)
    penalty = dangling * is_dangling + repeat * repeats + length * excess + agreement * disagrees
    return penalty, {"dangling": is_dangling, "repeats": repeats, "length_excess": excess, "agreement": disagrees}


# Words a caption may use whether or not its references do: the function words and the little words
# of place ("on", "front" of "in front of"). Pronouns are priced: left free, they became the policy's
# new filler ("a girl is standing in front of him": 5 -> 48 of 1,000 dev captions in one epoch).
UNPRICED_WORDS = FUNCTION_WORDS | frozenset("on by over up down out off around behind front top back side".split())


def stem(word: str) -> str:
    """A crude stem that lets a caption's word match its references' other forms: ``sits``,
    ``sitting`` -> ``sit``; ``rides``, ``riding``, ``ride`` -> ``rid``; ``dogs`` -> ``dog``."""
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


class ReferenceWords:
    """Which words of a caption none of its photo's references uses, in any form (:func:`stem`).

    CIDEr-D weighs a word by its rarity, so a common phrase the photo does not show ("in the air",
    "at night") costs a caption almost nothing; the SCST reward can price each such word
    (:attr:`training.scst.SCSTConfig.unsupported_penalty`). Function words and
    :data:`UNPRICED_WORDS` are never priced.
    """

    def __init__(self, vocabulary: Sequence[str], references: Sequence[Sequence[Sequence[str]]]):
        """``vocabulary``: the model's words in id order; ``references``: per photo, its reference
        captions as word lists."""
        stems: dict[str, int] = {}
        self.stem_of = np.asarray([stems.setdefault(stem(w), len(stems)) for w in vocabulary], np.int64)
        self.priced = np.asarray([w not in UNPRICED_WORDS and w.isalpha() for w in vocabulary], bool)
        self.supported = [frozenset(stems.get(stem(w), -1) for ref in refs for w in ref) for refs in references]

    def unsupported(self, photos: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(captions,)`` how many priced words of each caption (``tokens`` row ``i``, its first
        ``lengths[i]`` ids, of training photo ``photos[i]``) no reference of the photo uses."""
        counts = np.zeros(len(tokens), np.int64)
        for row, (photo, n) in enumerate(zip(photos, lengths)):
            ids = tokens[row, : int(n)]
            ids = ids[self.priced[ids]]
            support = self.supported[int(photo)]
            counts[row] = sum(int(s) not in support for s in self.stem_of[ids])
        return counts


class ConfidentTags:
    """Which of a photo's confident classifier tags a caption names, in any form
    (:func:`model.tags.word_forms`).

    The CIDEr-D reward counts a word against Flickr8k's five references, which rarely name a thing
    the photos seldom show; a decoder fine-tuned on it forgets words that only its text-only
    sentences taught (the sample cat became "a man"). Counted against the classifier instead, the
    SCST reward can pay for naming what the encoder is sure of (:attr:`training.scst.SCSTConfig.tag_bonus`;
    on Flickr8k's training photos the sure tags are mostly "dog", and it did not keep the cat).
    """

    def __init__(self, vocabulary: Sequence[str], tag_words: Sequence[str], photo_tags: np.ndarray, above: float):
        """``vocabulary``: the model's words in id order; ``tag_words``: the tag vocabulary;
        ``photo_tags (photos, tags)``: each training photo's tag probabilities; a tag at or above
        ``above`` is confident."""
        tag_of_form: dict[str, int] = {}
        for tag, word in enumerate(tag_words):
            for form in word_forms(word):
                tag_of_form.setdefault(form, tag)
        # Column len(tag_words) collects the words that are no tag's.
        self.tag_of = np.asarray([tag_of_form.get(w, len(tag_words)) for w in vocabulary], np.int64)
        self.confident = np.asarray(photo_tags) >= above  # (photos, tags)

    def named_share(self, photos: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(captions,)`` the share of its photo's confident tags each caption (``tokens`` row ``i``,
        its first ``lengths[i]`` ids, of training photo ``photos[i]``) names; 0 for a photo with none."""
        confident = self.confident[photos]  # (captions, tags)
        in_caption = np.arange(tokens.shape[1])[None, :] < np.asarray(lengths)[:, None]
        tags = np.where(in_caption, self.tag_of[tokens], confident.shape[1])
        named = np.zeros((len(tokens), confident.shape[1] + 1), bool)
        named[np.arange(len(tokens))[:, None], tags] = True
        hits = (named[:, :-1] & confident).sum(axis=1)
        return hits / np.maximum(confident.sum(axis=1), 1)
