"""An ensemble of decoders at decode time (training.ensemble, ``training.evaluate --ensemble-weights``):
the search steps several decoders as one, averaging their log-probabilities."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from model.search import log_softmax
from training.ensemble import EnsembleSteps, ensemble_captioner


class _FakeSteps:
    """A decoder step with a fixed score row and a recognisable memory and state."""

    def __init__(self, scores: np.ndarray, units: int, memory_parts: int, mark: float):
        self.scores, self.units, self.parts, self.mark = scores, units, memory_parts, mark
        self.seen = None

    def prepare(self, features, tags=None):
        memory = tuple(np.full((len(features), 2), self.mark + i) for i in range(self.parts))
        return memory, np.full((len(features), self.units), self.mark, np.float32)

    def step(self, tokens, hidden, memory):
        self.seen = (hidden.copy(), memory)
        return hidden + 1, np.tile(self.scores, (len(tokens), 1)), np.full((len(tokens), 3), self.mark)


def test_ensemble_steps_split_state_and_average_log_probabilities():
    a = _FakeSteps(np.array([2.0, 0.0, -1.0]), units=2, memory_parts=2, mark=10.0)
    b = _FakeSteps(np.array([0.0, 3.0, 0.0]), units=3, memory_parts=1, mark=20.0)
    ensemble = EnsembleSteps([a, b])
    memory, hidden = ensemble.prepare(np.zeros((4, 5, 6)))
    assert len(memory) == 3 and hidden.shape == (4, 5)
    state, scores, attention = ensemble.step(np.zeros(4, np.int64), hidden, memory)
    assert (a.seen[0] == 10.0).all() and a.seen[0].shape == (4, 2) and len(a.seen[1]) == 2
    assert (b.seen[0] == 20.0).all() and b.seen[0].shape == (4, 3) and (b.seen[1][0] == 20.0).all()
    expected = (log_softmax(a.scores[None]) + log_softmax(b.scores[None])) / 2
    assert np.allclose(scores, np.tile(expected, (4, 1)))
    assert state.shape == (4, 5) and (state[:, :2] == 11.0).all() and (state[:, 2:] == 21.0).all()
    assert (attention == 10.0).all()  # the first decoder's attention
    with pytest.raises(ValueError):
        EnsembleSteps([])


def test_an_ensemble_of_a_decoder_with_itself_captions_as_the_decoder(tmp_path):
    pytest.importorskip("tensorflow")
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "a", seed=0, max_length=8)
    other = make_tiny_bundle(tmp_path / "b", seed=5, max_length=8)
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 255, (40, 50, 3), dtype=np.uint8) for _ in range(4)]
    single = [o.words for o in Captioner.from_bundle(bundle, device="cpu", runtime="tf").caption(photos)]
    own = tmp_path / "own.weights.npz"
    shutil.copyfile(bundle / "decoder.weights.npz", own)
    twice = ensemble_captioner(Captioner.from_bundle(bundle, device="cpu", runtime="tf"), [own])
    assert [o.words for o in twice.caption(photos)] == single  # the mean of equal log-probabilities
    mixed = ensemble_captioner(Captioner.from_bundle(bundle, device="cpu", runtime="tf"),
                               [other / "decoder.weights.npz"])
    outcomes = mixed.caption(photos)
    assert len(outcomes) == 4 and all(o.words for o in outcomes)
    assert all(o.attention.shape[0] >= len(o.words) for o in outcomes)  # a map for each word


def test_an_ensemble_needs_the_tensorflow_runtime(tmp_path):
    from model.captioner import Captioner
    from model.testing import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "a")
    captioner = Captioner.from_bundle(bundle, device="cpu")
    if captioner.runtime == "tf":
        pytest.skip("no ONNX graphs or onnxruntime here")
    with pytest.raises(ValueError, match="--runtime tf"):
        ensemble_captioner(captioner, [bundle / "decoder.weights.npz"])


@pytest.mark.parametrize("flag", ["--weights", "--ensemble-weights"])
def test_evaluate_and_sweep_refuse_the_onnx_runtime_for_other_weights_alike(tmp_path, capsys, flag):
    from training import evaluate, sweep_decoding

    source = ["--images", str(tmp_path), "--tokens", str(tmp_path / "t.txt"), flag, str(tmp_path / "w.npz")]
    with pytest.raises(SystemExit) as stopped:
        evaluate.main(source + ["--runtime", "onnx"])
    said_by_evaluate = capsys.readouterr().err
    variants = tmp_path / "sweep.json"
    variants.write_text('{"shipped": {}}')
    assert sweep_decoding.main(source + ["--runtime", "onnx", "--variants", str(variants)]) == 2
    said_by_sweep = capsys.readouterr().err
    assert stopped.value.code == 2
    assert f"{flag} decodes with the TensorFlow runtime" in said_by_evaluate
    assert f"{flag} decodes with the TensorFlow runtime" in said_by_sweep


def test_evaluate_takes_an_ensemble_on_the_default_runtime(tmp_path, capsys):
    # "auto" decodes other weights with TensorFlow (run_weights.captioner_to_score), in evaluate as in
    # sweep_decoding: it once refused here alone, asking for --runtime tf. The run goes on to the data.
    from training.evaluate import main

    code = main(["--images", str(tmp_path / "missing"), "--tokens", str(tmp_path / "t.txt"),
                 "--ensemble-weights", str(tmp_path / "w.npz")])
    err = capsys.readouterr().err
    assert code == 1 and "--runtime" not in err and "t.txt" in err  # the missing data, not the runtime


def test_sweep_decoding_sweeps_an_ensemble(tmp_path, captioned_folder):
    pytest.importorskip("tensorflow")
    import json

    from model.testing import make_tiny_bundle
    from training import sweep_decoding

    images, tokens = captioned_folder
    bundle = make_tiny_bundle(tmp_path / "a", seed=0, max_length=8)
    other = make_tiny_bundle(tmp_path / "b", seed=5, max_length=8)
    variants = tmp_path / "sweep.json"
    variants.write_text(json.dumps({"as shipped": {}, "longer": {"length_penalty": 1.0}}))

    def swept(*extra):
        out = tmp_path / "report.json"
        assert sweep_decoding.main(["--bundle", str(bundle), "--variants", str(variants), "--images", str(images),
                                    "--tokens", str(tokens), "--runtime", "tf", "--json", str(out), *extra]) == 0
        return {name: [c["caption"] for c in report["captions"]]
                for name, report in json.loads(out.read_text(encoding="utf-8")).items()}

    alone = swept()
    assert swept("--ensemble-weights", str(bundle / "decoder.weights.npz")) == alone  # with itself: the same
    mixed = swept("--ensemble-weights", str(other / "decoder.weights.npz"))
    assert set(mixed) == {"as shipped", "longer"} and all(all(c) for c in mixed.values())
    assert sweep_decoding.main(["--bundle", str(bundle), "--variants", str(variants), "--images", str(images),
                                "--tokens", str(tokens), "--runtime", "onnx", "--ensemble-weights",
                                str(other / "decoder.weights.npz")]) == 2
