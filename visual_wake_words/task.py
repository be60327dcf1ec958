"""What the shared pipeline needs to know about visual wake words: VWW on MobileNetV1-0.25."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from common import backbones
from common.architecture import Architecture
from common.download import mirror_url
from common.errors import UserError
from common.exits import TrecxExit
from common.provenance import DataOrigin, image_format
from common.tasks import CALIBRATION_SAMPLES, Folder, sample_rows
from visual_wake_words import data, minival, synthetic
from visual_wake_words.images import load_images

if TYPE_CHECKING:
    import tensorflow as tf

    from common.config import TrainConfig

NAME = "visual_wake_words"
TITLE = "MobileNetV1-0.25 (VWW)"
# The early-view conv runs on 64 channels of which only 32 are used, as in the authors' graph (whose
# FLOPs count the other 32 too).
ARCHITECTURE = Architecture(
    backbone=backbones.mobilenet_v1,
    input_shape=(96, 96, 3),
    num_classes=2,
    final_pool=(3, 3),
    final_names=("average_pooling2d_1", "flatten_2"),
    trecx=TrecxExit(
        tap="ds3",
        pointwise_filters=64,
        dw_kernel=2,
        dw_strides=2,
        pool=4,
        separate_softmax=True,
        pointwise_name="pointwise_conv_ee1",
        pool_name="average_pooling2d",
        flatten_name="flatten",
    ),
    early_view=dict(channels=64, dw_kernel=2, dw_strides=1, keep_channels=32),
)
MODELS = ARCHITECTURE.variants()  # base, trecx_ev, trecx_noev
# The authors' models (MLPerf Tiny's vww_96.h5 for the base), for conversion.
AUTHORS_MODELS = {
    "base": "visual_wake_words/trained_models/vww_96.h5",
    "trecx_ev": "visual_wake_words/trained_models/model_with_ev_assist",
    "trecx_noev": "visual_wake_words/trained_models/model_without_ev_assist",
}
DATA_LAYOUT = "person/ and non_person/ image folders (e.g. DATA/minival from preprocess.sh)"
TEST_SET_SIZE = 4_448  # images in the minival built from COCO val2017 (the authors' VWW test set)
# What the pretrained models were trained on: the images of MLPerf Tiny's archive (COCO 2014, 96x96).
PRETRAINED_TRAINING_DATA = DataOrigin(
    f"Visual Wake Words, COCO 2014 at 96x96 (MLPerf Tiny's {data.TRAIN_FOLDER}.tar.gz)", image_format([".jpg"])
)

# The paper's numbers (Table 1 of arXiv 2207.06613, and the int8 size reduction of the early-exit
# MobileNet it reports), shown beside the measured ones.
PAPER = {
    "table1": {
        "baseline_accuracy": 85.81,
        "baseline_mflops": 15.69,
        "baseline_params": 221_700,
        "tradeoff_mflops": [9.99, 8.97, 8.36],
        "tradeoff_reduction_pct": [36.3, 42.8, 46.7],
        "trecx_params": 226_200,
        "standalone_ee": 80.46,
        "standalone_ef": 86.44,
    },
    "int8_size_reduction_pct": 70.4,
}

# Parameter counts of the authors' models (their saved graphs), which the networks built here must have.
AUTHORS_PARAMS = {"base": 221_794, "trecx_ev": 226_276, "trecx_noev": 225_380}

# Figure name -> title, {legend label: model}, log-scale y.
FIGURES = {
    "Fig4c": (
        "MobileNetV1-0.25 (VWW): early-view assistance",
        {"T-RecX with early view": "trecx_ev", "T-RecX without early view": "trecx_noev"},
        False,
    ),
}


def download(
    data_dir: pathlib.Path,
    mirror: Folder | None = None,
    split: str = "all",
    force: bool = False,
    verify_checksums: bool = True,
) -> pathlib.Path:
    """`mirror`: a URL or folder holding the archives under their official names. `split`: "test" fetches
    COCO val2017 and its annotations (the minival is built from them) unless a minival is in place,
    "train" the training set vw_coco2014_96, "all" the three; `force` replaces existing files whose
    content differs."""
    return data.download(
        data_dir,
        train_url=mirror_url(data.TRAIN_URL, mirror),
        images_url=mirror_url(data.COCO_IMAGES_URL, mirror),
        annotations_url=mirror_url(data.COCO_ANNOTATIONS_URL, mirror),
        split=split,
        force=force,
        verify_checksums=verify_checksums,
    )


def preprocess(data_dir: pathlib.Path) -> dict[str, int]:
    return minival.build_minival(data_dir)


def prepare_test(data_dir: pathlib.Path) -> None:
    """The test set (minival) is built from COCO val2017, not downloaded; a minival in place without the
    COCO annotations to check it against is used as it is."""
    if minival.minival_present(data_dir) and not (pathlib.Path(data_dir) / minival.ANNOTATIONS_FILE).is_file():
        print(f"minival in place at {pathlib.Path(data_dir) / minival.MINIVAL_FOLDER}, used as it is")
        return
    minival.build_minival(data_dir)


# (images float32 (N, 96, 96, 3) in [0, 1], labels (N,) 1 = person, ids = path relative to data_dir)
load_test = data.load_test


def training_data(config: TrainConfig, data_dir: pathlib.Path) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """(train batches, validation batches): the 90 % / 10 % per-class split of vw_coco2014_96."""
    return (
        data.train_dataset(data_dir, config.batch_size, config.augment, config.seed),
        data.validation_dataset(data_dir, config.batch_size),
    )


# Deployment (common/deploy/): a validation split to choose rho on, and int8 calibration inputs.
def validation_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (N, 96, 96, 3) in [0, 1], labels (N,)): the 10 % validation split of vw_coco2014_96."""
    _, validation = data.split_train(data_dir)
    if not validation:
        raise UserError(
            f"the training folder under {data_dir} is too small for a validation split (10 % per "
            "class); pass --rho R, or run bash visual_wake_words/download.sh"
        )
    return _images_and_labels(data_dir, validation)


