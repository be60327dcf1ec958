#!/usr/bin/env bash
# Build the train/validation/test splits as TFDS speech_commands does and cache audio and MFCCs.
# Usage: bash keyword_spotting/preprocess.sh [--data-dir DIR]   (--help for all options)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
TRECX_SCRIPT="bash keyword_spotting/preprocess.sh" exec "${PYTHON:-python3}" -m common.cli preprocess keyword_spotting "$@"
