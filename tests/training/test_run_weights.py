"""A run's epoch scored in a bundle's place (training.run_weights; ``training.evaluate --weights``,
``training.sweep_decoding --weights``): the run's weights and architecture, the bundle's everything else."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from model.bundle import BundleError, load_bundle
from model.vocab import Vocabulary
from training import evaluate, sweep_decoding
from training.run_weights import run_architecture, with_run_weights
from training.train import DECODER_FIELDS

pytest.importorskip("tensorflow")


def _run_from_bundle(bundle, run, epoch: int = 3, without: tuple[str, ...] = (), **settings):
    """A run folder holding ``bundle``'s weights as an epoch, its vocabulary, and as the run's
    ``train_config.json`` the bundle's decoder shape with ``settings`` over it, less the fields named
    in ``without`` (a run older than them); returns the epoch's path."""
    run.mkdir()
    weights = run / f"epoch{epoch:02d}.weights.npz"
    shutil.copyfile(bundle / "decoder.weights.npz", weights)
    shutil.copyfile(bundle / "vocab.json", run / "vocab.json")
    decoder = load_bundle(bundle).config["decoder"]
    config = {"data": "d", "out": str(run), "tags": False,
              **{name: decoder[name] for name in DECODER_FIELDS if name in decoder}, **settings}
    for name in without:
        config.pop(name, None)
    (run / "train_config.json").write_text(json.dumps(config))
    return weights


@pytest.fixture()
def photos():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 50, 3), dtype=np.uint8) for _ in range(4)]


def test_an_epoch_of_another_architecture_captions_as_its_own_bundle(tmp_path, photos):
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    shipped = make_tiny_bundle(tmp_path / "shipped", seed=0)
    other = make_tiny_bundle(tmp_path / "other", seed=7, deep_output=False)
    epoch = _run_from_bundle(other, tmp_path / "run")

    bundle = load_bundle(shipped)
    scored = with_run_weights(bundle, epoch)
    assert scored.config["decoder"]["deep_output"] is False and "graphs" not in scored.config
    assert "deep_output" not in bundle.config["decoder"]  # the bundle itself is unchanged
    assert np.array_equal(bundle.weights["logits/kernel"], load_bundle(shipped).weights["logits/kernel"])
    got = [o.words for o in Captioner(scored, device="cpu", runtime="tf").caption(photos)]
    expected = [o.words for o in Captioner.from_bundle(other, device="cpu", runtime="tf").caption(photos)]
    own = [o.words for o in Captioner(bundle, device="cpu", runtime="tf").caption(photos)]
    assert got == expected and got != own


def test_weights_outside_a_run_take_the_bundles_shape(tmp_path):
    from model.testing import make_tiny_bundle

    shipped = make_tiny_bundle(tmp_path / "shipped")
    other = make_tiny_bundle(tmp_path / "other", seed=7, deep_output=False)
    loose = tmp_path / "loose.weights.npz"
    shutil.copyfile(other / "decoder.weights.npz", loose)
    assert run_architecture(loose) == {}
    with pytest.raises(BundleError, match="no train_config.json"):
        with_run_weights(load_bundle(shipped), loose)
    same = tmp_path / "same.weights.npz"
    shutil.copyfile(shipped / "decoder.weights.npz", same)
    assert with_run_weights(load_bundle(shipped), same).build_decoder().use_deep_output


def test_truncated_weights_are_a_bundle_error(tmp_path):
    # A copy cut short (a full disk, a killed rsync): zipfile's BadZipFile came out as a traceback.
    from model.testing import make_tiny_bundle

    shipped = make_tiny_bundle(tmp_path / "shipped")
    cut = tmp_path / "cut.weights.npz"
    cut.write_bytes((shipped / "decoder.weights.npz").read_bytes()[:300])
    with pytest.raises(BundleError, match="unreadable weights"):
        with_run_weights(load_bundle(shipped), cut)


def test_a_run_with_another_vocabulary_or_tag_setting_is_refused(tmp_path):
    from model.testing import make_tiny_bundle

    shipped = make_tiny_bundle(tmp_path / "shipped")
    bundle = load_bundle(shipped)
    epoch = _run_from_bundle(shipped, tmp_path / "run")
    Vocabulary(["zebra", "yak"]).save(tmp_path / "run" / "vocab.json")
    with pytest.raises(BundleError, match="not the vocabulary of"):
        with_run_weights(bundle, epoch)

    tagged = _run_from_bundle(shipped, tmp_path / "tagged", tags=True)
    with pytest.raises(BundleError, match="trained with tags"):
        with_run_weights(bundle, tagged)
    (tmp_path / "run" / "vocab.json").write_text("{}")
    with pytest.raises(BundleError, match="unreadable vocabulary"):
        with_run_weights(bundle, epoch)
    with pytest.raises(BundleError, match="not found"):
        with_run_weights(bundle, tmp_path / "run" / "epoch99.weights.npz")


