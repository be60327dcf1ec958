#!/usr/bin/env bash
# Copy the toy's archives (train.npz, test.npz) from --mirror DIR into DATA_DIR.
# Usage: bash tests/toy_task/download.sh [--data-dir DIR] [--mirror DIR]
# Run with the task registered: TRECX_EXTRA_TASKS=toy_task (this folder's parent goes on PYTHONPATH here).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$here/..:$here/../..${PYTHONPATH:+:$PYTHONPATH}"  # the toy package, and this checkout's code
TRECX_SCRIPT="bash tests/toy_task/download.sh" exec "${PYTHON:-python3}" -m common.cli download toy_task "$@"
