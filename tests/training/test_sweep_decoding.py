"""Decoding sweeps: one encoding, many decoding settings, each scored."""

from __future__ import annotations

import json

import numpy as np

from training.sweep_decoding import main, patched


def test_patch_replaces_removes_and_adds_rules():
    base = {"length_penalty": 1.0, "prefer_tags_above": 0.15, "absent": [{"tag": "dog"}]}
    out = patched(base, {"length_penalty": 0.8, "prefer_tags_above": None, "absent+": [{"tag": "cat"}]})
    assert out == {"length_penalty": 0.8, "absent": [{"tag": "dog"}, {"tag": "cat"}]}
    assert base["absent"] == [{"tag": "dog"}]  # the bundle's own settings are not touched


def test_sweep_scores_each_setting_and_restores_the_bundles(tmp_path, captioned_folder, capsys):
    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle
    from training.sweep_decoding import sweep

    images, tokens = captioned_folder
    bundle = make_tiny_bundle(tmp_path / "b")
    variants = tmp_path / "sweep.json"
    variants.write_text(json.dumps({"as shipped": {}, "one word": {"max_length": 1}}))
    out = tmp_path / "report.json"
    assert main(["--bundle", str(bundle), "--images", str(images), "--tokens", str(tokens),
                 "--variants", str(variants), "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert "as shipped" in printed.out and "one word" in printed.out and "broken.jpg" in printed.err
    reports = json.loads(out.read_text())
    assert reports["one word"]["decoding"]["max_length"] == 1
    assert reports["one word"]["guards"]["mean_length"] <= 1 < 2 <= max(
        len(c["caption"].split()) for c in reports["as shipped"]["captions"])
    assert reports["as shipped"]["n_images"] == 5

    captioner = Captioner(load_bundle(bundle), device="cpu")
    photos = sorted(images.glob("p*.jpg"))
    before = [r.words for r in captioner.caption(photos)]
    sweep(captioner, [(p, ["a dog"]) for p in photos], {"short": {"max_length": 2}})
    assert [r.words for r in captioner.caption(photos)] == before


def test_caption_encoded_is_what_caption_does_after_encoding(tmp_path):
    from model.bundle import load_bundle
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    captioner = Captioner(load_bundle(make_tiny_bundle(tmp_path / "b", tags=True)), device="cpu")
    photos = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8) for i in range(3)]
    whole = captioner.caption(photos, beam_size=2)
    pixels = np.stack([captioner._load_chunk([p], 0)[0][1] for p in photos]).astype(np.float32)
    grids, logits = captioner.model.encode(pixels)
    parts = captioner.caption_encoded([r.source for r in whole], grids, logits, beam_size=2)
    assert [(r.words, r.keywords) for r in parts] == [(r.words, r.keywords) for r in whole]


def test_a_mistyped_data_folder_or_tokens_file_is_one_line(tmp_path, capsys):
    """A FileNotFoundError traceback, where training.evaluate says it in a line."""
    variants = tmp_path / "sweep.json"
    variants.write_text(json.dumps({"as shipped": {}}))
    for where in (["--data", str(tmp_path / "nowhere")],
                  ["--images", str(tmp_path / "nowhere"), "--tokens", str(tmp_path / "no-such.txt")]):
        assert main(["--variants", str(variants), *where]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
