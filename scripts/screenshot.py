"""Render the main window, with a captioned folder and one word's attention overlay, to a PNG for the README.

    QT_QPA_PLATFORM=offscreen python scripts/screenshot.py [--out docs/screenshot.png] [--bundle DIR]

The photos are scikit-image's sample photos; the model is the shipped bundle (or ``--bundle``). Nothing
is written outside a temporary folder except the PNG. Settings are kept in the temporary folder too.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "immunohistochemistry")
MAX_BYTES = 500_000


def write_samples(folder: Path) -> None:
    import skimage.data
    from PIL import Image

    for name in SAMPLES:
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.jpg", quality=90)


def save_small_png(image, out: Path) -> None:
    """Save a QImage as PNG, quantised to a palette if that is what it takes to stay under MAX_BYTES."""
    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    data = bytes(buffer.data())
    if len(data) > MAX_BYTES:
        rgb = Image.open(io.BytesIO(data)).convert("RGB")
        stream = io.BytesIO()
        rgb.save(stream, "PNG", optimize=True)
        data = stream.getvalue()
    if len(data) > MAX_BYTES:  # a palette, dithered from the whole screenshot's colours
        palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT)
        pil = rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        stream = io.BytesIO()
        pil.save(stream, "PNG", optimize=True)
        data = stream.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data) // 1024} KB, {image.width()}x{image.height()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--photo", default="chelsea", choices=SAMPLES, help="the photo shown large")
    parser.add_argument("--word", type=int, default=None,
                        help="which word's attention to show (default: a noun-ish one)")
    parser.add_argument("--size", default="1280x800")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QEventLoop, QSettings, QThreadPool, QTimer
    from PySide6.QtWidgets import QApplication

    workdir = Path(tempfile.mkdtemp(prefix="imgcap-shot-"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(workdir / "settings"))
    app = QApplication.instance() or QApplication([])
    app.setStyle("Fusion")

    from imgcap_desktop.caption_service import CaptionService
    from imgcap_desktop.main_window import MainWindow
    from imgcap_desktop.settings import AppSettings

    photos = workdir / "trip"
    photos.mkdir()
    write_samples(photos)
    window = MainWindow(service=CaptionService(bundle=args.bundle), settings=AppSettings())
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    window.open_folder(photos)

    loop = QEventLoop()
    window.service.finished.connect(loop.quit)
    window.service.model_failed.connect(lambda reason: print("model failed:", reason, file=sys.stderr))
    window.caption_all()
    QTimer.singleShot(600_000, loop.quit)
    loop.exec()

    row = window.photos.row_of(photos / f"{args.photo}.jpg")
    window.grid.setCurrentIndex(window.filtered.mapFromSource(window.photos.index(row)))
    QThreadPool.globalInstance().waitForDone(10_000)
    for _ in range(5):
        app.processEvents()
    item = window.photos.item(row)
    if item.result is not None and item.attention_matches and item.result.words:
        word = args.word if args.word is not None else _pick_word(item.result.words)
        window.view.select_word(word)
    else:
        print("no attention to show:", item.error or "no caption", file=sys.stderr)
    app.processEvents()
    save_small_png(window.grab().toImage(), args.out)
    window.close()
    return 0


def _pick_word(words: tuple[str, ...]) -> int:
    small = {"a", "an", "the", "is", "are", "on", "in", "of", "with", "and", "at", "to", "its"}
    for i, word in enumerate(words):
        if word not in small and len(word) > 2:
            return i
    return 0


if __name__ == "__main__":
    sys.exit(main())
