"""training.concepts: concept matching, the 2-of-N rule, P/R/F1, hallucination, keyword precision."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.concepts import (
    CONCEPT_METRIC_NAMES,
    CONCEPTS,
    Concept,
    ConceptMatcher,
    ReferenceConcepts,
    concept_scores,
    default_matcher,
    keyword_hits,
    photo_concepts,
    tokenize,
)


def named(text: str) -> set[str]:
    return set(default_matcher().concepts_in(text))


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("A man's hot-dog, and CATS!") == ["a", "man", "hot", "dog", "and", "cats"]
    assert tokenize("  ...  ") == []


def test_the_vocabulary_has_coco_s_80_categories_and_scene_words():
    objects = [c for c in CONCEPTS if not c.scene]
    scenes = {c.name for c in CONCEPTS if c.scene}
    assert len(objects) == 80
    assert {"person", "hot dog", "teddy bear", "dining table", "cell phone", "hair drier"} <= {c.name for c in objects}
    assert {"kitchen", "street", "beach", "room", "field", "snow", "water"} <= scenes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A MAN and two women.", {"person"}),
        ("Kids playing with a puppy", {"person", "dog"}),
        ("three dogs and some kittens", {"dog", "cat"}),
        ("a group of people", {"person"}),
        ("Buses parked on the street", {"bus", "street"}),
        ("knives and forks", {"knife", "fork"}),
        ("a couch and a sofa", {"couch"}),
        ("an airplane, a plane and jets", {"airplane"}),
        ("a bike", {"bicycle"}),
        ("a sheep and two lambs", {"sheep"}),
    ],
)
def test_synonyms_and_plurals(text, expected):
    assert named(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A man eating a hot dog.", {"person", "hot dog"}),  # no dog
        ("two hot-dogs on a plate", {"hot dog"}),
        ("a teddy bear on a bed", {"teddy bear", "bed"}),  # no bear
        ("a polar bear swimming in the water", {"bear", "water"}),
        ("she talks on a cell phone", {"cell phone"}),
        ("a traffic light over the road", {"traffic light", "street"}),
        ("a red fire hydrant", {"fire hydrant"}),
        ("a stop sign", {"stop sign"}),
        ("a boy swings a baseball bat", {"person", "baseball bat"}),
        ("a tennis racket", {"tennis racket"}),
        ("a wooden dining table", {"dining table"}),
        ("a living room", {"room"}),
        ("a microwave oven", {"microwave"}),  # not an oven too
        ("passenger jets at the airport", {"airplane", "airport"}),  # no person
        ("a water bottle", {"bottle"}),  # no water
    ],
)
def test_phrases_match_as_phrases_and_do_not_double_count(text, expected):
    assert named(text) == expected


def test_ambiguous_words_are_not_concepts():
    assert named("an orange cat") == {"cat"}  # the colour, not the fruit
    assert named("a bowl of oranges") == {"bowl", "orange"}
    assert named("a couple of dogs") == {"dog"}  # no person
    assert named("a glass door") == set()


def test_mentions_keep_reading_order_and_matched_phrase():
    assert default_matcher().mentions("A dog chases a hot dog") == [("dog", "dog"), ("hot dog", "hot dog")]


def test_a_phrase_given_to_two_concepts_is_refused():
    with pytest.raises(ValueError, match="names both"):
        ConceptMatcher([Concept("a", ("dog",)), Concept("b", ("dogs", "dog"))])


REFS = [
    "A cat sits on a couch next to a remote.",
    "A kitten is lying on the sofa.",
    "A small cat resting on a couch near a laptop.",
    "The cat is on the couch.",
    "Gray cat on a couch by a window.",
]


def test_a_concept_is_present_when_two_references_name_it():
    photo = photo_concepts("a dog on a couch", REFS)
    assert photo.present == {"cat", "couch"}  # remote and laptop: one reference each
    assert photo.mentioned == {"cat", "couch", "remote", "laptop"}
    assert photo.named == {"dog", "couch"}
    assert photo.hallucinated == {"dog"}
    assert photo_concepts("x", REFS, min_references=1).present == photo.mentioned


def test_precision_recall_f1_are_micro_over_photos():
    references = [REFS, ["a man on a horse"] * 2 + ["a person riding a horse in a field"] * 3]
    captions = ["a cat on a couch with a remote", "a dog runs in the water"]
    scores = concept_scores(references, captions)
    # photo 1: named {cat, couch, remote}, present {cat, couch}: 2 correct.
    # photo 2: named {dog, water}, present {person, horse, field}: 0 correct.
    assert scores["n_named"] == 5 and scores["n_present"] == 5 and scores["n_correct"] == 2
    assert scores["concept-P"] == pytest.approx(2 / 5)
    assert scores["concept-R"] == pytest.approx(2 / 5)
    assert scores["concept-F1"] == pytest.approx(2 / 5)
    # Only photo 2 names something no reference names (remote is in one reference: not a hallucination).
    assert scores["hallucination"] == pytest.approx(1 / 2)
    assert scores["n_hallucinating_captions"] == 1
    assert scores["hallucinated_concepts"] == pytest.approx(2 / 5)
    assert scores["keyword-P"] is None and scores["n_keywords"] == 0
    assert [p.named for p in scores["per_photo"]] == [{"cat", "couch", "remote"}, {"dog", "water"}]


def test_reference_concepts_count_hallucinations_and_recall_as_concept_scores_do():
    horse = ["a man on a horse"] * 2 + ["a person riding a horse in a field"] * 3
    concepts = ReferenceConcepts([REFS, horse, ["a blue sky", "the sky at dusk"]])
    captions = ["a cat on a couch with a remote", "a dog runs in the water", "a man on a horse",
                "a dog on a couch", "a bird in the sky"]
    photos = [0, 1, 1, 0, 2]
    hallucinated, recall = concepts.score(photos, captions)
    assert hallucinated.tolist() == [0, 2, 0, 1, 1]  # remote: one reference names it; dog, water; -; dog; bird
    # present: {cat, couch}, {person, horse, field}, {sky}
    assert recall.tolist() == [1.0, 0.0, pytest.approx(2 / 3), 0.5, 1.0]
    for photo, caption, count in zip(photos, captions, hallucinated):  # the same rule as the evaluation's
        refs = [REFS, horse, ["a blue sky", "the sky at dusk"]][photo]
        assert len(photo_concepts(caption, refs).hallucinated) == count
    assert ReferenceConcepts([["a field", "a tree"]]).score([0], ["a field"])[1].tolist() == [1.0]  # none present
    with pytest.raises(ValueError, match="2 photos"):
        concepts.score([0, 1], ["a cat"])


def test_f1_is_none_when_nothing_is_named_and_zero_when_nothing_is_right():
    none_named = concept_scores([REFS], ["something on something"])
    assert none_named["concept-P"] is None and none_named["concept-F1"] is None
    assert none_named["concept-R"] == 0.0 and none_named["hallucination"] == 0.0
    wrong = concept_scores([REFS], ["a pizza"])
    assert wrong["concept-P"] == 0.0 and wrong["concept-F1"] == 0.0 and wrong["hallucination"] == 1.0


def test_keyword_precision():
    refs = REFS
    # cat: a concept (kitten/cat); sofa: a synonym of couch; window: no concept, the word itself;
    # dog: absent; windows: the plural of a referenced word; pizza: absent.
    hits = keyword_hits(["cat", "sofa", "window", "dog", "windows", "pizza"], refs)
    assert hits == [True, True, True, False, True, False]
    scores = concept_scores([refs, ["a hot dog with mustard"] * 5], ["a cat", "a hot dog"],
                            [["cat", "couch"], ["dog", "hotdog"]])
    # "dog" is not named by "a hot dog ..." references; "hotdog" is the hot dog concept.
    assert scores["n_keywords"] == 4 and scores["n_keyword_hits"] == 3
    assert scores["keyword-P"] == pytest.approx(3 / 4)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        concept_scores([REFS], ["a", "b"])
    with pytest.raises(ValueError):
        concept_scores([REFS], ["a"], [[], []])


def test_metric_names():
    assert CONCEPT_METRIC_NAMES == ("concept-P", "concept-R", "concept-F1", "hallucination", "keyword-P")
    assert set(CONCEPT_METRIC_NAMES) <= set(concept_scores([REFS], ["a cat"]))


def test_concepts_module_needs_neither_tensorflow_nor_qt():
    code = (
        "import sys, training.concepts; "
        "bad = [n for n in ('tensorflow', 'keras', 'PySide6') if n in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
