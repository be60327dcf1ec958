#!/usr/bin/env bash
# Download the VWW training set (vw_coco2014_96), COCO val2017 images and the 2017 annotations
# (resumable, checksum-verified where a checksum is published, skipped when present).
# Usage: bash visual_wake_words/download.sh [--data-dir DIR] [--mirror URL_OR_DIR]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash visual_wake_words/download.sh" exec "${PYTHON:-python3}" -m common.cli download visual_wake_words "$@"
