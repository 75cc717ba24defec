"""Model bundles: a saved bundle reloads to identical outputs; a damaged one fails with a clear message."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from model.bundle import CONFIG_FILE, FORMAT_VERSION, VOCAB_FILE, WEIGHTS_FILE, BundleError, load_bundle, save_bundle


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A private, editable copy of the session's tiny bundle."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def _edit_config(bundle, change):
    path = bundle / CONFIG_FILE
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def _photos():
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (40 + 7 * i, 60, 3), dtype=np.uint8) for i in range(4)]


def _assert_same_outcomes(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.words == b.words and a.token_ids == b.token_ids
        assert a.score == b.score
        np.testing.assert_array_equal(a.attention, b.attention)
        assert a.alternatives == b.alternatives


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_save_load_round_trip_gives_identical_outputs(tiny_bundle, tmp_path, dtype):
    from model.captioner import Captioner

    original = load_bundle(tiny_bundle)
    first = Captioner(original, device="cpu", runtime="tf")
    saved = save_bundle(tmp_path / "again", decoder=first.model.decoder, vocab=original.vocab,
                        encoder=original.encoder_name, name="again", decoding=original.config["decoding"],
                        dtype=dtype)
    reloaded = load_bundle(saved)
    assert reloaded.vocab == original.vocab
    assert reloaded.config["decoder"] == original.config["decoder"]
    assert reloaded.config["weights"]["dtype"] == dtype
    assert set(reloaded.weights) == set(original.weights)
    assert all(w.dtype == np.dtype(dtype) for w in reloaded.weights.values())

    if dtype == "float16":  # compare like with like: the original's weights rounded to float16
        first.model.decoder.set_weights([w.astype(np.float16).astype(np.float32)
                                         for w in first.model.decoder.get_weights()])
    second = Captioner(reloaded, device="cpu", runtime="tf")
    photos = _photos()
    for beam_size in (1, 3):
        _assert_same_outcomes(first.caption(photos, beam_size=beam_size, batch_size=4),
                              second.caption(photos, beam_size=beam_size, batch_size=4))


def test_bundle_files_and_config(tiny_bundle):
    assert {p.name for p in tiny_bundle.iterdir()} >= {CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE}
    config = json.loads((tiny_bundle / CONFIG_FILE).read_text())
    assert config["format_version"] == FORMAT_VERSION
    assert config["encoder"] == {"name": "tiny_test", "input_size": 64, "grid": [4, 4], "channels": 32}
    assert config["vocabulary"] == VOCAB_FILE
    assert len(config["weights"]["sha256"]) == 64
    assert {"vocab_size", "encoder_channels", "embedding_dim", "feature_dim",
            "units", "dropout"} <= set(config["decoder"])
    assert "training" in config and "metrics" in config and "description" in config


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="model bundle not found:.*nowhere"):
        load_bundle(tmp_path / "nowhere")


def test_a_bundles_file_given_for_the_bundle_says_to_give_its_folder(bundle_copy):
    # "model bundle not found" for a config.json that is there.
    with pytest.raises(BundleError, match=f"config.json is a file: give the bundle's folder \\({bundle_copy}\\)"):
        load_bundle(bundle_copy / CONFIG_FILE)


def test_missing_config(bundle_copy):
    (bundle_copy / CONFIG_FILE).unlink()
    with pytest.raises(BundleError, match=f"missing {CONFIG_FILE}"):
        load_bundle(bundle_copy)


def test_config_not_json(bundle_copy):
    (bundle_copy / CONFIG_FILE).write_text("{ half a config")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("version", [2, 0, None, "1"])
def test_unknown_format_version(bundle_copy, version):
    _edit_config(bundle_copy, lambda c: c.update(format_version=version))
    with pytest.raises(BundleError, match=f"unknown bundle format version {version!r}"):
        load_bundle(bundle_copy)


def test_unknown_encoder(bundle_copy):
    _edit_config(bundle_copy, lambda c: c["encoder"].update(name="resnet9000"))
    with pytest.raises(BundleError, match="unknown encoder 'resnet9000'"):
        load_bundle(bundle_copy)


def test_encoder_grid_mismatch(bundle_copy):
    _edit_config(bundle_copy, lambda c: c["encoder"].update(grid=[7, 7]))
    with pytest.raises(BundleError, match="grid"):
        load_bundle(bundle_copy)


def test_missing_config_field(bundle_copy):
    _edit_config(bundle_copy, lambda c: c.pop("weights"))
    with pytest.raises(BundleError, match="missing field 'weights'"):
        load_bundle(bundle_copy)


def _write_vocab(bundle, data: dict) -> None:
    """Replace the vocabulary, its checksum in the config too: what is tested is what the words are."""
    path = bundle / VOCAB_FILE
    path.write_text(json.dumps(data))
    _edit_config(bundle, lambda c: c.update(vocabulary_sha256=hashlib.sha256(path.read_bytes()).hexdigest()))


def _add_vocab_word(bundle, word="zebra"):
    data = json.loads((bundle / VOCAB_FILE).read_text())
    data["tokens"].append(word)
    _write_vocab(bundle, data)
    return len(data["tokens"])


def test_vocabulary_larger_than_the_config(bundle_copy):
    size = _add_vocab_word(bundle_copy)
    with pytest.raises(BundleError, match=f"the vocabulary has {size} words but the config says {size - 1}"):
        load_bundle(bundle_copy)


def test_vocabulary_not_matching_the_weights(bundle_copy):
    size = _add_vocab_word(bundle_copy)
    _edit_config(bundle_copy, lambda c: c["decoder"].update(vocab_size=size))
    with pytest.raises(BundleError, match=f"the vocabulary has {size} words but the weights produce {size - 1}"):
        load_bundle(bundle_copy)


def test_missing_vocabulary(bundle_copy):
    (bundle_copy / VOCAB_FILE).unlink()
    with pytest.raises(BundleError, match=f"missing vocabulary file {VOCAB_FILE}"):
        load_bundle(bundle_copy)


def test_unreadable_vocabulary(bundle_copy):
    _write_vocab(bundle_copy, {"format": "something-else"})
    with pytest.raises(BundleError, match="unreadable vocabulary"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_checksum_mismatch(bundle_copy, where):
    path = bundle_copy / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    index = int(len(data) * where) if where != -1 else len(data) - 1
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(bundle_copy)


def test_truncated_weights_fail_the_checksum(bundle_copy):
    path = bundle_copy / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(bundle_copy)


def test_missing_weights_file(bundle_copy):
    (bundle_copy / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match=f"missing weights file {WEIGHTS_FILE}"):
        load_bundle(bundle_copy)


def test_weights_for_another_architecture(bundle_copy):
    _edit_config(bundle_copy, lambda c: c["decoder"].update(units=32))
    bundle = load_bundle(bundle_copy)  # the files are intact...
    with pytest.raises(BundleError, match="shape"):  # ...but the weights do not fit the config
        bundle.build_decoder()


def test_save_refuses_an_unknown_encoder(tiny_captioner, tmp_path):
    with pytest.raises(BundleError, match="unknown encoder"):
        save_bundle(tmp_path / "x", decoder=tiny_captioner.bundle.build_decoder(), vocab=tiny_captioner.bundle.vocab,
                    encoder="resnet9000", name="x")


def test_the_shipped_bundle_loads_and_validates():
    from model.bundle import default_bundle_path

    bundle = load_bundle()
    assert bundle.path == default_bundle_path()
    assert bundle.name == "flickr8k-lite2-scst4-probe2"
    assert bundle.encoder_name == "efficientnet_lite2"
    assert bundle.classifier is not None and "person" in bundle.probes
    assert bundle.config["decoder"]["num_tags"] == len(bundle.config["tags"]["words"]) > 400
    assert bundle.config["encoder"]["grid"] == [9, 9]
    assert len(bundle.vocab) == bundle.config["decoder"]["vocab_size"] == bundle.weights["logits/kernel"].shape[-1]
    assert "a" in bundle.vocab and "dog" in bundle.vocab
    assert bundle.config["training"] and bundle.config["metrics"]
    decoder = bundle.build_decoder()
    assert decoder.vocab_size == len(bundle.vocab)


def test_a_config_write_that_fails_leaves_the_old_config_and_no_temporary_file(bundle_copy, monkeypatch):
    import os

    from model.bundle import write_config

    before = (bundle_copy / CONFIG_FILE).read_bytes()
    config = json.loads(before) | {"description": "changed"}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the last step of an atomic write fails
    with pytest.raises(OSError, match="No space"):
        write_config(bundle_copy, config)
    monkeypatch.undo()

    # the old config stays whole (it used to be truncated and written in place) and no temporary file is left
    assert (bundle_copy / CONFIG_FILE).read_bytes() == before
    assert [p.name for p in bundle_copy.iterdir() if p.name.endswith(".tmp")] == []
    write_config(bundle_copy, config)
    assert load_bundle(bundle_copy).config["description"] == "changed"


def test_bundle_files_are_written_readable_by_all_as_the_umask_allows(tmp_path):
    """mkstemp's 0600 stayed on config.json, the weights and the graphs: a bundle exported or
    frozen by one user (root installing to /opt) could not be read by any other."""
    import os
    import stat

    from model.bundle import write_config
    from model.testing import make_tiny_bundle

    old = os.umask(0o022)
    try:
        path = make_tiny_bundle(tmp_path / "b")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()}
        assert modes and set(modes.values()) == {0o644}, modes
        os.chmod(path / CONFIG_FILE, 0o640)  # a mode chosen on purpose is kept by a rewrite
        write_config(path, json.loads((path / CONFIG_FILE).read_text()) | {"description": "x"})
        assert stat.S_IMODE((path / CONFIG_FILE).stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_an_export_stopped_half_way_leaves_the_bundle_as_it_was(tmp_path, monkeypatch):
    """New weights went in before the graphs were made (minutes), and the config last: an export
    killed on the way left the old config naming the new weights, "checksum mismatch", over the
    shipped model itself when exported there."""
    import os
    import stat

    from model import bundle as bundle_module
    from model.testing import make_tiny_bundle

    path = make_tiny_bundle(tmp_path / "b")
    (path / "MODEL_CARD.md").write_text("the card")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    old = load_bundle(path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_module, "_export_graphs", killed)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(path, decoder=old.build_decoder(), vocab=old.vocab, encoder="tiny_test", name="new")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # nothing half-written left beside it
    monkeypatch.undo()
    os.chmod(path / "vocab.json", 0o640)  # a mode given on purpose stays through a new export
    save_bundle(path, decoder=old.build_decoder(), vocab=old.vocab, encoder="tiny_test", name="new")
    assert load_bundle(path).config["name"] == "new" and (path / "MODEL_CARD.md").read_text() == "the card"
    assert stat.S_IMODE((path / "vocab.json").stat().st_mode) == 0o640
    assert [p.name for p in path.iterdir() if p.name.startswith(".")] == []

    # Into a link to a folder elsewhere (another disk, a mounted volume: nothing is staged beside
    # it, where the move would cross file systems or the folder above may not be writable).
    elsewhere = tmp_path / "volume" / "models"
    elsewhere.mkdir(parents=True)
    (tmp_path / "linked").symlink_to(elsewhere)
    save_bundle(tmp_path / "linked", decoder=old.build_decoder(), vocab=old.vocab, encoder="tiny_test", name="v")
    assert load_bundle(elsewhere).config["name"] == "v"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "linked", "volume"]


@pytest.mark.parametrize("length", [0, -1, 10**9])
def test_a_caption_length_out_of_range_is_a_bundle_error(bundle_copy, length):
    """0 or -1 broke the search with a traceback; 10**9 asked for 905 GiB."""
    from model.captioner import Captioner

    _edit_config(bundle_copy, lambda config: config["decoding"].update(max_length=length))
    with pytest.raises(BundleError, match=f"max_length {length} is not between 1 and 200"):
        Captioner.from_bundle(bundle_copy, device="cpu")
