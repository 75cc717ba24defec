"""training.features: the command that caches the encoder's grids."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("size", ["0", "-1"])
def test_the_feature_command_refuses_a_batch_size_below_1(size, tmp_path, capsys):
    """``--batch-size -1`` reported "0 grids computed, 8 already cached" with nothing cached; 0 crashed."""
    from training.features import main as features_main

    with pytest.raises(SystemExit) as done:
        features_main(["--data", str(tmp_path), "--batch-size", size])
    assert done.value.code == 2 and "--batch-size: must be at least 1" in capsys.readouterr().err


def test_the_feature_command_runs_under_the_jax_backend(tmp_path):
    """The encoder is a TensorFlow graph: with ``KERAS_BACKEND=jax`` exported for the JAX trainers the
    command died in a NotImplementedError traceback deep in autograph; it now sets its own backend."""
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
        tmp_path / "images" / "a.jpg")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "training.features", "--data", str(tmp_path), "--encoder",
                           "tiny_test", "--cache", str(tmp_path / "cache")], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    from training.features import feature_path

    assert np.load(feature_path(tmp_path / "cache", "tiny_test", tmp_path / "images" / "a.jpg")).ndim == 2


def test_the_feature_command_says_a_data_folder_without_images(tmp_path, capsys):
    # A mistyped --data ended in a FileNotFoundError traceback.
    from training.features import main as features_main

    assert features_main(["--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training.features: error: ") and "Traceback" not in err


def test_another_photo_under_the_same_name_gets_its_own_grid(tmp_path):
    """The cache was named after the photo's stem: folder B's a.jpg got folder A's grid, and a.png
    beside a.jpg overwrote it ("2 grids computed", one file)."""
    import numpy as np
    from PIL import Image

    from training.features import extract_features, load_features

    rng = np.random.default_rng(0)
    photos = []
    for folder, name in (("A", "a.jpg"), ("B", "a.jpg"), ("B", "a.png")):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / folder / name)
        photos.append(tmp_path / folder / name)
    cache = tmp_path / "cache"
    assert extract_features(photos, "tiny_test", cache, progress=False)[0] == 3
    grids = load_features(cache, "tiny_test", photos)
    assert not np.array_equal(grids[0], grids[1]) and not np.array_equal(grids[1], grids[2])
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(photos[0])  # edited since
    assert extract_features(photos, "tiny_test", cache, progress=False)[0] == 1


def test_the_feature_command_takes_the_official_archives_folder_and_says_a_missing_split(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from training.features import main as features_main

    (tmp_path / "Flicker8k_Dataset").mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "Flicker8k_Dataset" / "a.jpg")
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("\ufeffa.jpg\n", encoding="utf-8")
    cache = str(tmp_path / "cache")
    assert features_main(["--data", str(tmp_path), "--encoder", "tiny_test", "--cache", cache,
                          "--splits", "Flickr_8k.trainImages.txt"]) == 0  # the BOM is no part of a name
    assert len(list((tmp_path / "cache" / "tiny_test").glob("a.jpg.*.npy"))) == 1
    assert features_main(["--data", str(tmp_path), "--encoder", "tiny_test", "--cache", cache,
                          "--splits", "Flickr_8k.testImages.txt"]) == 2
    err = capsys.readouterr().err
    assert "Flickr_8k.testImages.txt: No such file or directory" in err and "Traceback" not in err
