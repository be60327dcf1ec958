"""What the shared pipeline needs to know about keyword spotting: Speech Commands v2 on DS-CNN."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from common import backbones
from common.architecture import Architecture
from common.download import mirror_url
from common.exits import TrecxExit
from common.provenance import DataOrigin
from common.tasks import CALIBRATION_SAMPLES, Folder
from keyword_spotting import data, synthetic

if TYPE_CHECKING:
    import tensorflow as tf

    from common.config import TrainConfig

NAME = "keyword_spotting"
TITLE = "DS-CNN (Speech Commands)"
# The authors' code pools the final 25x5 map with (24, 5) (dropping a row); the shipped MLPerf base
# model pools (25, 5). Both are kept, since the weights were trained that way.
ARCHITECTURE = Architecture(
    backbone=backbones.ds_cnn,
    input_shape=(49, 10, 1),
    num_classes=12,
    final_pool=(24, 5),
    base_final_pool=(25, 5),
    final_names=("average_pooling2d_1", "flatten"),
    trecx=TrecxExit(
        tap="ds2",
        slice_channels=32,
        dw_kernel=3,
        dw_strides=2,
        pool=2,
        separate_softmax=True,
        pool_name="average_pooling2d",
        flatten_name="flatten_ee1",
    ),
    early_view=dict(channels=32, dw_kernel=3, dw_strides=1, pool=(13, 3)),
    eefmaps_concat=dict(pool=(13, 3)),
    sdn=(("ds1", 4), ("ds2", 4), ("ds3", 4)),
    branchynet=(("ds1", 32, 3, (24, 5)), ("ds2", 32, 3, (24, 5))),
)
MODELS = ARCHITECTURE.variants()  # base, trecx_ev, trecx_noev, eefmaps_concat, sdn, branchynet
# The authors' models (MLPerf Tiny's kws_ref_model for the base), for conversion.
AUTHORS_MODELS = {
    "base": "keyword_spotting/trained_models/kws_ref_model",
    "trecx_ev": "keyword_spotting/trained_models/model_with_ev_assist",
    "trecx_noev": "keyword_spotting/trained_models/model_without_ev_assist",
    "eefmaps_concat": "keyword_spotting/trained_models/model_eefmaps_concat",
    "sdn": "keyword_spotting/trained_models/model_sdn",
    "branchynet": "keyword_spotting/trained_models/model_branchynet",
}
DATA_LAYOUT = "speech_commands_test_set_v0.02/<label>/*.wav"
TEST_SET_SIZE = 4_890  # clips in the official test archive
# What the pretrained models were trained on (the authors load TFDS speech_commands 0.0.2); a data folder
# holds the same clips in the same format, the only layout preprocess.sh reads.
PRETRAINED_TRAINING_DATA = DataOrigin(
    f"Speech Commands v0.02 ({data.TRAIN_FOLDER}.tar.gz), TFDS's training split",
    "16-bit WAV clips (lossless) as MFCCs",
)

# The paper's numbers (Table 1 and Table 2 of arXiv 2207.06613), shown beside the measured ones.
PAPER = {
    "table1": {
        "baseline_accuracy": 92.2,
        "baseline_mflops": 5.54,
        "baseline_params": 24_900,
        "tradeoff_mflops": [3.45, 3.31, 3.18],
        "tradeoff_reduction_pct": [37.7, 40.2, 42.5],
        "trecx_params": 28_200,
        "standalone_ee": 88.5,
        "standalone_ef": 92.37,
    },
    "table2": {
        "trecx_ev": {"params": 28_200, "accuracy": {"ee": 88.8, "ef": 92.3}},
        "branchynet": {"params": 62_600, "accuracy": {"ee1": 85.0, "ee2": 87.6, "ef": 90.9}},
        "sdn": {"params": 38_700, "accuracy": {"ee1": 63.7, "ee2": 81.7, "ee3": 89.0, "ef": 91.8}},
    },
}

# Parameter counts of the authors' models (their saved graphs), which the networks built here must have.
AUTHORS_PARAMS = {
    "base": 24_908,
    "trecx_ev": 28_248,
    "trecx_noev": 27_544,
    "eefmaps_concat": 27_928,
    "sdn": 38_768,
    "branchynet": 62_628,
}

# Figure name -> title, {legend label: model}, log-scale y.
FIGURES = {
    "Fig4b": (
        "DS-CNN (Speech Commands): early-view assistance",
        {"T-RecX with early view": "trecx_ev", "T-RecX without early view": "trecx_noev"},
        False,
    ),
    "Fig6": (
        "DS-CNN (Speech Commands): early view vs EE-fmaps concat",
        {
            "with weight transfer (early view)": "trecx_ev",
            "without weight transfer": "trecx_noev",
            "EE-fmaps concat": "eefmaps_concat",
        },
        False,
    ),
    "Fig7b": (
        "DS-CNN (Speech Commands): T-RecX vs SDN and BranchyNet",
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
    """`mirror`: a URL or folder holding the archives under their official names. `split`: "test" fetches
    only the official test archive, "train" only the train archive, "all" both; `force` replaces existing
    files whose content differs."""
    checksums = {} if verify_checksums else {"train_sha256": None, "test_sha256": None}
    return data.download(
        data_dir,
        train_url=mirror_url(data.TRAIN_URL, mirror),
        test_url=mirror_url(data.TEST_URL, mirror),
        split=split,
        force=force,
        **checksums,
    )


def preprocess(data_dir: pathlib.Path) -> pathlib.Path:
    return data.preprocess(data_dir)


load_test = data.load_test  # (MFCCs float32 (N, 49, 10, 1), labels (N,), ids = clip path relative to data_dir)


def training_data(config: TrainConfig, data_dir: pathlib.Path) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """(train batches, validation batches), from the cache that preprocess.sh writes."""
    return (
        data.train_dataset(data_dir, config.batch_size, config.augment, config.seed),
        data.validation_dataset(data_dir, config.batch_size),
    )


# Deployment (common/deploy/): a validation split to choose rho on, and int8 calibration inputs.
def validation_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """(MFCCs float32 (N, 49, 10, 1), labels (N,)): the cached validation split (preprocess.sh)."""
    return _arrays(data.validation_dataset(data_dir, 2048))


def training_set(data_dir: Folder) -> tuple[np.ndarray, np.ndarray]:
    """(MFCCs float32 (N, 49, 10, 1), labels (N,)): the cached train split, not augmented (design-exit
    trains a branch on it)."""
    return _arrays(data.train_dataset(data_dir, 2048, augment=False, seed=0, shuffle=False))


def training_data_origin(data_dir: Folder) -> DataOrigin:
    """What training_set and validation_set read: the pretrained models' kind of data, from `data_dir`."""
    return DataOrigin(PRETRAINED_TRAINING_DATA.source, PRETRAINED_TRAINING_DATA.format, str(data_dir))


def _arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of a batched (features, labels) dataset, each as one array."""
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([f for f, _ in batches]), np.concatenate([labels for _, labels in batches])


def calibration_set(data_dir: Folder, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> np.ndarray:
    """MFCCs float32 (n, 49, 10, 1) of n training clips drawn at random (seeded, not augmented) from the
    cached train split: the representative set of int8 quantisation."""
    features, _ = next(iter(data.train_dataset(data_dir, n, augment=False, seed=seed)))
    return features.numpy()


# Tests and benchmarks: inputs that look like the real ones to the networks, in the real formats.
synthetic_inputs = synthetic.synthetic_inputs
write_synthetic_test_set = synthetic.write_synthetic_test_set
write_synthetic_archives = synthetic.write_synthetic_archives
