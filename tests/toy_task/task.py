"""A toy task: 8x8 grey images, bright (1) or dark (0), on a two-block CNN. Its data are synthetic only: the
"archives" are train.npz and test.npz (x float32 (N, 8, 8, 1), y int (N,)), which `write_synthetic_archives`
writes and `download` copies from a mirror folder."""

from __future__ import annotations

import pathlib
import shutil
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from common import backbones
from common.architecture import Architecture
from common.backbones import LayerNames
from common.exits import TrecxExit
from common.tasks import Folder

if TYPE_CHECKING:
    import keras

    from common.config import TrainConfig

NAME = "toy_task"
TITLE = "Toy CNN (bright or dark)"
TRAIN_SIZE, VALIDATION_SIZE = 64, 16  # the training archive's samples, of which the last 16 validate
TEST_SET_SIZE = 40


def tiny_backbone(inputs: keras.KerasTensor, names: LayerNames) -> dict[str, keras.KerasTensor]:
    block1 = backbones.bn_relu(backbones.conv(inputs, names, 8, 3), names)
    block2 = backbones.bn_relu(backbones.conv(block1, names, 16, 3, strides=2), names)
    return {"block1": block1, "block2": block2}


ARCHITECTURE = Architecture(
    backbone=tiny_backbone,
    input_shape=(8, 8, 1),
    num_classes=2,
    final_pool=(4, 4),
    trecx=TrecxExit(tap="block1", pointwise_filters=8, dw_kernel=2, dw_strides=2, pool=4),
    early_view=dict(channels=8, dw_kernel=2, dw_strides=2),
)
MODELS = ARCHITECTURE.variants()  # base, trecx_ev, trecx_noev
# Written by `python3 -m toy_task.pretrain` (seeded training on the synthetic archives; docs/testing.md).
PRETRAINED_DIR = pathlib.Path(__file__).resolve().parent / "pretrained"
DATA_LAYOUT = "train.npz and test.npz (x, y)"
FIGURES = {"FigToy": ("Toy: early view", {"with early view": "trecx_ev", "without": "trecx_noev"}, False)}

ARCHIVES = ("train.npz", "test.npz")


def download(
    data_dir: pathlib.Path,
    mirror: Folder | None = None,
    split: str = "all",
    force: bool = False,
    verify_checksums: bool = True,
) -> pathlib.Path:
    """The toy's "archives" are train.npz and test.npz, copied from the `mirror` folder where not in place
    (both, whatever the `split`; no checksums)."""
    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVES:
        if mirror and not (data_dir / name).exists():
            shutil.copyfile(pathlib.Path(mirror) / name, data_dir / name)
    return data_dir


def load_test(data_dir: Folder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x float32 (N, 8, 8, 1), y (N,), ids = row) of test.npz."""
    with np.load(pathlib.Path(data_dir) / "test.npz") as test:
        return test["x"], test["y"], np.arange(len(test["y"]))


def synthetic_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (n, 8, 8, 1) in [0, 1], y (n,)): uniform noise in [0, 0.8], brighter by 0.2 where y is 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return (rng.uniform(0, 0.8, (n, 8, 8, 1)) + 0.2 * y[:, None, None, None]).astype(np.float32), y


def write_synthetic_test_set(folder: pathlib.Path, n: int, seed: int = 0) -> pathlib.Path:
    x, y = synthetic_inputs(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "test.npz", x=x, y=y)
    return folder


def write_synthetic_archives(folder: pathlib.Path) -> pathlib.Path:
    x, y = synthetic_inputs(TRAIN_SIZE, seed=1)
    write_synthetic_test_set(folder, TEST_SET_SIZE)
    np.savez(folder / "train.npz", x=x, y=y)
    return folder


def training_data(config: TrainConfig, data_dir: pathlib.Path) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """(training batches, no validation): the training split, shuffled with the config's seed."""
    x, y = training_set(data_dir)
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=config.seed).batch(config.batch_size), None


def training_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """train.npz without its last 16 samples."""
    with np.load(pathlib.Path(data_dir) / "train.npz") as train:
        return train["x"][:-VALIDATION_SIZE], train["y"][:-VALIDATION_SIZE]


def validation_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """The last 16 samples of train.npz."""
    with np.load(pathlib.Path(data_dir) / "train.npz") as train:
        return train["x"][-VALIDATION_SIZE:], train["y"][-VALIDATION_SIZE:]
