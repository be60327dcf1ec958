"""The registry of tasks, and what a task must provide.

A task is a package (a folder with `__init__.py`) whose `task` module describes it; everything else
in the pipeline (command line, training, evaluation, deployment, benchmarks, tests) asks this
registry for the tasks and reads their facts from those modules. Adding a task means adding its
folder and its name to `TASKS` (see docs/adding_a_task.md).

A task module must define:
  NAME          the package name ("image_classification")
  TITLE         the model and dataset, for tables and figures ("ResNet-8 (CIFAR-10)")
  ARCHITECTURE  a `common.models.Architecture`: the backbone and where each kind of exit attaches
  MODELS        `ARCHITECTURE.variants()`: the model names the task offers
  DATA_LAYOUT   what a test folder holds, for error messages
  download(data_dir, mirror=None, split="all", force=False, verify_checksums=True) -> the folder holding
                the data (split: what testing needs, "test"; training, "train"; or both; a test set
                already in place counts as present for "test"; force: unpacking may replace files;
                verify_checksums=False: archives re-packed by the user, not the official files)
  load_test(data_dir) -> (inputs float32 (N, *input shape), labels int (N,), ids (N,)), a tuple or
                a `LoadedSet`, which also names the inputs it found but could not score
  training_data(config, data_dir) -> (training tf.data.Dataset, validation Dataset or None)

and may define:
  PAPER           the paper's numbers, shown beside the measured ones ({"table1": {...}, ...})
  AUTHORS_PARAMS  {model: parameter count of the authors' saved model}, which the built networks must have
  synthetic_inputs(n, seed=0) -> (inputs float32 (n, *input shape), labels (n,)): inputs in the real
                  inputs' range that look like them to the networks (labels meaningless), for tests,
                  benchmarks and int8 checks without a dataset
  TEST_SET_SIZE   samples in the real test set
  write_synthetic_test_set(folder, n, seed=0) -> the folder test.sh reads: n synthetic samples written
                  in the test set's real layout and file formats
  write_synthetic_archives(folder) -> `folder`, now a mirror that `download(..., mirror=folder)` accepts:
                  small synthetic stand-ins of the official archives (test and training), in their
                  real formats, for tests of the scripts in a user's order
  FIGURES         {figure name: (title, {legend label: model}, log-scale y)}: test.sh's figures
  AUTHORS_MODELS  {model: path under the authors' models folder}, for `python -m common.pretrained`
  PRETRAINED_DIR  the folder of its pretrained MODEL.npz (default: pretrained/NAME in the repository)
  preprocess(data_dir)                      build splits and caches after download, before training
  prepare_test(data_dir)                    build the test set from the download, where it is not
                                            downloaded as it is (reproduce.sh calls it)
  validation_set(data_dir) -> (inputs, labels)       where deploy.sh chooses rho
  calibration_set(data_dir, n=500, seed=0) -> inputs  deploy.sh's int8 representative set
  training_set(data_dir) -> (inputs, labels)        the training split without the validation inputs, not
                                            augmented, where design-exit trains a branch
  PRETRAINED_TRAINING_DATA  a `common.provenance.DataOrigin`: what its pretrained models were trained on
                  (source and format), which design-exit's report compares its data with
  training_data_origin(data_dir) -> DataOrigin        what training_set and validation_set read there

The task's package (`NAME/__init__.py`) may define, where help texts read it without importing the task
module (which imports TensorFlow):
  TEST_SUBDIR     the sub-folder of data/NAME that test.sh reads by default ("" : data/NAME itself), built
                  by `preprocess` where the task has `prepare_test`

Training configs live beside the task module, in `NAME/configs/MODEL.yaml`.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import types
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from common.errors import UserError

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TASKS = ("image_classification", "keyword_spotting", "visual_wake_words")
# Tasks kept outside this repository: package names, separated by commas, importable from the working
# directory or PYTHONPATH.
EXTRA_TASKS_VARIABLE = "TRECX_EXTRA_TASKS"
# The paper's headline over its three tasks: mean FLOPs reduction at the 1 % trade-off point.
PAPER_MEAN_REDUCTION_PCT = 31.58

REQUIRED = ("NAME", "TITLE", "ARCHITECTURE", "MODELS", "DATA_LAYOUT", "download", "load_test", "training_data")


def task_names() -> tuple[str, ...]:
    """The built-in tasks, then those named in $TRECX_EXTRA_TASKS."""
    extra = [name.strip() for name in os.environ.get(EXTRA_TASKS_VARIABLE, "").split(",") if name.strip()]
    return TASKS + tuple(name for name in extra if name not in TASKS)


def load_task(task: str | types.ModuleType) -> types.ModuleType:
    """The task module of a task name (a module is returned as it is); UserError for an unknown name."""
    if isinstance(task, types.ModuleType):
        return task
    names = task_names()
    if task not in names:
        raise UserError(f"unknown task {task!r}; valid tasks: {', '.join(names)}")
    module = _import_task_module(task)
    missing = [attribute for attribute in REQUIRED if not hasattr(module, attribute)]
    if missing:
        raise UserError(
            f"task module {module.__name__} lacks {', '.join(missing)}; see common/tasks.py for what a task must define"
        )
    return module


def _import_task_module(task):
    """The module TASK.task; UserError naming the package and what is wrong when it cannot be imported."""
    origin = "" if task in TASKS else f" (named in ${EXTRA_TASKS_VARIABLE})"
    try:
        return importlib.import_module(f"{task}.task")
    except ModuleNotFoundError as err:
        if err.name == task:
            raise UserError(
                f"task package {task}{origin} is not installed: no module named {task}; install it, or "
                "run from the folder holding it or add that folder to PYTHONPATH"
            ) from None
        if err.name == f"{task}.task":
            raise UserError(
                f"task package {task}{origin} has no task module ({task}/task.py); see "
                "common/tasks.py for what a task must define"
            ) from None
        raise UserError(
            f"task module {task}.task{origin} cannot be imported: it needs {err.name}, which is not installed"
        ) from None
    except SyntaxError as err:
        raise UserError(
            f"task module {task}.task{origin} has a syntax error: {err.filename}, line {err.lineno}: {err.msg}"
        ) from None
    except Exception as err:  # whatever the user's module raises on import; their file, not ours
        raise UserError(f"task module {task}.task{origin} failed on import ({type(err).__name__}: {err})") from None


def task_folder(task: types.ModuleType) -> pathlib.Path:
    """The task's package folder (where its configs and scripts live)."""
    return pathlib.Path(task.__file__).resolve().parent


