"""Pack what decoder training needs into one small folder for a lent GPU machine, and unpack it there.

    python -m training.devicepack pack --data ../shared/data/flickr8k --out .gpu \\
        --text-captions ../shared/data/coco-captions-text/captions_val2017_text.token.txt
    python -m training.devicepack unpack .gpu        # on the GPU machine, in the checkout's root

The lent machine (the device tool) has JAX but neither TensorFlow nor the EfficientNet weight
packages, reaches no registry, and takes at most 64 MiB of files a call, this checkout included. The
6,000 Flickr8k train photos take 134 MB as they are, so ``pack`` re-encodes each photo as WebP, the
longer side at most the encoder's input size: 40 MB at the default quality 52. The encoder then sees
other pixels. On 48 train photos, its feature grids differed from the originals' by 0.55 in relative
L2 at quality 52, 0.45 at 75, 0.30 for JPEG q85 copies of at most 260 px (what the shipped
cross-entropy run trained on) and 0.11 for JPEG q95 at full size. So the machine's own dev figures
are the packed photos'; score a run's weights here, on the originals' grids (``training.evaluate
--weights``).

``pack`` writes into OUT:

- ``flickr8k/``: the train split's photos and the first ``--dev`` dev photos, their caption lines and
  the two split files, a Flickr8k-layout folder for ``--data`` once ``unpack`` has taken the photos out
  of ``images.tgz``: the device tool counts a folder of 6,000 small files as more than 64 MiB where
  the same bytes in one archive pass (a call was refused so in the twenty-fourth round);
- ``encoder.npz``: the encoder's converted weights (float16, in the order of ``Model.weights``) and its
  ImageNet classifier (``fc_kernel``, ``fc_bias``);
- ``text.token.txt``: a copy of ``--text-captions``, when given.

``unpack`` takes the photos out of ``flickr8k/images.tgz`` and writes the encoder's weights where
:func:`model.encoders.build_encoder` looks first (``resources/encoders/NAME.weights.h5``) and its
classifier where :func:`model.encoders.classifier_head` looks when the weight package is missing
(``resources/encoders/NAME.classifier.npz``).
``scripts/gpu_xe_soup.sh`` is a run that uses both.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.data import SPLIT_FILES, TOKEN_FILE, find_images_dir, load_captions, load_split

TRAIN_LIST, DEV_LIST = SPLIT_FILES["train"], SPLIT_FILES["dev"]
PHOTO_ARCHIVE = "images.tgz"


def pack_photos(data: Path, out: Path, *, size: int, quality: int = 52, dev_photos: int = 50) -> dict:
    """Write a Flickr8k-layout copy of ``data`` into ``out``: every train photo and the first
    ``dev_photos`` dev photos as WebP (upright, longer side at most ``size``; the ``.jpg`` names kept,
    since Pillow reads a photo by its content), with their caption lines and split lists. A listed photo
    that is missing or unreadable is left out of its list. Returns counts and the photos' bytes."""
    from model.images import ImageLoadError, open_oriented

    source, images = find_images_dir(data), out / "images"
    images.mkdir(parents=True, exist_ok=True)
    kept: dict[str, list[str]] = {}
    skipped, photo_bytes = 0, 0
    for listing, names in ((TRAIN_LIST, load_split(data / TRAIN_LIST)),
                           (DEV_LIST, load_split(data / DEV_LIST)[:dev_photos])):
        kept[listing] = []
        for name in names:
            try:
                photo = open_oriented(source / name, draft_size=(size, size))
            except ImageLoadError:
                skipped += 1
                continue
            photo.thumbnail((size, size))
            buffer = io.BytesIO()
            photo.save(buffer, "WEBP", quality=quality, method=6)
            (images / name).write_bytes(buffer.getvalue())
            photo_bytes += len(buffer.getvalue())
            kept[listing].append(name)
        (out / listing).write_text("".join(f"{name}\n" for name in kept[listing]), encoding="utf-8")
    # Read as training reads them (a byte-order mark, ids without "#N", spaces for the tab), written plainly.
    captions = load_captions(data / TOKEN_FILE)
    packed = {name: captions[name] for name in (*kept[TRAIN_LIST], *kept[DEV_LIST]) if name in captions}
    if kept[TRAIN_LIST] and not any(name in packed for name in kept[TRAIN_LIST]):
        raise ValueError(f"{data / TOKEN_FILE}: no caption for any of the {len(kept[TRAIN_LIST])} train photos")
    (out / TOKEN_FILE).write_text("".join(f"{name}#{i}\t{caption}\n" for name, texts in packed.items()
                                          for i, caption in enumerate(texts)), encoding="utf-8")
    return {"train": len(kept[TRAIN_LIST]), "dev": len(kept[DEV_LIST]), "skipped": skipped, "bytes": photo_bytes}


