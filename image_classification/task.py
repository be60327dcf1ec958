"""What the shared pipeline needs to know about image classification: CIFAR-10 on ResNet-8."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from common import backbones
from common.architecture import Architecture
from common.download import mirror_url
from common.exits import TrecxExit
from common.tasks import CALIBRATION_SAMPLES, Folder, LoadedSet, sample_rows
from image_classification import data, synthetic

if TYPE_CHECKING:
    import tensorflow as tf

    from common.config import TrainConfig

NAME = "image_classification"
TITLE = "ResNet-8 (CIFAR-10)"
ARCHITECTURE = Architecture(
    backbone=backbones.resnet8,
    input_shape=(32, 32, 3),
    num_classes=10,
    final_pool=(8, 8),
    trecx=TrecxExit(tap="stack1", pointwise_filters=32, dw_kernel=2, dw_strides=2, pool=4),
    early_view=dict(channels=32, dw_kernel=2, dw_strides=2),
    sdn=(("stack1", 4), ("stack2", 4)),
    branchynet=(("stack1", 16, 3, 4), ("stack2", 16, 3, 4)),
)
MODELS = ARCHITECTURE.variants()  # base, trecx_ev, trecx_noev, sdn, branchynet
# The authors' models (under their repository's image_classification/trained_models/), for conversion.
AUTHORS_MODELS = {
    "base": "image_classification/trained_models/pretrainedResnet.h5",
    "trecx_ev": "image_classification/trained_models/model_with_ev_assist",
    "trecx_noev": "image_classification/trained_models/model_without_ev_assist",
    "sdn": "image_classification/trained_models/model_sdn",
    "branchynet": "image_classification/trained_models/model_branchynet",
}
DATA_LAYOUT = "cifar-10-batches-py/test_batch, or test/CLASS/*.png|jpg (CIFAR-10 as image folders)"
PRETRAINED_TRAINING_DATA = data.OFFICIAL_TRAINING_DATA  # MLPerf Tiny's and the authors' training read the batches
training_data_origin = data.training_origin  # what training_set and validation_set read from a data folder
TEST_SET_SIZE = 10_000  # images in the official test batch

# The paper's numbers (Table 1 and Table 2 of arXiv 2207.06613), shown beside the measured ones.
PAPER = {
    "table1": {
        "baseline_accuracy": 87.2,
        "baseline_mflops": 25.28,
        "baseline_params": 78_700,
        "tradeoff_mflops": [20.04, 18.43, 17.59],
        "tradeoff_reduction_pct": [20.7, 27.1, 30.4],
        "trecx_params": 89_700,
        "standalone_ee": 73.3,
        "standalone_ef": 87.4,
    },
    "table2": {
        "trecx_ev": {"params": 89_700, "accuracy": {"ee": 73.4, "ef": 87.4}},
        "branchynet": {"params": 98_400, "accuracy": {"ee1": 72.4, "ee2": 79.7, "ef": 85.7}},
        "sdn": {"params": 94_000, "accuracy": {"ee1": 63.3, "ee2": 75.0, "ef": 86.3}},
    },
}

# Parameter counts of the authors' models (their saved graphs), which the networks built here must have.
AUTHORS_PARAMS = {"base": 78_666, "trecx_ev": 89_780, "trecx_noev": 84_500, "sdn": 94_046, "branchynet": 98_430}

# Figure name -> title, {legend label: model}, log-scale y.
FIGURES = {
    "Fig4a": (
        "ResNet-8 (CIFAR-10): early-view assistance",
        {"T-RecX with early view": "trecx_ev", "T-RecX without early view": "trecx_noev"},
        False,
    ),
    "Fig7a": (
        "ResNet-8 (CIFAR-10): T-RecX vs SDN and BranchyNet",
        {"T-RecX": "trecx_ev", "SDN": "sdn", "BranchyNet": "branchynet"},
        True,
    ),
}


def download(
    data_dir: pathlib.Path,
    mirror: Folder | None = None,
    split: str = "all",
    force: bool = False,
    verify_checksums: bool = True,
) -> pathlib.Path:
    """`mirror`: a URL or folder holding cifar-10-python.tar.gz, instead of the official site. The one
    archive serves every `split` (test, train, all); `force` replaces existing files whose content differs."""
    return data.download(
        data_dir,
        url=mirror_url(data.CIFAR10_URL, mirror),
        split=split,
        force=force,
        md5=data.CIFAR10_MD5 if verify_checksums else None,
    )


def load_test(data_dir: Folder) -> LoadedSet:
    """LoadedSet(inputs float32 (N, 32, 32, 3), labels (N,), ids (N,) = row in test_batch)."""
    test_set = data.load_test(data_dir)
    images, labels, ids = test_set
    return LoadedSet(data.to_model_input(images), labels, ids, test_set.skipped)


def training_data(config: TrainConfig, data_dir: pathlib.Path) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """(train batches, validation batches or None): the authors train on all 50,000 images."""
    images, labels = data.load_train(data_dir)
    return data.train_dataset(images, labels, config.batch_size, config.augment, config.seed), None


# Deployment (common/deploy/): a validation split to choose rho on, and int8 calibration inputs.
VALIDATION_SIZE = 5000


def _validation_count(n_train: int) -> int:
    """The last 5,000 of the 50,000 training images; a tenth of a smaller (e.g. synthetic) training set."""
    return min(VALIDATION_SIZE, n_train // 10)


def validation_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """(inputs float32 (N, 32, 32, 3), labels (N,)): the last 5,000 training images (second half of
    data_batch_5), to choose the early-exit threshold on.

    The authors' recipe has no validation split: they train on all 50,000 images, so the pretrained
    models saw these (a rho chosen on them is chosen on training data; a model you train yourself for
    deployment should hold them out). They are still never the test set the results are reported on.
    """
    images, labels = data.load_train(data_dir)
    n = _validation_count(len(images))
    return data.to_model_input(images[len(images) - n :]), labels[len(images) - n :]


def training_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """(inputs float32 (N, 32, 32, 3), labels (N,)): the training images before the validation ones, not
    augmented (design-exit trains a branch on them)."""
    images, labels = data.load_train(data_dir)
    n = len(images) - _validation_count(len(images))
    return data.to_model_input(images[:n]), labels[:n]


def calibration_set(data_dir: Folder, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> np.ndarray:
    """float32 (n, 32, 32, 3): training images drawn without replacement (seeded) from those before the
    validation images, the representative set of int8 quantisation."""
    images, _ = data.load_train(data_dir)
    pool = len(images) - _validation_count(len(images))
    return data.to_model_input(images[sample_rows(pool, n, seed)])


# Tests and benchmarks: inputs that look like the real ones to the networks, in the real formats.
synthetic_inputs = synthetic.synthetic_inputs
write_synthetic_test_set = synthetic.write_synthetic_test_set
write_synthetic_archives = synthetic.write_synthetic_archives
