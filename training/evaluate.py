"""Score a model bundle's captions against human references (BLEU-1..4, METEOR, ROUGE-L, CIDEr, concepts).

Usage::

    python -m training.evaluate --bundle DIR --data DIR --split dev --beam 3 [--json out.json]
    python -m training.evaluate --bundle DIR --images FOLDER --tokens FILE [--limit N]
    python -m training.evaluate --weights runs/x/epoch08.weights.npz --data DIR --split dev --no-java

The first form reads a Flickr8k-layout folder and one of its splits; the second scores any folder of
photos against a token file in the Flickr8k format (``<image>#<i>\\t<caption>``); the third scores
a training run's epoch with the bundle's vocabulary, tags, guards and decoding, without exporting
it (:mod:`training.run_weights`). It prints a compact table and, with ``--json``, writes the
metrics, the settings and every image's caption. ``--decoding '{"length_penalty": 1.2}'`` scores
the bundle under changed decoding settings (as :mod:`training.sweep_decoding` writes them), with
Java, to confirm a setting a sweep chose.

Beside the COCO caption metrics it reports whether captions name what is in the photo
(:mod:`training.concepts`): concept precision/recall/F1, the hallucination rate and, when the
results carry keywords, keyword precision.

TensorFlow is imported only when a bundle is loaded, so the scoring half (:func:`score_outcomes`)
also serves callers that already hold captions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.concepts import CONCEPT_METRIC_NAMES, concept_scores
from training.data import SPLIT_FILES, Item, clean_caption, load_dataset, load_items
from training.guards import caption_guards
from training.metrics import METRIC_NAMES, score_captions

logger = logging.getLogger(__name__)


def score_outcomes(items: Sequence[Item], outcomes: Sequence[Any], *, use_java: bool = True) -> dict[str, Any]:
    """Score captions already generated for ``items``.

    Args:
        items: ``(image path, [raw reference captions])`` pairs.
        outcomes: one ``CaptionResult`` or ``CaptionFailure`` per item, in the same order.
        use_java: passed to :func:`training.metrics.score_captions`.

    Returns:
        A report: ``metrics`` (name -> float, or ``None`` where unavailable: the COCO metrics and
        :data:`training.concepts.CONCEPT_METRIC_NAMES`), ``concepts`` (the counts behind the concept
        metrics), ``n_images`` (images scored), ``n_failed`` (images the model could not caption: left
        out of the metrics) and ``captions``, one entry per item with ``image``, ``caption`` (``None``
        on failure), ``references``, ``concepts`` (named by the caption), ``hallucinated`` (named by no
        reference), ``keywords`` and ``tags`` (``[word, probability]``; when the result has any) and, on
        failure, ``error``; ``guards``:
        :func:`training.guards.caption_guards` of the captions (share ending in a function word, share
        with a repeated bigram, mean length, distinct captions and words).
    """
    if len(items) != len(outcomes):
        raise ValueError(f"{len(outcomes)} captions for {len(items)} images")
    references: dict[int, list[str]] = {}
    candidates: dict[int, str] = {}
    keywords: dict[int, tuple[str, ...]] = {}
    captions = []
    for index, ((path, refs), outcome) in enumerate(zip(items, outcomes)):
        entry: dict[str, Any] = {"image": Path(path).name, "caption": None, "references": list(refs)}
        if outcome.ok:
            entry["caption"] = outcome.text
            references[index] = list(refs)
            candidates[index] = outcome.text
            keywords[index] = tuple(outcome.keywords)  # empty for bundles without tags
            if keywords[index]:
                entry["keywords"] = list(keywords[index])
            if outcome.tags:  # word and probability, so a keyword threshold can be chosen from the report
                entry["tags"] = [[tag.word, round(float(tag.probability), 4)] for tag in outcome.tags]
        else:
            entry["error"] = outcome.reason
        captions.append(entry)
    n_failed = len(items) - len(candidates)
    if n_failed:
        logger.warning("%d of %d images could not be captioned; they are left out of the metrics", n_failed, len(items))
    if candidates:
        metrics = score_captions(references, candidates, use_java=use_java)
    else:
        metrics = dict.fromkeys(METRIC_NAMES)
    order = sorted(candidates)
    concepts = concept_scores(
        [references[i] for i in order], [candidates[i] for i in order], [keywords[i] for i in order]
    )
    metrics.update({name: concepts[name] for name in CONCEPT_METRIC_NAMES})
    for index, photo in zip(order, concepts.pop("per_photo")):
        captions[index]["concepts"] = sorted(photo.named)
        captions[index]["hallucinated"] = sorted(photo.hallucinated)
    concepts = {name: value for name, value in concepts.items() if name not in CONCEPT_METRIC_NAMES}
    guards = caption_guards(clean_caption(candidates[i]) for i in order)
    return {
        "metrics": metrics, "concepts": concepts, "guards": guards, "n_images": len(candidates),
        "n_failed": n_failed, "captions": captions,
    }


def evaluate_bundle(
    bundle_dir: str | Path | None,
    items: Sequence[Item],
    beam: int = 3,
    batch_size: int = 8,
    *,
    device: str = "auto",
    runtime: str = "auto",
    captioner: Any = None,
    progress: bool = False,
    use_java: bool = True,
) -> dict[str, Any]:
    """Caption ``items`` with a bundle and score the captions.

    Args:
        bundle_dir: the model bundle; ``None`` for the shipped one. Ignored when ``captioner`` is given.
        items: ``(image path, [raw reference captions])`` pairs, e.g. from :func:`training.data.load_dataset`.
        beam: beam size (1 is greedy decoding).
        batch_size: photos per batch.
        device: ``"auto"`` or ``"cpu"``.
        runtime: ``"auto"``, ``"onnx"`` or ``"tf"`` (see :mod:`model.runtime`).
        captioner: an already loaded ``model.captioner.Captioner`` to reuse.
        progress: show a progress bar on stderr.
        use_java: passed to :func:`training.metrics.score_captions`.

    Returns:
        :func:`score_outcomes`'s report plus ``beam``, ``batch_size``, ``bundle``, ``model`` (the
        bundle's name) and ``seconds`` (the time spent captioning).
    """
    if captioner is None:
        from model.captioner import Captioner

        captioner = Captioner.from_bundle(bundle_dir, device=device, runtime=runtime)
    paths = [path for path, _ in items]
    outcomes: list[Any] = []
    started = time.perf_counter()
    from tqdm import tqdm

    # disable=None: tqdm draws only on a terminal, so logs redirected to a file stay clean.
    bar_off = None if progress else True
    with tqdm(total=len(paths), unit="img", desc="captioning", disable=bar_off, file=sys.stderr) as bar:
        for batch in captioner.caption_batches(paths, beam_size=beam, batch_size=batch_size):
            outcomes.extend(batch)
            bar.update(len(batch))
    seconds = time.perf_counter() - started
    report = score_outcomes(items, outcomes, use_java=use_java)
    report.update(
        beam=beam,
        batch_size=batch_size,
        bundle=None if bundle_dir is None else str(bundle_dir),
        model=getattr(captioner, "name", None),
        device=getattr(captioner, "device", None),
        seconds=round(seconds, 2),
    )
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report's metrics as a short text table, headed by what was scored."""
    source = report.get("source", "")
    lines = [
        f"{report['n_images']} images{' from ' + source if source else ''}, beam {report.get('beam')}, "
        f"model {report.get('model')}"
        + (f" ({report['n_failed']} could not be captioned)" if report.get("n_failed") else "")
        + (f" ({report['n_skipped']} skipped: no photo or no caption)" if report.get("n_skipped") else "")
    ]
    for name in METRIC_NAMES + CONCEPT_METRIC_NAMES:
        value = report["metrics"].get(name)
        lines.append(f"  {name:<13} {'n/a' if value is None else f'{value:.4f}'}")
    guards = report.get("guards")
    if guards and guards["captions"]:
        lines.append(f"  captions: {guards['ends_in_function_word']:.1%} end in a function word, "
                     f"{guards['repeated_bigram']:.1%} repeat a bigram, mean length {guards['mean_length']:.2f} "
                     f"words, {guards['distinct_captions']} distinct, {guards['distinct_words']} distinct words")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from training.train import json_object

    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Caption photos with a model bundle and score them against reference captions "
        "(BLEU-1..4, METEOR, ROUGE-L, CIDEr: the COCO caption evaluation; concept precision, recall, F1, "
        "hallucination rate and keyword precision: training.concepts).",
    )
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the shipped model)")
    data = parser.add_argument_group("what to score (--data with --split, or --images with --tokens)")
    data.add_argument("--data", type=Path, help="a Flickr8k-layout folder (token file, split lists, images/)")
    data.add_argument("--split", choices=sorted(SPLIT_FILES), default="dev", help="split of --data (default: dev)")
    data.add_argument("--images", type=Path, help="any folder of photos")
    data.add_argument("--tokens", type=Path, help="captions for --images, in the Flickr8k token format")
    parser.add_argument("--beam", type=int, default=3, help="beam size; 1 is greedy (default: 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per batch (default: 8)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto", help="where to run (default: auto)")
    parser.add_argument("--runtime", choices=("auto", "onnx", "tf"), default="auto",
                        help="auto: ONNX Runtime when the bundle has graphs, else TensorFlow")
    parser.add_argument("--json", type=Path, default=None, help="write the report (metrics and captions) here")
    parser.add_argument("--weights", type=Path, default=None, metavar="WEIGHTS",
                        help="decode with these decoder weights (runs/X/epochNN.weights.npz, the run's "
                             "architecture) instead of the bundle's; TensorFlow runtime")
    parser.add_argument("--ensemble-weights", type=Path, nargs="+", default=None, metavar="WEIGHTS",
                        help="decode with the bundle's decoder (or --weights) and these (runs/X/epochNN.weights.npz, "
                             "each its run's architecture) together, log-probabilities averaged (TensorFlow runtime)")
    parser.add_argument("--decoding", type=json_object, default=None, metavar="JSON",
                        help="changes to the bundle's decoding settings, as training.sweep_decoding's "
                             "variants write them, e.g. '{\"length_penalty\": 1.2}'")
    parser.add_argument(
        "--no-java", action="store_true", help="skip Java: Python tokenizer, no METEOR (quick, approximate)"
    )
    return parser


