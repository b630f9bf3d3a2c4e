#!/usr/bin/env bash
# The main job from the README: a local HA cluster and the failover demo (`orbitmq demo`).
# Creates .venv and installs the project if needed; extra args go to `orbitmq demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q -e .
exec orbitmq demo "$@"
