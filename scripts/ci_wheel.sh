#!/usr/bin/env bash
# CI: build the wheel, install it into a fresh venv outside the checkout, and caption the samples
# with it: the shipped resources must reach an installed wheel, and `pip install` (no extras) must
# bring no TensorFlow.
#   scripts/ci_wheel.sh     (uses $PYTHON to build, default: the checkout's .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

echo "== building the wheel"
"$PYTHON" -m pip install -q build
"$PYTHON" -m build --wheel --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
wheel=$(ls "$WORK"/dist/imgcap-*.whl)
echo "$(basename "$wheel"): $(du -h "$wheel" | cut -f1)"

echo "== installing it into a fresh venv"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/python" -m pip install -q "$wheel"
if "$WORK/venv/bin/python" -m pip show tensorflow >/dev/null 2>&1; then
    echo "ci_wheel: pip install of the wheel brought TensorFlow" >&2
    exit 1
fi
echo "venv size: $(du -sh "$WORK/venv" | cut -f1) (no TensorFlow)"

echo "== captioning the samples with the installed wheel (from outside the checkout)"
cp -r "$ROOT/resources/samples" "$WORK/photos"
cd "$WORK"
unset IMGCAP_RESOURCES PYTHONPATH
export IMGCAP_CACHE_DIR=$WORK/cache
"$WORK/venv/bin/imgcap" caption photos --json >"$WORK/captions.jsonl"
cat "$WORK/captions.jsonl" | cut -c1-160
n_photos=$(find photos -name '*.jpg' | wc -l)
n_captions=$(grep -c '"caption": "[a-z]' "$WORK/captions.jsonl" || true)
[ "$n_captions" -eq "$n_photos" ] || { echo "ci_wheel: $n_captions captions for $n_photos photos" >&2; exit 1; }
"$WORK/venv/bin/imgcap-desktop" --selftest
echo "ci_wheel: wheel install OK ($(( $(date +%s) - start )) s)"