def _unwritable(path: Path) -> str | None:
    """Why the report cannot be written to ``path`` (None: it can), found out without writing it."""
    if not path.parent.is_dir():
        return f"{path.parent} is not a folder"
    if path.is_dir():
        return "is a folder"
    if path.exists() and not os.access(path, os.W_OK) or not path.exists() and not os.access(path.parent, os.W_OK):
        return "cannot be written (permission denied)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.data is None) == (args.images is None):
        parser.error("give either --data DIR or --images FOLDER --tokens FILE")
    if args.images is not None and args.tokens is None:
        parser.error("--images needs --tokens FILE")
    if args.tokens is not None and args.images is None:
        parser.error("--tokens goes with --images FOLDER")
    for name in ("beam", "batch_size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.decoding is not None and not isinstance(args.decoding, dict):
        parser.error("--decoding takes a JSON object of changes, e.g. '{\"length_penalty\": 1.2}'")
    from training.run_weights import runtime_refusal

    refusal = runtime_refusal(args.weights, args.ensemble_weights, args.runtime)
    if refusal:
        parser.error(refusal)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.data is not None:
            items, n_skipped = load_dataset(args.data, args.split)
            source = f"{args.split} split of {args.data}"
        else:
            items, n_skipped = load_items(args.images, args.tokens)
            source = f"{args.images}"
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        print("error: no captioned photos to score", file=sys.stderr)
        return 1

    if args.json is not None:  # found out now, not after the captioning and scoring
        problem = _unwritable(args.json)
        if problem:
            print(f"error: --json: {args.json}: {problem}", file=sys.stderr)
            return 1
    from model.bundle import BundleError
    from model.captioner import Captioner
    from model.encoder_graphs import EncoderGraphMissing
    from model.encoders import EncoderWeightsError
    from model.runtime import RuntimeUnavailable

    try:
        if args.weights or args.ensemble_weights or args.decoding:
            from training.run_weights import captioner_to_score
            from training.sweep_decoding import patched

            captioner = captioner_to_score(args.bundle, args.weights, args.ensemble_weights or (),
                                           device=args.device, runtime=args.runtime)
            if args.decoding:
                captioner.set_decoding(patched(captioner.bundle.config.get("decoding", {}), args.decoding))
        else:
            captioner = Captioner.from_bundle(args.bundle, device=args.device, runtime=args.runtime)
    except (BundleError, RuntimeUnavailable, EncoderWeightsError, EncoderGraphMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = evaluate_bundle(
        args.bundle, items, beam=args.beam, batch_size=args.batch_size, device=args.device, runtime=args.runtime,
        captioner=captioner, progress=True, use_java=not args.no_java,
    )
    if args.weights:
        report["weights"] = str(args.weights)
    if args.ensemble_weights:
        report["ensemble_weights"] = [str(path) for path in args.ensemble_weights]
    if args.decoding:
        report["decoding_changes"] = args.decoding
    report = {"source": source, "n_skipped": n_skipped, **report}
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"report written to {args.json}")
    return 0 if report["n_images"] else 1


if __name__ == "__main__":
    sys.exit(main())
