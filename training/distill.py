"""A teacher's captions as one more reference per photo: sequence-level knowledge distillation (Kim and
Rush, 2016) for self-critical training, so that a single decoder can learn from an ensemble that is
too slow to ship.

    python -m training.evaluate --runtime tf --weights A.weights.npz --ensemble-weights B.weights.npz \\
        --data ../shared/data/flickr8k --split train --no-java --json teacher.json
    python -m training.distill --data ../shared/data/flickr8k --teacher teacher.json --out runs/kd-data
    python -m training.scst_jax --data runs/kd-data --init resources/models/flickr8k-lite2 ...

The new folder has the data set's layout: its photos and split lists are links to the originals, and
its token file is the original one with each captioned photo's teacher caption appended as the next
caption id (``<image>#5`` after five references). CIDEr-D then rewards a sampled caption for what it
shares with the teacher's as with any reference; the document frequencies are per photo, so they are
unchanged where the teacher says nothing new. Caption the train split only: a teacher caption on a
dev photo would leak into the selection.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from training.data import TOKEN_FILE, load_captions

logger = logging.getLogger(__name__)


def teacher_captions(report: dict) -> dict[str, str]:
    """``{image name: caption}`` from a ``training.evaluate --json`` report; failed photos are left out.

    Raises:
        ValueError: the report has no ``captions`` list.
    """
    entries = report.get("captions")
    if not isinstance(entries, list):
        raise ValueError("not a training.evaluate report: it has no 'captions' list")
    return {entry["image"]: entry["caption"] for entry in entries if entry.get("caption")}


def write_distill_folder(data_dir: str | Path, teacher: dict[str, str], out: str | Path) -> int:
    """Write the folder described in the module docstring; returns how many teacher captions it added.

    Raises:
        FileExistsError: ``out`` exists and is not empty (a previous folder is never overwritten).
        ValueError: no teacher caption names a photo of the data set's token file.
        OSError: the links cannot be made (on Windows, links need developer mode).
    """
    data_dir, out = Path(data_dir).resolve(), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    captions = load_captions(data_dir / TOKEN_FILE)
    added = {name: text for name, text in teacher.items() if name in captions}
    if not added:
        raise ValueError(f"none of the {len(teacher)} teacher captions names a photo of {data_dir / TOKEN_FILE}")
    if len(added) < len(teacher):
        logger.warning("%d teacher captions name no photo of the data set; left out", len(teacher) - len(added))
    out.mkdir(parents=True, exist_ok=True)
    for entry in sorted(data_dir.iterdir()):
        if entry.name != TOKEN_FILE:
            os.symlink(entry, out / entry.name, target_is_directory=entry.is_dir())
    text = (data_dir / TOKEN_FILE).read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{name}#{len(captions[name])}\t{caption}\n" for name, caption in added.items())
    (out / TOKEN_FILE).write_text(text, encoding="utf-8")
    return len(added)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the Flickr8k-layout folder")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's training.evaluate --json report")
    parser.add_argument("--out", type=Path, required=True, help="the new folder (must not exist or be empty)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        teacher = teacher_captions(json.loads(args.teacher.read_text(encoding="utf-8")))
        added = write_distill_folder(args.data, teacher, args.out)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{added} teacher captions added as references in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
