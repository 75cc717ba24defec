#!/usr/bin/env bash
# Build the one-folder app dist/imgcap/ and its archive dist/imgcap-linux-x86_64.tar.xz.
# Usage: packaging/build.sh   (from anywhere; uses $PYTHON, default: the checkout's .venv or python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
ENCODERS=${IMGCAP_ENCODER_BUILD_DIR:-build/encoders}
export IMGCAP_ENCODER_BUILD_DIR=$ENCODERS
start=$(date +%s)

echo "== building the encoder graph into $ENCODERS"
"$PYTHON" packaging/convert_encoder.py "$ENCODERS" efficientnet_lite2

BUNDLES=${IMGCAP_BUNDLE_BUILD_DIR:-build/bundles}
export IMGCAP_BUNDLE_BUILD_DIR=$BUNDLES
echo "== the model bundle without its Keras weights into $BUNDLES"
"$PYTHON" packaging/lean_bundle.py "$BUNDLES" flickr8k-lite2

echo "== PyInstaller"
"$PYTHON" -m PyInstaller build.spec --noconfirm --log-level "${PYI_LOG_LEVEL:-WARN}"
built=$(date +%s)

echo "== stripping the Python runtime's own binaries (symbols only; auditwheel-patched wheels' libraries are left alone)"
if command -v strip >/dev/null; then
    find dist/imgcap/_internal -maxdepth 1 -name "libpython3*.so*" -type f -exec strip --strip-unneeded {} +
    find dist/imgcap/_internal/python3* dist/imgcap/_internal/PIL -name "*.so" -type f -exec strip --strip-unneeded {} +
fi

echo "== archive"
# xz: 100 MB where gzip gave 126 MB for the same folder (tag-aware model); every tar reads it.
rm -f dist/imgcap-linux-x86_64.tar.gz
tar -C dist -cf - imgcap | xz -T0 -6 > dist/imgcap-linux-x86_64.tar.xz
done_=$(date +%s)

echo "build time:    $((built - start)) s (PyInstaller + conversion), archive $((done_ - built)) s"
echo "unpacked size: $(du -sh dist/imgcap | cut -f1) ($(du -sb dist/imgcap | cut -f1) bytes)"
echo "archive size:  $(du -h dist/imgcap-linux-x86_64.tar.xz | cut -f1) ($(stat -c %s dist/imgcap-linux-x86_64.tar.xz) bytes)"