def test_the_scoring_commands_score_a_runs_epoch(tmp_path, captioned_folder, capsys):
    from model.testing import make_tiny_bundle

    images, tokens = captioned_folder
    shipped = make_tiny_bundle(tmp_path / "shipped", seed=0)
    other = make_tiny_bundle(tmp_path / "other", seed=7, deep_output=False)
    epoch = _run_from_bundle(other, tmp_path / "run", deep_output=False)
    source = ["--images", str(images), "--tokens", str(tokens)]

    def evaluated(*args):
        out = tmp_path / "report.json"
        assert evaluate.main([*args, *source, "--device", "cpu", "--no-java", "--json", str(out)]) == 0
        return json.loads(out.read_text(encoding="utf-8"))

    by_weights = evaluated("--bundle", str(shipped), "--weights", str(epoch))
    by_bundle = evaluated("--bundle", str(other), "--runtime", "tf")
    assert [c["caption"] for c in by_weights["captions"]] == [c["caption"] for c in by_bundle["captions"]]
    assert by_weights["weights"] == str(epoch) and str(epoch) in by_weights["model"]

    variants = tmp_path / "sweep.json"
    variants.write_text(json.dumps({"as shipped": {}}))
    out = tmp_path / "sweep-report.json"
    assert sweep_decoding.main(["--bundle", str(shipped), "--weights", str(epoch), *source,
                                "--variants", str(variants), "--json", str(out)]) == 0
    swept = json.loads(out.read_text(encoding="utf-8"))["as shipped"]
    # the sweep leaves the broken photo out; the evaluation lists it as failed
    assert [c["caption"] for c in swept["captions"]] == [c["caption"] for c in by_bundle["captions"] if c["caption"]]

    capsys.readouterr()
    assert evaluate.main(["--bundle", str(shipped), "--weights", str(tmp_path / "none.npz"), *source,
                          "--no-java"]) == 1
    assert "decoder weights not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["--weights", str(epoch), "--runtime", "onnx", *source])
    assert sweep_decoding.main(["--weights", str(epoch), "--runtime", "onnx", "--variants", str(variants),
                                *source]) == 2


def test_an_ensemble_member_takes_its_runs_shape(tmp_path, photos):
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle
    from training.ensemble import ensemble_captioner

    shipped = make_tiny_bundle(tmp_path / "shipped", seed=0)
    other = make_tiny_bundle(tmp_path / "other", seed=7, deep_output=False)
    epoch = _run_from_bundle(other, tmp_path / "run", deep_output=False)
    mixed = ensemble_captioner(Captioner.from_bundle(shipped, device="cpu", runtime="tf"), [epoch])
    assert len(mixed.model.members) == 2 and not mixed.model.members[1].decoder.use_deep_output
    outcomes = mixed.caption(photos)
    assert len(outcomes) == 4 and all(o.words for o in outcomes)


def test_a_run_older_than_a_setting_decodes_with_that_settings_default(tmp_path):
    from model.testing import make_tiny_bundle

    plain = make_tiny_bundle(tmp_path / "plain", seed=7, deep_output=False)
    deep = make_tiny_bundle(tmp_path / "deep", seed=0)
    # a run from before --no-deep-output existed: its train_config.json has no deep_output field
    old = _run_from_bundle(deep, tmp_path / "old", without=("deep_output", "context_gate"))
    assert run_architecture(old)["deep_output"] is True
    assert with_run_weights(load_bundle(plain), old).build_decoder().use_deep_output


def test_evaluate_ensembles_a_runs_epoch_with_the_named_bundles_own_decoder(tmp_path, captioned_folder):
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle
    from training.ensemble import ensemble_captioner

    images, tokens = captioned_folder
    shipped = make_tiny_bundle(tmp_path / "shipped", seed=0)
    other = make_tiny_bundle(tmp_path / "other", seed=7, deep_output=False)
    epoch = _run_from_bundle(other, tmp_path / "run")
    out = tmp_path / "report.json"
    # the run's epoch in the bundle's place, with the bundle's own decoder beside it
    assert evaluate.main(["--bundle", str(shipped), "--weights", str(epoch), "--runtime", "tf",
                          "--ensemble-weights", str(shipped / "decoder.weights.npz"),
                          "--images", str(images), "--tokens", str(tokens),
                          "--device", "cpu", "--no-java", "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    # the mean of two log-probabilities does not depend on their order: the same two decoders as
    # the bundle with the epoch beside it caption alike
    other_way = ensemble_captioner(Captioner.from_bundle(shipped, device="cpu", runtime="tf"), [epoch])
    photos = [c for c in report["captions"] if c["caption"]]
    again = other_way.caption([images / c["image"] for c in photos])
    assert photos and [c["caption"] for c in photos] == [o.text for o in again]
