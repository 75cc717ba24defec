"""training.average: the weighted mean of decoder weight files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.average import average_weights, main, parse_input


def _save(path: Path, **arrays) -> Path:
    np.savez(path, **{k: np.asarray(v, np.float16) for k, v in arrays.items()})
    return path


def test_the_weighted_mean_of_two_files(tmp_path):
    a = _save(tmp_path / "a.npz", kernel=[[0.0, 2.0]], bias=[1.0])
    b = _save(tmp_path / "b.npz", kernel=[[4.0, 2.0]], bias=[3.0])
    mixed = average_weights([(a, 1.0), (b, 3.0)])  # normalised: 0.25 a + 0.75 b
    np.testing.assert_allclose(mixed["kernel"], [[3.0, 2.0]])
    np.testing.assert_allclose(mixed["bias"], [2.5])
    out = tmp_path / "soup.weights.npz"
    assert main([f"{a}:0.3", f"{b}:0.7", "--out", str(out)]) == 0
    with np.load(out) as stored:
        assert stored["kernel"].dtype == np.float16
        np.testing.assert_allclose(stored["kernel"], [[2.8, 2.0]], atol=1e-2)


def test_inputs_parse_with_and_without_a_weight():
    assert parse_input("runs/a/epoch01.weights.npz:0.7") == (Path("runs/a/epoch01.weights.npz"), 0.7)
    assert parse_input("runs/a/epoch01.weights.npz") == (Path("runs/a/epoch01.weights.npz"), 1.0)
    assert parse_input("C:/runs/a.npz") == (Path("C:/runs/a.npz"), 1.0)  # a drive letter is no weight


def test_different_decoders_and_bad_weights_are_refused(tmp_path):
    a = _save(tmp_path / "a.npz", kernel=[[0.0, 2.0]])
    b = _save(tmp_path / "b.npz", kernel=[[0.0, 2.0, 1.0]])
    with pytest.raises(ValueError, match="different variables"):
        average_weights([(a, 1.0), (b, 1.0)])
    with pytest.raises(ValueError, match=">= 0"):
        average_weights([(a, -1.0), (a, 2.0)])
    with pytest.raises(ValueError, match="nothing"):
        average_weights([])
    with pytest.raises(SystemExit):
        main([str(a), str(b), "--out", str(tmp_path / "x.npz")])


def test_weights_or_values_that_are_not_finite_are_refused(tmp_path, capsys):
    """``a:nan b:1`` and a file holding NaN used to write all-NaN weights and exit 0."""
    a = _save(tmp_path / "a.npz", kernel=[[0.0, 2.0]])
    nan = _save(tmp_path / "nan.npz", kernel=[[np.nan, 2.0]])
    for weight in ("nan", "inf"):
        with pytest.raises(ValueError, match="must be finite"):
            average_weights([(a, float(weight)), (a, 1.0)])
    with pytest.raises(ValueError, match="the mean is not finite in kernel"):
        average_weights([(a, 1.0), (nan, 1.0)])
    big = tmp_path / "big.npz"
    np.savez(big, kernel=np.asarray([[1e6, 2.0]], np.float32))
    with pytest.raises(SystemExit):
        main([str(big), "--out", str(tmp_path / "x.npz")])
    assert "beyond float16's range" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()



def test_an_npy_file_is_refused_with_a_message(tmp_path, capsys):
    """One .npy array (a feature grid, say) died in a TypeError traceback."""
    import numpy as np

    from training.average import main

    np.save(tmp_path / "grid.npy", np.zeros(3, np.float32))
    with pytest.raises(SystemExit) as done:
        main(["--out", str(tmp_path / "mean.npz"), str(tmp_path / "grid.npy")])
    assert done.value.code == 2 and "holds one array, not a decoder's weights" in capsys.readouterr().err
