"""Does a caption name what is in the photo? Concept precision/recall/F1, hallucination, keyword precision.

A *concept* is one of COCO's 80 object categories or a common scene word (kitchen, street, beach,
snow, ...), with its synonyms and plurals ("person": man, women, people, player, ...). A concept is
*in the photo* when at least ``min_references`` (2) of the photo's reference captions name it: one
annotator's passing word is not enough, and the references are the only ground truth we have.

- concept precision / recall / F1: micro over photos, ``named ∩ present / named`` and
  ``named ∩ present / present``.
- hallucination rate: the share of captions naming at least one concept that *no* reference names
  (the idea of CHAIR, Rohrbach et al. 2018, "Object Hallucination in Image Captioning"; CHAIR-s there).
  ``hallucinated_concepts`` is the per-mention share (CHAIR-i).
- keyword precision: the share of emitted keywords that at least one reference names; a keyword that
  is one of a concept's words matches through the concept's synonyms, any other keyword matches
  itself or its plural/singular as a token.

Matching is on lowercase tokens with punctuation removed; multi-word synonyms ("hot dog", "teddy bear",
"cell phone", "traffic light") match as phrases, longest first, and the words they cover are not
matched again, so "a hot dog" names no dog. No TensorFlow, no Qt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONCEPT_METRIC_NAMES = ("concept-P", "concept-R", "concept-F1", "hallucination", "keyword-P")


@dataclass(frozen=True)
class Concept:
    """One thing a caption can name: its name and every phrase that names it (lowercase tokens)."""

    name: str
    phrases: tuple[str, ...]
    scene: bool = False


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _forms(spec: str) -> tuple[str, ...]:
    """Phrases from ``"dog, puppy, hot dog"``: each with its regular plural (last word pluralised).

    A phrase written ``=phrase`` is taken as is, without a plural (irregular forms, mass nouns).
    """
    forms: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("="):
            forms.append(item[1:])
            continue
        words = item.split()
        forms += [item, " ".join(words[:-1] + [_plural(words[-1])])]
    return tuple(dict.fromkeys(forms))


# COCO's 80 categories (2017 names), with the words captions use for them. Ambiguous words are left
# out on purpose: bare "orange" (mostly the colour in captions), "glass" (glass door, glasses),
# "computer" (a laptop or a desktop), "board", "pitcher" (a jug too), "couple" ("a couple of dogs"),
# "chicken" (mostly food in COCO captions), "steer", "fire"/"traffic" alone.
_OBJECTS: dict[str, str] = {
    "person": "person, =people, =persons, man, =men, woman, =women, boy, girl, child, =children, kid, "
    "baby, =babies, toddler, adult, teenager, teen, guy, lady, =ladies, gentleman, =gentlemen, player, "
    "skier, snowboarder, surfer, skateboarder, skater, rider, biker, cyclist, bicyclist, chef, cook, "
    "worker, officer, policeman, =policemen, cop, soldier, student, tourist, pedestrian, spectator, "
    "batter, catcher, umpire, bride, groom, mother, father, =mom, =dad, son, daughter, "
    "=crowd, =crowds, family, =families, friend, someone, =somebody, businessman, =businessmen, "
    "athlete, passenger, driver, customer, =team, =teams",
    "bicycle": "bicycle, bike, cycle",
    "car": "car, automobile, taxi, =taxis, suv, sedan, van, minivan, jeep, =limo, limousine, convertible",
    "motorcycle": "motorcycle, motorbike, motor bike, motor cycle, dirt bike, scooter, moped",
    "airplane": "airplane, aeroplane, plane, jet, airliner, jetliner, aircraft, =aircrafts, air plane, "
    "passenger jet, passenger plane",
    "bus": "bus, =busses, double decker, double decker bus, trolleybus, passenger bus",
    "train": "train, locomotive, tram, trolley, subway, passenger train",
    "truck": "truck, pickup, pickup truck, firetruck, fire truck, fire engine, lorry",
    "boat": "boat, ship, sailboat, canoe, kayak, yacht, ferry, =ferries, motorboat, speedboat, "
    "rowboat, tugboat, barge, catamaran, vessel",
    "traffic light": "traffic light, stop light, stoplight, traffic signal",
    "fire hydrant": "fire hydrant, hydrant",
    "stop sign": "stop sign",
    "parking meter": "parking meter, meter",
    "bench": "bench, park bench",
    "bird": "bird, duck, goose, =geese, seagull, gull, pigeon, parrot, swan, owl, eagle, hawk, "
    "hen, rooster, crow, sparrow, flamingo, pelican, penguin, ostrich, peacock",
    "cat": "cat, kitten, kitty, =kitties",
    "dog": "dog, puppy, pup, doggy, =doggie",
    "horse": "horse, pony, =ponies, foal, colt, stallion, mare",
    "sheep": "=sheep, lamb, ram, ewe",
    "cow": "cow, =cattle, bull, calf, =calves, =ox, =oxen",
    "elephant": "elephant",
    "bear": "bear, polar bear, grizzly, =grizzlies, grizzly bear",
    "zebra": "zebra",
    "giraffe": "giraffe",
    "backpack": "backpack, back pack, rucksack",
    "umbrella": "umbrella, parasol",
    "handbag": "handbag, hand bag, purse",
    "tie": "tie, necktie, bow tie",
    "suitcase": "suitcase, suit case, =luggage",
    "frisbee": "frisbee, =frisbe, =frizbee",
    "skis": "ski, =skis",
    "snowboard": "snowboard",
    "sports ball": "ball, soccer ball, tennis ball, football, basketball, volleyball, =baseballs",
    "kite": "kite",
    "baseball bat": "baseball bat, bat",
    "baseball glove": "baseball glove, glove, mitt, baseball mitt, catchers mitt",
    "skateboard": "skateboard, skate board",
    "surfboard": "surfboard, surf board",
    "tennis racket": "tennis racket, racket, racquet, tennis racquet",
    "bottle": "bottle, water bottle, beer bottle, wine bottle",
    "wine glass": "wine glass, =wine glasses, wineglass, glass of wine, =glasses of wine",
    "cup": "cup, mug, coffee cup, coffee mug, teacup",
    "fork": "fork",
    "knife": "knife, =knives",
    "spoon": "spoon",
    "bowl": "bowl",
    "banana": "banana",
    "apple": "apple",
    "sandwich": "sandwich, burger, hamburger, cheeseburger, sub sandwich",
    "orange": "=oranges, orange slice, tangerine, clementine",
    "broccoli": "=broccoli, =brocolli",
    "carrot": "carrot",
    "hot dog": "hot dog, hotdog",
    "pizza": "pizza",
    "donut": "donut, doughnut",
    "cake": "cake, cupcake",
    "chair": "chair, stool, armchair",
    "couch": "couch, sofa, loveseat",
    "potted plant": "potted plant, plant, houseplant, flower pot, flowerpot",
    "bed": "bed",
    "dining table": "dining table, table",
    "toilet": "toilet, urinal",
    "tv": "tv, television, =tvs, monitor, flat screen, flatscreen",
    "laptop": "laptop",
    "mouse": "mouse, =mice, computer mouse",
    "remote": "remote, remote control, controller, game controller",
    "keyboard": "keyboard",
    "cell phone": "cell phone, cellphone, phone, smartphone, mobile phone, telephone, smart phone",
    "microwave": "microwave, microwave oven",
    "oven": "oven, stove",
    "toaster": "toaster, toaster oven",
    "sink": "sink",
    "refrigerator": "refrigerator, fridge, =refridgerator",
    "book": "book",
    "clock": "clock",
    "vase": "vase",
    "scissors": "=scissors, =scissor",
    "teddy bear": "teddy bear, teddy, =teddies, stuffed animal, stuffed bear",
    "hair drier": "hair drier, hair dryer, hairdryer, blow dryer",
    "toothbrush": "toothbrush, tooth brush",
}

# Common scene words. "room" is any room ("a living room", "a dining room"): the kitchen, bathroom
# and bedroom are concepts of their own.
_SCENES: dict[str, str] = {
    "kitchen": "kitchen",
    "bathroom": "bathroom, restroom, bath room",
    "bedroom": "bedroom",
    "room": "room, living room, dining room",
    "office": "office",
    "restaurant": "restaurant, cafe, diner",
    "street": "street, road, intersection, highway, avenue",
    "sidewalk": "sidewalk",
    "city": "city, =cities, downtown, town",
    "building": "building",
    "airport": "airport, runway, tarmac",
    "beach": "beach, shore",
    "ocean": "ocean, sea",
    "water": "=water, =waters",
    "lake": "lake",
    "river": "river",
    "snow": "=snow, =snowy",
    "mountain": "mountain, hill, hillside, slope",
    "field": "field, pasture, meadow",
    "grass": "=grass, =grassy, lawn",
    "park": "park",
    "tree": "tree",
    "forest": "forest, =woods",
    "sky": "sky, =skies",
    "desert": "desert",
}


def _build_concepts() -> tuple[Concept, ...]:
    concepts = [Concept(name, _forms(spec)) for name, spec in _OBJECTS.items()]
    concepts += [Concept(name, _forms(spec), scene=True) for name, spec in _SCENES.items()]
    return tuple(concepts)


CONCEPTS: tuple[Concept, ...] = _build_concepts()

_APOSTROPHE_S = re.compile(r"['’]s\b")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens: possessive ``'s`` dropped, every other non-alphanumeric a separator.

    ``"A man's hot-dog, and CATS!"`` -> ``["a", "man", "hot", "dog", "and", "cats"]``.
    """
    text = _APOSTROPHE_S.sub("", text.lower())
    return [token for token in _NON_WORD.split(text) if token]


