"""The registry of tasks, and what a task must provide: the `Task` protocol.

A task is a package (a folder with `__init__.py`) whose `task` module describes it; everything else
in the pipeline (command line, training, evaluation, deployment, benchmarks, tests) asks this
registry for the tasks (`load_task`) and reads their facts from the `Task` it returns. Adding a task
means adding its folder and its name to `TASKS`, or to $TRECX_EXTRA_TASKS (see docs/adding_a_task.md).

`Task` declares every part a task module may define, once: its type, what it means and, for the optional
ones, the default the pipeline reads where the module leaves it out (None for an optional function or
value, an empty dict for an optional table). `Task.from_module` checks a module against it when the task
registers (`load_task`): a required part missing, or a part of the wrong kind, is one UserError naming the
module and the part.

The task's package (`NAME/__init__.py`) may define, where help texts read it without importing the task
module (which imports TensorFlow):
  TEST_SUBDIR     the sub-folder of data/NAME that test.sh reads by default ("" : data/NAME itself), built
                  by `preprocess` where the task has `prepare_test`

Training configs live beside the task module, in `NAME/configs/MODEL.yaml`.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pathlib
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from common.architecture import Architecture
from common.errors import UserError
from common.provenance import UNKNOWN, DataOrigin

if TYPE_CHECKING:
    import tensorflow as tf

    from common.config import TrainConfig

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TASKS = ("image_classification", "keyword_spotting", "visual_wake_words")
# Tasks kept outside this repository: package names, separated by commas, importable from the working
# directory or PYTHONPATH.
EXTRA_TASKS_VARIABLE = "TRECX_EXTRA_TASKS"
# The paper's headline over its three tasks: mean FLOPs reduction at the 1 % trade-off point.
PAPER_MEAN_REDUCTION_PCT = 31.58
# The size of an int8 representative set: the default `n` of a task's `calibration_set`.
CALIBRATION_SAMPLES = 500

Folder = str | os.PathLike


# The signatures of a task's functions.
class Download(Protocol):
    def __call__(
        self,
        data_dir: pathlib.Path,
        mirror: Folder | None = None,
        split: str = "all",
        force: bool = False,
        verify_checksums: bool = True,
    ) -> pathlib.Path:
        """Fetch the data into `data_dir`; the folder holding it. `mirror`: a URL or folder holding the
        archives under their official names, instead of the official site. `split`: what testing needs,
        "test" (a test set already in place counts as present); training, "train"; or "all". `force`:
        unpacking may replace files whose content differs. `verify_checksums=False`: archives re-packed by
        the user, not the official files."""


class LoadTest(Protocol):
    def __call__(self, data_dir: Folder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs float32 (N, *input shape), labels int (N,), ids (N,)) of the test set in `data_dir`: a
        tuple, or a `LoadedSet`, which also names the inputs it found but could not score."""


class TrainingData(Protocol):
    def __call__(self, config: TrainConfig, data_dir: pathlib.Path) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
        """(training batches, validation batches or None) for `config` (its batch size, augmentation, seed)."""


