#!/usr/bin/env bash
# Evaluate the three MobileNet models on person/ and non_person/ image folders: summary.json,
# traces/, benefit curves, table1.md and Fig4c.
# Usage: bash visual_wake_words/test.sh [--data-dir DIR] [--results-dir OUT] [--models pretrained|trained]
#                   [--model NAME,...]   (--help for all options)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash visual_wake_words/test.sh" exec "${PYTHON:-python3}" -m common.cli test visual_wake_words "$@"
