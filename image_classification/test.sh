#!/usr/bin/env bash
# Evaluate the five ResNet-8 models on the CIFAR-10 test batch: summary.json, traces/, benefit curves,
# table1.md, Fig4a and Fig7a. Usage:
#   bash image_classification/test.sh [--data-dir DIR] [--results-dir OUT] [--models pretrained|trained]
#                   [--model NAME,...]
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash image_classification/test.sh" exec "${PYTHON:-python3}" -m common.cli test image_classification "$@"