class ConceptMatcher:
    """Finds the concepts a text names, phrases before single words, longest phrase first."""

    def __init__(self, concepts: Iterable[Concept] = CONCEPTS):
        """Raises:
            ValueError: one phrase given to two concepts.
        """
        self.concepts = tuple(concepts)
        self._phrases: dict[tuple[str, ...], str] = {}
        for concept in self.concepts:
            for phrase in concept.phrases:
                key = tuple(tokenize(phrase))
                owner = self._phrases.setdefault(key, concept.name)
                if owner != concept.name:
                    raise ValueError(f"phrase {phrase!r} names both {owner!r} and {concept.name!r}")
        self._longest = max((len(key) for key in self._phrases), default=1)
        self.names = tuple(concept.name for concept in self.concepts)

    def mentions(self, text: str) -> list[tuple[str, str]]:
        """Every ``(concept, matched phrase)`` in reading order; covered words are not matched again."""
        tokens = tokenize(text)
        found: list[tuple[str, str]] = []
        i = 0
        while i < len(tokens):
            for n in range(min(self._longest, len(tokens) - i), 0, -1):
                concept = self._phrases.get(tuple(tokens[i : i + n]))
                if concept is not None:
                    found.append((concept, " ".join(tokens[i : i + n])))
                    i += n
                    break
            else:
                i += 1
        return found

    def concepts_in(self, text: str) -> frozenset[str]:
        """The concepts ``text`` names."""
        return frozenset(concept for concept, _ in self.mentions(text))

    def concept_of_word(self, word: str) -> str | None:
        """The concept a single keyword (or phrase) is a name of, or None."""
        return self._phrases.get(tuple(tokenize(word)))


