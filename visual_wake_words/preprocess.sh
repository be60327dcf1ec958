#!/usr/bin/env bash
# Build the authors' minival test set (DATA_DIR/minival/{person,non_person}/) from COCO val2017.
# Usage: bash visual_wake_words/preprocess.sh [--data-dir DIR]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash visual_wake_words/preprocess.sh" exec "${PYTHON:-python3}" -m common.cli preprocess visual_wake_words "$@"
