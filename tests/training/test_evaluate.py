"""Tests for training.evaluate: the scoring report and the ``python -m training.evaluate`` CLI."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from model.results import CaptionFailure, CaptionResult, Tag
from training import evaluate
from training.data import load_dataset
from training.concepts import CONCEPT_METRIC_NAMES
from training.metrics import METRIC_NAMES


class FakeCaptioner:
    """Stands in for model.captioner.Captioner (no TensorFlow): one fixed caption, chosen photos fail."""

    name = "fake-model"
    loaded: list[tuple] = []
    failing: set[str] = set()

    @classmethod
    def from_bundle(cls, path=None, *, device="auto", runtime="auto"):
        cls.loaded.append((path, device))
        return cls()

    def caption_batches(self, images, beam_size=3, batch_size=8):
        images = list(images)
        for start in range(0, len(images), batch_size):
            yield [self._one(Path(path)) for path in images[start : start + batch_size]]

    def caption(self, images, beam_size=3, batch_size=8):
        return [outcome for batch in self.caption_batches(images, beam_size, batch_size) for outcome in batch]

    def _one(self, path):
        if path.name in self.failing:
            return CaptionFailure(str(path), "not an image")
        words = ("a", "black", "dog", "runs", "on", "the", "grass")
        return CaptionResult(str(path), words, tuple(range(4, 11)), -0.5, np.zeros((7, 1, 1), np.float32))


@pytest.fixture
def fake_captioner(monkeypatch):
    module = types.ModuleType("model.captioner")
    module.Captioner = FakeCaptioner
    monkeypatch.setitem(sys.modules, "model.captioner", module)
    monkeypatch.setattr(FakeCaptioner, "loaded", [])
    monkeypatch.setattr(FakeCaptioner, "failing", set())
    return FakeCaptioner


def test_cli_scores_a_split_prints_a_table_and_writes_json(tiny_flickr, fake_captioner, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = evaluate.main(["--bundle", str(tmp_path / "bundle"), "--data", str(tiny_flickr.root), "--split", "dev",
                        "--beam", "2", "--batch-size", "2", "--json", str(out), "--no-java"])
    assert rc == 0
    assert fake_captioner.loaded == [(tmp_path / "bundle", "auto")]
    printed = capsys.readouterr().out
    assert "3 images from dev split" in printed and "beam 2" in printed and "model fake-model" in printed
    for name in METRIC_NAMES + CONCEPT_METRIC_NAMES:
        assert name in printed
    assert "n/a" in printed  # METEOR, skipped with --no-java; keyword-P: the results carry no keywords

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n_images"] == 3 and report["n_failed"] == 0 and report["n_skipped"] == 0
    assert report["beam"] == 2 and report["batch_size"] == 2 and report["model"] == "fake-model"
    assert set(report["metrics"]) == set(METRIC_NAMES + CONCEPT_METRIC_NAMES)
    assert report["metrics"]["METEOR"] is None and report["metrics"]["keyword-P"] is None
    assert 0 <= report["metrics"]["concept-F1"] <= 1 and 0 <= report["metrics"]["hallucination"] <= 1
    assert report["concepts"]["n_named"] > 0
    assert all(entry["concepts"] == ["dog", "grass"] for entry in report["captions"])
    assert 0 < report["metrics"]["BLEU-1"] <= 1
    assert [entry["image"] for entry in report["captions"]] == tiny_flickr.dev
    assert all(entry["caption"] == "a black dog runs on the grass" for entry in report["captions"])
    assert report["captions"][0]["references"] == tiny_flickr.captions[tiny_flickr.dev[0]]


def test_cli_scores_any_folder_with_a_token_file(tiny_flickr, fake_captioner, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = evaluate.main(["--images", str(tiny_flickr.images_dir), "--tokens", str(tiny_flickr.token_file),
                        "--limit", "4", "--json", str(out), "--no-java"])
    assert rc == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n_images"] == 4
    assert report["n_skipped"] == 1  # the caption id without a photo
    assert [entry["image"] for entry in report["captions"]] == tiny_flickr.images[:4]
    assert fake_captioner.loaded == [(None, "auto")]  # no --bundle: the shipped model


def test_photos_that_fail_are_left_out_of_the_metrics(tiny_flickr, fake_captioner):
    fake_captioner.failing = {tiny_flickr.dev[1]}
    items, _ = load_dataset(tiny_flickr.root, "dev")
    report = evaluate.evaluate_bundle(None, items, beam=1, batch_size=8, use_java=False)
    assert report["n_images"] == 2 and report["n_failed"] == 1
    failed = report["captions"][1]
    assert failed["caption"] is None and failed["error"] == "not an image"
    assert "could not be captioned" in evaluate.format_table(report)


def test_score_outcomes_when_every_photo_fails(tiny_flickr):
    items, _ = load_dataset(tiny_flickr.root, "dev")
    report = evaluate.score_outcomes(items, [CaptionFailure(str(p), "broken") for p, _ in items], use_java=False)
    assert report["n_images"] == 0 and all(value is None for value in report["metrics"].values())
    with pytest.raises(ValueError):
        evaluate.score_outcomes(items, [], use_java=False)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--data", "d", "--images", "i", "--tokens", "t"],
        ["--images", "i"],
        ["--data", "d", "--tokens", "t"],
        ["--data", "d", "--beam", "0"],
        ["--data", "d", "--split", "val"],
        ["--data", "d", "--decoding", "[1]"],
        ["--data", "d", "--decoding", "not json"],
    ],
)
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv)
    assert exit_info.value.code == 2


def test_cli_reports_a_missing_split_list(tiny_flickr, fake_captioner, capsys):
    assert evaluate.main(["--data", str(tiny_flickr.root), "--split", "test", "--no-java"]) == 1
    assert "Flickr_8k.testImages.txt" in capsys.readouterr().err
    assert fake_captioner.loaded == []


def test_cli_reports_a_bundle_it_cannot_use_and_a_json_folder_that_is_missing(tiny_flickr, tmp_path, capsys):
    """Both used to end in a traceback, the second after every photo was captioned."""
    rc = evaluate.main(["--bundle", str(tmp_path / "nothing"), "--data", str(tiny_flickr.root), "--no-java"])
    assert rc == 1 and capsys.readouterr().err.startswith("error: model bundle not found: ")
    rc = evaluate.main(["--data", str(tiny_flickr.root), "--no-java", "--json", str(tmp_path / "no" / "r.json")])
    missing = tmp_path / "no"
    assert rc == 1 and capsys.readouterr().err == f"error: --json: {missing / 'r.json'}: {missing} is not a folder\n"
    with pytest.raises(SystemExit):  # no object: it failed in .items() after the model was loaded
        evaluate.main(["--data", str(tiny_flickr.root), "--no-java", "--decoding", "[1]"])
    assert "a JSON object is expected" in capsys.readouterr().err
    # A folder given as the report crashed after the captioning and scoring.
    (tmp_path / "a-folder").mkdir()
    rc = evaluate.main(["--data", str(tiny_flickr.root), "--no-java", "--json", str(tmp_path / "a-folder")])
    assert rc == 1 and capsys.readouterr().err == f"error: --json: {tmp_path / 'a-folder'}: is a folder\n"


def test_cli_end_to_end_with_a_tiny_random_bundle(tiny_flickr, tmp_path, capsys):
    testing = pytest.importorskip("model.testing", reason="model.testing (make_tiny_bundle) not available yet")
    bundle = testing.make_tiny_bundle(tmp_path / "bundle")
    out = tmp_path / "report.json"
    rc = evaluate.main(["--bundle", str(bundle), "--data", str(tiny_flickr.root), "--split", "train",
                        "--beam", "3", "--batch-size", "2", "--device", "cpu", "--json", str(out), "--no-java"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "5 images from train split" in printed and "(1 skipped: no photo" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n_images"] == 5 and report["n_failed"] == 0 and report["beam"] == 3
    vocabulary = set(testing.TINY_WORDS) | {"<unk>"}
    for entry in report["captions"]:
        assert isinstance(entry["caption"], str)
        assert set(entry["caption"].split()) <= vocabulary
    for name in METRIC_NAMES:
        assert name == "METEOR" or isinstance(report["metrics"][name], float)


def test_cli_scores_changed_decoding_settings_as_a_sweep_does(tiny_flickr, tmp_path):
    testing = pytest.importorskip("model.testing", reason="model.testing (make_tiny_bundle) not available yet")
    from training import sweep_decoding

    bundle = testing.make_tiny_bundle(tmp_path / "bundle", max_length=8)
    change = {"max_length": 2, "length_penalty": 1.2}
    source = ["--bundle", str(bundle), "--data", str(tiny_flickr.root), "--split", "train"]
    out = tmp_path / "report.json"
    assert evaluate.main([*source, "--decoding", json.dumps(change), "--device", "cpu", "--runtime", "tf",
                          "--no-java", "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["decoding_changes"] == change
    captions = [entry["caption"] for entry in report["captions"]]
    assert all(len(caption.split()) <= 2 for caption in captions)

    variants, swept = tmp_path / "sweep.json", tmp_path / "sweep-report.json"
    variants.write_text(json.dumps({"as shipped": {}, "changed": change}), encoding="utf-8")
    assert sweep_decoding.main([*source, "--variants", str(variants), "--runtime", "tf", "--json", str(swept)]) == 0
    reports = json.loads(swept.read_text(encoding="utf-8"))
    assert [entry["caption"] for entry in reports["changed"]["captions"]] == captions
    assert [entry["caption"] for entry in reports["as shipped"]["captions"]] != captions


def _result(source: str, text: str, keywords: tuple[str, ...]) -> CaptionResult:
    words = tuple(text.split())
    tags = tuple(Tag(word, 0.5, (i,)) for i, word in enumerate(keywords))
    return CaptionResult(source, words, tuple(range(4, 4 + len(words))), -0.5,
                         np.zeros((len(words), 1, 1), np.float32), tags=tags, keywords=keywords)


def test_concept_metrics_and_keyword_precision_from_results(tmp_path):
    items = [
        (tmp_path / "cat.jpg", ["A cat on a sofa.", "A kitten lies on a couch.", "A cat on the couch."]),
        (tmp_path / "bus.jpg", ["A school bus on a street.", "A yellow bus.", "A bus parked by the road."]),
    ]
    outcomes = [
        _result("cat.jpg", "a dog sitting on a couch", ("cat", "couch")),
        _result("bus.jpg", "a yellow bus on the street", ("bus", "pizza")),
    ]
    report = evaluate.score_outcomes(items, outcomes, use_java=False)
    metrics = report["metrics"]
    # named: {dog, couch}, {bus, street}; present: {cat, couch}, {bus, street}.
    assert metrics["concept-P"] == pytest.approx(3 / 4) and metrics["concept-R"] == pytest.approx(3 / 4)
    assert metrics["hallucination"] == pytest.approx(1 / 2)  # the dog
    assert metrics["keyword-P"] == pytest.approx(3 / 4)  # pizza is in no reference
    assert report["captions"][0]["hallucinated"] == ["dog"]
    assert report["captions"][1]["keywords"] == ["bus", "pizza"]
    assert report["captions"][1]["tags"] == [["bus", 0.5], ["pizza", 0.5]]
    table = evaluate.format_table({**report, "beam": 3, "model": "m"})
    assert "concept-F1    0.7500" in table and "keyword-P     0.7500" in table
