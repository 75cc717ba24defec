"""``training.originals``: the originals of a split, their squashed copies, and the comparison."""

from __future__ import annotations

import json

from PIL import Image

from training.data import load_dataset
from training.originals import main, originals, squashed_copies


def _sources(tiny_flickr, big: set[str]):
    lines = ["file_name\tsource_repo\tsource_commit\tsource_path\tsource_width\tsource_height"]
    for name in sorted(tiny_flickr.captions):
        width, height = (500, 375) if name in big else (224, 224)
        lines.append(f"{name}\trepo\tcommit\tpath/{name}\t{width}\t{height}")
    (tiny_flickr.root / "SOURCES_images.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_originals_are_the_photos_from_larger_sources_and_copies_are_squashed(tiny_flickr, tmp_path):
    _sources(tiny_flickr, big={tiny_flickr.dev[0], tiny_flickr.train[0]})
    items, _ = load_dataset(tiny_flickr.root, "dev")
    chosen = originals(items, tiny_flickr.root / "SOURCES_images.tsv")
    assert [path.name for path, _ in chosen] == [tiny_flickr.dev[0]]
    copies = squashed_copies(chosen, tmp_path)
    assert copies[0][1] == chosen[0][1]
    with Image.open(copies[0][0]) as image:
        assert image.size == (224, 224)
    with Image.open(chosen[0][0]) as image:
        assert image.size != (224, 224)  # the photo itself is left as it is


def test_the_command_scores_both_versions(tiny_flickr, tmp_path):
    from model.testing import make_tiny_bundle

    tiny_bundle = make_tiny_bundle(tmp_path / "bundle")
    _sources(tiny_flickr, big=set(tiny_flickr.dev[:2]))
    out = tmp_path / "result.json"
    assert main(["--data", str(tiny_flickr.root), "--split", "dev", "--bundle", str(tiny_bundle), "--beam", "2",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["photos"] == 2 and set(result["scores"]) == {"as they are", "squashed"}
    assert all(set(row) == {"BLEU-4", "CIDEr", "concept-F1", "hallucination"} for row in result["scores"].values())
    assert 0 <= result["captions_changed"] <= 2


def test_without_a_sources_file_it_says_what_is_missing(tiny_flickr, capsys):
    assert main(["--data", str(tiny_flickr.root)]) == 2
    assert "SOURCES_images.tsv" in capsys.readouterr().err
