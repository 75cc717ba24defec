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
    assert np.load(tmp_path / "cache" / "tiny_test" / "a.npy").ndim == 2


def test_the_feature_command_says_a_data_folder_without_images(tmp_path, capsys):
    # A mistyped --data ended in a FileNotFoundError traceback.
    from training.features import main as features_main

    assert features_main(["--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training.features: error: ") and "Traceback" not in err
