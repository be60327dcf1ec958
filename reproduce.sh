#!/usr/bin/env bash
# Reproduce the paper's Table 1 and figures from the authors' pretrained weights, for every task.
# Downloads the test data each task needs unless its test set is in place (1.35 GB in all: CIFAR-10
# 0.17 GB, the Speech Commands test set 0.11 GB, COCO val2017 and annotations 1.07 GB), prepares the
# test sets, evaluates every model and writes results/TASK/ and results/table1.md. Usage:
#   bash reproduce.sh [--data-root DIR] [--results-root DIR] [--mirror URL_OR_DIR] [TASK ...]
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code
TRECX_SCRIPT="bash reproduce.sh" exec "${PYTHON:-python3}" -m common.cli reproduce "$@"
