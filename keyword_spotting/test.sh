#!/usr/bin/env bash
# Evaluate the six DS-CNN models on the Speech Commands test clips: summary.json, traces/, benefit
# curves, table1.md, Fig4b, Fig6 and Fig7b.
# Usage: bash keyword_spotting/test.sh [--data-dir DIR] [--results-dir OUT] [--models pretrained|trained]
#                   [--model NAME,...]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash keyword_spotting/test.sh" exec "${PYTHON:-python3}" -m common.cli test keyword_spotting "$@"
