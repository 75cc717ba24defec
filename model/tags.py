"""ImageNet class -> everyday word: the tag vocabulary that the encoder's classifier speaks.

The map is data, ``resources/tags/imagenet_words.json`` (provenance in ``resources/tags/README.md``):
each of ImageNet-1k's 1,000 classes maps to one everyday word (``"dog"`` for the 118 breeds) or to
none. A word's probability is the sum of its classes' probabilities. numpy only: no TensorFlow, no Qt.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.resources import resource_path
from model.results import Tag

FORMAT_VERSION = 1
_WORD = re.compile(r"[a-z]+")


def default_tag_map_path() -> Path:
    """The shipped map, ``resources/tags/imagenet_words.json``."""
    return resource_path("tags", "imagenet_words.json")


class TagMap:
    """Which everyday word each classifier class stands for.

    Attributes:
        words: the tag vocabulary, sorted; a word's index here is its tag id.
        class_words: int array ``(num_classes,)``: the tag id of each class, or -1 for none.
        synsets, names: each class's WordNet id and name, in class-id order.
        source: where the class index came from (free text).
    """

    def __init__(
        self,
        class_words: Sequence[str | None],
        *,
        synsets: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        source: str = "",
    ):
        """Args:
            class_words: the word of each class in class-id order (None: no word).
            synsets, names: each class's WordNet id and name (default: empty strings).
            source: provenance, kept for the record.

        Raises:
            ValueError: a word that is not one lowercase token, or metadata of the wrong length.
        """
        class_words = list(class_words)
        n = len(class_words)
        for i, word in enumerate(class_words):
            if word is not None and not _WORD.fullmatch(word):
                raise ValueError(f"class {i}: tag word {word!r} is not one lowercase token (a-z)")
        self.synsets = tuple(synsets) if synsets is not None else ("",) * n
        self.names = tuple(names) if names is not None else ("",) * n
        if len(self.synsets) != n or len(self.names) != n:
            raise ValueError(f"{n} classes but {len(self.synsets)} synsets and {len(self.names)} names")
        self.source = source
        self.words: tuple[str, ...] = tuple(sorted({w for w in class_words if w is not None}))
        self._index = {w: i for i, w in enumerate(self.words)}
        self.class_words = np.array(
            [self._index[w] if w is not None else -1 for w in class_words], dtype=np.int64
        )  # (num_classes,)
        self.class_words.setflags(write=False)
        mapped = np.flatnonzero(self.class_words >= 0)
        self._matrix = np.zeros((n, len(self.words)), dtype=np.float32)  # (num_classes, T)
        self._matrix[mapped, self.class_words[mapped]] = 1.0
        self._matrix.setflags(write=False)
        # The same sum without a matrix product (a 1000x492 matmul took 16 ms a photo under this
        # machine's BLAS settings): the mapped classes in word order, and where each word starts.
        order = mapped[np.argsort(self.class_words[mapped], kind="stable")]
        self._sorted_classes = order
        self._word_starts = np.searchsorted(self.class_words[order], np.arange(len(self.words)))

    # ----------------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path | None = None) -> TagMap:
        """Read a map file (default: the shipped ``resources/tags/imagenet_words.json``).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a valid tag map (the message says what is wrong).
        """
        path = Path(path) if path is not None else default_tag_map_path()
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON ({error})") from None
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def from_dict(cls, data: Any) -> TagMap:
        """Build a map from the parsed JSON (see ``resources/tags/README.md`` for the format).

        Raises:
            ValueError: wrong format version, class ids not 0..N-1 in order, or a ``words`` list that
                is not exactly the sorted set of the words the classes use.
        """
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise ValueError(f"unsupported tag map format_version {version!r} (expected {FORMAT_VERSION})")
        classes = data.get("classes")
        if not isinstance(classes, list) or not classes:
            raise ValueError("'classes' must be a non-empty list")
        try:
            ids = [c["id"] for c in classes]
            class_words = [c["word"] for c in classes]
            synsets = [c["synset"] for c in classes]
            names = [c["name"] for c in classes]
        except (KeyError, TypeError) as error:
            raise ValueError(f"every class needs id, synset, name and word ({error!r} missing)") from None
        if ids != list(range(len(classes))):
            raise ValueError("class ids must be 0..N-1 in order")
        tag_map = cls(class_words, synsets=synsets, names=names, source=str(data.get("source", "")))
        if list(data.get("words", [])) != list(tag_map.words):
            raise ValueError("'words' must be exactly the sorted list of the words the classes use")
        return tag_map

    def to_dict(self) -> dict[str, Any]:
        """The JSON object this map is saved as."""
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "words": list(self.words),
            "classes": [
                {"id": i, "synset": s, "name": n, "word": self.word_of(i)}
                for i, (s, n) in enumerate(zip(self.synsets, self.names))
            ],
        }

    def to_json(self) -> str:
        """The canonical file text: one class per line, so a review diff shows one line per change."""
        data = self.to_dict()
        lines = [
            "{",
            f'  "format_version": {FORMAT_VERSION},',
            f'  "source": {json.dumps(data["source"])},',
            f'  "words": {json.dumps(data["words"])},',
            '  "classes": [',
        ]
        last = len(data["classes"]) - 1
        lines += ["    " + json.dumps(c) + ("," if i < last else "") for i, c in enumerate(data["classes"])]
        lines += ["  ]", "}"]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of :meth:`to_json` (the shipped file is canonical, so it equals ``sha256sum``)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    # ---------------------------------------------------------------------------------- queries
    @property
    def num_classes(self) -> int:
        return int(self.class_words.shape[0])

    @property
    def num_words(self) -> int:
        return len(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def index(self, word: str) -> int:
        """The tag id of ``word``. Raises KeyError if it is not a tag word."""
        return self._index[word]

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def word_of(self, class_id: int) -> str | None:
        """The everyday word of one class, or None."""
        tag_id = int(self.class_words[class_id])
        return self.words[tag_id] if tag_id >= 0 else None

    def classes_of(self, word: str) -> tuple[int, ...]:
        """The class ids that map to ``word`` (ascending); empty for a word that is not a tag."""
        tag_id = self._index.get(word)
        if tag_id is None:
            return ()
        return tuple(int(i) for i in np.flatnonzero(self.class_words == tag_id))

    def word_probabilities(self, class_probs: np.ndarray) -> np.ndarray:
        """Sum the class probabilities of each word's classes.

        Args:
            class_probs: ``(b, num_classes)`` (or ``(num_classes,)``) softmax probabilities.

        Returns:
            float32 ``(b, T)`` (or ``(T,)``); classes without a word contribute nothing, so a row sums
            to at most the row's total.

        Raises:
            ValueError: the last axis is not ``num_classes`` long.
        """
        class_probs = np.asarray(class_probs, dtype=np.float32)
        if class_probs.ndim not in (1, 2) or class_probs.shape[-1] != self.num_classes:
            raise ValueError(
                f"class_probs must be (batch, {self.num_classes}) or ({self.num_classes},), "
                f"got {class_probs.shape}"
            )
        if not len(self.words):
            return np.zeros(class_probs.shape[:-1] + (0,), np.float32)
        grouped = class_probs[..., self._sorted_classes]  # (b, mapped classes), in word order
        return np.add.reduceat(grouped, self._word_starts, axis=-1).astype(np.float32)  # (b, T)

    def top_tags(
        self, class_probs: np.ndarray, *, k: int = 5, min_probability: float = 0.0
    ) -> tuple[Tag, ...]:
        """The ``k`` most probable words of one photo, as :class:`Tag` (most probable first).

        Args:
            class_probs: ``(num_classes,)`` softmax probabilities of one photo.
            k: at most this many tags.
            min_probability: drop words below this probability.

        Returns:
            Tags whose ``class_ids`` are the word's classes ordered by their probability (highest
            first); ``cam`` is None.
        """
        class_probs = np.asarray(class_probs, dtype=np.float32)
        if class_probs.shape != (self.num_classes,):
            raise ValueError(f"class_probs must be ({self.num_classes},), got {class_probs.shape}")
        word_probs = self.word_probabilities(class_probs)  # (T,)
        order = np.argsort(-word_probs, kind="stable")[:k]
        tags = []
        for tag_id in order:
            probability = float(word_probs[tag_id])
            if probability < min_probability or probability <= 0.0:
                break
            ids = np.flatnonzero(self.class_words == tag_id)
            ids = ids[np.argsort(-class_probs[ids], kind="stable")]
            tags.append(Tag(self.words[tag_id], probability, tuple(int(i) for i in ids)))
        return tuple(tags)


# Plurals that adding "s"/"es" does not make.
_IRREGULAR = {
    "man": ("men",), "woman": ("women",), "person": ("people", "persons"), "child": ("children",),
    "mouse": ("mice",), "knife": ("knives",), "wolf": ("wolves",), "leaf": ("leaves",), "goose": ("geese",),
    "foot": ("feet",), "tooth": ("teeth",), "shelf": ("shelves",), "loaf": ("loaves",), "calf": ("calves",),
    "ox": ("oxen",), "fish": ("fish", "fishes"), "sheep": ("sheep",), "deer": ("deer",),
}


def word_forms(word: str) -> tuple[str, ...]:
    """The forms of a tag word that a caption may use: the word and its plurals."""
    forms = [word, word + "s", word + "es"]
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        forms.append(word[:-1] + "ies")
    if word.endswith("f"):
        forms.append(word[:-1] + "ves")
    forms += _IRREGULAR.get(word, ())
    return tuple(dict.fromkeys(forms))


class Tagger:
    """Tags for photos from their feature grids: the classifier on the pooled grid (the same numbers
    as the encoder's own ImageNet head, so no second pass), words by :class:`TagMap`, keywords above
    a threshold, and for each keyword its class activation map (Zhou et al. 2016: the classifier is
    linear over the pooled grid, so ``grid @ kernel[:, class]`` is a map over the same grid).

    numpy only, so every runtime shares it.

    Args:
        kernel, bias: the classifier, ``(channels, num_classes)`` and ``(num_classes,)``.
        tag_map: class -> word.
        keyword_threshold: a word at or above this probability becomes a keyword.
        top_k, min_probability: how many tags a result lists, and the least probability listed.
    """

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, tag_map: TagMap, *, keyword_threshold: float = 0.3,
                 top_k: int = 5, min_probability: float = 0.05):
        self.kernel = np.asarray(kernel, np.float32)  # (channels, num_classes)
        self.bias = np.asarray(bias, np.float32)  # (num_classes,)
        if self.kernel.shape[1] != tag_map.num_classes or self.bias.shape != (tag_map.num_classes,):
            raise ValueError(f"classifier {self.kernel.shape} does not match a map of {tag_map.num_classes} classes")
        self.tag_map = tag_map
        self.keyword_threshold = keyword_threshold
        self.top_k = top_k
        self.min_probability = min_probability

    def class_probabilities(self, grids: np.ndarray) -> np.ndarray:
        """Softmax class probabilities ``(batch, num_classes)`` for grids ``(batch, locations, channels)``."""
        logits = np.asarray(grids, np.float32).mean(axis=1) @ self.kernel + self.bias  # (batch, num_classes)
        return self.probabilities_from_logits(logits)

    @staticmethod
    def probabilities_from_logits(logits: np.ndarray) -> np.ndarray:
        """Softmax of the encoder's own ImageNet logits ``(batch, num_classes)``."""
        logits = np.asarray(logits, np.float32)
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def word_probabilities(self, class_probs: np.ndarray) -> np.ndarray:
        """``(batch, num_words)``: the tag vector a tag-aware decoder reads."""
        return self.tag_map.word_probabilities(class_probs)

    def tags(self, grid: np.ndarray, class_probs: np.ndarray,
             grid_shape: tuple[int, int]) -> tuple[tuple[Tag, ...], tuple[str, ...]]:
        """``(tags, keywords)`` of one photo; keyword tags carry their class activation map ``grid_shape``."""
        tags = self.tag_map.top_tags(class_probs, k=self.top_k, min_probability=self.min_probability)
        out, keywords = [], []
        for tag in tags:
            if tag.probability >= self.keyword_threshold:
                keywords.append(tag.word)
                tag = Tag(tag.word, tag.probability, tag.class_ids,
                          self.cam(grid, class_probs, tag.class_ids, grid_shape))
            out.append(tag)
        return tuple(out), tuple(keywords)

    def cam(self, grid: np.ndarray, class_probs: np.ndarray, class_ids: Sequence[int],
            grid_shape: tuple[int, int]) -> np.ndarray:
        """The class activation map of a word: its classes' maps weighted by their probabilities, the
        negative part cut, scaled to sum to 1 (like an attention map). ``grid (locations, channels)``."""
        ids = np.asarray(class_ids, np.int64)
        weights = np.asarray(class_probs, np.float32)[ids]
        weights = weights / max(float(weights.sum()), 1e-12)
        maps = np.asarray(grid, np.float32) @ self.kernel[:, ids]  # (locations, classes)
        cam = np.maximum(maps @ weights, 0.0)  # (locations,)
        total = float(cam.sum())
        cam = cam / total if total > 0 else np.full_like(cam, 1.0 / len(cam))
        return cam.reshape(grid_shape).astype(np.float32)
