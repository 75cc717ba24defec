"""A teacher's captions as one more reference (training.distill): the data folder SCST reads for
sequence-level distillation."""

from __future__ import annotations

import json

import pytest

from training import distill
from training.data import load_dataset


def _report(captions: dict[str, str | None]) -> dict:
    return {"captions": [{"image": name, "caption": text, "references": []} for name, text in captions.items()]}


def test_each_captioned_photo_gains_its_teachers_caption_as_the_last_reference(tiny_flickr, tmp_path):
    first, second = tiny_flickr.train[0], tiny_flickr.train[1]
    teacher = distill.teacher_captions(_report({first: "a dog is running", second: None, "elsewhere.jpg": "a cat"}))
    assert teacher == {first: "a dog is running", "elsewhere.jpg": "a cat"}  # a failed photo has no caption

    out = tmp_path / "kd"
    assert distill.write_distill_folder(tiny_flickr.root, teacher, out) == 1
    items = dict(load_dataset(out, "train")[0])
    by_name = {path.name: refs for path, refs in items.items()}
    assert by_name[first] == [*tiny_flickr.captions[first], "a dog is running"]
    assert by_name[second] == tiny_flickr.captions[second]
    assert (out / "images" / first).read_bytes() == (tiny_flickr.images_dir / first).read_bytes()
    assert [path.name for path, _ in load_dataset(out, "dev")[0]] == tiny_flickr.dev
    assert tiny_flickr.token_file.read_text(encoding="utf-8").count(f"{first}#") == 5  # the original is untouched


def test_the_command_refuses_a_used_folder_and_a_teacher_that_names_no_photo(tiny_flickr, tmp_path, capsys):
    report = tmp_path / "teacher.json"
    report.write_text(json.dumps(_report({tiny_flickr.train[0]: "a dog"})), encoding="utf-8")
    out = tmp_path / "kd"
    args = ["--data", str(tiny_flickr.root), "--teacher", str(report), "--out", str(out)]
    assert distill.main(args) == 0
    assert "1 teacher captions added" in capsys.readouterr().out
    before = (out / "Flickr8k.token.txt").read_text(encoding="utf-8")
    assert distill.main(args) == 1 and "not empty" in capsys.readouterr().err
    assert (out / "Flickr8k.token.txt").read_text(encoding="utf-8") == before

    report.write_text(json.dumps(_report({"elsewhere.jpg": "a cat"})), encoding="utf-8")
    assert distill.main([*args[:-1], str(tmp_path / "other")]) == 1
    assert "names a photo" in capsys.readouterr().err
    report.write_text("{}", encoding="utf-8")
    assert distill.main([*args[:-1], str(tmp_path / "third")]) == 1
    assert "not a training.evaluate report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        distill.main(["--data", str(tiny_flickr.root)])
