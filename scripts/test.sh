#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh
$PY -m pip install --quiet -r requirements-test.txt
if [ -f scripts/setup_browser_tests.sh ]; then bash scripts/setup_browser_tests.sh; fi
# browser tests must run here (they only skip when chromium/playwright are absent and this is unset)
export MAST3R_REQUIRE_BROWSER=1
$PY -m pytest -q -ra "$@"
