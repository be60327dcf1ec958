#!/usr/bin/env bash
# Export the toy's T-RecX model to LiteRT and run it with early exit (as image_classification/deploy.sh).
# Usage: bash tests/toy_task/deploy.sh [--data-dir DIR] [--results-dir OUT] [--models pretrained|trained] [--rho R]
# Run with the task registered: TRECX_EXTRA_TASKS=toy_task (this folder's parent goes on PYTHONPATH here).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$here/..:$here/../..${PYTHONPATH:+:$PYTHONPATH}"  # the toy package, and this checkout's code
TRECX_SCRIPT="bash tests/toy_task/deploy.sh" exec "${PYTHON:-python3}" -m common.cli deploy toy_task "$@"
