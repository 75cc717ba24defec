"""Peak memory of loading a huge photo for captioning: reduced decoding vs decoding at full size.

Makes 196-megapixel PNGs (14000 x 14000, RGB and RGBA) and a 100-megapixel JPEG in a temporary folder,
then in a fresh process (Linux: the peak is read from /proc) each loads it as the captioner does
(``load_image(path, 260)``), once as imgcap does now and once with the early reduction switched off
(what it did before), and prints the peak resident memory above the process's baseline (after
imports), and the ratio.

    .venv/bin/python benchmarks/bench_image_memory.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# The peak is VmHWM from /proc (Linux): getrusage's ru_maxrss would carry this parent's peak into
# the child across fork and exec.
CHILD = """
import sys
sys.path.insert(0, {repo!r})
import model.images as images
def hwm_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
if {full_size}:
    images.REDUCE_ABOVE_PIXELS = 10**12
    from PIL import JpegImagePlugin
    JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None
base = hwm_kib()
pixels = images.load_image({path!r}, 260)
print(pixels.shape, (hwm_kib() - base) / 1024)
"""


def peak_mib(path: Path, full_size: bool) -> float:
    code = CHILD.format(repo=str(REPO), path=str(path), full_size=full_size)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600).stdout
    return float(out.split()[-1])


def make_photos(folder: Path) -> list[Path]:
    side = 14000
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    rgb = np.empty((side, side, 3), np.uint8)
    rgb[..., 0] = ramp[None, :]
    rgb[..., 1] = ramp[:, None]
    rgb[..., 2] = 128
    png = folder / "huge-196mp.png"
    Image.fromarray(rgb).save(png, compress_level=1)
    jpg = folder / "big-100mp.jpg"
    Image.fromarray(rgb[:10000, :10000]).save(jpg, quality=85)
    del rgb
    rgba = np.empty((side, side, 4), np.uint8)
    rgba[..., 0] = ramp[None, :]
    rgba[..., 1] = ramp[:, None]
    rgba[..., 2:] = 200
    rgba_png = folder / "huge-196mp-rgba.png"
    Image.fromarray(rgba).save(rgba_png, compress_level=1)
    return [png, rgba_png, jpg]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp))
        print(f"{'photo':22} {'reduced (MiB)':>14} {'full size (MiB)':>16} {'ratio':>7}")
        for photo in photos:
            reduced, full = peak_mib(photo, False), peak_mib(photo, True)
            print(f"{photo.name:22} {reduced:>14.0f} {full:>16.0f} {full / reduced:>7.1f}")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help, and no stray argument
    main()
