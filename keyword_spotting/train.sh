#!/usr/bin/env bash
# Train DS-CNN models from keyword_spotting/configs/NAME.yaml (all of them, or those named) into
# trained_models/keyword_spotting/NAME/. Needs preprocess.sh first.
# Usage: bash keyword_spotting/train.sh [NAME ...] [--data-dir DIR] [--set KEY=VALUE] [--force]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash keyword_spotting/train.sh" exec "${PYTHON:-python3}" -m common.cli train keyword_spotting "$@"
