#!/usr/bin/env bash
# Installs florgit (CPU torch first, so no CUDA build is pulled) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore torch==2.13.0
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e .
python3 -m florgit.demo
