#!/usr/bin/env bash
# Set up (scripts/setup.sh test), check the layer contracts (import-linter) and the lint rules (ruff,
# both in pyproject.toml) and run the whole test suite, offscreen. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
PYTHONPATH="$PWD" .venv/bin/lint-imports
.venv/bin/ruff check .
export QT_QPA_PLATFORM=offscreen TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest "$@"
