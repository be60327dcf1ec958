#!/usr/bin/env bash
# A conda environment for the pipeline, as an alternative to `pip install -r requirements.txt`.
# Usage: bash install_conda_packages.sh [ENV_NAME] [--gpu]
#   ENV_NAME  defaults to trecx.  --gpu installs TensorFlow with its CUDA libraries (Linux, NVIDIA
#   driver >= 525 needed); check with: python -c "import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))"
# Several GPUs: set `distribute: mirrored` in the YAML config (tf.distribute.MirroredStrategy).
set -euo pipefail
ENV_NAME="trecx"
GPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) ENV_NAME="$arg" ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v conda >/dev/null || { echo "error: conda not found; install Miniconda or use pip install -r requirements.txt" >&2; exit 2; }
echo "creating conda environment $ENV_NAME (python 3.11)"
conda create -y -n "$ENV_NAME" python=3.11 pip
(cd "$ROOT" && conda run -n "$ENV_NAME" python -m pip install -r requirements.txt)  # -e .[test]: the repository
if [ "$GPU" = 1 ]; then  # the CUDA libraries of the TensorFlow version pyproject.toml's pins chose
  version="$(conda run -n "$ENV_NAME" python -c "import importlib.metadata as m; print(m.version('tensorflow'))")"
  conda run -n "$ENV_NAME" python -m pip install "tensorflow[and-cuda]==$version"
fi
echo "done: conda activate $ENV_NAME"
