"""Linear probes on the pooled feature grid, trained at export, that tell the decoder what is absent.

Flickr8k has a person in three photos out of four, so a caption decoder trained on it puts a man into
most photos. The encoder's ImageNet classifier knows dogs (118 classes) but has no person class, so
a *person probe* (logistic regression on the pooled grid, labelled by the captions: a person is in a
photo when one of its five captions names one) gives the missing evidence. A probe can be trained for
any :mod:`training.concepts` concept the captions name. The bundle keeps the probes beside the
classifier; the decoding rules (``decoding["absent"]``) then keep a concept's words out of the
captions of photos its probe is confident do not show it, and animal words out of photos whose
animal tags are weak. Each probe's recipe and threshold are in :data:`PROBES`, chosen on dev sets
(see the model card).

A bundle's probes can be trained again to today's recipes without touching its decoder::

    python -m training.probes --bundle resources/models/flickr8k-lite2 --data ../shared/data/flickr8k
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ProbeRecipe:
    """How a concept's probe is trained and trusted.

    A photo is labelled positive when at least ``min_references`` of its captions name the concept;
    ``l2`` is the weight decay on standardised features; the decoding rule bans the concept's
    one-word forms (:func:`concept_words`) for photos whose probe is below ``below``.
    """

    below: float
    min_references: int = 1
    l2: float = 0.3


# The probes an export trains, by training.concepts concept, chosen on Flickr8k dev and coco-mini-dev
# (model card, eighteenth round). Labels from any one caption and a strong weight decay keep photos
# unlike Flickr8k's (a kitchen, luggage, toothbrushes) from looking like people; a person word is banned
# unless the probe is fairly sure (0.8), since the decoder's prior for people is strong. Probes for the
# places and things Flickr8k's captions add (water, a street, a field, a bench, ...) were measured in
# the nineteenth round and are not here: the decoder filled the banned place with "in the air".
PROBES: dict[str, ProbeRecipe] = {"person": ProbeRecipe(below=0.8)}


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


def train_probes(pooled: np.ndarray, captions: Sequence[Sequence[str]],
                 recipes: Mapping[str, ProbeRecipe] = PROBES) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each recipe's probe (name -> ``(kernel, bias)``) from training photos' pooled grids
    ``(photos, channels)`` and their captions.

    Raises:
        ValueError: no training photo's captions name a concept: its probe would say "absent" of every
            photo, and its rule would ban the concept's words everywhere.
    """
    probes = {}
    for concept, recipe in recipes.items():
        labels = concept_labels(captions, concept, recipe.min_references)
        if not labels.any():
            raise ValueError(f"no training photo's captions name {concept!r}: nothing to train its probe on")
        probes[concept] = train_probe(pooled, labels, l2=recipe.l2)
    return probes


def fit_probes(data: str | Path, encoder: str, cache: str | Path | None = None,
               recipes: Mapping[str, ProbeRecipe] = PROBES, *, limit: int | None = None):
    """``(probes, photos)``: :func:`train_probes` on the train split of ``data`` (its first ``limit``
    photos), the pooled grids read from the feature cache (default: the user cache), and how many
    photos they learnt from. What an export and :func:`refit_bundle` both train."""
    from training.data import load_dataset
    from training.features import default_cache_dir, pooled_features

    items, _ = load_dataset(data, "train")
    if limit:
        items = items[:limit]
    pooled = pooled_features([path for path, _ in items], encoder,
                             Path(cache) if cache else default_cache_dir())  # (photos, channels)
    return train_probes(pooled, [captions for _, captions in items], recipes), len(items)


def probe_rules(recipes: Mapping[str, ProbeRecipe] = PROBES) -> list[dict]:
    """The ``decoding["absent"]`` rules that read the probes of ``recipes``."""
    return [{"probe": concept, "below": recipe.below, "words": concept_words(concept)}
            for concept, recipe in recipes.items()]


def refit_bundle(bundle_dir: str | Path, data: str | Path, *, cache: str | Path | None = None,
                 recipes: Mapping[str, ProbeRecipe] = PROBES) -> dict:
    """Train a tag-aware bundle's probes again to ``recipes`` on the training photos of ``data``.

    The bundle's probe rules are replaced by those of ``recipes`` (its tag rules stay, in their order)
    and its probes by the new ones. The decoder, its graphs and the classifier are left as they are;
    the config's ``"metrics"`` are emptied, since the captions change (measure them again with
    :mod:`training.evaluate`).

    Returns:
        The recipes' record, by probe, with the number of training photos; it is also kept in the
        config's ``"training"["probes"]``.

    Raises:
        ValueError: the bundle has no classifier or no probe rule (its decoding reads no probes).
    """
    from model.bundle import load_bundle, remove_unnamed_classifiers, write_classifier, write_config

    bundle = load_bundle(bundle_dir)
    config = bundle.config
    absent = config.get("decoding", {}).get("absent", [])
    if bundle.classifier is None or not any("probe" in rule for rule in absent):
        raise ValueError(f"{bundle.path}: no probes to train (the bundle has no tags or no probe rule)")
    probes, photos = fit_probes(data, bundle.encoder_name, cache, recipes)
    dtype = config["weights"].get("dtype", "float16")  # the bundle stores its classifier as its weights
    # The new file under a name of its own, then the config that names it: a run stopped between the two
    # leaves the bundle as it was (and a stray file), never a config whose checksum names the wrong file.
    config["tags"]["classifier"] = write_classifier(bundle.path, bundle.classifier, probes, dtype,
                                                    replacing=config["tags"]["classifier"]["file"])
    config["decoding"]["absent"] = [rule for rule in absent if "probe" not in rule] + probe_rules(recipes)
    record = {concept: asdict(recipe) | {"photos": photos} for concept, recipe in recipes.items()}
    config["training"] = config.get("training", {}) | {"probes": record}
    config["metrics"] = {}
    write_config(bundle.path, config)
    remove_unnamed_classifiers(bundle.path, config)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a bundle's probes again (the decoder is untouched).")
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
    photos = next(iter(record.values()))["photos"]
    print(f"{len(record)} probes trained on {photos} photos ({', '.join(record)}); "
          f"measure the bundle again with training.evaluate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
