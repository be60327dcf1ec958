#!/usr/bin/env bash
# Train ResNet-8 models from image_classification/configs/NAME.yaml (all of them, or those named).
# Usage: bash image_classification/train.sh [NAME ...] [--data-dir DIR] [--set KEY=VALUE] [--force]
#   NAME: base, trecx_ev, trecx_noev, sdn, branchynet. Results: trained_models/image_classification/NAME/
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash image_classification/train.sh" exec "${PYTHON:-python3}" -m common.cli train image_classification "$@"
