"""Plain result types that cross from the captioning engine to its callers (CLI, app, exporters).

Nothing here imports TensorFlow or Qt, so the desktop app can hold and pass these around freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Alternative:
    """One caption from the beam's n-best list."""

    words: tuple[str, ...]
    score: float  # length-normalised log-probability

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class Tag:
    """An everyday word the encoder's ImageNet classifier sees in the photo.

    Attributes:
        word: the tag word (one lowercase token, from ``resources/tags/imagenet_words.json``).
        probability: the summed probability of the ImageNet classes that map to ``word``.
        class_ids: those classes, most probable first.
        cam: float32 ``(grid_h, grid_w)`` class activation map summing to 1, or None; left out of
            ``repr`` and equality.
    """

    word: str
    probability: float
    class_ids: tuple[int, ...]
    cam: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CaptionResult:
    """The caption of one photo and, for every word, where the model looked.

    Attributes:
        source: the photo's path as given, or ``"<array N>"`` for an in-memory image.
        words: the caption's words, without ``<start>``/``<end>``.
        token_ids: the vocabulary ids of ``words`` (same length).
        score: length-normalised log-probability of the caption.
        attention: float32 array ``(len(words), grid_h, grid_w)``; each map sums to 1.
        alternatives: the beam's n-best captions (best first, the caption itself included).
        tags: what the encoder's ImageNet classifier sees, as everyday words, most probable first
            (empty for an encoder without a classifier).
        keywords: the words of the tags above the bundle's keyword threshold (each such tag carries
            its class activation map, ``Tag.cam``).
        tagged: whether the model tags photos at all (its encoder has a classifier): then a result
            without keywords says the photo has none, and the keywords a model stored before go.
            None (a result made by hand): as ``bool(tags)``. See :attr:`says_keywords`.
        identity: the photo file's ``model.images.file_identity`` when it was read for this caption
            (None for an in-memory image): whoever stores the caption later can tell whether the
            file under that name is still the photo described.
    """

    source: str
    words: tuple[str, ...]
    token_ids: tuple[int, ...]
    score: float
    attention: np.ndarray = field(repr=False)
    alternatives: tuple[Alternative, ...] = ()
    tags: tuple[Tag, ...] = ()
    keywords: tuple[str, ...] = ()
    identity: tuple[int, ...] | None = None
    tagged: bool | None = None

    @property
    def says_keywords(self) -> bool:
        """Whether :attr:`keywords` are the model's word on the photo's keywords, none included:
        False for a model without a classifier, whose results leave stored keywords alone."""
        return self.tagged if self.tagged is not None else bool(self.tags)

    def tag(self, word: str) -> Tag | None:
        """The tag of ``word``, or None."""
        return next((t for t in self.tags if t.word == word), None)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True)
class CaptionFailure:
    """A photo that could not be captioned (unreadable, corrupt, not an image)."""

    source: str
    reason: str

    @property
    def ok(self) -> bool:
        return False


CaptionOutcome = CaptionResult | CaptionFailure
