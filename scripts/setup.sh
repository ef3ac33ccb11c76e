#!/usr/bin/env bash
# Install the project and its dependencies into the current Python environment.
# torch is installed first and pinned: an unpinned torch can pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if ! $PY -c "import torch" 2>/dev/null; then
    $PY -m pip install --quiet "$TORCH_SPEC"
fi
$PY -m pip install --quiet -r requirements.txt
$PY -m pip install --quiet --no-build-isolation -e .
