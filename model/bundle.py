"""Model bundles: a folder holding everything needed to caption photos.

::

    config.json        format version, encoder, hyperparameters, decoding settings, training
                       data description, metrics, and the weights' sha256
    vocab.json         the vocabulary (ids and words)
    decoder.weights.npz   the decoder's variables by path (float16 or float32)
    decoder_prepare.onnx  the decoder as ONNX graphs, for the lean runtime (optional; written by
    decoder_step.onnx     :func:`save_bundle` or ``python -m training.export_onnx``; config "graphs")
    classifier.npz     tag-aware bundles only: the encoder's ImageNet classifier (kernel, bias) that
                       turns the pooled grid into the tags the decoder reads and the keywords' maps,
                       and the probes (``classifier-<sha256 prefix>.npz`` once they are trained again)

Each file is replaced atomically (:func:`write_atomically`), and probes trained again go to a new
classifier file before the config names it, so a refit stopped half way leaves the bundle as it was.

:func:`load_bundle` checks all of it before anything is built, so a damaged or foreign bundle fails
with a message that names the problem rather than with a shape error deep inside Keras.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.encoders import ENCODERS
from model.errors import ModelSetupError
from model.resources import resource_path
from model.vocab import Vocabulary

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "decoder.weights.npz"
CLASSIFIER_FILE = "classifier.npz"
DEFAULT_BUNDLE_NAME = "flickr8k-lite2"


class BundleError(ModelSetupError, ValueError):
    """A model bundle is missing, damaged or incompatible; the message says which and why."""


@dataclass
class Bundle:
    """A loaded, validated bundle: config, vocabulary and the decoder weights as numpy arrays."""

    path: Path
    config: dict[str, Any]
    vocab: Vocabulary
    weights: dict[str, np.ndarray] = field(repr=False)
    classifier: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # (kernel, bias)
    # Linear probes on the pooled grid, by name (e.g. "person": is a person in the photo?): (kernel, bias)
    probes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.config.get("name", self.path.name)

    @property
    def encoder_name(self) -> str:
        return self.config["encoder"]["name"]

    @property
    def graphs(self) -> dict[str, Any] | None:
        """The config's ``"graphs"`` entry (the decoder's ONNX graphs), or None when the bundle has none."""
        return self.config.get("graphs") or None

    def build_decoder(self):
        """A :class:`~model.decoder.CaptionDecoder` with this bundle's weights."""
        from model.decoder import CaptionDecoder

        if not self.weights:
            raise BundleError(f"{self.path}: this bundle carries the decoder as ONNX graphs only "
                              f"({self.config['weights'].get('omitted')}); TensorFlow needs {WEIGHTS_FILE}")
        decoder = CaptionDecoder(**self.config["decoder"], name="caption_decoder")
        decoder.build()
        assign_variables(decoder, self.weights)
        return decoder


def default_bundle_path() -> Path:
    return resource_path("models", DEFAULT_BUNDLE_NAME)


def weight_key(var) -> str:
    """A variable's key in a weights file: its path without the model's own name ("copy_gate/kernel")."""
    return var.path.split("/", 1)[1] if "/" in var.path else var.path


def variables_by_path(model) -> dict[str, Any]:
    """A model's variables keyed by :func:`weight_key` (stable across model names)."""
    out = {}
    for var in model.weights:
        key = weight_key(var)
        if key in out:
            raise ValueError(f"duplicate variable path {key!r}")
        out[key] = var
    return out


def assign_variables(model, weights: dict[str, np.ndarray]) -> None:
    variables = variables_by_path(model)
    missing = sorted(set(variables) - set(weights))
    unexpected = sorted(set(weights) - set(variables))
    if missing or unexpected:
        raise BundleError(f"decoder weights do not match the architecture: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    for key, var in variables.items():
        value = weights[key]
        if tuple(value.shape) != tuple(var.shape):
            raise BundleError(f"decoder weight {key!r} has shape {value.shape}, the config expects {tuple(var.shape)}")
        var.assign(value.astype(np.float32))


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomically(file: str | Path, data: bytes) -> None:
    """Replace ``file`` with ``data`` through a temporary file in the same folder: a reader, or a
    process killed half way, sees the old file or the new one, never a mix."""
    file = Path(file)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, _mode_for(file))  # mkstemp's 0600 would leave a model installed for all unreadable
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    umask = os.umask(0)  # read once, at import: setting it back and forth races with other threads' files
    os.umask(umask)
    return umask


