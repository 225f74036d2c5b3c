#!/usr/bin/env bash
# Installs florgit with its test extras (CPU torch first) and a headless Chromium for the
# report's browser test, then runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore torch==2.13.0
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[test]"
if ! command -v chromium-headless-shell >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell) >/dev/null \
            || echo "warning: could not install chromium-headless-shell; the report's browser test will be skipped" >&2
    else
        echo "warning: no headless Chromium (install chromium-headless-shell); the report's browser test will be skipped" >&2
    fi
fi
python3 -m pytest -q -n 2 "$@"  # two workers: most tests wait on git and Python subprocesses
