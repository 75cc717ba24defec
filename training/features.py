"""Precompute encoder feature grids once per (encoder, photo) into a cache folder.

Each photo's grid is stored as float16 ``.npy`` ``(locations, channels)`` under
``CACHE/<encoder>/<photo name>.<digest of its bytes>.npy``: another photo under the same name
(another data folder, ``x.png`` beside ``x.jpg``, a photo edited since) is another file, never a
stale grid. Files are written to a temporary name and renamed, so an
interrupted run leaves only complete files behind, and a rerun skips what is already there.

    python -m training.features --data ../shared/data/flickr8k --encoder efficientnet_lite2

The encoder runs in TensorFlow: the command sets Keras' backend to TensorFlow for itself, so a shell
that exports ``KERAS_BACKEND=jax`` for the JAX trainers can run it too.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from model.images import ImageLoadError, load_image
from model.resources import user_cache_dir

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return user_cache_dir() / "features"


def feature_path(cache_dir: Path, encoder: str, image: str | Path) -> Path:
    """Where the grid of ``image`` by ``encoder`` is cached (see the module's docstring)."""
    image = Path(image)
    try:
        status = os.stat(image)
    except OSError:  # not there: no grid to find (extracting it reports why)
        return Path(cache_dir) / encoder / f"{image.name}.npy"
    return Path(cache_dir) / encoder / f"{image.name}.{_digest(str(image), status.st_size, status.st_mtime_ns)}.npy"


@functools.lru_cache(maxsize=None)
def _digest(path: str, _size: int, _mtime_ns: int) -> str:
    """The first 16 hex digits of the file's SHA-256, read once per path, size and time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def load_features(cache_dir: Path, encoder: str, images: list[str | Path]) -> np.ndarray:
    """Stack cached grids for ``images`` into one float16 array ``(n, locations, channels)``."""
    first = np.load(feature_path(cache_dir, encoder, images[0]))
    out = np.empty((len(images),) + first.shape, dtype=np.float16)
    for i, image in enumerate(images):
        out[i] = np.load(feature_path(cache_dir, encoder, image))
    return out


def pooled_features(image_paths: list[Path], encoder_name: str, cache_dir: Path) -> np.ndarray:
    """Each photo's grid averaged over its locations, ``(n, channels)`` float32; grids not yet cached
    are computed first (what the probes of :mod:`training.probes` train on)."""
    extract_features(image_paths, encoder_name, cache_dir)
    return load_features(cache_dir, encoder_name, image_paths).astype(np.float32).mean(axis=1)


def extract_features(image_paths: list[Path], encoder_name: str, cache_dir: Path, *,
                     batch_size: int = 32, progress: bool = True) -> tuple[int, list[str]]:
    """Compute and cache the grids of every photo not yet cached.

    Returns:
        ``(number computed now, messages for photos that could not be read)``.
    """
    from tqdm import tqdm

    todo = [p for p in image_paths if not _valid(feature_path(cache_dir, encoder_name, p))]
    if not todo:
        return 0, []
    import tensorflow as tf

    from model.encoders import build_encoder, get_encoder_spec

    spec = get_encoder_spec(encoder_name)
    encoder = build_encoder(encoder_name)
    run = tf.function(lambda x: encoder(x, training=False), reduce_retracing=True)
    (Path(cache_dir) / encoder_name).mkdir(parents=True, exist_ok=True)
    failures: list[str] = []

    def load(path):
        try:
            return path, load_image(path, spec.input_size)
        except ImageLoadError as exc:
            return path, exc

    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    done = 0
    with ThreadPoolExecutor(max_workers=2) as pool, tqdm(total=len(todo), unit="img", disable=not progress,
                                                       desc=f"features {encoder_name}") as bar:
        pending = pool.map(lambda b: [load(p) for p in b], batches)
        for loaded in pending:
            good = [(p, arr) for p, arr in loaded if not isinstance(arr, Exception)]
            failures += [str(arr) for _, arr in loaded if isinstance(arr, Exception)]
            if good:
                grids = run(np.stack([arr for _, arr in good]).astype(np.float32)).numpy()
                grids = grids.reshape(len(good), -1, grids.shape[-1]).astype(np.float16)
                for (path, _), grid in zip(good, grids):
                    _atomic_save(feature_path(cache_dir, encoder_name, path), grid)
                done += len(good)
            bar.update(len(loaded))
    return done, failures


def _valid(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        np.load(path, mmap_mode="r")
        return True
    except (ValueError, OSError):
        return False


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    if "keras" not in sys.modules:  # as a command: the encoder is a TensorFlow graph (tf.function)
        os.environ["KERAS_BACKEND"] = "tensorflow"
    parser = argparse.ArgumentParser(prog="python -m training.features", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="Flickr8k-layout folder (with images/)")
    parser.add_argument("--encoder", default="efficientnet_lite2")
    parser.add_argument("--cache", type=Path, default=None, help=f"cache folder (default {default_cache_dir()})")
    parser.add_argument("--batch-size", type=_positive, default=32)
    parser.add_argument("--splits", nargs="*", default=None,
                        help="split list files under --data to restrict to (default: every image)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from training.data import find_images_dir

    try:  # images/ or the official archive's Flicker8k_Dataset/, as training.train finds them
        images_dir = find_images_dir(args.data)
    except FileNotFoundError as exc:  # a mistyped --data: said in a line, as training.evaluate does
        print(f"python -m training.features: error: {exc} (--data is a Flickr8k-layout folder, with images/)",
              file=sys.stderr)
        return 2
    if args.splits:
        names = []
        for split_file in args.splits:
            try:
                text = (args.data / split_file).read_text(encoding="utf-8-sig")
            except OSError as exc:
                print(f"python -m training.features: error: split file {args.data / split_file}: "
                      f"{exc.strerror or exc}", file=sys.stderr)
                return 2
            names += [n.strip() for n in text.split() if n.strip()]
        paths = [images_dir / n for n in dict.fromkeys(names) if (images_dir / n).is_file()]
    else:
        paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    cache = args.cache or default_cache_dir()
    computed, failures = extract_features(paths, args.encoder, cache, batch_size=args.batch_size)
    for message in failures:
        log.warning("skipped %s", message)
    log.info("%d grids computed, %d already cached, %d unreadable; cache: %s",
             computed, len(paths) - computed - len(failures), len(failures), cache / args.encoder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
