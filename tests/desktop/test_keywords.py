"""Keywords from the engine's tags: into dc:subject (merged), the CSV and back, --json, --no-keywords."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from imgcap_desktop.session import CaptionSession
from imgcap_desktop.metadata.csvio import read_csv
from imgcap_desktop.metadata.sidecar import StoredCaption, read_caption, sidecar_path, write_caption
from model.results import CaptionResult, Tag
from tests.desktop.conftest_metadata import exiftool, exiftool_tags, make_photo, needs_exiftool, write_hand_made_csv
from tests.desktop.xmp_corpus import subject_of

THRESHOLD = 0.3


def tagged(photo: Path, text: str, tags: dict[str, float]) -> CaptionResult:
    """A result with tags and keywords, as the engine gives them."""
    words = tuple(text.split())
    tag_list = tuple(Tag(w, p, (i,)) for i, (w, p) in enumerate(sorted(tags.items(), key=lambda kv: -kv[1])))
    keywords = tuple(t.word for t in tag_list if t.probability >= THRESHOLD)
    return CaptionResult(str(photo), words, tuple(range(len(words))), -0.5, np.zeros((len(words), 2, 2), np.float32),
                         (), tag_list, keywords)


class TaggingCaptioner:
    """The CLI's engine for these tests: a fixed caption and tags per photo name."""

    name = "fake-tagger"
    device = "CPU"
    provider = "CPUExecutionProvider"
    runtime = "onnx"

    def __init__(self, tags: dict[str, dict[str, float]]):
        self.tags = tags

    def caption_batches(self, images, beam_size=3, batch_size=8):
        yield [tagged(p, "a cat on a sofa", self.tags.get(Path(p).name, {})) for p in images]


@pytest.fixture
def engine(monkeypatch):
    from model.captioner import Captioner

    captioner = TaggingCaptioner({"a.jpg": {"cat": 0.8, "sofa": 0.4, "lamp": 0.1}, "b.jpg": {"dog": 0.9}})
    monkeypatch.setattr(Captioner, "from_bundle",
                        classmethod(lambda cls, path=None, device="auto", **options: captioner))
    return captioner


def store(outcomes, keywords: bool = True):
    """Store outcomes through a caption session that writes sidecars."""
    photos = [Path(o.source) for o in outcomes]
    session = CaptionSession()
    session.open(photos)
    session.read_stored(check_photos=False)
    plan = session.plan(None, "replace_automatic", keywords=keywords)
    return session.apply_outcomes(plan, outcomes, model_name="m")


