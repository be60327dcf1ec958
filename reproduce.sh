#!/usr/bin/env bash
# Reproduce the paper's Table 1 and figures from the authors' pretrained weights, for every task.
# Downloads each dataset when it is missing (about 2.3 GB Speech Commands, 1 GB COCO val2017, 0.4 GB
# VWW training set, 0.2 GB CIFAR-10), prepares the test sets, evaluates every model and writes
# results/TASK/ and results/table1.md. Usage:
#   bash reproduce.sh [--data-root DIR] [--results-root DIR] [TASK ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA_ROOT="$ROOT/data"
RESULTS_ROOT="$ROOT/results"
TASKS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data-root) DATA_ROOT="$2"; shift 2 ;;
    --results-root) RESULTS_ROOT="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    image_classification|keyword_spotting|visual_wake_words) TASKS+=("$1"); shift ;;
    *) echo "error: unknown argument $1; see bash reproduce.sh --help" >&2; exit 2 ;;
  esac
done
[ ${#TASKS[@]} -gt 0 ] || TASKS=(image_classification keyword_spotting visual_wake_words)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
for task in "${TASKS[@]}"; do
  echo "== $task"
  data="$DATA_ROOT/$task"
  bash "$ROOT/$task/download.sh" --data-dir "$data"
  test_dir="$data"
  if [ "$task" = visual_wake_words ]; then
    bash "$ROOT/$task/preprocess.sh" --data-dir "$data"   # builds the minival test set
    test_dir="$data/minival"
  fi
  bash "$ROOT/$task/test.sh" --data-dir "$test_dir" --results-dir "$RESULTS_ROOT/$task"
done
"${PYTHON:-python3}" -m common.cli report --results-root "$RESULTS_ROOT"
