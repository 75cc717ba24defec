"""Caption metrics: the standard COCO caption evaluation (pycocoevalcap) and a fast BLEU-4 for training.

:func:`score_captions` gives BLEU-1..4, METEOR, ROUGE-L and CIDEr exactly as the COCO caption
evaluation computes them: references and candidates go through the Stanford PTB tokenizer (lowercased,
punctuation tokens removed), then pycocoevalcap's scorers. SPICE is not computed (it needs Stanford
CoreNLP models downloaded at run time). The tokenizer and METEOR run the jars that ship inside the
pycocoevalcap package, so they need ``java`` but no network. Without Java, the tokenizer falls back to a
close pure-Python imitation and METEOR is reported as ``None`` with a warning.

:func:`bleu4_fast` is corpus BLEU-4 on token (or id) lists in pure Python, for cheap validation each
epoch; it agrees with pycocoevalcap's BLEU-4 on the same tokens.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

METRIC_NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")

# pycocoevalcap's tokenizer removes these tokens after PTB tokenization (ptbtokenizer.PUNCTUATIONS).
_PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
_PTB_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
_TOKENIZER_JAR = "stanford-corenlp-3.4.1.jar"
_METEOR_JAR = "meteor-1.5.jar"


class MetricUnavailable(RuntimeError):
    """A metric's external tool (Java, a jar) is missing or failed."""


# ---------------------------------------------------------------------------------------------------
# Fast BLEU-4 (training-time validation)