def archive_photos(folder: Path) -> Path:
    """Replace the photo folder ``folder`` (``pack_photos``'s ``images/``) by one archive beside it,
    ``images.tgz``; gzip's fastest level only squeezes out tar's padding (WebP does not compress)."""
    archive = folder.with_name(PHOTO_ARCHIVE)
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname=folder.name)
    shutil.rmtree(folder)
    return archive


def unarchive_photos(archive: Path) -> Path:
    """Take the photos out of ``archive`` (from :func:`archive_photos`) into its folder; the photo folder."""
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(archive.parent, filter="data")
    return archive.parent / "images"


def pack_encoder(name: str, destination: Path) -> Path:
    """Write the EfficientNet-Lite ``name``'s converted weights (float16) and classifier to ``destination``."""
    from model.encoders import build_efficientnet_lite_classifier, classifier_head

    net = build_efficientnet_lite_classifier(name).get_layer(name)
    kernel, bias = classifier_head(name)
    arrays = {f"w{index:04d}": np.asarray(value, np.float16) for index, value in enumerate(net.get_weights())}
    np.savez_compressed(destination, fc_kernel=kernel.astype(np.float16), fc_bias=bias, **arrays)
    return destination


def unpack_encoder(name: str, packed: Path) -> tuple[Path, Path]:
    """Write ``packed`` (from :func:`pack_encoder`) where the encoder and its classifier are looked for."""
    from model.effnet_lite import build_efficientnet_lite
    from model.encoders import get_encoder_spec, lite_block_args
    from model.resources import resource_path

    net = build_efficientnet_lite(lite_block_args(name), input_size=get_encoder_spec(name).input_size,
                                  num_classes=1000, name=name)
    with np.load(packed) as arrays:
        net.set_weights([arrays[key].astype(np.float32) for key in sorted(k for k in arrays.files if k[0] == "w")])
        kernel, bias = arrays["fc_kernel"].astype(np.float32), arrays["fc_bias"].astype(np.float32)
    weights = resource_path("encoders", f"{name}.weights.h5")
    weights.parent.mkdir(parents=True, exist_ok=True)
    net.save_weights(weights)
    classifier = resource_path("encoders", f"{name}.classifier.npz")
    np.savez(classifier, kernel=kernel, bias=bias)
    return weights, classifier


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.devicepack", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    pack = verbs.add_parser("pack", help="write the folder to carry")
    pack.add_argument("--data", type=Path, required=True, help="Flickr8k-layout folder")
    pack.add_argument("--out", type=Path, required=True)
    pack.add_argument("--encoder", default="efficientnet_lite2")
    pack.add_argument("--quality", type=int, default=52, help="WebP quality (1-100)")
    pack.add_argument("--dev", type=int, default=50, help="dev photos to take (the machine's own dev figures)")
    pack.add_argument("--text-captions", type=Path, default=None, help="token file of captions without photos")
    unpack = verbs.add_parser("unpack", help="on the GPU machine: take the photos out of their archive and put "
                                             "the encoder where it is looked for")
    unpack.add_argument("pack", type=Path)
    unpack.add_argument("--encoder", default="efficientnet_lite2")
    args = parser.parse_args(argv)

    from model.encoders import get_encoder_spec

    if not args.encoder.startswith("efficientnet_lite"):
        parser.error("only the EfficientNet-Lite encoders are packed")
    if args.verb == "unpack":
        archive = args.pack / "flickr8k" / PHOTO_ARCHIVE
        if archive.is_file():
            print(f"unpacked {unarchive_photos(archive)}")
        for path in unpack_encoder(args.encoder, args.pack / "encoder.npz"):
            print(f"wrote {path}")
        return 0
    if not 1 <= args.quality <= 100 or args.dev < 0:
        parser.error("--quality goes from 1 to 100 and --dev from 0")
    try:
        counts = pack_photos(args.data, args.out / "flickr8k", size=get_encoder_spec(args.encoder).input_size,
                             quality=args.quality, dev_photos=args.dev)
        archive_photos(args.out / "flickr8k" / "images")
        pack_encoder(args.encoder, args.out / "encoder.npz")
        if args.text_captions is not None:
            shutil.copyfile(args.text_captions, args.out / "text.token.txt")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    print(f"{counts['train']} train and {counts['dev']} dev photos ({counts['bytes'] / 1e6:.1f} MB), "
          f"{counts['skipped']} unreadable left out; {args.out}: {total / 2**20:.1f} MiB in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
