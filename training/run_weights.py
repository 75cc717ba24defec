"""A training run's decoder weights in a bundle's place, to score an epoch without exporting it first.

    python -m training.evaluate --weights runs/x/epoch08.weights.npz --data DATA --split dev --no-java
    python -m training.sweep_decoding --weights runs/x/epoch08.weights.npz --variants sweep.json ...

The epoch is decoded with everything else of the bundle (the shipped one by default): its vocabulary,
encoder, tags and classifier, probes, guards and decoding settings, on the TensorFlow runtime (the
bundle's ONNX graphs hold its own weights, not these). The decoder's shape is the run's: where the
run's ``train_config.json`` lies beside the weights, its architecture fields (a ``--no-deep-output``
or ``--feature-dim 256`` run) replace the bundle's, and a field the file lacks (a run older than the
field) takes :class:`training.train.TrainConfig`'s default, as that run did; without one, the
bundle's shape is assumed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.bundle import Bundle, BundleError
from model.vocab import Vocabulary
from training.train import DECODER_FIELDS, TrainConfig

# Why --weights and --ensemble-weights decode with TensorFlow only.
NEEDS_TENSORFLOW = "{} decodes with the TensorFlow runtime (the ONNX graphs are the bundle's own decoder)"


def runtime_refusal(weights: str | Path | None, ensemble_weights: Sequence[str | Path] | None,
                    runtime: str) -> str | None:
    """Why ``runtime`` cannot decode a run's ``weights`` or an ensemble, or None when it can: only an
    explicit ``"onnx"`` cannot (``"auto"`` is TensorFlow there, see :func:`captioner_to_score`)."""
    if runtime != "onnx":
        return None
    if weights is not None:
        return NEEDS_TENSORFLOW.format("--weights")
    return NEEDS_TENSORFLOW.format("--ensemble-weights") if ensemble_weights else None


def _run_settings(weights: Path) -> dict | None:
    """The ``train_config.json`` of the run that wrote ``weights``, or None outside a run folder."""
    config_path = weights.parent / "train_config.json"
    if not config_path.is_file():
        return None
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{config_path}: unreadable run settings ({exc})") from None


def run_architecture(weights: str | Path) -> dict:
    """The architecture fields of the run that wrote ``weights`` (its ``train_config.json``), or ``{}``
    when the weights lie outside a run folder."""
    return _architecture(_run_settings(Path(weights)))


def _architecture(settings: dict | None) -> dict:
    """Every architecture field of a run's settings, a missing one at :class:`TrainConfig`'s default
    (the run predates the field, so it trained with the default); ``{}`` outside a run (None)."""
    if settings is None:
        return {}
    defaults = TrainConfig(data="", out="")
    return {name: settings.get(name, getattr(defaults, name)) for name in DECODER_FIELDS}


def captioner_to_score(bundle_dir: str | Path | None, weights: str | Path | None = None,
                       ensemble_weights: Sequence[str | Path] = (), *, device: str = "auto",
                       runtime: str = "auto"):
    """A :class:`model.captioner.Captioner` of the bundle in ``bundle_dir`` (the shipped one when None),
    decoding with a run's ``weights`` in place of its decoder when given, and with one more decoder per
    file of ``ensemble_weights`` (:func:`training.ensemble.ensemble_captioner`, each member the named
    bundle with that file's weights). Either makes it decode with TensorFlow; else with ``runtime``.

    Raises:
        BundleError: the bundle or a weight file cannot be used (see :func:`with_run_weights`).
    """
    from model.bundle import load_bundle
    from model.captioner import Captioner
    from training.ensemble import ensemble_captioner

    named = load_bundle(bundle_dir)
    scored = named if weights is None else with_run_weights(named, weights)
    tensorflow_only = weights is not None or bool(ensemble_weights)
    captioner = Captioner(scored, device=device, runtime="tf" if tensorflow_only else runtime)
    return ensemble_captioner(captioner, ensemble_weights, bundle=named) if ensemble_weights else captioner


def with_run_weights(bundle: Bundle, weights: str | Path) -> Bundle:
    """``bundle`` with the decoder weights in ``weights`` (an ``epochNN.weights.npz`` of a run) and the
    run's architecture; the bundle itself is left unchanged.

    Raises:
        BundleError: the weights are missing or unreadable, the run's vocabulary (``vocab.json`` beside
            them) is not the bundle's (token ids would mean other words), the run was trained with
            tags where the bundle has none or the other way round, or weights outside a run folder
            are not shaped like the bundle's decoder.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise BundleError(f"decoder weights not found: {weights}")
    vocab_path = weights.parent / "vocab.json"
    try:
        run_vocab = Vocabulary.load(vocab_path) if vocab_path.is_file() else None
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{vocab_path}: unreadable vocabulary ({exc})") from None
    if run_vocab is not None and run_vocab.words != bundle.vocab.words:
        raise BundleError(f"{vocab_path} is not the vocabulary of {bundle.path}: score the run with the bundle "
                          f"exported from it, or with a bundle that shares its vocabulary")
    settings = _run_settings(weights)
    architecture = _architecture(settings)
    if settings is not None:
        run_tags = bool(settings.get("tags"))
        if run_tags != bool(bundle.config["decoder"].get("num_tags")):
            raise BundleError(f"{weights}: the run was trained {'with' if run_tags else 'without'} tags and "
                              f"{bundle.path} decodes {'without' if run_tags else 'with'} them")
    try:
        with np.load(weights, allow_pickle=False) as stored:
            arrays = {key: stored[key].astype(np.float32) for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated: BadZipFile
        raise BundleError(f"{weights}: unreadable weights ({exc})") from None
    if not architecture and bundle.weights and set(arrays) != set(bundle.weights):
        raise BundleError(f"{weights}: not shaped like the decoder of {bundle.path}, and no train_config.json "
                          f"beside them says their shape: score them from their run folder")
    config = copy.deepcopy(bundle.config)
    config["decoder"].update(architecture)
    config.pop("graphs", None)  # the graphs are the bundle's own decoder
    config["weights"] = {"file": str(weights), "dtype": "float32"}
    config["name"] = f"{bundle.name} with {weights}"
    return dataclasses.replace(bundle, config=config, weights=arrays)
