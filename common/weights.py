"""Weights files, and the networks they belong to.

Weights are stored as `.npz` archives keyed by Keras 3 variable path (`layer_name/weight_name`), so
they map to a network by layer name, never by position (by position, same-shaped layers swap
silently). Pretrained weights live in pretrained/TASK/MODEL.npz (or the task's PRETRAINED_DIR);
trained ones in MODELS_DIR/TASK/MODEL/weights.npz beside the config.yaml they were trained from.
"""

from __future__ import annotations

import os
import pathlib
import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from common import files
from common.errors import UserError
from common.tasks import REPO_ROOT, Task, check_models

if TYPE_CHECKING:
    import keras

    from common.models import ExitModel

SOURCES = ("pretrained", "trained")


def pretrained_path(task: Task, model: str) -> pathlib.Path:
    """Where the task's pretrained `model` weights are: pretrained/NAME/MODEL.npz (or the task's PRETRAINED_DIR)."""
    folder = task.PRETRAINED_DIR or REPO_ROOT / "pretrained" / task.NAME
    return pathlib.Path(folder) / f"{model}.npz"


def save_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Write every variable of `model`, keyed by its path, atomically."""
    files.save_npz(path, **{w.path: np.asarray(w.numpy()) for w in model.weights})


def load_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Set every variable of `model` from `path`; the names, shapes and dtypes must match exactly (an .npz
    read without pickles: an object array is refused, never unpickled)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        with np.load(path) as stored:  # allow_pickle=False: an object array raises instead of unpickling
            arrays = dict(stored)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # truncated, not an .npz, or pickled
        reason = (
            "it holds pickled objects, which are never loaded: they could run code"
            if "allow_pickle" in str(err)
            else err
        )
        raise UserError(
            f"cannot read weights file {path} ({reason}); re-create it (train again with --force, or restore it)"
        ) from None
    expected = {w.path for w in model.weights}
    if set(arrays) != expected:
        missing, unexpected = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise UserError(
            f"weights file {path} does not fit model {model.name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for w in model.weights:
        if tuple(w.shape) != arrays[w.path].shape:
            raise UserError(
                f"weights file {path}: {w.path} has shape {arrays[w.path].shape}, "
                f"model {model.name} expects {tuple(w.shape)}"
            )
        if arrays[w.path].dtype != np.dtype(w.dtype):
            raise UserError(
                f"weights file {path}: {w.path} has dtype {arrays[w.path].dtype}, "
                f"model {model.name} expects {np.dtype(w.dtype)}"
            )
        w.assign(arrays[w.path])


def trained_path(task: Task, model: str, models_dir: str | os.PathLike) -> pathlib.Path:
    """Where train.sh saves `model`'s weights: MODELS_DIR/TASK/MODEL/weights.npz (its folder first put
    back in place if a run replacing it was killed: common.files.recover)."""
    path = pathlib.Path(models_dir) / task.NAME / model / "weights.npz"
    if path.parent.parent.is_dir():
        files.recover(path.parent)
    return path


def writable_trained_path(task: Task, model: str, models_dir: str | os.PathLike, force: bool = False) -> pathlib.Path:
    """trained_path, for writing: UserError when it already holds a trained model and not `force`."""
    path = trained_path(task, model, models_dir)
    if path.exists() and not force:
        raise UserError(f"{path.parent} already holds a trained {model}; pass --force to replace it")
    return path


def weights_paths(
    task: Task,
    source: str,
    models_dir: str | os.PathLike | None,
    names: Sequence[str] | None = None,
) -> dict[str, pathlib.Path]:
    """{name: weights file} for every model of the task (or those in `names`), `source` "pretrained" or
    "trained"; UserError naming all missing trained ones."""
    names = task.MODELS if names is None else names
    if source == "pretrained":
        return {name: pretrained_path(task, name) for name in names}
    paths = {name: trained_path(task, name, models_dir) for name in names}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        folder = pathlib.Path(models_dir) / task.NAME
        raise UserError(
            f"no trained {', '.join(missing)} model(s) in {folder}; train with "
            f"bash {task.NAME}/train.sh {' '.join(missing)}, or use --models pretrained"
        )
    return paths


def select_trained(task: Task, models_dir: str | os.PathLike, names: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(the trained models to evaluate, the task's models not trained) in MODELS_DIR/TASK: those named
    (UserError when one is missing), else every trained one (UserError when there is none)."""
    if names:
        names = check_models(task, names)
        weights_paths(task, "trained", models_dir, names)  # names every missing one
        return names, [name for name in task.MODELS if name not in names]
    trained = [name for name in task.MODELS if trained_path(task, name, models_dir).is_file()]
    if not trained:
        weights_paths(task, "trained", models_dir)  # the error naming them all
    return trained, [name for name in task.MODELS if name not in trained]


def load_nets(
    task: Task,
    source: str,
    models_dir: str | os.PathLike | None,
    names: Sequence[str] | None = None,
) -> dict[str, ExitModel]:
    """{name: ExitModel with weights} for every model of the task (or those in `names`), pretrained or
    trained.

    A trained model is rebuilt from the config saved beside its weights."""
    from common.config import load_config
    from common.models import build_model

    nets = {}
    for name, path in weights_paths(task, source, models_dir, names).items():
        if source == "trained":
            config = load_config(path.parent / "config.yaml")
            if (config.task, config.model) != (task.NAME, name):
                raise UserError(
                    f"{path.parent / 'config.yaml'} describes {config.task}/{config.model}, "
                    f"not {task.NAME}/{name}; retrain it with --force"
                )
        net = build_model(task, name, config.early_exit if source == "trained" else None)
        load_weights(net.model, path)
        nets[name] = net
    return nets
