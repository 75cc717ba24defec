"""scripts/gpu_xe_soup.sh, the prepared run for a lent GPU machine, run here end to end on a tiny pack.

A lent machine gives a session minutes, not hours: a flag renamed in a trainer, or a step that
trains nothing, must fail here and not there. The script is run as the device would run it (JAX, the
packed photos and encoder, ``training.devicepack unpack``), on the CPU, with batches that fit the pack.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import write_tiny_flickr

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_script_trains_a_soup_and_scst_from_a_tiny_pack(tmp_path):
    pytest.importorskip("jax")
    tiny = write_tiny_flickr(tmp_path / "tiny")
    text = tmp_path / "text.token.txt"
    text.write_text("".join(f"{i:012d}.jpg#0\ta cat is sitting on a table next to a cup .\n" for i in range(40)),
                    encoding="utf-8")
    resources = tmp_path / "resources"  # where unpack puts the encoder: not the checkout's resources/
    resources.mkdir()
    for part in ("models", "tags"):
        (resources / part).symlink_to(ROOT / "resources" / part)
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "IMGCAP_RESOURCES": str(resources),
                        "IMGCAP_CACHE_DIR": str(tmp_path / "cache")}
    work = tmp_path / "work"
    work.mkdir()
    packed = subprocess.run([sys.executable, "-m", "training.devicepack", "pack", "--data", str(tiny.root),
                             "--out", ".gpu", "--text-captions", str(text)],
                            cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert packed.returncode == 0, packed.stderr[-3000:]

    out = tmp_path / "out"
    settings = {"LOCAL": "1", "PY": sys.executable, "D": ".gpu/flickr8k", "NF": "2", "NS": "2", "BASE_EP": "1",
                "FORK_EP": "1", "OUT": str(out), "R": str(tmp_path / "runs"), "BUDGET": "500",
                "XE_EXTRA": "--text-limit 300 --batch-size 4", "SCST_EXTRA": "--max-steps 1 --batch-size 4"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_xe_soup.sh")], cwd=work, env=env | settings,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    assert {"xesoup.weights.npz", "xefork1.weights.npz", "scstsoup.weights.npz", "train_config.json",
            "vocab.json", "logs.tgz"} <= {p.name for p in out.iterdir()}
    assert (resources / "encoders").is_dir()  # unpacked where IMGCAP_RESOURCES says
    for run in ("base", "f1", "f2"):  # each cross-entropy run took steps (a batch too big for the pack: none)
        history = json.loads((tmp_path / "runs" / run / "history.json").read_text())
        assert math.isfinite(history[-1]["train_loss"]) and history[-1]["train_seconds"] > 0
    with (np.load(out / "xesoup.weights.npz") as soup, np.load(out / "xefork1.weights.npz") as fork,
          np.load(out / "scstsoup.weights.npz") as scst):
        assert set(soup.files) == set(fork.files) == set(scst.files)
        assert "deep_output/kernel" not in soup.files  # the no-deep-output recipe
        assert all(np.isfinite(soup[k]).all() and np.isfinite(scst[k]).all() for k in soup.files)
        assert any(not np.array_equal(soup[k], fork[k]) for k in soup.files)  # a mean of two forks, not one
        assert any(not np.array_equal(soup[k], scst[k]) for k in soup.files)  # SCST moved the soup

    # A second call on the still-warm machine: SCST only, from the first call's soup, two epochs each.
    # The call re-sends .gpu, so the photos the first call unpacked are gone (the archive is back).
    import shutil

    shutil.rmtree(work / ".gpu" / "flickr8k" / "images")
    again = tmp_path / "out2"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_xe_soup.sh")], cwd=work,
                          env=env | settings | {"OUT": str(again), "SCST_ONLY": "1", "NS": "1", "SCST_EP": "2"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "base" not in done.stdout.split("SCST with")[0]  # no cross-entropy this time
    assert {p.name for p in again.iterdir()} == {"scstsoup.weights.npz", "scst_e01.weights.npz",
                                                 "scst_e02.weights.npz", "logs.tgz"}
    assert (tmp_path / "runs" / "s1" / "epoch02.weights.npz").is_file()
    assert not (tmp_path / "runs" / "s2").exists()  # the first call's runs are not in this call's mean

    # A call that only prepares (the photos out of .gpu, their grids cached), then one whose .gpu holds an
    # init run folder alone (no cross-entropy), then one that continues those runs an epoch.
    kept = tmp_path / "f8k"
    prepared = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_xe_soup.sh")], cwd=work,
                              env=env | settings | {"OUT": str(tmp_path / "out-prep"), "PREP_ONLY": str(kept)},
                              capture_output=True, text=True, timeout=900)
    assert prepared.returncode == 0, (prepared.stdout + prepared.stderr)[-4000:]
    assert "SCST" not in prepared.stdout and len(list((kept / "images").iterdir())) > 0
    shutil.rmtree(work / ".gpu")
    init = work / ".gpu" / "init"
    shutil.copytree(tmp_path / "runs" / "xesoup", init)
    shutil.rmtree(tmp_path / "runs")
    third, fourth = tmp_path / "out3", tmp_path / "out4"
    warm = {"WARM": "1", "D": str(kept), "SCST_INIT": ".gpu/init", "NS": "1"}  # one run: the suite's time
    started = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_xe_soup.sh")], cwd=work,
                             env=env | settings | warm | {"OUT": str(third), "SCST_EP": "1"},
                             capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, (started.stdout + started.stderr)[-4000:]
    assert not (tmp_path / "runs" / "base").exists()
    assert {p.name for p in third.iterdir()} == {"scstsoup.weights.npz", "scst_e01.weights.npz", "train_config.json",
                                                 "vocab.json", "logs.tgz"}
    go_on = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_xe_soup.sh")], cwd=work,
                           env=env | settings | warm | {"OUT": str(fourth), "SCST_RESUME": "1", "SCST_EP": "2"},
                           capture_output=True, text=True, timeout=900)
    assert go_on.returncode == 0, (go_on.stdout + go_on.stderr)[-4000:]
    history = json.loads((tmp_path / "runs" / "s1" / "history.json").read_text())
    assert [record["epoch"] for record in history] == [0, 1, 2]  # 0: the init, scored; then on from its epoch 1
    with (np.load(third / "scst_e01.weights.npz") as first, np.load(fourth / "scst_e01.weights.npz") as again_1,
          np.load(fourth / "scst_e02.weights.npz") as second):
        assert all(np.array_equal(first[k], again_1[k]) for k in first.files)
        assert any(not np.array_equal(first[k], second[k]) for k in first.files)
