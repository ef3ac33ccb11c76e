#!/usr/bin/env bash
# Dependencies of the browser tests (tests/browser): Debian's chromium + the Python playwright driver.
# Playwright drives the system chromium (/usr/bin/chromium); no browser is downloaded (never `playwright install`).
set -euo pipefail
PY=${PYTHON:-python3}

if [ -x /usr/bin/chromium ]; then
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
else
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q chromium
fi

if ! $PY -c "import playwright" 2>/dev/null; then
    $PY -m pip install --quiet playwright
fi
$PY -c "import playwright; from importlib.metadata import version; print('playwright', version('playwright'))"