def _ngrams(tokens: Sequence[Hashable], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu4_fast(
    references_tokens: Sequence[Sequence[Sequence[Hashable]]],
    candidate_tokens: Sequence[Sequence[Hashable]],
    max_n: int = 4,
) -> float:
    """Corpus BLEU-``max_n`` with the brevity penalty, on already-tokenised captions. No Java.

    Clipped n-gram counts and lengths are summed over the corpus; the reference length of each
    candidate is the closest reference length (the shorter on a tie), as pycocoevalcap's BLEU does.
    Tokens may be strings or vocabulary ids: anything hashable, compared by equality.

    Args:
        references_tokens: per candidate, its list of reference token lists.
        candidate_tokens: one token list per candidate.
        max_n: the highest n-gram order (4 for BLEU-4).

    Returns:
        The score in [0, 1]; 0.0 when some order has no matching n-gram at all.

    Raises:
        ValueError: the two lists differ in length, or a candidate has no reference.
    """
    if len(references_tokens) != len(candidate_tokens):
        raise ValueError(f"{len(references_tokens)} reference sets for {len(candidate_tokens)} candidates")
    matches = [0] * max_n
    totals = [0] * max_n
    candidate_length = reference_length = 0
    for references, candidate in zip(references_tokens, candidate_tokens):
        if not references:
            raise ValueError("a candidate has no reference")
        candidate = list(candidate)
        candidate_length += len(candidate)
        reference_length += min((abs(len(ref) - len(candidate)), len(ref)) for ref in references)[1]
        for n in range(1, max_n + 1):
            counts = _ngrams(candidate, n)
            if not counts:
                continue
            max_ref_counts: Counter = Counter()
            for ref in references:
                max_ref_counts |= _ngrams(list(ref), n)  # union keeps the maximum count of each n-gram
            matches[n - 1] += sum(min(count, max_ref_counts[gram]) for gram, count in counts.items())
            totals[n - 1] += sum(counts.values())
    if candidate_length == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = min(0.0, 1.0 - reference_length / candidate_length)
    return math.exp(log_precision + brevity)


# ---------------------------------------------------------------------------------------------------
# Tokenization


def _package_dir(sub: str) -> Path:
    import pycocoevalcap  # namespace package: no __file__, but a __path__

    for root in pycocoevalcap.__path__:
        if (Path(root) / sub).is_dir():
            return Path(root) / sub
    raise MetricUnavailable(f"pycocoevalcap has no {sub}/ folder")


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH."""
    return shutil.which("java") is not None


def _one_line(text: str) -> str:
    # Every caption must stay on one line of the tokenizer's input, whatever whitespace it holds.
    return " ".join(text.split())


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]], timeout: float = 600.0) -> dict[Hashable, list[str]]:
    """Tokenize captions exactly as pycocoevalcap's ``PTBTokenizer`` does, with its bundled jar.

    Unlike ``PTBTokenizer.tokenize`` this writes its temporary file to the system temp folder (not into
    the installed package), has a timeout, and checks that no line went missing.

    Raises:
        MetricUnavailable: Java is missing, or the tokenizer failed or lost lines.
    """
    if not java_available():
        raise MetricUnavailable("java not found")
    keys = [key for key, texts in captions.items() for _ in texts]
    lines = [_one_line(text) for texts in captions.values() for text in texts]
    jar = _package_dir("tokenizer") / _TOKENIZER_JAR
    with tempfile.TemporaryDirectory(prefix="imgcap-ptb-") as tmp:
        source = Path(tmp) / "captions.txt"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        cmd = ["java", "-cp", str(jar), _PTB_CLASS, "-preserveLines", "-lowerCase", str(source)]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise MetricUnavailable(f"PTB tokenizer failed: {error}") from error
    out = done.stdout.decode("utf-8").split("\n")
    if done.returncode != 0 or len(out) < len(lines):
        raise MetricUnavailable(
            f"PTB tokenizer failed (exit {done.returncode}, {len(out)} lines for {len(lines)}): "
            f"{done.stderr.decode('utf-8', 'replace')[-300:]}"
        )
    tokenized: dict[Hashable, list[str]] = {key: [] for key in captions}
    for key, line in zip(keys, out):
        tokenized[key].append(" ".join(word for word in line.split() if word not in _PTB_PUNCTUATION))
    return tokenized


# Words (with inner hyphens, as PTB keeps "tri-colored"), clitics split off as PTB does ("men 's",
# "do n't"), or any other single non-space character.
_SIMPLE_TOKEN = re.compile(r"\w+(?:-\w+)*(?=n't\b)|n't\b|'\w+|\w+(?:-\w+)*|[^\w\s]")
# PTB turns quotes and brackets into ``, '', -LRB-... which pycocoevalcap then drops.
_SIMPLE_DROPPED = _PTB_PUNCTUATION | {'"', "(", ")", "[", "]", "{", "}"}


def simple_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """A pure-Python approximation of :func:`ptb_tokenize`, used when Java is unavailable."""
    return {
        key: [
            " ".join(word for word in _SIMPLE_TOKEN.findall(text.lower()) if word not in _SIMPLE_DROPPED)
            for text in texts
        ]
        for key, texts in captions.items()
    }


# ---------------------------------------------------------------------------------------------------
# METEOR


def meteor_score(
    references: Mapping[Hashable, Sequence[str]], candidates: Mapping[Hashable, str], timeout: float = 900.0
) -> float:
    """Corpus METEOR 1.5 with pycocoevalcap's jar and settings (``-l en -norm``), on tokenized text.

    Speaks the jar's ``-stdio`` protocol like pycocoevalcap's ``Meteor`` class, but in a worker thread
    with a timeout, and without that class's lock that is never released when the jar dies (its
    ``__del__`` then blocks forever).

    Raises:
        MetricUnavailable: Java is missing, or the jar failed, died or timed out.
    """
    if not java_available():
        raise MetricUnavailable("java not found")
    meteor_dir = _package_dir("meteor")
    cmd = ["java", "-jar", "-Xmx2G", _METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
    keys = list(candidates)
    result: dict[str, object] = {}
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                cmd, cwd=meteor_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
            )
        except OSError as error:
            raise MetricUnavailable(f"could not start METEOR: {error}") from error

        def talk() -> None:
            try:
                def ask(line: str) -> str:
                    process.stdin.write((line + "\n").encode("utf-8"))
                    process.stdin.flush()
                    answer = process.stdout.readline().decode("utf-8").strip()
                    if not answer:
                        raise MetricUnavailable("METEOR jar closed its output")
                    return answer

                stats = []
                for key in keys:
                    hypothesis = candidates[key].replace("|||", "").replace("  ", " ")
                    stats.append(ask(" ||| ".join(("SCORE", *references[key], hypothesis))))
                ask("EVAL ||| " + " ||| ".join(stats))  # the first answer is the first image's score
                for _ in keys[1:]:
                    process.stdout.readline()
                result["score"] = float(process.stdout.readline().decode("utf-8").strip())
            except Exception as error:  # noqa: BLE001 - reported to the caller below
                result["error"] = error

        worker = threading.Thread(target=talk, name="meteor", daemon=True)
        worker.start()
        worker.join(timeout)
        timed_out = worker.is_alive()
        process.kill()  # also unblocks a worker stuck on a read
        process.wait()
        worker.join(5)
        for pipe in (process.stdin, process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        if timed_out:
            raise MetricUnavailable(f"METEOR timed out after {timeout:.0f} s")
        if "score" not in result:
            stderr.seek(0)
            detail = stderr.read().decode("utf-8", "replace").strip()[-300:]
            raise MetricUnavailable(f"METEOR failed: {result.get('error')} {detail}".strip())
    return float(result["score"])


# ---------------------------------------------------------------------------------------------------
# The COCO caption evaluation


def score_captions(
    references: Mapping[Hashable, Sequence[str]],
    candidates: Mapping[Hashable, str],
    *,
    use_java: bool = True,
) -> dict[str, float | None]:
    """Score candidate captions against their references with the COCO caption evaluation.

    Args:
        references: per image key, its raw reference captions (all of them: five for Flickr8k).
        candidates: per image key, the generated caption as text. Same keys as ``references``.
        use_java: run the PTB tokenizer and METEOR (Java). ``False`` uses the Python tokenizer and
            skips METEOR, for quick checks.

    Returns:
        ``{"BLEU-1": ..., "BLEU-2": ..., "BLEU-3": ..., "BLEU-4": ..., "METEOR": ..., "ROUGE-L": ...,
        "CIDEr": ...}`` as floats; ``"METEOR"`` is ``None`` (with a warning) when it could not be
        computed. CIDEr's document frequencies come from these references, so it is only meaningful
        over a sizeable set of images (it is 0 for a single image).

    Raises:
        ValueError: no images, different keys, or an image without references.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not candidates:
        raise ValueError("no captions to score")
    if set(references) != set(candidates):
        missing = set(candidates) ^ set(references)
        raise ValueError(f"references and candidates have different keys, e.g. {sorted(map(str, missing))[:3]}")
    if any(not references[key] for key in candidates):
        raise ValueError("an image has no reference caption")

    keys = list(candidates)
    raw_refs = {key: [text.lower() for text in references[key]] for key in keys}
    raw_cands = {key: [candidates[key].lower()] for key in keys}
    gts = res = None
    if use_java:
        try:
            gts, res = ptb_tokenize(raw_refs), ptb_tokenize(raw_cands)
        except MetricUnavailable as error:
            warnings.warn(f"PTB tokenizer unavailable ({error}); using a Python approximation", stacklevel=2)
    if gts is None:
        gts, res = simple_tokenize(raw_refs), simple_tokenize(raw_cands)

    scores: dict[str, float | None] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, start=1):
        scores[f"BLEU-{n}"] = float(value)
    scores["METEOR"] = None
    if use_java:
        try:
            scores["METEOR"] = meteor_score(gts, {key: res[key][0] for key in keys})
        except MetricUnavailable as error:
            warnings.warn(f"METEOR unavailable: {error}", stacklevel=2)
            logger.warning("METEOR unavailable: %s", error)
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return {name: scores[name] for name in METRIC_NAMES}
