"""Tags for training: the classifier's tags of each photo, and tags made from text-only sentences.

A tag-aware decoder reads, with every photo, the probabilities of everyday words that the
encoder's ImageNet classifier gives (:mod:`model.tags`). For Flickr8k photos those come from the
cached feature grids (global average pool, then the classifier layer: the same numbers the app
computes on the encoder's forward pass). For text-only sentences (COCO captions without their
photos), the tags come from the sentence's own words, made noisy so they look like a classifier's:
some are dropped, distractors are added, and the probabilities are softened and shared out
(DCC, Hendricks et al. 2016; NOC, Venugopalan et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.tags import TagMap, word_forms

def classifier_weights(encoder: str) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's ImageNet classifier as ``(kernel (channels, 1000), bias (1000,))``, without TensorFlow."""
    from model.encoders import classifier_head

    head = classifier_head(encoder)
    if head is None:
        raise ValueError(f"encoder {encoder!r} has no ImageNet classifier: it cannot give tags")
    return head


def photo_tags(grids: np.ndarray, kernel: np.ndarray, bias: np.ndarray, tag_map: TagMap,
               batch_size: int = 512) -> np.ndarray:
    """Tag vectors ``(photos, tags)`` from feature grids ``(photos, locations, channels)``."""
    out = np.empty((len(grids), len(tag_map.words)), np.float32)
    for i in range(0, len(grids), batch_size):
        pooled = grids[i:i + batch_size].astype(np.float32).mean(axis=1)  # (batch, channels)
        logits = pooled @ kernel + bias  # (batch, 1000)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        out[i:i + batch_size] = tag_map.word_probabilities(probs)
    return out


@dataclass(frozen=True)
class TextTagNoise:
    """How tags made from a sentence are corrupted to look like a classifier's.

    Attributes:
        keep: probability that a tag word the sentence names is kept.
        distractors: the largest number of random tag words added (uniform from 0 to it).
        present: range of the raw score of a kept word.
        distractor: range of the raw score of a distractor.
        total: range of the sum the scores are scaled to (a classifier spreads mass over the rest).
    """

    keep: float = 0.75
    distractors: int = 2
    present: tuple[float, float] = (0.3, 1.0)
    distractor: tuple[float, float] = (0.0, 0.2)
    total: tuple[float, float] = (0.4, 0.95)


class SentenceTagger:
    """Finds the tag words that sentences name, and makes noisy tag vectors from them."""

    def __init__(self, tag_map: TagMap, noise: TextTagNoise = TextTagNoise()):
        self.tag_map = tag_map
        self.noise = noise
        self._index: dict[str, int] = {}
        for index, word in enumerate(tag_map.words):
            for form in word_forms(word):
                self._index.setdefault(form, index)

    def named(self, words: Sequence[str]) -> list[int]:
        """Indices of the tag words a sentence names (each once, in order)."""
        found = (self._index.get(word) for word in words)
        return list(dict.fromkeys(i for i in found if i is not None))

    def tags(self, named: Sequence[Sequence[int]], rng: np.random.Generator) -> np.ndarray:
        """Noisy tag vectors ``(sentences, tags)`` for the tag indices each sentence names."""
        n, size, noise = len(named), len(self.tag_map.words), self.noise
        out = np.zeros((n, size), np.float32)
        for row, indices in enumerate(named):
            kept = [i for i in indices if rng.random() < noise.keep]
            for i in kept:
                out[row, i] = rng.uniform(*noise.present)
            for i in rng.integers(0, size, rng.integers(0, noise.distractors + 1)):
                if out[row, i] == 0:
                    out[row, i] = rng.uniform(*noise.distractor)
            total, target = out[row].sum(), rng.uniform(*noise.total)
            if total > target:  # word probabilities share one softmax: they sum to at most 1
                out[row] *= target / total
        return out


def load_text_captions(token_file: str | Path) -> list[str]:
    """Every caption of a Flickr8k-format token file (``name#i<TAB>caption``), photos not needed."""
    captions = []
    for line in Path(token_file).read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            captions.append(line.split("\t", 1)[1].strip())
    return [c for c in captions if c]
