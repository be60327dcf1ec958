"""Shared test setup: quiet TensorFlow; the repository root.

The project is installed (pip install -e .), so `common` and the task packages import from anywhere; the
scripts and commands the tests start import them from this checkout, whichever checkout the install points
at (a second clone or worktree tests its own code)."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


# The modules that take longest, first (pytest.ini: --no-loadscope-reorder keeps this order): xdist gives
# each worker whole modules in collection order, so the long ones start at once and the short ones fill in
# around them instead of one long module starting last while the other worker has nothing left to do.
LONGEST_FIRST = (
    "test_deploy.py",
    "test_entry_points.py",
    "test_exit_design.py",
    "test_bad_input_data.py",
    "test_reproduce.py",
    "test_mcu.py",
    "test_training_tasks.py",
    "test_bad_input.py",
    "test_tasks.py",
    "test_training.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