def config_path(task: types.ModuleType, model: str) -> pathlib.Path:
    return task_folder(task) / "configs" / f"{model}.yaml"


def check_models(task: types.ModuleType, requested: Sequence[str]) -> list[str]:
    """`requested` model names, or all of the task's when empty; UserError naming an unknown one."""
    unknown = [name for name in requested if name not in task.MODELS]
    if unknown:
        raise UserError(f"unknown model {unknown[0]!r} for {task.NAME}; valid models: {', '.join(task.MODELS)}")
    return list(requested) or list(task.MODELS)


def data_dir(task: types.ModuleType, given: str | os.PathLike | None = None) -> pathlib.Path:
    """`given`, or the task's default data folder data/NAME in the repository."""
    return pathlib.Path(given) if given else REPO_ROOT / "data" / task.NAME


def test_subdir(name: str) -> str:
    """TEST_SUBDIR of task `name`, from its package (no task module, so no TensorFlow, is imported)."""
    return getattr(importlib.import_module(name), "TEST_SUBDIR", "")


def folder_test_sh_reads(task: types.ModuleType, data_dir: str | os.PathLike) -> pathlib.Path:
    """Where test.sh reads the task's test set in its data folder: DATA_DIR[/TEST_SUBDIR]."""
    return pathlib.Path(data_dir) / test_subdir(task.NAME)


def test_data_dir(task: types.ModuleType, given: str | os.PathLike | None = None) -> pathlib.Path:
    """The test data folder (`given`, or data/NAME[/TEST_SUBDIR]); UserError naming the steps that make it
    when it does not exist."""
    subdir = test_subdir(task.NAME)
    folder = pathlib.Path(given) if given else folder_test_sh_reads(task, data_dir(task))
    if folder.is_dir():
        return folder
    # The data folder download.sh (and preprocess.sh) fill: the folder's parent when it is TEST_SUBDIR.
    data_folder = folder.parent if subdir and folder.name == subdir else folder
    option = "" if given is None else f" --data-dir {data_folder}"
    steps = f"bash {task.NAME}/download.sh --split test{option}"
    if subdir and hasattr(task, "prepare_test"):
        steps += f", then bash {task.NAME}/preprocess.sh{option}"
        built = data_folder / subdir
        steps += ", which builds it" if built == folder else f", which builds {built}, and pass --data-dir {built}"
    what = "the default test set folder" if given is None else "--data-dir"
    raise UserError(f"{what} {folder} not found; run {steps}, or pass --data-dir DIR holding {task.DATA_LAYOUT}")


def results_dir(task: types.ModuleType, given: str | os.PathLike | None = None) -> pathlib.Path:
    """`given`, or results/NAME in the repository."""
    return pathlib.Path(given) if given else REPO_ROOT / "results" / task.NAME


def table1_paper(task: types.ModuleType) -> dict[str, Any]:
    """The paper's Table 1 row of the task ({} when the paper has none)."""
    return getattr(task, "PAPER", {}).get("table1", {})


def sample_rows(pool: int, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of min(n, pool) rows drawn without replacement from range(pool), seeded: how a
    task picks its int8 calibration set."""
    return np.sort(np.random.default_rng(seed).choice(pool, min(n, pool), replace=False))


class LoadedSet(tuple):
    """What `load_test` returns: (inputs, labels, ids), unpacked like a 3-tuple, and `skipped`: the
    inputs found but not scored, as ((id, reason), ...), so that results can count and name them."""

    def __new__(
        cls,
        inputs: np.ndarray,
        labels: np.ndarray,
        ids: np.ndarray,
        skipped: Iterable[tuple[object, object]] = (),
    ) -> LoadedSet:
        test_set = super().__new__(cls, (inputs, labels, ids))
        test_set.skipped = tuple((str(name), str(reason)) for name, reason in skipped)
        return test_set


def skipped_inputs(test_set: tuple) -> tuple[tuple[str, str], ...]:
    """The (id, reason) pairs a loaded test set skipped (none for a plain tuple)."""
    return getattr(test_set, "skipped", ())
