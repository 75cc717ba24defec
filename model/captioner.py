"""The facade the CLI and the app use: photos in, :class:`~model.results.CaptionResult` out.

The model runs on ONNX Runtime when the bundle has ONNX graphs and onnxruntime is installed (no
TensorFlow is imported then), else on TensorFlow (``runtime="tf"`` forces it, for development and
parity checks); see :mod:`model.runtime`. Either way the same numpy search (:mod:`model.search`)
turns the decoder's steps into captions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from model.bundle import Bundle, BundleError, load_bundle
from model.encoders import get_encoder_spec
from model.images import ImageLoadError, file_identity, load_image, resize_array
from model.results import Alternative, CaptionFailure, CaptionOutcome, CaptionResult
from model.runtime import create_model
from model.search import DecodedBatch, Search, log_softmax
from model.vocab import word_key

log = logging.getLogger(__name__)

ImageInput = str | Path | np.ndarray


AbsenceRule = tuple[str, tuple[str, ...], float, np.ndarray]


def banned_ids(vocab, decoding: dict) -> tuple[int, ...]:
    """Tokens the search never emits under ``decoding``: ``<pad>``, ``<start>``, its ``banned_words``
    and, unless ``allow_unknown``, ``<unk>``."""
    banned = [vocab.pad_id, vocab.start_id]
    banned += [vocab.id_of(w) for w in decoding.get("banned_words", ()) if w in vocab]
    if not decoding.get("allow_unknown", False):
        banned.append(vocab.unk_id)  # "<unk>" is no word to show a user
    return tuple(banned)


#: The longest caption a bundle's decoding may ask for, in words.
MAX_CAPTION_LENGTH = 200


def decoding_search(step, vocab, decoding: dict) -> Search:
    """The :class:`~model.search.Search` over ``step`` under a bundle's ``decoding`` settings: the
    caption length, length penalty, banned words, no repeated n-gram, ``once_words`` and
    ``no_end_after`` (words no caption ends on). The app and the SCST candidates search alike."""
    def ids(words):
        return tuple(vocab.id_of(w) for w in decoding.get(words, ()) if w in vocab)

    max_length = int(decoding.get("max_length", 30))
    if not 1 <= max_length <= MAX_CAPTION_LENGTH:  # 0 broke the search; 10**9 asked for 905 GiB
        raise BundleError(f"decoding max_length {max_length} is not between 1 and {MAX_CAPTION_LENGTH} words")
    return Search(step, vocab_size=len(vocab), start_id=vocab.start_id, end_id=vocab.end_id, pad_id=vocab.pad_id,
                  max_length=max_length,
                  length_penalty=float(decoding.get("length_penalty", 1.0)), banned_ids=banned_ids(vocab, decoding),
                  no_repeat_ngram=int(decoding.get("no_repeat_ngram", 0)), once_ids=ids("once_words"),
                  no_end_after_ids=ids("no_end_after"))


def absence_rules(decoding: dict, vocab, probes: dict, where: str = "bundle") -> list[AbsenceRule]:
    """``(kind, names, threshold, word ids)`` per rule of ``decoding["absent"]``: words a photo must
    not get when the evidence for them is below the threshold, from tags (``"tags": ["bird", "duck"]``:
    the classifier's probability of any of these words, summed; ``"tag": "dog"`` for one) or a probe
    on the pooled grid (``"probe": "person"``, one of ``probes``: name -> ``(kernel, bias)``)."""
    rules = []
    for rule in decoding.get("absent", ()):
        ids = np.array([vocab.id_of(w) for w in rule["words"] if w in vocab], np.int64)
        if "probe" in rule:
            if rule["probe"] not in probes:
                raise BundleError(f"{where}: decoding rule needs the probe {rule['probe']!r}, the bundle has none")
            rules.append(("probe", (rule["probe"],), float(rule["below"]), ids))
        else:
            names = tuple(rule["tags"]) if "tags" in rule else (rule["tag"],)
            rules.append(("tag", names, float(rule["below"]), ids))
    return rules


def photo_bans(rules: list[AbsenceRule], features: np.ndarray, word_probs: np.ndarray | None, vocab_size: int,
               tag_map, probes: dict) -> np.ndarray | None:
    """``(batch, vocab)`` additive bans (-1e9) that ``rules`` give photos with grids ``features (batch,
    locations, channels)`` and tag probabilities ``word_probs (batch, tags)``; None without rules."""
    if not rules:
        return None
    ban = np.zeros((features.shape[0], vocab_size), np.float32)
    pooled = None
    for kind, names, threshold, ids in rules:
        if kind == "tag":
            evidence = word_probs[:, [tag_map.index(name) for name in names]].sum(axis=1)
        else:
            pooled = features.mean(axis=1) if pooled is None else pooled  # (batch, channels)
            kernel, bias = probes[names[0]]
            evidence = 1.0 / (1.0 + np.exp(-(pooled @ kernel + bias)))
        ban[np.ix_(evidence < threshold, ids)] = -1e9
    return ban


# The words a decoder strings together when a guard has banned the noun it wanted ("a group of young
# little black are standing ..."): ages, sizes, colours and origins that describe people.
MODIFIERS = frozenset(
    "young little small big old older elderly black white asian african american blonde blond brown "
    "dark short tall".split())


def garbled_subject(words: Sequence[str]) -> bool:
    """Whether a caption's subject (its words before the first "is"/"are" or "-ing" word) strings
    describing words together where a noun should be: three in a row ("young little black"), one
    repeated in a row ("young little young"), or two right before the verb ("a group of young black
    are"). "two young little dogs are playing", "a black and white dog is running" and "a man in
    black is standing" pass."""
    subject = []
    for word in words:
        if word in ("is", "are") or (word.endswith("ing") and len(word) > 4):
            break
        subject.append(word)
    runs = [[]]  # the runs of consecutive describing words
    for word in subject:
        if word in MODIFIERS:
            runs[-1].append(word)
        elif runs[-1]:
            runs.append([])
    if any(len(run) >= 3 or len(set(run)) < len(run) for run in runs):
        return True
    return len(subject) < len(words) and len(runs[-1]) >= 2  # the verb right after two describing words


class Captioner:
    """Captions photos with a model bundle, in batches.

    Attributes:
        name: the model's name (from the bundle).
        runtime: ``"onnx"`` (ONNX Runtime) or ``"tf"`` (TensorFlow).
        provider: what runs the model, e.g. ``"CPUExecutionProvider"``, ``"CUDAExecutionProvider"``.
        device: the line the status bar and ``--json`` show, e.g. ``"CPU (ONNX Runtime)"``, or
            ``"CPU (ONNX Runtime; CUDA failed to start: …)"`` when a GPU provider fell back.
        grid: ``(grid_h, grid_w)`` of the attention maps.
    """

    def __init__(self, bundle: Bundle, *, device: str = "auto", encoder_weights: str | Path | None = None,
                 runtime: str = "auto", threads: int = 0):
        self.bundle = bundle
        self.name = bundle.name
        self.spec = get_encoder_spec(bundle.encoder_name)
        self.grid = self.spec.grid
        self.model = create_model(bundle, runtime=runtime, device=device, encoder_weights=encoder_weights,
                                  threads=threads)
        self.runtime, self.provider, self.device = self.model.runtime, self.model.provider, self.model.device
        try:
            self.tagger = tagger_for(bundle)
            self.set_decoding(bundle.config.get("decoding", {}))
            self._num_tags = int(bundle.config["decoder"].get("num_tags", 0))
        except BundleError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a setting of the wrong kind
            raise BundleError(f"{bundle.path}: the config's decoding settings are malformed "
                              f"({type(exc).__name__}: {exc})") from None
        if self._num_tags and (self.tagger is None or len(self.tagger.tag_map.words) != self._num_tags):
            raise BundleError(f"{bundle.path}: the decoder reads {self._num_tags} tags but no matching tagger "
                              "was built")

    def set_decoding(self, decoding: dict) -> None:
        """Decode with these settings (a bundle's ``"decoding"`` entry: ``max_length``,
        ``length_penalty``, ``no_repeat_ngram``, ``once_words``, ``no_end_after``, ``banned_words``,
        ``absent``, ``prefer_tags_above``, ``constrain_above``, ``constrain_unmet_rows``,
        ``name_tags_above``, ``allow_unknown``, ``relax_if_garbled``) from now on; how
        :mod:`training.sweep_decoding` tries settings on one model."""
        vocab = self.bundle.vocab
        self._search = decoding_search(self.model.step, vocab, decoding)
        self._absent = absence_rules(decoding, self.bundle.vocab, self.bundle.probes, where=str(self.bundle.path))
        known = set(self.tagger.tag_map.words) if self.tagger is not None else set()
        for kind, names, _, _ in self._absent:
            if kind == "tag" and not set(names) <= known:
                unknown = ", ".join(sorted(set(names) - known))
                raise BundleError(f"{self.bundle.path}: a decoding rule reads the tags {unknown}, "
                                  "which its tag map has not")
        self._decoding = dict(decoding)
        self._tag_word_ids = None  # per tag word, the vocabulary ids of its forms (for the constraints)
        wants_constraint = any(decoding.get(key) is not None for key in ("constrain_above", "name_tags_above"))
        if wants_constraint and self.tagger is not None:
            from model.tags import word_forms

            self._tag_word_ids = [np.array([vocab.id_of(f) for f in word_forms(w) if f in vocab], np.int64)
                                  for w in self.tagger.tag_map.words]

    def _photo_bans(self, features: np.ndarray, word_probs: np.ndarray | None) -> np.ndarray | None:
        """``(batch, vocab)`` additive bans from the absence rules (None when the bundle has none)."""
        tag_map = self.tagger.tag_map if self.tagger is not None else None
        return photo_bans(self._absent, features, word_probs, len(self.bundle.vocab), tag_map, self.bundle.probes)

    @classmethod
    def from_bundle(cls, path: str | Path | None = None, *, device: str = "auto",
                    encoder_weights: str | Path | None = None, runtime: str = "auto", threads: int = 0) -> Captioner:
        """Load a bundle (the shipped one when ``path`` is None) and build the model.

        ``threads``: CPU threads per operation (0: the runtime's default, every core).
        """
        return cls(load_bundle(path), device=device, encoder_weights=encoder_weights, runtime=runtime,
                   threads=threads)

    # -- public API --------------------------------------------------------------------------

    def caption(self, images: Sequence[ImageInput], beam_size: int = 3, batch_size: int = 8) -> list[CaptionOutcome]:
        """Caption every photo; one outcome per input, in input order."""
        return [outcome for batch in self.caption_batches(images, beam_size, batch_size) for outcome in batch]

    def caption_batches(self, images: Sequence[ImageInput], beam_size: int = 3,
                        batch_size: int = 8) -> Iterator[list[CaptionOutcome]]:
        """Yield the outcomes batch by batch, so a caller can report progress and stop between batches.

        The next batch's photos are decoded on a helper thread while the model runs on this one.
        """
        for _, loaded in self._loaded_chunks(images, batch_size):
            yield self._caption_loaded(loaded, beam_size)

    def attend(self, images: Sequence[ImageInput], texts: Sequence[str],
               batch_size: int = 8) -> list[CaptionOutcome]:
        """The attention maps of given captions; see :meth:`attend_batches`."""
        return [outcome for batch in self.attend_batches(images, texts, batch_size) for outcome in batch]

    def attend_batches(self, images: Sequence[ImageInput], texts: Sequence[str],
                       batch_size: int = 8) -> Iterator[list[CaptionOutcome]]:
        """Where the decoder looks for each word of a caption it did not necessarily write (one
        stored earlier, a person's edit, a beam alternative): fed the caption's words one by one,
        as its search feeds its own, each word gets the map of the step that predicts it.

        One outcome per photo, batch by batch: a :class:`CaptionResult` whose words are the text's
        own (split on white space, so that its text is the caption's), with a map each, and the
        caption's mean log-probability a word under the model as its score, and the photo's tags and
        keywords (as :meth:`caption` gives them); no alternatives. A word
        the vocabulary lacks is fed as ``<unk>``. A photo that cannot be read gives a failure.
        """
        texts = list(texts)
        if len(texts) != len(images):
            raise ValueError(f"{len(images)} photos but {len(texts)} captions")
        for offset, loaded in self._loaded_chunks(images, batch_size):
            good = [(i, pixels) for i, (_, pixels, _) in enumerate(loaded) if isinstance(pixels, np.ndarray)]
            results: dict[int, CaptionResult] = {}
            if good:
                features, logits = self.model.encode(np.stack([pixels for _, pixels in good]).astype(np.float32))
                class_probs = self._class_probabilities(features, logits)
                words = [tuple(texts[offset + i].split()) for i, _ in good]
                attention, scores = self._forced(features, class_probs, words)
                for row, (i, _) in enumerate(good):
                    tags, keywords = (((), ()) if class_probs is None
                                      else self.tagger.tags(features[row], class_probs[row], self.grid))
                    results[i] = CaptionResult(source=loaded[i][0], words=words[row], token_ids=self._ids(words[row]),
                                               score=scores[row], attention=attention[row], tags=tags,
                                               keywords=keywords, identity=loaded[i][2],
                                               tagged=class_probs is not None)
            yield [results.get(i) or CaptionFailure(source, pixels) for i, (source, pixels, _) in enumerate(loaded)]

    def _ids(self, words: Sequence[str]) -> tuple[int, ...]:
        vocab = self.bundle.vocab
        return tuple(vocab.id_of(key) if (key := word_key(w)) in vocab else vocab.unk_id for w in words)

    def _forced(self, features: np.ndarray, class_probs: np.ndarray | None, words: list[tuple[str, ...]]
                ) -> tuple[list[np.ndarray], list[float]]:
        """Per photo, ``(len(words), gh, gw)`` maps and the words' mean log-probability, the
        decoder fed ``<start>`` and then each word before the one it predicts."""
        tags = self.tagger.word_probabilities(class_probs) if self._num_tags else None
        ids = [self._ids(w) for w in words]
        steps = max((len(i) for i in ids), default=0)
        memory, hidden = self.model.prepare(features, tags)
        batch, vocab = len(ids), self.bundle.vocab
        tokens = np.full(batch, vocab.start_id, np.int32)
        maps = np.zeros((batch, steps, features.shape[1]), np.float32)
        scores = np.zeros(batch, np.float64)
        for t in range(steps):
            hidden, step_scores, attention = self.model.step(tokens, hidden, memory)
            maps[:, t] = attention
            wanted = np.array([i[t] if t < len(i) else vocab.pad_id for i in ids], np.int64)
            here = np.array([t < len(i) for i in ids])
            scores += np.where(here, log_softmax(np.asarray(step_scores, np.float64))[np.arange(batch), wanted], 0.0)
            tokens = wanted.astype(np.int32)
        gh, gw = self.grid
        return ([maps[row, :len(i)].reshape(len(i), gh, gw) for row, i in enumerate(ids)],
                [float(score) / max(len(i), 1) for score, i in zip(scores, ids)])

    def _loaded_chunks(self, images: Sequence[ImageInput], batch_size: int
                       ) -> Iterator[tuple[int, list[tuple[str, np.ndarray | str, tuple | None]]]]:
        """``(offset, loaded chunk)`` per batch; the next batch's photos are decoded on a helper
        thread while the model runs on this one."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        images = list(images)
        chunks = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcap-load") as pool:
            next_load = pool.submit(self._load_chunk, chunks[0], 0)
            for index in range(len(chunks)):
                loaded = next_load.result()
                if index + 1 < len(chunks):
                    next_load = pool.submit(self._load_chunk, chunks[index + 1], (index + 1) * batch_size)
                yield index * batch_size, loaded

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """Feature grids ``(batch, locations, channels)`` for pixels ``(batch, size, size, 3)``."""
        return self.model.encode(np.asarray(pixels, np.float32))[0]

    def decode(self, features: np.ndarray, beam_size: int = 3, tags: np.ndarray | None = None,
               ban: np.ndarray | None = None, must: np.ndarray | None = None) -> DecodedBatch:
        """Search captions for feature grids ``(batch, locations, channels)`` (beam 1 = greedy);
        ``tags`` the tag vectors of a tag-aware decoder and ``ban`` per-photo word bans; computed from
        the features when not given. ``must (batch, vocab)``: the words of which a beam search makes
        each photo's caption name one (default: the tags at or above ``constrain_above``, if set)."""
        if self.tagger is not None and ((self._num_tags and tags is None) or (ban is None and self._absent)):
            word_probs = self.tagger.word_probabilities(self.tagger.class_probabilities(features))
            tags = word_probs if tags is None else tags
            ban = self._photo_bans(features, word_probs) if ban is None else ban
        memory, hidden = self.model.prepare(features, tags if self._num_tags else None)
        if beam_size == 1:
            return self._search.greedy(memory, hidden, ban)
        if must is None and self._num_tags and self._decoding.get("constrain_above") is not None:
            must = self._constraint(tags, ban, float(self._decoding["constrain_above"]))
        return self._search.beam(memory, hidden, beam_size, ban, must=must,
                                 unmet_rows=int(self._decoding.get("constrain_unmet_rows", 1)))

    def _constraint(self, word_probs: np.ndarray, ban: np.ndarray | None, threshold: float) -> np.ndarray | None:
        """``(batch, vocab)`` bool: the words of each photo's tags at or above ``threshold``, of which
        the beam search makes the caption name one (None when the bundle asks for no constraint)."""
        if self._tag_word_ids is None:
            return None
        must = np.zeros((word_probs.shape[0], len(self.bundle.vocab)), bool)
        for row, tag in zip(*np.nonzero(word_probs >= threshold)):
            must[row, self._tag_word_ids[tag]] = True
        must &= self._search.ban[None, :] == 0  # never a word the photo or the bundle bans
        if ban is not None:
            must &= ban == 0
        return must

    # -- internals ---------------------------------------------------------------------------

    def _load_chunk(self, chunk: list[ImageInput], offset: int) -> list[tuple[str, np.ndarray | str, tuple | None]]:
        """``(source, pixels or why not, file identity)`` per photo; the identity is taken before the
        pixels are read, so that a file saved under the name since reads as another one."""
        loaded = []
        for i, item in enumerate(chunk):
            if isinstance(item, np.ndarray):
                source = f"<array {offset + i}>"
                try:
                    loaded.append((source, resize_array(item, self.spec.input_size), None))
                except ValueError as exc:
                    loaded.append((source, str(exc), None))
            else:
                identity = file_identity(item)
                try:
                    loaded.append((str(item), load_image(item, self.spec.input_size), identity))
                except ImageLoadError as exc:
                    loaded.append((str(item), exc.reason, identity))
        return loaded

    def _caption_loaded(self, loaded, beam_size: int) -> list[CaptionOutcome]:
        good = [(i, pixels) for i, (_, pixels, _) in enumerate(loaded) if isinstance(pixels, np.ndarray)]
        results: dict[int, CaptionResult] = {}
        if good:
            features, logits = self.model.encode(np.stack([pixels for _, pixels in good]).astype(np.float32))
            captioned = self.caption_encoded([loaded[i][0] for i, _ in good], features, logits, beam_size)
            results = {i: replace(result, identity=loaded[i][2]) for (i, _), result in zip(good, captioned)}
        return [results[i] if i in results else CaptionFailure(source, reason)
                for i, (source, reason, _) in enumerate(loaded)]

    def caption_encoded(self, sources: Sequence[str], features: np.ndarray, logits: np.ndarray | None,
                        beam_size: int = 3) -> list[CaptionResult]:
        """Captions from the encoder's outputs (``self.model.encode``: grids ``(batch, locations,
        channels)`` and the ImageNet logits, or None): tags, bans, search, results. What
        :meth:`caption` does after encoding, for callers that encode once and decode many times."""
        class_probs = self._class_probabilities(features, logits)
        word_probs = self.tagger.word_probabilities(class_probs) if class_probs is not None else None
        decoded, retry, again = self.decode_guarded(features, word_probs, beam_size)
        again_row = {photo: i for i, photo in enumerate(retry)}
        results = []
        for row, source in enumerate(sources):
            tags, keywords = (((), ()) if class_probs is None
                              else self.tagger.tags(features[row], class_probs[row], self.grid))
            if row in again_row:
                result = self._to_result(source, again, again_row[row], tags, keywords)
            else:
                result = self._to_result(source, decoded, row, tags, keywords)
            results.append(replace(result, tagged=class_probs is not None))
        return results

    def _class_probabilities(self, features: np.ndarray, logits: np.ndarray | None) -> np.ndarray | None:
        """The ImageNet class probabilities of photos (None without a tagger): from the encoder's own
        logits when its graph gives them (no extra work), else from the grids."""
        if self.tagger is None:
            return None
        return (self.tagger.class_probabilities(features) if logits is None
                else self.tagger.probabilities_from_logits(logits))

    def decode_guarded(self, features: np.ndarray, word_probs: np.ndarray | None, beam_size: int = 3,
                       again: bool = True):
        """The search as :meth:`caption` runs it, from grids and tag probabilities: the photos' bans,
        then (with ``again``) one second search for the photos whose caption came out garbled under
        ``decoding["relax_if_garbled"]`` (with those guards lifted) or, under
        ``decoding["name_tags_above"]``, names none of the photo's tags at or above it (constrained to
        name one). Returns ``(decoded, retry, searched_again)``: photo ``retry[i]``'s captions are row
        ``i`` of ``searched_again`` (None when no photo was searched again)."""
        tags_in = word_probs if self._num_tags else None
        ban = self._photo_bans(features, word_probs)
        decoded = self.decode(features, beam_size, tags_in, ban)
        if not again:
            return decoded, [], None
        garbled, relaxed = self._garbled_rows(decoded, features, word_probs, ban)
        missed, must = self._missed_tag_rows(decoded, word_probs, ban, beam_size)
        retry = sorted(set(garbled) | set(missed))
        if not retry:
            return decoded, retry, None
        bans = None if ban is None else ban[retry]
        for i, row in enumerate(garbled):
            bans[retry.index(row)] = relaxed[i]
        musts = None if must is None else must[retry] & np.isin(retry, missed)[:, None]  # missed photos only
        return decoded, retry, self.decode(features[retry], beam_size, None if tags_in is None else tags_in[retry],
                                           bans, must=musts)

    def _missed_tag_rows(self, decoded: DecodedBatch, word_probs: np.ndarray | None, ban: np.ndarray | None,
                         beam_size: int) -> tuple[list[int], np.ndarray | None]:
        """``(rows, must)``: under ``decoding["name_tags_above"]``, the photos whose best caption names
        none of their tags at or above it (in any form the vocabulary has and the photo's bans allow),
        and ``must (batch, vocab)``, each photo's words of those tags. The classifier is that sure of
        something the caption leaves out ("a man is sitting on a blanket" of a cat at 0.86), so the
        photo is searched again, constrained to name one. Beam search only (greedy has no constraint)."""
        threshold = self._decoding.get("name_tags_above")
        if threshold is None or word_probs is None or beam_size < 2 or not self._num_tags:
            return [], None
        must = self._constraint(word_probs, ban, float(threshold))
        if must is None:
            return [], None
        rows = []
        for row in np.flatnonzero(must.any(axis=1)):
            said = decoded.tokens[row, 0, :int(decoded.lengths[row, 0])]
            if not must[row, said].any():
                rows.append(int(row))
        return rows, must

    def _garbled_rows(self, decoded: DecodedBatch, features: np.ndarray, word_probs: np.ndarray | None,
                      ban: np.ndarray | None) -> tuple[list[int], np.ndarray | None]:
        """``(rows, bans)``: the photos to search again, and their bans without the rules of the kinds
        in ``decoding["relax_if_garbled"]`` (``["probe"]``: the person probe's). A photo is searched
        again when its best caption has a :func:`garbled_subject` and such a rule banned words for it:
        the decoder strung describing words together in place of the noun the rule banned, which is a
        sign the probe missed what the decoder sees. The relaxed bans are computed only for garbled
        captions, so a batch without any costs a string check per photo."""
        kinds = self._decoding.get("relax_if_garbled")
        if not kinds or ban is None:
            return [], None
        kept = [rule for rule in self._absent if rule[0] not in kinds]
        if len(kept) == len(self._absent):
            return [], None
        vocab = self.bundle.vocab
        garbled = [row for row in range(len(features)) if garbled_subject(
            [vocab.word_of(int(t)) for t in decoded.tokens[row, 0, :int(decoded.lengths[row, 0])]])]
        if not garbled:
            return [], None
        tag_map = self.tagger.tag_map if self.tagger is not None else None
        relaxed = photo_bans(kept, features[garbled], None if word_probs is None else word_probs[garbled],
                             len(vocab), tag_map, self.bundle.probes)
        relaxed = np.zeros_like(ban[garbled]) if relaxed is None else relaxed
        lifted = (ban[garbled] != relaxed).any(axis=1)  # a relaxed rule had banned words for the photo
        return [row for row, keep in zip(garbled, lifted) if keep], relaxed[lifted]

    def _to_result(self, source: str, decoded: DecodedBatch, row: int, tags=(), keywords=()) -> CaptionResult:
        vocab = self.bundle.vocab
        gh, gw = self.grid
        alternatives = []
        for beam in range(decoded.tokens.shape[1]):
            n = int(decoded.lengths[row, beam])
            ids = decoded.tokens[row, beam, :n]
            alternatives.append(Alternative(tuple(vocab.word_of(int(t)) for t in ids),
                                            float(decoded.scores[row, beam])))
        best = self._preferred(alternatives, tags)
        if best:
            alternatives.insert(0, alternatives.pop(best))
        n = int(decoded.lengths[row, best])
        ids = tuple(int(t) for t in decoded.tokens[row, best, :n])
        attention = decoded.attention[row, best, :n].reshape(n, gh, gw).astype(np.float32)
        return CaptionResult(
            source=source, words=alternatives[0].words, token_ids=ids, score=alternatives[0].score,
            attention=attention, alternatives=tuple(alternatives), tags=tags, keywords=keywords,
        )

    def _preferred(self, alternatives: list[Alternative], tags) -> int:
        """Index of the caption to show: the best-scoring alternative that names a confident tag
        (``decoding["prefer_tags_above"]``), else the best (0)."""
        threshold = self._decoding.get("prefer_tags_above")
        if threshold is None or len(alternatives) < 2:
            return 0
        from model.tags import word_forms

        wanted = {form for tag in tags if tag.probability >= threshold for form in word_forms(tag.word)}
        if not wanted or wanted & set(alternatives[0].words):
            return 0
        return next((i for i, alt in enumerate(alternatives) if wanted & set(alt.words)), 0)


def tagger_for(bundle: Bundle):
    """The :class:`~model.tags.Tagger` of a bundle: its own classifier and tag map when it has tags
    (tag-aware bundles), else the encoder's ImageNet head and the shipped map when they can be read,
    else None (an encoder without a classifier: no tags, everything else as before)."""
    from model.encoders import classifier_head
    from model.tags import TagMap, Tagger

    tags = bundle.config.get("tags")
    threshold = float((tags or {}).get("keyword_threshold",
                                       bundle.config.get("decoding", {}).get("keyword_threshold", 0.3)))
    if tags and bundle.classifier is not None:
        words = tags["words"]
        tag_map = TagMap([words[i] if i >= 0 else None for i in tags["class_words"]], source=f"bundle {bundle.name}")
        return Tagger(*bundle.classifier, tag_map, keyword_threshold=threshold)
    try:
        head = classifier_head(bundle.encoder_name)
    except Exception as exc:  # noqa: BLE001 - no weight package (a frozen build): captions without tags
        log.info("no classifier for %s (%s): captions come without tags", bundle.encoder_name, exc)
        return None
    return Tagger(*head, TagMap.load(), keyword_threshold=threshold) if head is not None else None
