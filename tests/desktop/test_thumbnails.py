"""Thumbnails are decoded off the GUI thread, upright, no larger than asked, and cached."""

from __future__ import annotations

import pytest
from PIL import Image

from imgcap_desktop.thumbnails import ThumbnailCache, decode_scaled
from model.images import ImageLoadError


def test_decode_respects_exif_orientation_and_size(photo_folder):
    image = decode_scaled(photo_folder / "photo2.jpg", 32)  # 64x48 stored, EXIF says rotate
    assert (image.width(), image.height()) == (24, 32)
    image = decode_scaled(photo_folder / "photo1.jpg", 1000)
    assert (image.width(), image.height()) == (64, 48)


def test_decode_of_a_corrupt_file_raises(photo_folder):
    with pytest.raises(ImageLoadError):
        decode_scaled(photo_folder / "broken.jpg", 32)


def test_cache_decodes_once_in_the_background(qtbot, photo_folder, no_threads_left):
    cache = ThumbnailCache(capacity=1)
    path = str(photo_folder / "photo1.jpg")
    with qtbot.waitSignal(cache.image_ready, timeout=10_000):
        assert cache.image(path, 32) is None
    assert cache.image(path, 32).width() == 32
    with qtbot.waitSignal(cache.image_failed, timeout=10_000) as failed:
        cache.image(str(photo_folder / "broken.jpg"), 32)
    assert failed.args[0].endswith("broken.jpg")
    assert cache.failure(str(photo_folder / "broken.jpg"), 32)
    with qtbot.waitSignal(cache.image_ready, timeout=10_000):
        cache.image(str(photo_folder / "drawing.png"), 32)
    assert cache.image(path, 32) is None  # capacity 1: evicted, decoding again
    qtbot.waitSignal(cache.image_ready, timeout=10_000).wait()


def test_previews_are_kept_apart_and_few(qtbot, tmp_path, no_threads_left):
    """Previews (1024 px, about 3 MB each) shared the thumbnails' 2,000 places: stepping through a
    folder's photos grew memory by about 2.4 MB a photo, towards gigabytes."""
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"p{i}.jpg"))
        Image.new("RGB", (900, 600), (40 * i, 90, 30)).save(paths[-1])
    cache = ThumbnailCache(capacity=10, large_capacity=2, large_above=400)
    for size in (160, 1024):
        for path in paths:
            with qtbot.waitSignal(cache.image_ready, timeout=10_000):
                assert cache.image(path, size) is None
    assert [cache.image(p, 160) is not None for p in paths] == [True] * 5  # no thumbnail evicted
    assert [cache.image(p, 1024) is not None for p in paths[-2:]] == [True, True]
    assert cache.image(paths[0], 1024) is None  # the oldest preview went
    qtbot.waitSignal(cache.image_ready, timeout=10_000).wait()


def test_large_jpeg_uses_scaled_decoding(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(path)
    image = decode_scaled(path, 160)
    assert max(image.width(), image.height()) == 160
