#!/usr/bin/env bash
# Create .venv and install imgcap into it (idempotent). Debian packages that the tests and the
# frozen build need are installed too when we are root with apt-get (CI, containers).
#   scripts/setup.sh          the app and CLI
#   scripts/setup.sh test     + test tools, Ray (the cluster extra), exiftool, exiv2 (darktable and digiKam's XMP reader), Java (METEOR), Qt's system libraries
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
if [ "${1:-}" = test ]; then
    extras="[test,build,cluster]"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
        apt_get update -qq || echo "setup: apt-get update failed; trying with the lists we have" >&2
        wanted="libimage-exiftool-perl exiv2 default-jre-headless xvfb binutils xz-utils libegl1 libgl1 libopengl0 libxkbcommon0
                libfontconfig1 libfreetype6 libdbus-1-3 libx11-6 libxcb1 libpng16-16 fonts-dejavu-core
                libglib2.0-0 libglib2.0-0t64"
        # Names differ between Debian releases (libglib2.0-0t64 on trixie): take those this one has.
        available=$(for p in $wanted; do if apt-cache show "$p" >/dev/null 2>&1; then echo "$p"; fi; done)
        # shellcheck disable=SC2086
        apt_get install -y -qq --no-install-recommends $available >/dev/null \
            || echo "setup: some Debian packages did not install; tests that need them will skip" >&2
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".$extras"
