#!/usr/bin/env bash
# Train MobileNetV1-0.25 models from visual_wake_words/configs/NAME.yaml (all, or those named) into
# trained_models/visual_wake_words/NAME/.
# Usage: bash visual_wake_words/train.sh [NAME ...] [--data-dir DIR] [--set KEY=VALUE] [--force]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash visual_wake_words/train.sh" exec "${PYTHON:-python3}" -m common.cli train visual_wake_words "$@"
