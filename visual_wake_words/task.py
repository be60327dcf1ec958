"""What the shared pipeline needs to know about visual wake words: VWW on MobileNetV1-0.25."""
import pathlib

import numpy as np

from common.errors import UserError
from visual_wake_words import data

NAME = "visual_wake_words"
TITLE = "MobileNetV1-0.25 (VWW)"
MODELS = ("base", "trecx_ev", "trecx_noev")
DATA_LAYOUT = "person/ and non_person/ image folders (e.g. DATA/minival from preprocess.sh)"
TEST_SUBDIR = "minival"  # test.sh's default --data-dir is data/visual_wake_words/minival

# The paper's numbers (Table 1 of arXiv 2207.06613), shown beside the measured ones.
PAPER = {
    "table1": {"baseline_accuracy": 85.81, "baseline_mflops": 15.69, "baseline_params": 221_700,
               "tradeoff_mflops": [9.99, 8.97, 8.36], "tradeoff_reduction_pct": [36.3, 42.8, 46.7],
               "trecx_params": 226_200, "standalone_ee": 80.46, "standalone_ef": 86.44},
}

# Figure name -> title, {legend label: model}, log-scale y.
FIGURES = {
    "Fig4c": ("MobileNetV1-0.25 (VWW): early-view assistance",
              {"T-RecX with early view": "trecx_ev", "T-RecX without early view": "trecx_noev"}, False),
}


def download(data_dir, mirror=None):
    """`mirror`: a URL or folder holding the three archives under their official names."""
    if mirror is None:
        return data.download(data_dir)
    base = mirror.rstrip("/")
    return data.download(data_dir, **{key: f"{base}/{url.rsplit('/', 1)[1]}" for key, url in (
        ("train_url", data.TRAIN_URL), ("images_url", data.COCO_IMAGES_URL),
        ("annotations_url", data.COCO_ANNOTATIONS_URL))})


def preprocess(data_dir):
    return data.build_minival(data_dir)


def load_test(data_dir):
    """(images float32 (N, 96, 96, 3) in [0, 1], labels (N,) 1 = person, ids = path relative to data_dir)."""
    return data.load_test(data_dir)


def training_data(config, data_dir):
    """(train batches, validation batches): the 90 % / 10 % per-class split of vw_coco2014_96."""
    return (data.train_dataset(data_dir, config.batch_size, config.augment, config.seed),
            data.validation_dataset(data_dir, config.batch_size))


# Deployment (common/deploy.py): a validation split to choose rho on, and int8 calibration inputs.
def validation_set(data_dir):
    """(images float32 (N, 96, 96, 3) in [0, 1], labels (N,)): the 10 % validation split of vw_coco2014_96."""
    _, validation = data.split_train(data_dir)
    if not validation:
        raise UserError(f"the training folder under {data_dir} is too small for a validation split (10 % per "
                        "class); pass --rho R, or run bash visual_wake_words/download.sh")
    images = data.load_images([pathlib.Path(data_dir) / path for path, _ in validation])
    return images, np.array([label for _, label in validation], np.int64)


def calibration_set(data_dir, n=500, seed=0):
    """float32 (n, 96, 96, 3) in [0, 1]: training-split images drawn without replacement (seeded), the
    representative set of int8 quantisation."""
    train, _ = data.split_train(data_dir)
    rows = np.sort(np.random.default_rng(seed).choice(len(train), min(n, len(train)), replace=False))
    return data.load_images([pathlib.Path(data_dir) / train[row][0] for row in rows])
