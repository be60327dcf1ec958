"""Shared test setup: quiet TensorFlow; the repository root.

The project is installed (pip install -e .), so `common` and the task packages import from anywhere."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