def training_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (N, 96, 96, 3) in [0, 1], labels (N,)): the 90 % training split of vw_coco2014_96, not
    augmented (design-exit trains a branch on it; the whole split takes 11 GB as float32)."""
    train, _ = data.split_train(data_dir)
    return _images_and_labels(data_dir, train)


def training_data_origin(data_dir: Folder) -> DataOrigin:
    """What training_set and validation_set read from `data_dir`: vw_coco2014_96/, in its files' format."""
    train, validation = data.split_train(data_dir)
    suffixes = {pathlib.PurePath(path).suffix for path, _ in train + validation}
    folder = pathlib.Path(data_dir) / data.TRAIN_FOLDER
    return DataOrigin(PRETRAINED_TRAINING_DATA.source, image_format(suffixes), str(folder))


def _images_and_labels(data_dir: Folder, split: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a split's (path under data_dir, label) pairs."""
    images = load_images([pathlib.Path(data_dir) / path for path, _ in split])
    return images, np.array([label for _, label in split], np.int64)


def calibration_set(data_dir: Folder, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> np.ndarray:
    """float32 (n, 96, 96, 3) in [0, 1]: training-split images drawn without replacement (seeded), the
    representative set of int8 quantisation."""
    train, _ = data.split_train(data_dir)
    return load_images([pathlib.Path(data_dir) / train[row][0] for row in sample_rows(len(train), n, seed)])


# Tests and benchmarks: inputs that look like the real ones to the networks, in the real formats.
synthetic_inputs = synthetic.synthetic_inputs
write_synthetic_test_set = synthetic.write_synthetic_test_set
write_synthetic_archives = synthetic.write_synthetic_archives
