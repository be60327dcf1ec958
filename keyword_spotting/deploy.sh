#!/usr/bin/env bash
# Export a T-RecX model and the base model to LiteRT (float32, int8) and C arrays, run them one sample
# at a time with early exit, and write deploy.json, deploy.md, int8_vs_float.png|pdf and export/; with --mcu,
# also run the int8 models in TensorFlow Lite Micro on emulated Cortex-M cores (instruction counts). Usage:
#   bash keyword_spotting/deploy.sh [--data-dir DIR] [--results-dir OUT] [--models pretrained|trained] [--rho R]
#                     [--calibration-data DIR2] [--train-data-dir DIR3] [--model trecx_ev|trecx_noev]
#                     [--mcu cortex-m4,cortex-m4:reference,cortex-m7,cortex-m55|all] [--mcu-samples K|all]
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash keyword_spotting/deploy.sh" exec "${PYTHON:-python3}" -m common.cli deploy keyword_spotting "$@"
