"""Linear probes on the pooled feature grid, trained at export, that tell the decoder what is absent.

Flickr8k has a person in three photos out of four, so a caption decoder trained on it puts a man into
most photos. The encoder's ImageNet classifier knows dogs (118 classes) but has no person class, so
a *person probe* (logistic regression on the pooled grid, labelled by the captions: a person is in a
photo when one of its five captions names one) gives the missing evidence. The bundle keeps it beside
the classifier; the decoding rules (``decoding["absent"]``) then keep person words out of the captions
of photos the probe is confident have none, and dog words out of photos whose dog tag is weak.
Thresholds and the probe's weight decay are chosen on dev sets, see the model card.

A bundle's probe can be trained again without touching its decoder::

    python -m training.probes --bundle resources/models/flickr8k-lite2 --data ../shared/data/flickr8k
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# The person probe's recipe, chosen on Flickr8k dev and coco-mini-dev (model card, eighteenth round):
# labels from any one caption, and a weight decay strong enough that photos unlike Flickr8k's (a
# kitchen, luggage, toothbrushes) do not look like people. The shipped threshold is training.train's
# ABSENCE["person_probe_below"].
PERSON_PROBE = {"min_references": 1, "l2": 0.3}


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


def person_probe(pooled: np.ndarray, captions: Sequence[Sequence[str]], *,
                 min_references: int = PERSON_PROBE["min_references"],
                 l2: float = PERSON_PROBE["l2"]) -> tuple[np.ndarray, np.ndarray]:
    """The person probe from training photos' pooled grids and their captions."""
    return train_probe(pooled, concept_labels(captions, "person", min_references), l2=l2)


def refit_bundle(bundle_dir: str | Path, data: str | Path, *, cache: str | Path | None = None) -> dict:
    """Train a tag-aware bundle's person probe again with :data:`PERSON_PROBE` on the training photos
    of ``data``, and give its decoding rule ``ABSENCE``'s threshold. The decoder, its graphs and the
    classifier are left as they are; the config's ``"metrics"`` are emptied, since the captions
    change (measure them again with :mod:`training.evaluate`). Returns the probe's record, also kept
    in the config's ``"training"["probes"]``."""
    from model.bundle import load_bundle, write_classifier, write_config
    from training.data import load_dataset
    from training.features import default_cache_dir, pooled_features
    from training.train import ABSENCE

    bundle = load_bundle(bundle_dir)
    config = bundle.config
    rules = [rule for rule in config.get("decoding", {}).get("absent", ()) if rule.get("probe") == "person"]
    if bundle.classifier is None or not rules:
        raise ValueError(f"{bundle.path}: no person probe to train (the bundle has no tags or no person rule)")
    items, _ = load_dataset(data, "train")
    pooled = pooled_features([path for path, _ in items], bundle.encoder_name,
                             Path(cache) if cache else default_cache_dir())  # (photos, channels)
    probe = person_probe(pooled, [captions for _, captions in items])
    dtype = config["weights"].get("dtype", "float16")  # the bundle stores its classifier as its weights
    probes = bundle.probes | {"person": probe}
    config["tags"]["classifier"] = write_classifier(bundle.path, bundle.classifier, probes, dtype)
    for rule in rules:
        rule["below"] = ABSENCE["person_probe_below"]
    record = PERSON_PROBE | {"below": ABSENCE["person_probe_below"], "photos": len(items)}
    config["training"] = config.get("training", {}) | {"probes": {"person": record}}
    config["metrics"] = {}
    write_config(bundle.path, config)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a bundle's person probe again (the decoder is untouched).")
    parser.add_argument("--bundle", type=Path, required=True, help="the model bundle folder to change in place")
    parser.add_argument("--data", type=Path, required=True, help="Flickr8k-layout folder (its train split)")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: the user cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        record = refit_bundle(args.bundle, args.data, cache=args.cache)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"person probe trained on {record['photos']} photos; person words banned below {record['below']}; "
          f"measure the bundle again with training.evaluate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