_DEFAULT_MATCHER: ConceptMatcher | None = None


def default_matcher() -> ConceptMatcher:
    global _DEFAULT_MATCHER
    if _DEFAULT_MATCHER is None:
        _DEFAULT_MATCHER = ConceptMatcher()
    return _DEFAULT_MATCHER


def _word_forms(word: str) -> set[str]:
    """A keyword, its regular plural and, for a plural-looking word, its likely singulars."""
    forms = {word, _plural(word)}
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


@dataclass(frozen=True)
class PhotoConcepts:
    """One photo's concepts: named by the caption, present (>= min_references), mentioned by any reference."""

    named: frozenset[str]
    present: frozenset[str]
    mentioned: frozenset[str]

    @property
    def hallucinated(self) -> frozenset[str]:
        return self.named - self.mentioned


def photo_concepts(
    caption: str, references: Sequence[str], *, min_references: int = 2, matcher: ConceptMatcher | None = None
) -> PhotoConcepts:
    """The concepts of one captioned photo (see the module docstring for the 2-of-N rule)."""
    matcher = matcher or default_matcher()
    counts: dict[str, int] = {}
    for reference in references:
        for concept in matcher.concepts_in(reference):
            counts[concept] = counts.get(concept, 0) + 1
    present = frozenset(c for c, n in counts.items() if n >= min_references)
    return PhotoConcepts(matcher.concepts_in(caption), present, frozenset(counts))


