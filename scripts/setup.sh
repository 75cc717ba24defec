#!/usr/bin/env bash
# Create .venv and install imgcap into it (idempotent). Debian packages that the tests and the
# frozen build need are installed too when we are root with apt-get (CI, containers).
#   scripts/setup.sh          the app and CLI
#   scripts/setup.sh test     + test tools, exiftool, Java (METEOR), Qt's system libraries
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
if [ "${1:-}" = test ]; then
    extras="[test,build]"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends \
            libimage-exiftool-perl default-jre-headless xvfb \
            libegl1 libgl1 libopengl0 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 >/dev/null
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".$extras"