class SyntheticInputs(Protocol):
    def __call__(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(inputs float32 (n, *input shape), labels (n,)): inputs in the real inputs' range that look like
        them to the networks (labels meaningless), for tests, benchmarks and int8 checks without a dataset."""


class WriteSyntheticTestSet(Protocol):
    def __call__(self, folder: pathlib.Path, n: int, seed: int = 0) -> pathlib.Path:
        """The folder test.sh reads: n synthetic samples written in the test set's real layout and file
        formats."""


class WriteSyntheticArchives(Protocol):
    def __call__(self, folder: pathlib.Path) -> pathlib.Path:
        """`folder`, now a mirror that `download(..., mirror=folder)` accepts: small synthetic stand-ins of the
        official archives (test and training), in their real formats, for tests of the scripts in a user's
        order."""


class DataStep(Protocol):
    def __call__(self, data_dir: pathlib.Path) -> object:
        """A step on the downloaded data in `data_dir` (its result is not read)."""


class LabelledSplit(Protocol):
    def __call__(self, data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
        """(inputs float32 (N, *input shape), labels (N,)) of a split of the training data in `data_dir`."""


class CalibrationSet(Protocol):
    def __call__(self, data_dir: Folder, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> np.ndarray:
        """float32 (n, *input shape): `n` training inputs drawn at random (seeded), int8 quantisation's
        representative set."""


class DescribeData(Protocol):
    def __call__(self, data_dir: Folder) -> DataOrigin:
        """What the task's training_set and validation_set read from `data_dir` (source and format)."""


@dataclasses.dataclass(frozen=True)
class _Kind:
    """What a task part must be: a check of its value, and the words for it in the registration error."""

    check: Callable[[object], bool]
    description: str


KIND = "kind"  # the metadata key of a task part's field: its _Kind
STRING = _Kind(lambda value: isinstance(value, str), "a str")
AN_ARCHITECTURE = _Kind(lambda value: isinstance(value, Architecture), "a common.architecture.Architecture")
NAMES = _Kind(lambda value: isinstance(value, tuple) and all(isinstance(n, str) for n in value), "a tuple of str")
FUNCTION = _Kind(callable, "a function")
TABLE = _Kind(lambda value: isinstance(value, Mapping), "a dict")
COUNT = _Kind(lambda value: isinstance(value, int) and not isinstance(value, bool) and value > 0, "a positive int")
FOLDER = _Kind(lambda value: isinstance(value, (str, os.PathLike)), "a folder path (str or pathlib.Path)")
ORIGIN = _Kind(lambda value: isinstance(value, DataOrigin), "a common.provenance.DataOrigin")


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A registered task: its module's parts, checked (`from_module`), and where the module lives.

    The parts keep the names the task module defines them under (`NAME`, `download`, `FIGURES`, ...); a
    task module defines the required ones and any of the optional ones, and may hold other names of its
    own, which the pipeline does not read. A function part's signature and meaning are its Protocol's
    above (`Download`, `LoadTest`, ...).
    """

    module: types.ModuleType
    """The task module, NAME.task."""
    folder: pathlib.Path
    """The task's package folder (its configs and scripts)."""

    # Required.
    NAME: str = dataclasses.field(metadata={KIND: STRING})
    """The package name ("image_classification")."""
    TITLE: str = dataclasses.field(metadata={KIND: STRING})
    """The model and dataset, for tables and figures ("ResNet-8 (CIFAR-10)")."""
    ARCHITECTURE: Architecture = dataclasses.field(metadata={KIND: AN_ARCHITECTURE})
    """The backbone and where each kind of exit attaches."""
    MODELS: tuple[str, ...] = dataclasses.field(metadata={KIND: NAMES})
    """`ARCHITECTURE.variants()`: the model names the task offers."""
    DATA_LAYOUT: str = dataclasses.field(metadata={KIND: STRING})
    """What a test folder holds, for error messages."""
    download: Download = dataclasses.field(metadata={KIND: FUNCTION})
    load_test: LoadTest = dataclasses.field(metadata={KIND: FUNCTION})
    training_data: TrainingData = dataclasses.field(metadata={KIND: FUNCTION})

    # Optional: tables and values.
    PAPER: Mapping[str, Any] = dataclasses.field(default_factory=dict, metadata={KIND: TABLE})
    """The paper's numbers, shown beside the measured ones ({"table1": {...}, ...})."""
    AUTHORS_PARAMS: Mapping[str, int] = dataclasses.field(default_factory=dict, metadata={KIND: TABLE})
    """{model: parameter count of the authors' saved model}, which the built networks must have."""
    AUTHORS_MODELS: Mapping[str, str] = dataclasses.field(default_factory=dict, metadata={KIND: TABLE})
    """{model: path under the authors' models folder}, for `python -m common.pretrained`."""
    FIGURES: Mapping[str, tuple[str, Mapping[str, str], bool]] = dataclasses.field(
        default_factory=dict, metadata={KIND: TABLE}
    )
    """{figure name: (title, {legend label: model}, log-scale y)}: test.sh's figures."""
    TEST_SET_SIZE: int | None = dataclasses.field(default=None, metadata={KIND: COUNT})
    """Samples in the real test set."""
    PRETRAINED_DIR: Folder | None = dataclasses.field(default=None, metadata={KIND: FOLDER})
    """The folder of its pretrained MODEL.npz (None: pretrained/NAME in the repository)."""
    PRETRAINED_TRAINING_DATA: DataOrigin = dataclasses.field(default=UNKNOWN, metadata={KIND: ORIGIN})
    """What its pretrained models were trained on (source and format), which design-exit's report compares
    its data with (UNKNOWN: not said)."""

    # Optional: functions (None where the task has none).
    preprocess: DataStep | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    """Build splits and caches after download, before training."""
    prepare_test: DataStep | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    """Build the test set from the download, where it is not downloaded as it is (reproduce.sh calls it)."""
    validation_set: LabelledSplit | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    """The validation split, where deploy.sh chooses rho and design-exit compares its exits."""
    training_set: LabelledSplit | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    """The training split without the validation inputs, not augmented, where design-exit trains a branch."""
    calibration_set: CalibrationSet | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    """deploy.sh's int8 representative set, from the training split."""
    training_data_origin: DescribeData | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    """What training_set and validation_set read there (None: unknown, and design-exit's report says so)."""
    synthetic_inputs: SyntheticInputs | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    write_synthetic_test_set: WriteSyntheticTestSet | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})
    write_synthetic_archives: WriteSyntheticArchives | None = dataclasses.field(default=None, metadata={KIND: FUNCTION})

    @classmethod
    def from_module(cls, module: types.ModuleType) -> Task:
        """The task `module` defines: its parts, checked for presence and kind; UserError naming the module and
        the first part that is wrong."""
        public = vars(module)
        parts = [field for field in dataclasses.fields(cls) if KIND in field.metadata]
        required = [field.name for field in parts if _is_required(field)]
        missing = [name for name in required if name not in public]
        if missing:
            raise UserError(
                f"task module {module.__name__} lacks {', '.join(missing)}; see common/tasks.py for what a task "
                "must define"
            )
        values = {}
        for field in parts:
            if field.name not in public or (public[field.name] is None and field.name not in required):
                continue
            value, kind = public[field.name], field.metadata[KIND]
            if not kind.check(value):
                raise UserError(
                    f"task module {module.__name__}: {field.name} is {type(value).__name__}, expected "
                    f"{kind.description}; see common/tasks.py for what a task must define"
                )
            values[field.name] = value
        return cls(module=module, folder=pathlib.Path(module.__file__).resolve().parent, **values)


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