def test_keywords_are_stored_only_when_asked(tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    store([tagged(a, "a cat", {"cat": 0.8, "lamp": 0.1})])
    store([tagged(b, "a cat", {"cat": 0.8})], keywords=False)

    assert read_caption(a).keywords == ("cat",)
    assert read_caption(b).keywords is None
    assert "dc:subject" not in sidecar_path(b).read_text(encoding="utf-8")


def test_a_model_without_a_classifier_leaves_keywords_alone(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("old", "automatic", "m", -1.0, None, ("cat",)))
    store([dataclasses.replace(tagged(a, "a dog", {}), tagged=False)])
    assert read_caption(a).keywords == ("cat",)


def test_a_tagging_models_result_without_tags_takes_its_old_keywords_out(tmp_path):
    """Captioned again, a photo in which the model now sees nothing to tag kept the keywords of the
    run before ("cat" under "a dog on a lawn"): no tags was taken for a model that cannot tag."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("old", "automatic", "m", -1.0, None, ("cat",)))
    store([dataclasses.replace(tagged(a, "a dog on a lawn", {}), tagged=True)])
    assert read_caption(a) == StoredCaption("a dog on a lawn", "automatic", "m", -0.5, read_caption(a).captioned_at, ())
    assert subject_of(sidecar_path(a).read_bytes()) == []


def test_json_has_tags_with_probabilities_and_keywords(tmp_path, engine, capsys):
    from imgcap_desktop.cli import main

    a = make_photo(tmp_path / "a.jpg")
    assert main(["caption", str(a), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tags"] == [{"word": "cat", "probability": 0.8}, {"word": "sofa", "probability": 0.4},
                              {"word": "lamp", "probability": 0.1}]  # fmt: skip
    assert record["keywords"] == ["cat", "sofa"]


def test_cli_keywords_csv_round_trip_and_person_edits(tmp_path, engine, capsys):
    from imgcap_desktop.cli import main

    folder = tmp_path / "photos"
    a, b = make_photo(folder / "a.jpg"), make_photo(folder / "b.jpg")
    csv_file = folder / "captions.csv"
    write_caption(b, StoredCaption("", "human"))  # b's sidecar exists, empty
    assert main(["caption", str(folder), "--write-sidecars", "--csv", str(csv_file)]) == 0
    assert read_caption(a).keywords == ("cat", "sofa")
    rows = {row.relative_path: row for _, row in read_csv(csv_file)}
    assert rows["a.jpg"].keywords == ("cat", "sofa") and rows["b.jpg"].keywords == ("dog",)

    # In the spreadsheet: "sofa" taken out, "tabby" added; b's row untouched.
    rows["a.jpg"] = dataclasses.replace(rows["a.jpg"], keywords=("cat", "tabby"))
    write_hand_made_csv(csv_file, list(rows.values()))
    capsys.readouterr()
    assert main(["import-csv", str(csv_file)]) == 0
    assert "1 caption applied, 1 unchanged" in capsys.readouterr().out
    stored = read_caption(a)
    # Only the keywords were edited: the caption stays the model's (it used to become a person's).
    assert (stored.keywords, stored.source, stored.text) == (("cat", "tabby"), "automatic", "a cat on a sofa")
    assert stored.model == "fake-tagger" and stored.score is not None
    assert read_caption(b).keywords == ("dog",)

    # A person's removal sticks: even --overwrite-human does not bring "sofa" back; and the keyword
    # they added stays theirs (the model does not give "tabby").
    assert main(["caption", str(a), "--write-sidecars", "--overwrite-human"]) == 0
    assert read_caption(a).keywords == ("cat", "tabby")
    assert subject_of(sidecar_path(a).read_bytes()) == ["cat", "tabby"]


def test_no_keywords_flag(tmp_path, engine):
    from imgcap_desktop.cli import main

    a = make_photo(tmp_path / "a.jpg")
    csv_file = tmp_path / "c.csv"
    assert main(["caption", str(a), "--write-sidecars", "--no-keywords", "--csv", str(csv_file)]) == 0
    assert read_caption(a).keywords is None
    assert [row.keywords for _, row in read_csv(csv_file)] == [()]


def test_csv_without_a_keywords_column_leaves_keywords_alone(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("old", "automatic", "m", -1.0, None, ("cat",)))
    (tmp_path / "c.csv").write_text("relative path,caption\r\na.jpg,new words\r\n", encoding="utf-8")
    from imgcap_desktop.metadata.csvio import import_csv

    report = import_csv(tmp_path / "c.csv")
    assert report.applied == [a]
    assert (read_caption(a).text, read_caption(a).keywords) == ("new words", ("cat",))


@needs_exiftool
def test_cli_keywords_merge_with_exiftool_keywords_and_rerun_replaces_ours(tmp_path, engine, monkeypatch):
    from imgcap_desktop.cli import main

    a = make_photo(tmp_path / "a.jpg")
    exiftool("-q", "-o", sidecar_path(a), "-XMP-dc:Subject=holiday", "-XMP-dc:Subject=cat", "-XMP-dc:Subject=2021", a)
    assert main(["caption", str(a), "--write-sidecars"]) == 0
    assert exiftool_tags(sidecar_path(a))["XMP-dc:Subject"] == ["holiday", "cat", 2021, "sofa"]

    engine.tags["a.jpg"] = {"dog": 0.7, "grass": 0.5}
    assert main(["caption", str(a), "--write-sidecars"]) == 0
    assert exiftool_tags(sidecar_path(a))["XMP-dc:Subject"] == ["holiday", "cat", 2021, "dog", "grass"]
    assert read_caption(a).keywords == ("dog", "grass")


def test_csv_shows_the_keywords_stored_so_an_unedited_csv_imports_as_unchanged(tmp_path, engine, capsys):
    from imgcap_desktop.cli import main

    a = make_photo(tmp_path / "a.jpg")
    sidecar_path(a).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
        "<rdf:li>cat</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>",
        encoding="utf-8",
    )  # "cat" is another tool's keyword
    csv_file = tmp_path / "c.csv"
    assert main(["caption", str(a), "--write-sidecars", "--csv", str(csv_file)]) == 0
    assert [row.keywords for _, row in read_csv(csv_file)] == [("sofa",)]
    capsys.readouterr()
    assert main(["import-csv", str(csv_file)]) == 0
    assert "0 captions applied, 1 unchanged" in capsys.readouterr().out
    assert read_caption(a).source == "automatic"


def test_a_keyword_removed_from_a_held_caption_stays_removed_through_a_new_run(tmp_path):
    """Held for review: a removed keyword came back with the next run's result (and, accepted, in
    the sidecar); in auto-write mode it was already rejected."""
    a = make_photo(tmp_path / "a.jpg")
    session = CaptionSession(auto_write=False)
    session.open([a])
    session.read_stored(check_photos=False)

    def run():
        plan = session.plan(None, "replace_automatic", keywords=True)
        session.apply_outcomes(plan, [tagged(a, "a cat on a sofa", {"cat": 0.8, "sofa": 0.4})], model_name="m")

    run()
    assert session.photo(a).keywords == ("cat", "sofa")
    session.set_keywords(a, ("sofa",))
    run()
    assert session.photo(a).keywords == ("sofa",) and session.photo(a).held
    assert session.accept_held() == (1, [])
    assert read_caption(a).keywords == ("sofa",)
    session.auto_write = True
    run()  # written now: "cat" was recorded as rejected
    assert read_caption(a).keywords == ("sofa",)


@pytest.mark.parametrize("auto_write", [True, False])
def test_the_models_keywords_stay_the_models_through_a_persons_edits(tmp_path, auto_write):
    """Only a keyword a person adds (a CSV cell) is theirs: one put back by Undo, or kept under a
    caption typed while the model's was held, was recorded as a person's, never dropped again."""
    from imgcap_desktop.metadata import xmp_edit
    from imgcap_desktop.metadata.sidecar import _rdf

    a = make_photo(tmp_path / "a.jpg")
    session = CaptionSession(auto_write=auto_write)
    session.open([a])
    session.read_stored(check_photos=False)
    plan = session.plan(None, "replace_automatic", keywords=True)
    session.apply_outcomes(plan, [tagged(a, "a cup of coffee", {"coffee": 0.8, "cup": 0.6})], model_name="m")
    session.edit(a, "my espresso")
    session.set_keywords(a, ("cup",))
    session.set_keywords(a, ("cup", "coffee"))  # Undo
    session.accept_held()
    rdf = _rdf(sidecar_path(a).read_bytes(), sidecar_path(a))
    assert read_caption(a).keywords == ("cup", "coffee") or read_caption(a).keywords == ("coffee", "cup")
    assert xmp_edit.imgcap_value(rdf, "personKeywords") is None


def test_a_held_caption_shows_the_keywords_accept_will_write(tmp_path):
    """Held for review, a caption showed the model's keywords as they came (a keyword a person had
    rejected, and not one they had added), while Accept wrote the merge with the sidecar's."""
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, StoredCaption("a cat", "automatic", "m", -1.0, None, ("cat", "sofa")))
    write_caption(a, StoredCaption("a cat", "automatic", "m", -1.0, None, ("sofa", "whiskers")),
                  keywords_by_person=True, added_by_person=["whiskers"])  # "cat" rejected, "whiskers" theirs
    session = CaptionSession(auto_write=False)
    session.open([a])
    session.read_stored(check_photos=False)
    plan = session.plan(None, "replace_automatic", keywords=True)
    session.apply_outcomes(plan, [tagged(a, "a cat on a sofa", {"cat": 0.8, "sofa": 0.4})], model_name="m")
    shown = session.photo(a).keywords
    session.accept_held()
    assert shown == read_caption(a).keywords == ("sofa", "whiskers")
