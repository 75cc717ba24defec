"""Linear probes on the pooled feature grid, trained at export, that tell the decoder what is absent.

Flickr8k has a person in three photos out of four, so a caption decoder trained on it puts a man into
most photos. The encoder's ImageNet classifier knows dogs (118 classes) but has no person class, so
a *person probe* (logistic regression on the pooled grid, labelled by the captions: a person is in a
photo when at least two of its five captions name one) gives the missing evidence. The bundle keeps
it beside the classifier; the decoding rules (``decoding["absent"]``) then keep person words out of
the captions of photos the probe is confident have none, and dog words out of photos whose dog tag is
weak. Thresholds are chosen on dev sets, see the model card.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def concept_labels(captions: Sequence[Sequence[str]], concept: str, min_references: int = 2) -> np.ndarray:
    """1.0 for each photo whose captions name ``concept`` (a :mod:`training.concepts` concept) at least
    ``min_references`` times, else 0.0."""
    from training.concepts import default_matcher

    matcher = default_matcher()
    return np.array([sum(concept in matcher.concepts_in(c) for c in caps) >= min_references for caps in captions],
                    np.float32)


def train_probe(pooled: np.ndarray, labels: np.ndarray, *, steps: int = 300, learning_rate: float = 0.5,
                l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression by full-batch gradient descent on standardised features, returned with
    the standardisation folded in: ``sigmoid(pooled @ kernel + bias)`` on raw pooled grids."""
    x = np.asarray(pooled, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    y = np.asarray(labels, np.float64)
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= learning_rate * (z.T @ (p - y) / len(y) + l2 * w)
        b -= learning_rate * float((p - y).mean())
    kernel = w / std
    return kernel.astype(np.float32), np.asarray(b - mean @ kernel, np.float32)


def concept_words(concept: str) -> list[str]:
    """The one-word forms of a concept (``person``: man, woman, boys, …), for decoding rules."""
    from training.concepts import CONCEPTS

    for c in CONCEPTS:
        if c.name == concept:
            return [phrase for phrase in c.phrases if " " not in phrase]
    raise KeyError(concept)


def person_probe(pooled: np.ndarray, captions: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The person probe from training photos' pooled grids and their captions."""
    return train_probe(pooled, concept_labels(captions, "person"))