# The task of each name registered so far, rebuilt where its module is imported anew.
_REGISTERED: dict[str, Task] = {}


def task_names() -> tuple[str, ...]:
    """The built-in tasks, then those named in $TRECX_EXTRA_TASKS."""
    extra = [name.strip() for name in os.environ.get(EXTRA_TASKS_VARIABLE, "").split(",") if name.strip()]
    return TASKS + tuple(name for name in extra if name not in TASKS)


def load_task(task: str | Task) -> Task:
    """The `Task` of a task name (a Task is returned as it is), its module checked against the protocol;
    UserError for an unknown name or a module that does not hold to it."""
    if isinstance(task, Task):
        return task
    names = task_names()
    if task not in names:
        raise UserError(f"unknown task {task!r}; valid tasks: {', '.join(names)}")
    module = _import_task_module(task)
    registered = _REGISTERED.get(task)
    if registered is None or registered.module is not module:
        registered = _REGISTERED[task] = Task.from_module(module)
    return registered


def _import_task_module(task: str) -> types.ModuleType:
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


def task_folder(task: Task) -> pathlib.Path:
    """The task's package folder (where its configs and scripts live)."""
    return task.folder


def config_path(task: Task, model: str) -> pathlib.Path:
    return task_folder(task) / "configs" / f"{model}.yaml"


def check_models(task: Task, requested: Sequence[str]) -> list[str]:
    """`requested` model names, or all of the task's when empty; UserError naming an unknown one."""
    unknown = [name for name in requested if name not in task.MODELS]
    if unknown:
        raise UserError(f"unknown model {unknown[0]!r} for {task.NAME}; valid models: {', '.join(task.MODELS)}")
    return list(requested) or list(task.MODELS)


def data_dir(task: Task, given: str | os.PathLike | None = None) -> pathlib.Path:
    """`given`, or the task's default data folder data/NAME in the repository."""
    return pathlib.Path(given) if given else REPO_ROOT / "data" / task.NAME


def test_subdir(name: str) -> str:
    """TEST_SUBDIR of task `name`, from its package (no task module, so no TensorFlow, is imported): the one
    part of a task read from its package, optional ("" where the package leaves it out)."""
    subdir = vars(importlib.import_module(name)).get("TEST_SUBDIR", "")
    if not isinstance(subdir, str):
        raise UserError(f"task package {name}: TEST_SUBDIR is {type(subdir).__name__}, expected a str")
    return subdir


def folder_test_sh_reads(task: Task, data_dir: str | os.PathLike) -> pathlib.Path:
    """Where test.sh reads the task's test set in its data folder: DATA_DIR[/TEST_SUBDIR]."""
    return pathlib.Path(data_dir) / test_subdir(task.NAME)


def test_data_dir(task: Task, given: str | os.PathLike | None = None) -> pathlib.Path:
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
    if subdir and task.prepare_test is not None:
        steps += f", then bash {task.NAME}/preprocess.sh{option}"
        built = data_folder / subdir
        steps += ", which builds it" if built == folder else f", which builds {built}, and pass --data-dir {built}"
    what = "the default test set folder" if given is None else "--data-dir"
    raise UserError(f"{what} {folder} not found; run {steps}, or pass --data-dir DIR holding {task.DATA_LAYOUT}")


def results_dir(task: Task, given: str | os.PathLike | None = None) -> pathlib.Path:
    """`given`, or results/NAME in the repository."""
    return pathlib.Path(given) if given else REPO_ROOT / "results" / task.NAME


def table1_paper(task: Task) -> dict[str, Any]:
    """The paper's Table 1 row of the task ({} when the paper has none)."""
    return task.PAPER.get("table1", {})


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
