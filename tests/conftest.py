"""Shared test setup: quiet TensorFlow; the repository root.

The project is installed (pip install -e .), so `common` and the task packages import from anywhere; the
scripts and commands the tests start import them from this checkout, whichever checkout the install points
at (a second clone or worktree tests its own code)."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
