"""Fixtures for the training tests: a tiny data set in the Flickr8k layout, generated on the fly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The official token file's quirk: a caption id whose "image name" no photo has.
MISSING_IMAGE = "2258277193_586949ec62.jpg.1"

_SUBJECTS = ["A black dog", "Two children", "A man in a red shirt", "A brown dog", "The girl",
             "A white cat", "Three people", "A woman"]
_ACTIONS = ["runs on the grass", "plays in the water", "sits near the street", "jumps over a log",
            "walks on the beach"]


@dataclass(frozen=True)
class TinyFlickr:
    """A generated Flickr8k-layout folder and what it holds."""

    root: Path
    images_dir: Path
    token_file: Path
    train: list[str]  # split list order; includes MISSING_IMAGE, which has captions but no photo
    dev: list[str]
    captions: dict[str, list[str]]  # every image id in the token file, in file order

    @property
    def images(self) -> list[str]:
        return [name for name in self.captions if name != MISSING_IMAGE]


def _captions_for(index: int) -> list[str]:
    subject = _SUBJECTS[index % len(_SUBJECTS)]
    captions = [f"{subject} {_ACTIONS[(index + i) % len(_ACTIONS)]} ." for i in range(4)]
    # Punctuation, capitals and a digit, as real Flickr8k captions have.
    captions.append(f"{subject}'s friend , age 2 , is {_ACTIONS[index % len(_ACTIONS)]} !")
    return captions


def write_tiny_flickr(root: Path, n_images: int = 8, n_train: int = 5) -> TinyFlickr:
    """Write ``n_images`` small JPEGs, five captions each, a caption id without photo and two split lists."""
    rng = np.random.default_rng(0)
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    names = [f"{1000 + index}_{index:04x}a.jpg" for index in range(n_images)]
    captions: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        pixels = rng.integers(0, 256, size=(24 + 4 * index, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images_dir / name, quality=85)
        captions[name] = _captions_for(index)
        if index == 2:  # the missing photo's captions sit mid-file, as in the official file
            captions[MISSING_IMAGE] = [
                "people waiting for the subway", "Some people looking out windows in a large building .",
                "Three people are waiting on a train platform .", "Three people standing at a station .",
                "two woman and one man standing near train tracks .",
            ]
    token_file = root / "Flickr8k.token.txt"
    token_file.write_text(
        "".join(f"{name}#{i}\t{text}\n" for name, texts in captions.items() for i, text in enumerate(texts)),
        encoding="utf-8",
    )
    train = names[:n_train] + [MISSING_IMAGE]
    dev = names[n_train:]
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (root / "Flickr_8k.devImages.txt").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return TinyFlickr(root=root, images_dir=images_dir, token_file=token_file, train=train, dev=dev, captions=captions)


@pytest.fixture
def tiny_flickr(tmp_path: Path) -> TinyFlickr:
    """A fresh tiny Flickr8k-layout folder: 8 photos (5 train, 3 dev), 5 captions each, one id without photo."""
    return write_tiny_flickr(tmp_path / "flickr8k")


@pytest.fixture
def ce_run(tiny_flickr, tmp_path):
    """A tag-aware cross-entropy run folder with a copy path, as ``training.train`` leaves it
    (vocabulary, settings, best weights), with random weights: SCST starts from any such run, and
    training one here would only cost time."""
    import json
    from dataclasses import asdict

    from training.train import Trainer, TrainConfig, _tag_setup, build_vocabulary

    config = TrainConfig(data=str(tiny_flickr.root), out=str(tmp_path / "ce"), encoder="tiny_test",
                         cache=str(tmp_path / "cache"), epochs=1, batch_size=4, embedding_dim=16, feature_dim=16,
                         units=32, min_count=1, dropout=0.0, max_words=14, tags=True, copy=True)
    out = Path(config.out)
    out.mkdir()
    tag_map, _ = _tag_setup(config)
    vocab = build_vocabulary(config, tag_map.words)
    vocab.save(out / "vocab.json")
    (out / "train_config.json").write_text(json.dumps(asdict(config)))
    trainer = Trainer(config, vocab, channels=32, tag_words=tag_map.words)
    assert trainer.decoder.num_tags > 0 and trainer.decoder.copy_ids
    trainer.save_best()
    return config


@pytest.fixture()
def captioned_folder(tmp_path):
    """``(images, token file)``: five random photos captioned "a dog runs on the grass" and a broken one."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(images / f"p{i}.jpg")
        lines += [f"p{i}.jpg#{k}\ta dog runs on the grass" for k in range(2)]
    (images / "broken.jpg").write_bytes(b"not a photo")
    lines += ["broken.jpg#0\ta man"]
    tokens = tmp_path / "captions.token.txt"
    tokens.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return images, tokens
