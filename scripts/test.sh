#!/usr/bin/env bash
# The test command from the README: the whole suite (unit, property and real-process tests).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || { python3 -m venv .venv; . .venv/bin/activate; python -m pip install -q -e '.[test]'; }
. .venv/bin/activate
exec python -m pytest "$@"
