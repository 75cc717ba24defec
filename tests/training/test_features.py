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
