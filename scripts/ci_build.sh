#!/usr/bin/env bash
# CI after the unit tests: build the frozen app, then prove it runs with nothing from the checkout.
#   scripts/ci_build.sh              build (packaging/build.sh) and check dist/imgcap
#   IMGCAP_SKIP_BUILD=1 scripts/...  check an existing dist/imgcap only
# Prints build time, sizes, start-up time to window shown, self-test and caption times.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
APP=$ROOT/dist/imgcap/imgcap

if [ "${IMGCAP_SKIP_BUILD:-0}" != 1 ]; then
    packaging/build.sh
fi
[ -x "$APP" ] || { echo "ci_build: $APP not found" >&2; exit 1; }

# The frozen app must find everything inside itself: no checkout, no Python path, no cache it can
# write, no weight packages, no network, no display.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
unset IMGCAP_RESOURCES PYTHONPATH PYTHONHOME VIRTUAL_ENV
export IMGCAP_CACHE_DIR=/nonexistent/imgcap-cache
export QT_QPA_PLATFORM=offscreen
export XDG_CONFIG_HOME=$WORK/config XDG_DATA_HOME=$WORK/data HOME=$WORK/home
export TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$HOME"
cd "$WORK"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

echo "== frozen self-test"
t=$(now)
"$APP" --selftest
selftest_s=$(elapsed "$t")

echo "== frozen caption (a copy of resources/samples, with sidecars and a CSV)"
cp -r "$ROOT/resources/samples" "$WORK/photos"
t=$(now)
"$APP" caption "$WORK/photos" --write-sidecars --csv "$WORK/captions.csv"
caption_s=$(elapsed "$t")
n_photos=$(find "$WORK/photos" -name '*.jpg' | wc -l)
n_sidecars=$(find "$WORK/photos" -name '*.xmp' | wc -l)
[ "$n_sidecars" -eq "$n_photos" ] || { echo "ci_build: $n_sidecars sidecars for $n_photos photos" >&2; exit 1; }
[ -s "$WORK/captions.csv" ] || { echo "ci_build: no CSV written" >&2; exit 1; }

echo "== frozen start-up to window shown (offscreen; first run cold, then best of 3)"
startups=()
for i in 1 2 3 4; do
    t=$(now)
    "$APP" --exit-after-shown >/dev/null 2>&1
    startups+=("$(elapsed "$t")")
done
best=$(printf '%s\n' "${startups[@]:1}" | sort -n | head -1)

echo
echo "frozen self-test:          ${selftest_s} s (wall, incl. imports and model load)"
echo "frozen caption ($n_photos photos):  ${caption_s} s (wall)"
echo "start-up to window shown:  cold ${startups[0]} s, warm best ${best} s (runs: ${startups[*]})"
echo "unpacked size:             $(du -sh "$ROOT/dist/imgcap" | cut -f1)"
[ -f "$ROOT/dist/imgcap-linux-x86_64.tar.xz" ] && \
    echo "archive size:              $(du -h "$ROOT/dist/imgcap-linux-x86_64.tar.xz" | cut -f1) ($(stat -c %s "$ROOT/dist/imgcap-linux-x86_64.tar.xz") bytes)"
echo "ci_build: frozen app OK"
