"""Shared test setup: quiet TensorFlow; the repository root; the toy fourth task registered.

The project is installed (pip install -e .), so `common` and the task packages import from anywhere; the
scripts and commands the tests start import them from this checkout, whichever checkout the install points
at (a second clone or worktree tests its own code).

tests/toy_task is registered as a user registers a task of their own (docs/adding_a_task.md): its name in
$TRECX_EXTRA_TASKS and the folder holding it (tests/) on PYTHONPATH, here once for this process and every
command it starts. Every test parametrised over `task_names()` then checks it as it checks the three."""

import os
import pathlib

from common.tasks import EXTRA_TASKS_VARIABLE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = REPO_ROOT / "tests"
TOY_TASK = "toy_task"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), str(TESTS), os.environ.get("PYTHONPATH")]))
_extra = [name.strip() for name in os.environ.get(EXTRA_TASKS_VARIABLE, "").split(",") if name.strip()]
os.environ[EXTRA_TASKS_VARIABLE] = ",".join(_extra if TOY_TASK in _extra else [*_extra, TOY_TASK])


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
