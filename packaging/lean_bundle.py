"""Copy the shipped model bundles without their Keras weights, for the frozen build.

Usage: ``python packaging/lean_bundle.py OUTPUT_DIR [BUNDLE ...]`` (default: flickr8k-lite2).
The frozen app runs on ONNX Runtime only, so the decoder's ONNX graphs in the bundle replace
``decoder.weights.npz`` (about 13 MB less in the archive); see ``model.bundle.graphs_only_copy``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    from model.bundle import graphs_only_copy
    from model.resources import resource_path

    out_dir = Path(argv[0])
    for name in argv[1:] or ["flickr8k-lite2"]:
        copy = graphs_only_copy(resource_path("models", name), out_dir / name,
                                "frozen build: the ONNX graphs carry the decoder")
        size = sum(p.stat().st_size for p in copy.iterdir())
        print(f"{copy} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