def keyword_hits(
    keywords: Iterable[str], references: Sequence[str], *, matcher: ConceptMatcher | None = None
) -> list[bool]:
    """For each keyword, whether at least one reference names it (through its concept if it has one)."""
    matcher = matcher or default_matcher()
    reference_concepts = frozenset().union(*(matcher.concepts_in(r) for r in references)) if references else frozenset()
    reference_tokens = {token for r in references for token in tokenize(r)}
    hits = []
    for keyword in keywords:
        concept = matcher.concept_of_word(keyword)
        if concept is not None:
            hits.append(concept in reference_concepts)
        else:
            tokens = tokenize(keyword)
            hits.append(bool(tokens) and all(_word_forms(t) & reference_tokens for t in tokens))
    return hits


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def concept_scores(
    references: Sequence[Sequence[str]],
    captions: Sequence[str],
    keywords: Sequence[Sequence[str]] | None = None,
    *,
    min_references: int = 2,
    matcher: ConceptMatcher | None = None,
) -> dict[str, Any]:
    """Concept P/R/F1, hallucination rate and keyword precision over a set of captioned photos.

    Args:
        references: each photo's reference captions.
        captions: each photo's generated caption (same order).
        keywords: each photo's emitted keywords, or None when the model emits none.
        min_references: how many references must name a concept for it to count as in the photo.
        matcher: the concept vocabulary (default: :data:`CONCEPTS`).

    Returns:
        ``concept-P``, ``concept-R``, ``concept-F1``, ``hallucination``, ``keyword-P`` (each a float, or
        None when its denominator is zero: no concept named, none present, no caption, no keyword),
        ``hallucinated_concepts`` (CHAIR-i: share of named concepts no reference names), the counts
        behind them (``n_named``, ``n_present``, ``n_correct``, ``n_hallucinating_captions``,
        ``n_keywords``, ``n_keyword_hits``) and ``per_photo`` (a :class:`PhotoConcepts` per photo).

    Raises:
        ValueError: the sequences have different lengths.
    """
    if len(references) != len(captions) or (keywords is not None and len(keywords) != len(captions)):
        raise ValueError(f"{len(captions)} captions, {len(references)} reference sets"
                         + ("" if keywords is None else f", {len(keywords)} keyword lists"))
    matcher = matcher or default_matcher()
    per_photo = [
        photo_concepts(caption, refs, min_references=min_references, matcher=matcher)
        for caption, refs in zip(captions, references)
    ]
    n_named = sum(len(p.named) for p in per_photo)
    n_present = sum(len(p.present) for p in per_photo)
    n_correct = sum(len(p.named & p.present) for p in per_photo)
    n_hallucinated = sum(len(p.hallucinated) for p in per_photo)
    n_hallucinating = sum(1 for p in per_photo if p.hallucinated)
    precision = _ratio(n_correct, n_named)
    recall = _ratio(n_correct, n_present)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_keywords = n_keyword_hits = 0
    if keywords is not None:
        for words, refs in zip(keywords, references):
            hits = keyword_hits(words, refs, matcher=matcher)
            n_keywords += len(hits)
            n_keyword_hits += sum(hits)
    return {
        "concept-P": precision,
        "concept-R": recall,
        "concept-F1": f1,
        "hallucination": _ratio(n_hallucinating, len(per_photo)),
        "keyword-P": _ratio(n_keyword_hits, n_keywords),
        "hallucinated_concepts": _ratio(n_hallucinated, n_named),
        "n_named": n_named,
        "n_present": n_present,
        "n_correct": n_correct,
        "n_hallucinating_captions": n_hallucinating,
        "n_keywords": n_keywords,
        "n_keyword_hits": n_keyword_hits,
        "per_photo": per_photo,
    }


class ReferenceConcepts:
    """The concepts of a fixed set of photos' references, to price captions of those photos quickly
    (the SCST reward's concept terms, :class:`training.scst.Reward`).

    Per photo: the concepts *any* reference names (a caption naming another one hallucinates, the
    rule of :func:`concept_scores`) and those *present* (named by ``min_references``).
    """

    def __init__(self, references: Sequence[Sequence[str]], *, min_references: int = 2,
                 matcher: ConceptMatcher | None = None):
        self.matcher = matcher or default_matcher()
        self.mentioned: list[frozenset[str]] = []
        self.present: list[frozenset[str]] = []
        for refs in references:
            photo = photo_concepts("", refs, min_references=min_references, matcher=self.matcher)
            self.mentioned.append(photo.mentioned)
            self.present.append(photo.present)

    def score(self, photos: Sequence[int], captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(hallucinated, recall)`` arrays, one entry per caption of photo ``photos[i]``: how many
        concepts the caption names that no reference of its photo names, and the share of the
        photo's present concepts it names (1 where none is present)."""
        if len(photos) != len(captions):
            raise ValueError(f"{len(captions)} captions for {len(photos)} photos")
        hallucinated = np.zeros(len(captions), np.float64)
        recall = np.ones(len(captions), np.float64)
        for i, (photo, caption) in enumerate(zip(photos, captions)):
            named = self.matcher.concepts_in(caption)
            hallucinated[i] = len(named - self.mentioned[photo])
            present = self.present[photo]
            if present:
                recall[i] = len(named & present) / len(present)
        return hallucinated, recall
