#!/usr/bin/env bash
# Download Speech Commands v0.02 and its official test set (checksum-verified, resumable, skipped
# when present) into DATA_DIR/speech_commands_v0.02 and DATA_DIR/speech_commands_test_set_v0.02.
# Usage: bash keyword_spotting/download.sh [--data-dir DIR] [--mirror URL_OR_DIR]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash keyword_spotting/download.sh" exec "${PYTHON:-python3}" -m common.cli download keyword_spotting "$@"
