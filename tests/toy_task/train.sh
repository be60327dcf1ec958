#!/usr/bin/env bash
# Train the toy's models from tests/toy_task/configs/NAME.yaml (all of them, or those named).
# Usage: bash tests/toy_task/train.sh [NAME ...] [--data-dir DIR] [--set KEY=VALUE] [--force]
# Run with the task registered: TRECX_EXTRA_TASKS=toy_task (this folder's parent goes on PYTHONPATH here).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$here/..:$here/../..${PYTHONPATH:+:$PYTHONPATH}"  # the toy package, and this checkout's code
TRECX_SCRIPT="bash tests/toy_task/train.sh" exec "${PYTHON:-python3}" -m common.cli train toy_task "$@"
