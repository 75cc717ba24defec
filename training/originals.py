"""Does a photo's resolution matter? Caption a split's full-resolution originals as they are and as
224x224 squashed copies (what most of this Flickr8k copy holds), and score both against the same
references.

    python -m training.originals --data ../shared/data/flickr8k --split dev [--bundle DIR] [--beam 3]

Which photos are originals comes from the data's ``SOURCES_images.tsv``: a photo is an original when
its source was at least ``--min-side`` pixels on its shorter side (the squashed copies are 224x224).
CIDEr takes its document frequencies from the references of the photos scored, so the two rows
compare with each other, not with a whole split's figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from training.data import Item, load_dataset

COPY_SIDE = 224  # the squashed copies' size


def originals(items: Sequence[Item], sources_file: Path, min_side: int = COPY_SIDE + 1) -> list[Item]:
    """The items whose photo came from a source of at least ``min_side`` pixels on each side."""
    with open(sources_file, encoding="utf-8", newline="") as handle:
        sizes = {row["file_name"]: (int(row["source_width"]), int(row["source_height"]))
                 for row in csv.DictReader(handle, delimiter="\t")}
    return [item for item in items if min(sizes.get(Path(item[0]).name, (0, 0))) >= min_side]


def squashed_copies(items: Sequence[Item], folder: Path, side: int = COPY_SIDE) -> list[Item]:
    """The items with each photo resized (aspect ratio not kept) to ``side`` x ``side``, JPEG quality
    90, in ``folder``: how the data's copies were made."""
    from PIL import Image

    copies = []
    for path, references in items:
        copy = Path(folder) / Path(path).name
        with Image.open(path) as image:
            image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS).save(copy, quality=90)
        copies.append((copy, references))
    return copies


def compare(captioner, items: Sequence[Item], beam_size: int = 3) -> dict:
    """Scores of ``items`` as they are and as squashed copies, and how many captions changed."""
    from training.evaluate import score_outcomes

    with tempfile.TemporaryDirectory(prefix="imgcap-copies-") as folder:
        rows = {}
        captions = {}
        for name, these in (("as they are", list(items)), ("squashed", squashed_copies(items, Path(folder)))):
            outcomes = captioner.caption([str(path) for path, _ in these], beam_size=beam_size)
            report = score_outcomes(these, outcomes, use_java=False)
            rows[name] = {key: report["metrics"][key] for key in ("BLEU-4", "CIDEr", "concept-F1", "hallucination")}
            captions[name] = [entry["caption"] for entry in report["captions"]]
    changed = sum(a != b for a, b in zip(captions["as they are"], captions["squashed"]))
    return {"photos": len(items), "scores": rows, "captions_changed": changed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Flickr8k-layout folder with SOURCES_images.tsv")
    parser.add_argument("--split", default="dev", choices=["train", "dev"])
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--min-side", type=int, default=COPY_SIDE + 1,
                        help="a source at least this many pixels on each side is an original")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)

    sources = args.data / "SOURCES_images.tsv"
    if not sources.is_file():
        print(f"{sources}: missing; it says which photos are originals", file=sys.stderr)
        return 2
    items, _ = load_dataset(args.data, args.split)
    chosen = originals(items, sources, args.min_side)
    if not chosen:
        print(f"no {args.split} photo is an original", file=sys.stderr)
        return 1
    from model.captioner import Captioner

    result = compare(Captioner.from_bundle(args.bundle), chosen, args.beam)
    for name, scores in result["scores"].items():
        print(f"{result['photos']} originals, {name:12s} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    print(f"captions changed: {result['captions_changed']} of {result['photos']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
