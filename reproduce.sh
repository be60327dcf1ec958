#!/usr/bin/env bash
# Reproduce the paper's Table 1 and figures from the authors' pretrained weights, for every task.
# Downloads each dataset when it is missing (about 2.3 GB Speech Commands, 1 GB COCO val2017, 0.4 GB
# VWW training set, 0.2 GB CIFAR-10), prepares the test sets, evaluates every model and writes
# results/TASK/ and results/table1.md. Usage:
#   bash reproduce.sh [--data-root DIR] [--results-root DIR] [TASK ...]
set -euo pipefail
exec "${PYTHON:-python3}" -m common.cli reproduce "$@"
