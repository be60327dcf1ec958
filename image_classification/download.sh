#!/usr/bin/env bash
# Download CIFAR-10 (python version, md5-checked, resumable) into DATA_DIR/cifar-10-batches-py.
# Skipped when that folder is already complete; --data-dir points at an existing copy.
# Usage: bash image_classification/download.sh [--data-dir DIR] [--mirror URL_OR_DIR]
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash image_classification/download.sh" exec "${PYTHON:-python3}" -m common.cli download image_classification "$@"
