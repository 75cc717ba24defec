"""The caption vocabulary: word <-> id, the four special tokens, and padding of id sequences.

Saved as plain JSON beside the weights (never pickled), so a bundle reloads the exact ids it was
trained with. Special tokens have fixed ids and are always compared by id, never by string.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS = (PAD, START, END, UNK)  # ids 0, 1, 2, 3
_FORMAT = "imgcap-vocabulary"
_VERSION = 1


def word_key(token: str) -> str:
    """A word as the vocabulary holds it: lowercased, without punctuation or symbols (Unicode
    categories P* and S*: ``"Dog's"`` -> ``"dogs"``, ``"tri-colored"`` -> ``"tricolored"``)."""
    return "".join(char for char in token.lower() if unicodedata.category(char)[0] not in "PS")


class Vocabulary:
    """Ids ``<pad>`` = 0, ``<start>`` = 1, ``<end>`` = 2, ``<unk>`` = 3, then the words.

    Build one from training captions with :meth:`build`; reload one with :meth:`load` or
    :meth:`from_json`.
    """

    def __init__(self, words: Sequence[str], *, min_count: int | None = None):
        """Args:
            words: the ordinary words in id order (their ids start at 4); no special token, no repeat.
            min_count: the threshold the words were chosen with, kept for the record only.

        Raises:
            ValueError: a special token or a repeated word in ``words``.
        """
        words = list(words)
        specials = set(SPECIAL_TOKENS).intersection(words)
        if specials:
            raise ValueError(f"special tokens among the words: {sorted(specials)}")
        self._itos: list[str] = [*SPECIAL_TOKENS, *words]
        self._stoi: dict[str, int] = {word: index for index, word in enumerate(self._itos)}
        if len(self._stoi) != len(self._itos):
            repeated = [word for word, count in Counter(words).items() if count > 1]
            raise ValueError(f"repeated words in the vocabulary: {repeated[:5]}")
        self.min_count = min_count

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 5) -> Vocabulary:
        """Vocabulary of every word seen at least ``min_count`` times, most frequent first.

        Ties are broken alphabetically, so the same captions always give the same ids.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts = Counter(word for tokens in token_lists for word in tokens if word not in SPECIAL_TOKENS)
        kept = sorted((word for word, count in counts.items() if count >= min_count), key=lambda w: (-counts[w], w))
        return cls(kept, min_count=min_count)

    # ---- ids

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def start_id(self) -> int:
        return 1

    @property
    def end_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        return 3

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, word: object) -> bool:
        return word in self._stoi

    @property
    def words(self) -> tuple[str, ...]:
        """Every token in id order, the four special tokens first."""
        return tuple(self._itos)

    def id_of(self, word: str) -> int:
        """The id of ``word``, or ``unk_id`` for a word outside the vocabulary."""
        return self._stoi.get(word, self.unk_id)

    def word_of(self, token_id: int) -> str:
        """The token with id ``token_id``.

        Raises:
            IndexError: an id outside ``0 .. len(self) - 1``.
        """
        token_id = int(token_id)
        if not 0 <= token_id < len(self._itos):
            raise IndexError(f"token id {token_id} outside the vocabulary (size {len(self._itos)})")
        return self._itos[token_id]

    def encode(self, words: Iterable[str]) -> list[int]:
        """``[<start>, ids of words..., <end>]``; words outside the vocabulary become ``<unk>``."""
        return [self.start_id, *(self.id_of(word) for word in words), self.end_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of an id sequence: stops at the first ``<end>``, skips ``<start>`` and ``<pad>``.

        ``<unk>`` stays in the output as the string ``"<unk>"``. Accepts plain ints or a numpy array.
        """
        words = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.end_id:
                break
            if token_id in (self.start_id, self.pad_id):
                continue
            words.append(self.word_of(token_id))
        return words

    # ---- JSON

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :meth:`from_json` turns back into an equal vocabulary."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "special_tokens": {"pad": PAD, "start": START, "end": END, "unk": UNK},
            "min_count": self.min_count,
            "tokens": list(self._itos),  # index = id
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_json`'s dict.

        Raises:
            ValueError: not a vocabulary, an unknown version, or special tokens at other ids.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError("not an imgcap vocabulary (missing 'format': 'imgcap-vocabulary')")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported vocabulary version {data.get('version')!r}; expected {_VERSION}")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise ValueError("vocabulary 'tokens' must be a list of strings")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}, got {tokens[: len(SPECIAL_TOKENS)]}")
        return cls(tokens[len(SPECIAL_TOKENS) :], min_count=data.get("min_count"))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as UTF-8 JSON."""
        # The same bytes on every system (a bundle records their checksum): "\n" line ends.
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8",
                              newline="\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._itos == other._itos

    def __hash__(self) -> int:
        return hash(tuple(self._itos))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, min_count={self.min_count})"


def pad_sequences(sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """Stack id sequences into an int32 array ``(len(sequences), length)``, right-padded with ``<pad>`` (0).

    Args:
        sequences: id lists (each normally ``<start> ... <end>``).
        length: the padded length; ``None`` pads to the longest sequence.

    Raises:
        ValueError: a sequence longer than ``length`` (cutting it would lose its ``<end>``).
    """
    longest = max((len(seq) for seq in sequences), default=0)
    if length is None:
        length = longest
    elif longest > length:
        raise ValueError(f"a sequence has {longest} ids, more than length={length}")
    padded = np.zeros((len(sequences), length), dtype=np.int32)  # (captions, length); 0 is <pad>
    for row, seq in enumerate(sequences):
        padded[row, : len(seq)] = seq
    return padded
