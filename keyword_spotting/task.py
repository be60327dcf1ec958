"""What the shared pipeline needs to know about keyword spotting: Speech Commands v2 on DS-CNN."""
import numpy as np

from keyword_spotting import data

NAME = "keyword_spotting"
TITLE = "DS-CNN (Speech Commands)"
MODELS = ("base", "trecx_ev", "trecx_noev", "eefmaps_concat", "sdn", "branchynet")
DATA_LAYOUT = "speech_commands_test_set_v0.02/<label>/*.wav"

# The paper's numbers (Table 1 and Table 2 of arXiv 2207.06613), shown beside the measured ones.
PAPER = {
    "table1": {"baseline_accuracy": 92.2, "baseline_mflops": 5.54, "baseline_params": 24_900,
               "tradeoff_mflops": [3.45, 3.31, 3.18], "tradeoff_reduction_pct": [37.7, 40.2, 42.5],
               "trecx_params": 28_200, "standalone_ee": 88.5, "standalone_ef": 92.37},
    "table2": {"trecx_ev": {"params": 28_200, "accuracy": {"ee": 88.8, "ef": 92.3}},
               "branchynet": {"params": 62_600, "accuracy": {"ee1": 85.0, "ee2": 87.6, "ef": 90.9}},
               "sdn": {"params": 38_700, "accuracy": {"ee1": 63.7, "ee2": 81.7, "ee3": 89.0, "ef": 91.8}}},
}

# Figure name -> title, {legend label: model}, log-scale y.
FIGURES = {
    "Fig4b": ("DS-CNN (Speech Commands): early-view assistance",
              {"T-RecX with early view": "trecx_ev", "T-RecX without early view": "trecx_noev"}, False),
    "Fig6": ("DS-CNN (Speech Commands): early view vs EE-fmaps concat",
             {"with weight transfer (early view)": "trecx_ev", "without weight transfer": "trecx_noev",
              "EE-fmaps concat": "eefmaps_concat"}, False),
    "Fig7b": ("DS-CNN (Speech Commands): T-RecX vs SDN and BranchyNet",
              {"T-RecX": "trecx_ev", "SDN": "sdn", "BranchyNet": "branchynet"}, True),
}


def download(data_dir, mirror=None):
    """`mirror`: a URL or folder holding both archives under their official names."""
    if mirror is None:
        return data.download(data_dir)
    base = mirror.rstrip("/")
    return data.download(data_dir, train_url=f"{base}/{data.TRAIN_URL.rsplit('/', 1)[1]}",
                         test_url=f"{base}/{data.TEST_URL.rsplit('/', 1)[1]}")


def preprocess(data_dir):
    return data.preprocess(data_dir)


def load_test(data_dir):
    """(MFCCs float32 (N, 49, 10, 1), labels (N,), ids (N,) = clip path relative to data_dir)."""
    return data.load_test(data_dir)


def training_data(config, data_dir):
    """(train batches, validation batches), from the cache that preprocess.sh writes."""
    return (data.train_dataset(data_dir, config.batch_size, config.augment, config.seed),
            data.validation_dataset(data_dir, config.batch_size))


# Deployment (common/deploy.py): a validation split to choose rho on, and int8 calibration inputs.
def validation_set(data_dir):
    """(MFCCs float32 (N, 49, 10, 1), labels (N,)): the cached validation split (preprocess.sh)."""
    batches = list(data.validation_dataset(data_dir, 2048).as_numpy_iterator())
    return np.concatenate([f for f, _ in batches]), np.concatenate([labels for _, labels in batches])


def calibration_set(data_dir, n=500, seed=0):
    """MFCCs float32 (n, 49, 10, 1) of n training clips drawn at random (seeded, not augmented) from the
    cached train split: the representative set of int8 quantisation."""
    features, _ = next(iter(data.train_dataset(data_dir, n, augment=False, seed=seed)))
    return features.numpy()
