"""The Captioner facade: failures in place, input order, batches, arrays, and the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.resources import resource_path
from model.results import CaptionFailure, CaptionResult


@pytest.fixture
def photo_folder(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(5):
        path = tmp_path / f"photo{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (48 + 4 * i, 64, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_corrupt_and_missing_photos_fail_in_place(tiny_captioner, photo_folder, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo_folder[0].read_bytes()[:200])
    missing = tmp_path / "missing.jpg"
    inputs = [photo_folder[0], corrupt, photo_folder[1], missing, photo_folder[2]]

    outcomes = tiny_captioner.caption(inputs, beam_size=2, batch_size=2)

    assert [o.source for o in outcomes] == [str(p) for p in inputs]
    assert [o.ok for o in outcomes] == [True, False, True, False, True]
    assert isinstance(outcomes[1], CaptionFailure) and "corrupt" in outcomes[1].reason
    assert isinstance(outcomes[3], CaptionFailure) and "not found" in outcomes[3].reason
    for outcome in (outcomes[0], outcomes[2], outcomes[4]):
        assert isinstance(outcome, CaptionResult) and outcome.words
    # The good photos get the captions they get when captioned without the bad ones.
    alone = tiny_captioner.caption([photo_folder[0], photo_folder[1], photo_folder[2]], beam_size=2, batch_size=2)
    assert [o.words for o in alone] == [outcomes[0].words, outcomes[2].words, outcomes[4].words]


def test_a_batch_of_only_failures(tiny_captioner, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    outcomes = tiny_captioner.caption([empty, tmp_path / "gone.png"], batch_size=4)
    assert [type(o) for o in outcomes] == [CaptionFailure, CaptionFailure]


def test_caption_batches_yields_one_list_per_batch(tiny_captioner, photo_folder):
    batches = list(tiny_captioner.caption_batches(photo_folder, beam_size=1, batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [o.source for b in batches for o in b] == [str(p) for p in photo_folder]
    flat = tiny_captioner.caption(photo_folder, beam_size=1, batch_size=2)
    assert [o.words for b in batches for o in b] == [o.words for o in flat]


def test_caption_batches_can_stop_early(tiny_captioner, photo_folder):
    batches = tiny_captioner.caption_batches(photo_folder, beam_size=1, batch_size=1)
    first = next(batches)
    batches.close()  # a caller cancelling between batches
    assert len(first) == 1 and first[0].source == str(photo_folder[0])


def test_no_photos_and_bad_batch_size(tiny_captioner):
    assert tiny_captioner.caption([]) == []
    with pytest.raises(ValueError):
        tiny_captioner.caption([np.zeros((8, 8, 3), np.uint8)], batch_size=0)


def test_batch_size_does_not_change_captions(tiny_captioner, photo_folder):
    one = tiny_captioner.caption(photo_folder, beam_size=3, batch_size=1)
    many = tiny_captioner.caption(photo_folder, beam_size=3, batch_size=5)
    assert [o.words for o in one] == [o.words for o in many]
    np.testing.assert_allclose([o.score for o in one], [o.score for o in many], rtol=1e-5)


def test_arrays_as_input(tiny_captioner, photo_folder):
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in photo_folder[:2]]
    mixed = [arrays[0], str(photo_folder[1]), arrays[1], np.zeros((10, 10, 7), np.uint8)]
    outcomes = tiny_captioner.caption(mixed, beam_size=1, batch_size=3)
    assert [o.source for o in outcomes] == ["<array 0>", str(photo_folder[1]), "<array 2>", "<array 3>"]
    assert [o.ok for o in outcomes] == [True, True, True, False]
    from_file = tiny_captioner.caption([photo_folder[0]], beam_size=1)[0]
    assert outcomes[0].words == from_file.words  # a lossless decode of the same pixels
    gray = tiny_captioner.caption([np.full((30, 30), 128, np.uint8)], beam_size=1)[0]
    assert gray.ok


def test_each_result_names_the_file_it_was_made_of(tiny_captioner, photo_folder):
    """What lets the app refuse to store a caption for another file saved under the photo's name since."""
    from model.images import file_identity

    outcomes = tiny_captioner.caption(photo_folder[:3], beam_size=2, batch_size=2)
    assert [o.identity for o in outcomes] == [file_identity(p) for p in photo_folder[:3]]
    assert all(o.identity is not None for o in outcomes)
    [from_array] = tiny_captioner.caption([np.zeros((32, 32, 3), np.uint8)], beam_size=2)
    assert from_array.identity is None


def test_captioner_attributes(tiny_captioner):
    assert tiny_captioner.name == "tiny-test"
    assert tiny_captioner.runtime == "onnx" and tiny_captioner.provider == "CPUExecutionProvider"
    assert tiny_captioner.device == "CPU (ONNX Runtime)"
    assert tiny_captioner.grid == (4, 4)


@pytest.mark.slow
def test_the_shipped_model_captions_the_sample_photos():
    from model.captioner import Captioner

    samples = sorted(Path(resource_path("samples")).glob("*.jpg"))
    assert len(samples) >= 4
    captioner = Captioner.from_bundle(device="cpu")
    assert captioner.grid == (9, 9)
    outcomes = captioner.caption(samples, beam_size=3, batch_size=8)
    assert [o.source for o in outcomes] == [str(p) for p in samples]
    vocab = captioner.bundle.vocab
    for outcome in outcomes:
        assert outcome.ok, outcome
        assert outcome.words, f"{outcome.source}: empty caption"
        assert not {"<pad>", "<start>", "<end>", "<unk>"} & set(outcome.words)
        assert [vocab.word_of(t) for t in outcome.token_ids] == list(outcome.words)
        assert outcome.attention.shape == (len(outcome.words), 9, 9)
        assert outcome.attention.dtype == np.float32
        np.testing.assert_allclose(outcome.attention.sum(axis=(1, 2)), 1.0, atol=1e-4)
        assert len(outcome.alternatives) == 3
        scores = [a.score for a in outcome.alternatives]
        assert scores == sorted(scores, reverse=True) and outcome.score == scores[0] <= 0
    # Captions differ between photos (a broken encoder tends to give every photo the same words).
    assert len({o.text for o in outcomes}) > 1


def test_attention_of_a_given_caption_is_what_the_search_saw_for_its_own(tiny_captioner, photo_folder, tmp_path):
    """The model shown a caption's words (``attend``): fed its own greedy caption, it gives the
    search's maps exactly; fed any text, one map a word, in the text's own spelling."""
    searched = tiny_captioner.caption(photo_folder[:3], beam_size=1)
    attended = tiny_captioner.attend(photo_folder[:3], [o.text for o in searched], batch_size=2)
    for own, shown in zip(searched, attended):
        assert shown.words == own.words and shown.token_ids == own.token_ids
        np.testing.assert_allclose(shown.attention, own.attention, atol=1e-5)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    typed, failed = tiny_captioner.attend([photo_folder[0], broken], ["Hello, ZEBRA-land!  again", "a b"])
    assert typed.words == ("Hello,", "ZEBRA-land!", "again") and typed.text == "Hello, ZEBRA-land! again"
    assert typed.token_ids[2] == tiny_captioner.bundle.vocab.unk_id  # not a word it knows
    assert typed.attention.shape == (3, *tiny_captioner.grid) and typed.score < 0
    np.testing.assert_allclose(typed.attention.sum(axis=(1, 2)), 1.0, atol=1e-4)
    assert isinstance(failed, CaptionFailure) and not failed.ok
    with pytest.raises(ValueError, match="2 photos but 1 captions"):
        tiny_captioner.attend(photo_folder[:2], ["one"])
