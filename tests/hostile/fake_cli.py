"""Run ``imgcap`` with a fast stand-in engine, for the hostile tests that need a real process
(a FIFO must not hang it, stdout must carry only our output).

    python -m tests.hostile.fake_cli caption PATH... [options]

The engine loads every photo as the real one does (``model.images.load_image``), so unreadable
files fail the same way, and gives each a fixed caption and tags. With ``IMGCAP_TEST_NOISE=1`` it
also prints a library-style warning on stdout, from Python and straight to file descriptor 1, as
Exiv2 did.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from model.images import ImageLoadError, load_image
from model.results import CaptionFailure, CaptionResult, Tag


class StandInCaptioner:
    name = "stand-in"
    device = "CPU"
    provider = "CPUExecutionProvider"
    runtime = "onnx"

    def caption_batches(self, images, beam_size=3, batch_size=8):
        images = list(images)
        for start in range(0, len(images), batch_size):
            yield [self._one(path) for path in images[start:start + batch_size]]

    def _one(self, path):
        if os.environ.get("IMGCAP_TEST_NOISE"):
            print("[warn] Unsupported date format")
            sys.stdout.flush()
            os.write(1, b"Warning: XMP toolkit says hello\n")
        try:
            load_image(path, 32)
        except ImageLoadError as exc:
            return CaptionFailure(str(path), exc.reason)
        words = ("a", "cat", "on", "a", "sofa")
        tags = (Tag("cat", 0.8, (285,)), Tag("sofa", 0.1, (831,)))
        return CaptionResult(str(path), words, tuple(range(5)), -0.5,
                             np.zeros((5, 2, 2), np.float32), (), tags, ("cat",))


def main() -> int:
    from imgcap_desktop.cli import main as cli_main
    from model.captioner import Captioner

    Captioner.from_bundle = classmethod(lambda cls, path=None, device="auto", **options: StandInCaptioner())
    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
