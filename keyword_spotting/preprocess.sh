#!/usr/bin/env bash
# Build the train and validation splits as TFDS speech_commands does and cache their audio and MFCCs.
# Usage: bash keyword_spotting/preprocess.sh [--data-dir DIR]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash keyword_spotting/preprocess.sh" exec "${PYTHON:-python3}" -m common.cli preprocess keyword_spotting "$@"