_NEW_FILE_MODE = 0o666 & ~_read_umask()


def _mode_for(file: Path) -> int:
    """The permissions a file written anew gets: the old file's, else what the umask allows of 0666."""
    try:
        return stat.S_IMODE(os.stat(file).st_mode)
    except OSError:
        return _NEW_FILE_MODE


def save_bundle(path: str | Path, *, decoder, vocab: Vocabulary, encoder: str, name: str,
                description: str = "", decoding: dict | None = None, training: dict | None = None,
                metrics: dict | None = None, dtype: str = "float16", graphs: bool = True,
                tags: dict | None = None, classifier: tuple[np.ndarray, np.ndarray] | None = None,
                probes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Path:
    """Write a bundle folder (created if needed; existing bundle files are replaced).

    With ``graphs`` the decoder is also exported as ONNX graphs for the lean runtime (this needs
    tf2onnx; without it the bundle is written without graphs and a warning says so).

    ``tags`` (tag-aware decoders): ``{"words": [...], "class_words": [tag id of each ImageNet class or -1],
    "map_sha256": ..., "keyword_threshold": ...}``, so the bundle carries the map it was trained with.
    """
    if encoder not in ENCODERS:
        raise BundleError(f"unknown encoder {encoder!r}")
    final = Path(path)
    final.mkdir(parents=True, exist_ok=True)
    for stale in final.glob(".export-*.partial"):  # an export killed a while ago (not one under way)
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_EXPORT_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)
    # Written in a folder of its own inside the bundle (the same file system, and a folder this export
    # may write), then moved in a file at a time with the config last: an export killed on the way
    # (the graphs take minutes) leaves the bundle as it was, not new weights under an old config.
    path = Path(tempfile.mkdtemp(dir=final, prefix=".export-", suffix=".partial"))
    try:
        _write_bundle(path, decoder=decoder, vocab=vocab, encoder=encoder, name=name, description=description,
                      decoding=decoding, training=training, metrics=metrics, dtype=dtype, graphs=graphs, tags=tags,
                      classifier=classifier, probes=probes)
        for file in sorted(path.iterdir(), key=lambda file: file.name == CONFIG_FILE):
            with contextlib.suppress(FileNotFoundError):  # a file replaced keeps the mode it was given
                os.chmod(file, stat.S_IMODE(os.stat(final / file.name).st_mode))
            os.replace(file, final / file.name)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    remove_unnamed_classifiers(final, json.loads((final / CONFIG_FILE).read_text(encoding="utf-8")))
    return final


#: A staging folder older than this was left by an export that was killed (an export takes minutes).
STALE_EXPORT_SECONDS = 6 * 3600


def _write_bundle(path: Path, *, decoder, vocab: Vocabulary, encoder: str, name: str, description: str,
                  decoding: dict | None, training: dict | None, metrics: dict | None, dtype: str, graphs: bool,
                  tags: dict | None, classifier: tuple[np.ndarray, np.ndarray] | None,
                  probes: dict[str, tuple[np.ndarray, np.ndarray]] | None) -> None:
    """Write a bundle's files into the empty folder ``path`` (see :func:`save_bundle`)."""
    arrays = {key: np.asarray(var.numpy(), dtype=dtype) for key, var in variables_by_path(decoder).items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    weights_bytes = buffer.getvalue()
    write_atomically(path / WEIGHTS_FILE, weights_bytes)
    vocab.save(path / VOCAB_FILE)
    vocab_sha256 = _sha256_bytes((path / VOCAB_FILE).read_bytes())
    spec = ENCODERS[encoder]
    config = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": description,
        "encoder": {"name": encoder, "input_size": spec.input_size, "grid": list(spec.grid), "channels": spec.channels},
        "decoder": decoder.get_config() | {"name": None},
        "decoding": {"max_length": 30, "length_penalty": 1.0} | (decoding or {}),
        "vocabulary": VOCAB_FILE,
        "vocabulary_sha256": vocab_sha256,
        "weights": {"file": WEIGHTS_FILE, "dtype": dtype, "sha256": _sha256_bytes(weights_bytes)},
        "training": training or {},
        "metrics": metrics or {},
    }
    if tags is not None:
        if classifier is None:
            raise BundleError("a bundle with tags needs the classifier that makes them")
        config["tags"] = tags | {"classifier": write_classifier(path, classifier, probes, dtype)}
    config["decoder"].pop("name")
    if graphs:
        config["graphs"] = _export_graphs(decoder, path, dtype, spec)
    if config.get("graphs") is None:
        config.pop("graphs", None)
    write_config(path, config)


