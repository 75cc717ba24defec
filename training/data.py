"""Reading a Flickr8k-layout folder (captions, split lists, images) and cleaning its captions.

The layout is the one the official ``Flickr8k_text.zip`` and image archive unpack to::

    data_dir/
        Flickr8k.token.txt          <image>#<i><TAB><caption>, five lines per image
        Flickr_8k.trainImages.txt   one image name per line (also devImages, testImages)
        images/                     the photos, by their file names

Nothing here imports TensorFlow or Qt: the feature cache, the ``tf.data`` pipeline and the evaluation
CLI all build on these plain lists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from model.vocab import word_key

logger = logging.getLogger(__name__)

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES: dict[str, str] = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
# Where the photos may live inside a data folder: ours first, then the names of the official archive.
IMAGE_DIR_NAMES = ("images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset")

Item = tuple[Path, list[str]]


def load_captions(token_file: str | Path) -> dict[str, list[str]]:
    """Read a Flickr8k token file into ``{image name: [raw captions in file order]}``.

    Lines are ``<image>#<i>\\t<caption>``. The caption id is split at its *last* ``#``, so the official
    quirk id ``2258277193_586949ec62.jpg.1#0`` (an image name that no file has) is kept as the name
    ``2258277193_586949ec62.jpg.1``; :func:`load_dataset` then skips it like any other missing photo.
    A UTF-8 byte-order mark, Windows line ends and blank lines are tolerated; a line with no caption
    is logged and skipped.

    Raises:
        FileNotFoundError: the token file does not exist.
    """
    captions: dict[str, list[str]] = {}
    path = Path(token_file)
    with path.open(encoding="utf-8-sig") as lines:
        for line_no, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            # Some redistributed copies replaced the tab by spaces: fall back to the first whitespace.
            caption_id, sep, caption = line.partition("\t")
            if not sep:
                parts = line.split(maxsplit=1)
                caption_id, caption = parts[0], parts[1] if len(parts) == 2 else ""
            caption = caption.strip()
            if not caption:
                logger.warning("%s:%d: caption id %r has no caption; skipped", path, line_no, caption_id)
                continue
            name = caption_id.rpartition("#")[0] or caption_id
            captions.setdefault(name, []).append(caption)
    return captions


def load_split(list_file: str | Path) -> list[str]:
    """Read a split list (one image name per line) in file order, without blank lines or duplicates.

    Raises:
        FileNotFoundError: the list file does not exist.
    """
    names: list[str] = []
    seen: set[str] = set()
    with Path(list_file).open(encoding="utf-8-sig") as lines:
        for line in lines:
            name = line.strip()
            if name and name not in seen:
                seen.add(name)
                names.append(name)
    return names


def find_images_dir(data_dir: str | Path) -> Path:
    """The folder holding a data set's photos: ``images/`` or one of the official archive's names.

    Raises:
        FileNotFoundError: none of them exists.
    """
    data_dir = Path(data_dir)
    for name in IMAGE_DIR_NAMES:
        if (data_dir / name).is_dir():
            return data_dir / name
    raise FileNotFoundError(f"no image folder ({', '.join(IMAGE_DIR_NAMES)}) in {data_dir}")


def load_items(
    images_dir: str | Path, token_file: str | Path, names: Iterable[str] | None = None
) -> tuple[list[Item], int]:
    """Pair photos in ``images_dir`` with their captions from ``token_file``.

    Args:
        images_dir: the folder holding the photos.
        token_file: captions in the Flickr8k token format.
        names: the images to take, in this order (a split list); ``None`` takes every captioned image
            in token-file order.

    Returns:
        ``(items, n_skipped)``: ``items`` is a list of ``(image path, [raw captions])``; ``n_skipped``
        counts the images asked for that were left out because their photo file is missing or
        because they have no caption. Both causes are logged.
    """
    images_dir = Path(images_dir)
    captions = load_captions(token_file)
    wanted = list(captions) if names is None else list(names)
    items: list[Item] = []
    no_file: list[str] = []
    no_caption: list[str] = []
    for name in wanted:
        if name not in captions:
            no_caption.append(name)
            continue
        path = images_dir / name
        if not path.is_file():
            no_file.append(name)
            continue
        items.append((path, list(captions[name])))
    if no_file:
        n_captions = sum(len(captions[name]) for name in no_file)
        logger.warning(
            "skipped %d image id(s) (%d captions) whose photo is missing from %s, e.g. %s",
            len(no_file), n_captions, images_dir, no_file[0],
        )
    if no_caption:
        logger.warning(
            "skipped %d image(s) with no caption in %s, e.g. %s", len(no_caption), token_file, no_caption[0]
        )
    return items, len(no_file) + len(no_caption)


def load_dataset(data_dir: str | Path, split: str | None) -> tuple[list[Item], int]:
    """Load one split of a Flickr8k-layout folder.

    Args:
        data_dir: the data set's folder (see the module docstring for its layout).
        split: ``"train"``, ``"dev"`` or ``"test"`` (read from the official list files), or ``None``
            for every captioned image.

    Returns:
        ``(items, n_skipped)`` as :func:`load_items` gives them: ``(image path, [raw captions])`` in
        split-list order, and how many image ids were skipped (missing photo or no caption).

    Raises:
        ValueError: an unknown split name.
        FileNotFoundError: the token file, the split list or the image folder is missing.
    """
    data_dir = Path(data_dir)
    if split is not None and split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_FILES)}")
    names = None if split is None else load_split(data_dir / SPLIT_FILES[split])
    return load_items(find_images_dir(data_dir), data_dir / TOKEN_FILE, names)


def clean_caption(text: str, *, drop_one_letter: bool = False) -> list[str]:
    """Turn a raw caption into the word list the model trains on.

    Lowercases, deletes punctuation characters (``"dog's"`` -> ``"dogs"``, ``"tri-colored"`` ->
    ``"tricolored"``, a lone ``"."`` vanishes), then drops every token containing a digit.

    Args:
        text: one raw caption.
        drop_one_letter: also drop one-letter tokens (the design's rule, which removes the article
            "a" that the references keep). Off by default; the training run measures both.
    """
    words = []
    for token in text.split():
        word = word_key(token)  # Unicode punctuation (P*) and symbols (S*) out: curly quotes, dashes...
        if not word or any(char.isdigit() for char in word):
            continue
        if drop_one_letter and len(word) == 1:
            continue
        words.append(word)
    return words
