#!/usr/bin/env bash
# Evaluate the toy's three models on test.npz: summary.json, traces/, table1.md, FigToy.
# Usage: bash tests/toy_task/test.sh [--data-dir DIR] [--results-dir OUT] [--models pretrained|trained]
# Run with the task registered: TRECX_EXTRA_TASKS=toy_task (this folder's parent goes on PYTHONPATH here).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$here/..:$here/../..${PYTHONPATH:+:$PYTHONPATH}"  # the toy package, and this checkout's code
TRECX_SCRIPT="bash tests/toy_task/test.sh" exec "${PYTHON:-python3}" -m common.cli test toy_task "$@"
