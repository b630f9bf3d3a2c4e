#!/usr/bin/env bash
# The test command from the README: the whole suite (unit, property and real-process tests).
# Creates .venv and installs the project with its test extras if needed; extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q -e '.[test]'
exec python -m pytest -q "$@"
