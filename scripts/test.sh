#!/usr/bin/env bash
# Installs florgit with its test extras (CPU torch first) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore torch==2.13.0
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[test]"
python3 -m pytest -q "$@"