def write_classifier(path: str | Path, classifier: tuple[np.ndarray, np.ndarray],
                     probes: dict[str, tuple[np.ndarray, np.ndarray]] | None, dtype: str = "float16", *,
                     replacing: str | None = None) -> dict:
    """Write a bundle's classifier file (the ImageNet head in ``dtype``, the probes in float32) and
    return its entry for the config's ``"tags"`` (``{"file", "sha256"}``).

    ``replacing``: the file name that the bundle's config names now. The new file then gets a name of
    its own (``classifier-<sha256 prefix>.npz``), so that until the caller writes the config that names
    it, the bundle still loads with the old file; :func:`remove_unnamed_classifiers` clears the old one
    after. Without it the file is ``classifier.npz`` (a new bundle).
    """
    buffer = io.BytesIO()
    extra = {f"probe_{name}_{part}": np.asarray(value, np.float32)
             for name, (kernel, bias) in (probes or {}).items() for part, value in (("kernel", kernel), ("bias", bias))}
    np.savez_compressed(buffer, kernel=np.asarray(classifier[0], dtype), bias=np.asarray(classifier[1], np.float32),
                        **extra)
    sha256 = _sha256_bytes(buffer.getvalue())
    name = CLASSIFIER_FILE
    if replacing is not None:
        name = f"{Path(CLASSIFIER_FILE).stem}-{sha256[:12]}{Path(CLASSIFIER_FILE).suffix}"
        if name == replacing:  # the same content under its own name already
            return {"file": name, "sha256": sha256}
    write_atomically(Path(path) / name, buffer.getvalue())
    return {"file": name, "sha256": sha256}


def remove_unnamed_classifiers(path: str | Path, config: dict[str, Any]) -> list[str]:
    """Delete the classifier files in a bundle folder that its ``config`` does not name (left by
    :func:`write_classifier` with ``replacing``, or by a run killed before its config was written);
    returns their names."""
    named = (config.get("tags") or {}).get("classifier", {}).get("file")
    stem, suffix = Path(CLASSIFIER_FILE).stem, Path(CLASSIFIER_FILE).suffix
    removed = []
    for file in sorted(Path(path).glob(f"{stem}*{suffix}")):
        if file.name != named and (file.name == CLASSIFIER_FILE or file.name.startswith(f"{stem}-")):
            file.unlink()
            removed.append(file.name)
    return removed


def _export_graphs(decoder, path: Path, dtype: str, spec) -> dict | None:
    """The decoder's ONNX graphs, exported from the weights as stored (so float16 rounding included)."""
    import logging

    from model.onnx_export import ExportError, export_decoder_graphs

    stored = decoder
    if dtype != "float32":
        from model.decoder import CaptionDecoder

        stored = CaptionDecoder.from_config(decoder.get_config())
        stored.build()
        assign_variables(stored, {k: np.asarray(v.numpy(), dtype=dtype) for k, v in variables_by_path(decoder).items()})
    try:
        return export_decoder_graphs(stored, path, spec.grid[0] * spec.grid[1])
    except ExportError as exc:
        logging.getLogger(__name__).warning("bundle %s written without ONNX graphs: %s", path, exc)
        return None


