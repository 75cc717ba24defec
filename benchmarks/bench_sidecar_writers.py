"""Which XMP writer keeps other tools' values exactly? imgcap's byte-splice editor vs Exiv2, Exempi, exiftool.

Each writer sets the caption (``dc:description`` x-default) and appends one keyword (``dc:subject``)
in every sidecar of the corpus in ``tests/desktop/xmp_corpus.py`` (exiftool-written sidecars with
many namespaces, and hand-written ones). For each writer it prints: sidecars written, sidecars where
any other property's raw value changed (compared with an independent ElementTree reading), the
number of such values, sidecars where exiftool's own reading of another tag changed, and the median
time per write, all from one run.

    .venv/bin/python benchmarks/bench_sidecar_writers.py

Exiv2 is measured through ``pyexiv2`` and Exempi through ``python-xmp-toolkit`` (with Debian's
``libexempi8``) when they are installed; neither is a dependency of imgcap. exiftool is needed
for the corpus.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgcap_desktop.metadata.sidecar import StoredCaption, write_caption  # noqa: E402
from tests.desktop.xmp_corpus import EXIFTOOL, make_corpus, raw_values, subject_of  # noqa: E402

CAPTION = "a dog runs on the grass"
KEYWORD = "dog"


def imgcap_writer(photo: Path, sidecar: Path) -> None:
    write_caption(photo, StoredCaption(CAPTION, "automatic", "m", -0.5, None, (KEYWORD,)))


def exiv2_writer():
    import pyexiv2

    def write(photo: Path, sidecar: Path) -> None:
        image = pyexiv2.ImageData(sidecar.read_bytes())
        try:
            xmp = image.read_xmp()
            subjects = xmp.get("Xmp.dc.subject", [])
            languages = {**xmp.get("Xmp.dc.description", {}), 'lang="x-default"': CAPTION}  # keep the others
            image.modify_xmp({"Xmp.dc.description": languages,
                              "Xmp.dc.subject": [*subjects, KEYWORD]})  # fmt: skip
            sidecar.write_bytes(image.get_bytes())
        finally:
            image.close()

    return write


def exempi_writer():
    from libxmp import XMPMeta, consts

    def write(photo: Path, sidecar: Path) -> None:
        xmp = XMPMeta(xmp_str=sidecar.read_text(encoding="utf-8"))
        xmp.set_localized_text(consts.XMP_NS_DC, "description", "", "x-default", CAPTION)
        xmp.append_array_item(consts.XMP_NS_DC, "subject", KEYWORD, {"prop_array_is_unordered": True})
        sidecar.write_text(xmp.serialize_to_unicode(), encoding="utf-8")

    return write


def exiftool_writer(photo: Path, sidecar: Path) -> None:
    subprocess.run([EXIFTOOL, "-q", "-q", "-overwrite_original", f"-XMP-dc:Description-x-default={CAPTION}",
                    f"-XMP-dc:Subject+={KEYWORD}", str(sidecar)], check=True, timeout=60)  # fmt: skip


def exiftool_view(paths: list[Path]) -> dict[str, dict]:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-struct", "-XMP:all", *map(str, paths)],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    view = {}
    for record in json.loads(out or "[]"):
        name = Path(record.pop("SourceFile")).name
        view[name] = {k: v for k, v in record.items() if k not in ("XMP-dc:Description", "XMP-dc:Subject")
                      and not k.startswith("XMP-imgcap:") and not k.startswith("System:")}  # fmt: skip
    return view


def measure(name, writer, originals: Path, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(originals, work)
    photos = sorted(work.glob("*.jpg"))
    sidecars = [p.with_name(p.name + ".xmp") for p in photos]
    before = {s.name: s.read_bytes() for s in sidecars}
    view_before = exiftool_view(sidecars)
    times, failed = [], []
    for photo, sidecar in zip(photos, sidecars):
        start = time.perf_counter()
        try:
            writer(photo, sidecar)
        except Exception as exc:  # noqa: BLE001 - a writer's refusal is a result here
            failed.append(f"{sidecar.name}: {exc}")
            continue
        finally:
            times.append(time.perf_counter() - start)
    view_after = exiftool_view(sidecars)
    changed_files = changed_values = tool_changed = lost_keywords = 0
    for sidecar in sidecars:
        old, new = raw_values(before[sidecar.name]), raw_values(sidecar.read_bytes())
        if old != new:
            changed_files += 1
            changed_values += len(set(old) ^ set(new)) or 1
        if view_before.get(sidecar.name) != view_after.get(sidecar.name):
            tool_changed += 1
        theirs = subject_of(before[sidecar.name])
        if [k for k in subject_of(sidecar.read_bytes()) if k in set(theirs)][: len(theirs)] != theirs:
            lost_keywords += 1
    return {"writer": name, "files": len(sidecars), "written": len(sidecars) - len(failed),
            "changed_files": changed_files, "changed_values": changed_values, "tool_changed": tool_changed,
            "lost_keywords": lost_keywords, "median_ms": 1000 * statistics.median(times), "failed": failed}  # fmt: skip


def main() -> None:
    if EXIFTOOL is None:
        sys.exit("exiftool is needed for the corpus (Debian package libimage-exiftool-perl)")
    writers = [("imgcap (byte splice)", imgcap_writer), ("exiftool", exiftool_writer)]
    for name, factory in (("Exiv2 (pyexiv2)", exiv2_writer), ("Exempi (python-xmp-toolkit)", exempi_writer)):
        try:
            writers.append((name, factory()))
        except (ImportError, OSError) as exc:
            print(f"{name}: not measured ({exc})")
    with tempfile.TemporaryDirectory() as tmp:
        originals = Path(tmp) / "corpus"
        make_corpus(originals)
        results = [measure(name, writer, originals, Path(tmp) / "work") for name, writer in writers]
    print(f"corpus: {results[0]['files']} sidecars\n")
    print(f"{'writer':30} {'written':>8} {'values changed (files/values)':>30} {'exiftool view changed':>22} "
          f"{'their keywords lost':>20} {'median ms/write':>16}")  # fmt: skip
    for r in results:
        print(f"{r['writer']:30} {r['written']:>8} {str(r['changed_files']) + ' / ' + str(r['changed_values']):>30} "
              f"{r['tool_changed']:>22} {r['lost_keywords']:>20} {r['median_ms']:>16.1f}")  # fmt: skip
    for r in results:
        for failure in r["failed"]:
            print(f"  {r['writer']} refused {failure}")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help, and no stray argument
    main()
