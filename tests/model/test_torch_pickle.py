"""The numpy-only reader of PyTorch's legacy pickle format: real weight files, and hostile ones."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from model import effnet_lite
from model.encoders import lite_block_args, lite_torch_weights_file
from model.torch_pickle import TorchPickleError, load_state_dict

LITE = ("efficientnet_lite0", "efficientnet_lite2")


@pytest.fixture(scope="module")
def states():
    return {name: load_state_dict(lite_torch_weights_file(name)) for name in LITE}


@pytest.mark.parametrize("name", LITE)
def test_real_weight_files_load_with_every_key(states, name):
    state = states[name]
    blocks = lite_block_args(name)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    expected = {"_conv_stem.weight", "_bn0.weight", "_bn0.bias", "_bn0.running_mean", "_bn0.running_var",
                "_conv_head.weight", "_bn1.weight", "_fc.weight", "_fc.bias"}
    assert expected <= set(state)
    for b in blocks:
        for part in ("_depthwise_conv.weight", "_bn1.running_var", "_project_conv.weight", "_bn2.weight"):
            assert f"_blocks.{b.index}.{part}" in state
        assert (f"_blocks.{b.index}._expand_conv.weight" in state) == b.expand
    assert not {k for k in state if k.startswith("_blocks.")
                and int(k.split(".")[1]) >= len(blocks)}, "blocks beyond the expected architecture"
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.bias"].shape == (1000,)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert np.isfinite(state["_fc.weight"]).all()
    assert np.all(state["_bn0.running_var"] >= 0)


@pytest.mark.parametrize("name", LITE)
def test_block_args_match_the_state_dict(states, name):
    assert lite_block_args(name) == effnet_lite.block_args_from_state(states[name])


def test_lite0_and_lite2_differ(states):
    assert len(lite_block_args("efficientnet_lite0")) == 16
    assert len(lite_block_args("efficientnet_lite2")) == 21
    assert states["efficientnet_lite0"]["_fc.weight"].shape == states["efficientnet_lite2"]["_fc.weight"].shape


@pytest.mark.parametrize("keep", [0.0, 0.001, 0.3, 0.999])
def test_truncated_file_is_rejected(tmp_path, keep):
    data = lite_torch_weights_file("efficientnet_lite0").read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TorchPickleError):
        load_state_dict(bad)


def test_non_pickle_file_is_rejected(tmp_path):
    bad = tmp_path / "photo.pth"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    with pytest.raises(TorchPickleError):
        load_state_dict(bad)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(TorchPickleError):
        load_state_dict(text)


def test_zip_format_torch_file_is_rejected(tmp_path):
    import zipfile

    bad = tmp_path / "new_format.pth"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"a": 1}))
    with pytest.raises(TorchPickleError):
        load_state_dict(bad)


def _legacy_header() -> bytes:
    return (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))


class _RunsCode:
    """Unpickling this calls ``target(*args)``: what a hostile weight file would do."""

    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return self.target, self.args


@pytest.mark.parametrize("where", ["object", "keys"])
def test_forbidden_global_is_refused_and_no_code_runs(tmp_path, where):
    import os

    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _RunsCode(os.system, f"touch {marker}")}, protocol=2)
    harmless = pickle.dumps([], protocol=2)
    bad = tmp_path / "hostile.pth"
    body = payload + harmless if where == "object" else pickle.dumps({}, protocol=2) + payload
    bad.write_bytes(_legacy_header() + body)

    with pytest.raises(TorchPickleError, match="system"):
        load_state_dict(bad)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["magic number", "protocol version", "sys info"])
def test_code_in_the_header_pickles_never_runs(tmp_path, where):
    # The three small pickles before the state dict were read with plain pickle.load: a file whose
    # first pickle is a payload ran it (here: creating a file) before any check.
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsCode(open, str(marker), "w"), protocol=2)
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)]
    parts[["magic number", "protocol version", "sys info"].index(where)] = payload
    bad = tmp_path / "hostile.pth"
    bad.write_bytes(b"".join(parts) + pickle.dumps({}, protocol=2) + pickle.dumps([], protocol=2))
    with pytest.raises(TorchPickleError):
        load_state_dict(bad)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsCode(eval, f"open({str(marker)!r}, 'w')"), protocol=2)
    bad = tmp_path / "hostile.pth"
    bad.write_bytes(_legacy_header() + payload + pickle.dumps([], protocol=2))
    with pytest.raises(TorchPickleError):
        load_state_dict(bad)
    assert not marker.exists()


def test_big_endian_file_is_rejected(tmp_path):
    bad = tmp_path / "big.pth"
    bad.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
                    + pickle.dumps({"little_endian": False}, protocol=2))
    with pytest.raises(TorchPickleError, match="big-endian"):
        load_state_dict(bad)


def test_truncated_storage_data_is_rejected(tmp_path):
    data = lite_torch_weights_file("efficientnet_lite0").read_bytes()
    bad = tmp_path / "short.pth"
    bad.write_bytes(data[:-100])
    with pytest.raises(TorchPickleError, match="truncated"):
        load_state_dict(bad)