def write_config(path: str | Path, config: dict[str, Any]) -> None:
    """Replace a bundle's config.json atomically (used to add graphs or probes to an existing bundle)."""
    write_atomically(Path(path) / CONFIG_FILE,
                     (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_checked(path: Path, name: str, sha256: str | None, what: str) -> bytes:
    """The bytes of the bundle file ``path / name``, checked against the config's ``sha256``;
    ``what`` names the file in the error ("weights file", "classifier file", "graph")."""
    file = Path(path) / name
    if not file.is_file():
        raise BundleError(f"{path}: missing {what} {name}")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read {name} ({exc})") from None
    if not sha256:
        raise BundleError(f"{path}: the config gives no checksum for {name}")
    if _sha256_bytes(data) != sha256:
        raise BundleError(f"{file}: checksum mismatch (the file is damaged or was replaced)")
    return data


def _read_weights(path: Path, weights_info: dict) -> dict[str, np.ndarray]:
    weights_path = path / weights_info.get("file", WEIGHTS_FILE)
    data = read_checked(path, weights_path.name, weights_info.get("sha256"), "weights file")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            weights = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{weights_path}: unreadable weights ({exc})") from None
    return weights


def graphs_only_copy(source: str | Path, destination: str | Path, reason: str) -> Path:
    """Copy a bundle without its Keras weights (the ONNX graphs carry the decoder): what the frozen
    app ships, as it runs on ONNX Runtime only. ``reason`` is recorded in the config."""
    bundle = load_bundle(source)
    if not bundle.graphs:
        raise BundleError(f"{bundle.path}: no ONNX graphs to ship instead of the weights")
    destination = Path(destination)
    if destination.exists():
        shutil.rmtree(destination)
    weights_file = bundle.config["weights"].get("file", WEIGHTS_FILE)
    shutil.copytree(bundle.path, destination, ignore=lambda folder, names: [  # nor an export killed half way
        n for n in names if n == weights_file or n.startswith(".export-") and n.endswith(".partial")])
    config = dict(bundle.config)
    config["weights"] = {"dtype": config["weights"].get("dtype"), "omitted": reason}
    write_config(destination, config)
    return destination


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Read and validate a bundle folder (the shipped default when ``path`` is None).

    Raises:
        BundleError: a missing file, an unknown format version or encoder, a vocabulary that does
            not match the weights, or a checksum mismatch.
    """
    path = Path(path) if path is not None else default_bundle_path()
    if path.is_file():  # its config.json, say
        folder = f" ({path.parent})" if path.name == CONFIG_FILE else ""
        raise BundleError(f"{path} is a file: give the bundle's folder{folder}")
    if not path.is_dir():
        raise BundleError(f"model bundle not found: {path}")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise BundleError(f"{path}: missing {CONFIG_FILE}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{config_path}: not valid JSON ({exc})") from None
    except OSError as exc:  # made readable to its owner alone, say
        raise BundleError(f"{config_path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(config, dict):
        raise BundleError(f"{config_path}: not a bundle configuration (a JSON object is expected)")
    try:
        return _validated(path, config_path, config)
    except BundleError:
        raise
    except OSError as exc:
        raise BundleError(f"{path}: {Path(exc.filename or '').name or 'a file'} cannot be read "
                          f"({exc.strerror or exc})") from None
    except (AttributeError, TypeError, KeyError, ValueError) as exc:  # a field of the wrong kind
        raise BundleError(f"{config_path}: malformed configuration ({type(exc).__name__}: {exc})") from None


def _validated(path: Path, config_path: Path, config: dict) -> Bundle:
    """The bundle that ``config`` describes, its files read and checked (see :func:`load_bundle`)."""
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{path}: unknown bundle format version {version!r} "
                          f"(this imgcap reads version {FORMAT_VERSION})")
    try:
        encoder = config["encoder"]["name"]
        decoder_config = config["decoder"]
        weights_info = config["weights"]
    except KeyError as exc:
        raise BundleError(f"{config_path}: missing field {exc}") from None
    if not (isinstance(encoder, str) and isinstance(decoder_config, dict) and isinstance(weights_info, dict)):
        raise BundleError(f"{config_path}: \"encoder\" needs a name, and \"decoder\" and \"weights\" are objects")
    if encoder not in ENCODERS:
        raise BundleError(f"{path}: unknown encoder {encoder!r}; known encoders: {', '.join(sorted(ENCODERS))}")
    spec = ENCODERS[encoder]
    if (tuple(config["encoder"].get("grid", spec.grid)) != spec.grid
            or config["encoder"].get("channels", spec.channels) != spec.channels):
        raise BundleError(f"{path}: encoder {encoder!r} grid/channels in config do not match this imgcap's encoder")

    vocab_path = path / Path(config.get("vocabulary", VOCAB_FILE)).name  # in the bundle, wherever it points
    if not vocab_path.is_file():
        raise BundleError(f"{path}: missing vocabulary file {vocab_path.name}")
    if "vocabulary_sha256" in config:  # bundles written before it have none: their words are not checked
        read_checked(path, vocab_path.name, config["vocabulary_sha256"], "vocabulary file")
    try:
        vocab = Vocabulary.load(vocab_path)
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{vocab_path}: unreadable vocabulary ({exc})") from None

    omitted = bool(weights_info.get("omitted"))
    if omitted:  # a graphs-only bundle (the frozen app's): ONNX Runtime needs no Keras weights
        if not config.get("graphs"):
            raise BundleError(f"{path}: the decoder weights are omitted and there are no ONNX graphs instead")
        weights = {}
    else:
        weights = _read_weights(path, weights_info)
    vocab_size = decoder_config.get("vocab_size")
    if vocab_size != len(vocab):
        raise BundleError(f"{path}: the vocabulary has {len(vocab)} words but the config says {vocab_size}")
    logits = weights.get("logits/kernel")
    if not omitted and (logits is None or logits.shape[-1] != len(vocab)):
        got = None if logits is None else logits.shape[-1]
        raise BundleError(f"{path}: the vocabulary has {len(vocab)} words but the weights produce {got}")
    num_tags = decoder_config.get("num_tags", 0)
    classifier, probes = None, {}
    if num_tags or "tags" in config:
        tags = config.get("tags")
        if (not isinstance(tags, dict) or len(tags.get("words", ())) != num_tags
                or len(tags.get("class_words", ())) != 1000):
            raise BundleError(f"{path}: the decoder reads {num_tags} tags but the config's tag map does not match")
        classifier, probes = _load_classifier(path, tags.get("classifier"), spec.channels)
    if decoder_config.get("encoder_channels") != spec.channels:
        raise BundleError(f"{path}: decoder expects {decoder_config.get('encoder_channels')} channels, "
                          f"encoder {encoder} gives {spec.channels}")
    for part in ("prepare", "step") if config.get("graphs") else ():
        entry = config["graphs"].get(part) or {}
        if not (path / str(entry.get("file", ""))).is_file():
            raise BundleError(f"{path}: missing ONNX graph {entry.get('file', part)!r} (config \"graphs\")")
    return Bundle(path=path, config=config, vocab=vocab, weights=weights, classifier=classifier, probes=probes)


def _load_classifier(path: Path, info, channels: int):
    """``((kernel, bias), {probe name: (kernel, bias)})`` from the bundle's classifier file."""
    if not isinstance(info, dict):
        raise BundleError(f"{path}: the config names no classifier file for its tags")
    file = path / info.get("file", CLASSIFIER_FILE)
    data = read_checked(path, file.name, info.get("sha256"), "classifier file")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            kernel, bias = npz["kernel"].astype(np.float32), npz["bias"].astype(np.float32)
            probes = {key[len("probe_"):-len("_kernel")]: (npz[key].astype(np.float32),
                                                           npz[key[:-len("kernel")] + "bias"].astype(np.float32))
                      for key in npz.files if key.startswith("probe_") and key.endswith("_kernel")}
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{file}: unreadable classifier ({exc})") from None
    if kernel.shape != (channels, 1000) or bias.shape != (1000,):
        raise BundleError(f"{file}: classifier of shape {kernel.shape}, expected ({channels}, 1000)")
    for name, (probe_kernel, _) in probes.items():
        if probe_kernel.shape != (channels,):
            raise BundleError(f"{file}: probe {name!r} of shape {probe_kernel.shape}, expected ({channels},)")
    return (kernel, bias), probes
