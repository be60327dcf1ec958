"""CIFAR-10: download the official python archive, load its pickled batches, build tf.data pipelines.

A folder may hold CIFAR-10 as image files instead (train/CLASS/*.png|jpg, test/CLASS/...: see
image_folders.py); the official batches are read when they are there, the image folders otherwise.
Images are uint8 (N, 32, 32, 3) channels-last in memory; the model sees them as float32 in [0, 255]
(the authors feed raw pixel values, no scaling).
"""

import pickle
from pathlib import Path
from urllib.parse import urlparse

import keras
import numpy as np
import tensorflow as tf

from common.download import check_split, extract, fetch
from common.errors import UserError
from common.provenance import DataOrigin, image_format
from common.tasks import LoadedSet
from image_classification import image_folders

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
VALUES_PER_IMAGE = 32 * 32 * 3
# The official training batches: what the pretrained models (MLPerf Tiny's ResNet-8 and the authors' exits)
# were trained on, 8-bit pixels pickled as they are.
OFFICIAL_TRAINING_DATA = DataOrigin(
    "CIFAR-10 in the official python batches (cifar-10-batches-py)", "pickled 8-bit pixels (lossless)"
)


def _fix_hint(data_dir: Path) -> str:
    return (
        f"run bash image_classification/download.sh --data-dir {data_dir} "
        f"or point --data-dir at a folder holding {FOLDER}/ (or CIFAR-10 as image folders: train/CLASS/, "
        f"test/CLASS/ with CLASS one of {', '.join(image_folders.CLASS_NAMES)})"
    )


def _damaged_hint() -> str:
    return (
        "the file is damaged: fetch an intact copy into a new folder with "
        "bash image_classification/download.sh --data-dir NEW_DIR and pass --data-dir NEW_DIR"
    )


def download(
    data_dir: Path, url: str = CIFAR10_URL, md5: str | None = CIFAR10_MD5, split: str = "all", force: bool = False
) -> Path:
    """Fetch and unpack CIFAR-10 into `data_dir`/cifar-10-batches-py unless what `split` reads is there.

    One archive serves every `split` (test, train or all); the test split reads test_batch, the train
    split the five data batches (nothing reads batches.meta; "all" unpacks it too). The archive is kept in
    `data_dir` (named after the URL) so an interrupted download resumes. Unpacking never replaces an
    existing file whose content differs (e.g. your own test_batch) unless `force`; it says which it would
    replace. `md5=None` skips the checksum. Returns the cifar-10-batches-py folder.
    """
    check_split(split)
    data_dir = Path(data_dir)
    folder = data_dir / FOLDER
    required = {"test": (TEST_BATCH,), "train": TRAIN_BATCHES, "all": (*TRAIN_BATCHES, TEST_BATCH, META)}[split]
    if all((folder / name).is_file() for name in required):
        print(f"CIFAR-10 ({'all' if split == 'all' else split} files) already present at {folder}")
        return folder
    splits = image_folders.SPLITS if split == "all" else (split,)
    if all(image_folders.present(data_dir, name) for name in splits):
        for name in splits:
            image_folders.check(data_dir, name)
        print(f"CIFAR-10 as image folders ({', '.join(splits)}) already present at {data_dir}")
        return data_dir
    too_deep = _one_level_too_deep(data_dir)
    if too_deep:
        raise UserError(f"{too_deep}; download.sh unpacks the archive there")
    archive = fetch(url, data_dir / (Path(urlparse(url).path).name or "cifar-10-python.tar.gz"), md5=md5)
    extract(archive, data_dir, force=force)
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"{archive} did not unpack to {folder} with {', '.join(missing)}; "
            "check that the download source (--mirror URL_OR_DIR) holds the CIFAR-10 python archive"
        )
    return folder


class _Refused(Exception):
    """A pickle asked for a callable that the official CIFAR-10 files never hold."""


class _BatchUnpickler(pickle.Unpickler):
    """Admits only what the official files hold: dicts, lists, bytes, strings, ints and numpy arrays (the
    array reconstruction and its dtype; `_codecs.encode` and `bytes`, which Python 3 pickles of bytes
    call). A pickle naming any other callable is refused before it is called, so a planted file cannot run
    code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("__builtin__", "bytes"),
        ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise _Refused(f"{module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path, data_dir: Path) -> object:
    """Unpickle one official CIFAR-10 file (Python 2 pickle: byte-string keys), admitting nothing that could
    run code (`_BatchUnpickler`)."""
    if not path.is_file():
        raise UserError(f"CIFAR-10 file {path.name} not found at {path}; {_fix_hint(data_dir)}")
    try:
        with open(path, "rb") as f:
            return _BatchUnpickler(f, encoding="bytes").load()
    except _Refused as err:
        raise UserError(
            f"CIFAR-10 file {path} refused: its pickle calls {err}, which no official CIFAR-10 file "
            f"does (loading it could run code); {_damaged_hint()}"
        ) from None
    except Exception as err:  # garbage can fail unpickling in many ways; all mean the same to the user
        raise UserError(
            f"CIFAR-10 file {path} is not a valid pickle or is truncated ({type(err).__name__}: {err}); "
            f"{_damaged_hint()}"
        ) from err


def _read_batch(path: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) and labels int64 (N,) of one pickled batch, validated."""
    batch = _read_pickle(path, data_dir)
    redo = _damaged_hint()
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"CIFAR-10 file {path} lacks the b'data'/b'labels' entries of a CIFAR-10 batch; {redo}")
    data = np.asarray(batch[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != VALUES_PER_IMAGE:
        raise UserError(
            f"CIFAR-10 file {path} holds {data.dtype} data of shape {data.shape}, expected uint8 rows "
            f"of {VALUES_PER_IMAGE} values (32x32x3 images); {redo}"
        )
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if labels.shape != (len(data),):
        raise UserError(f"CIFAR-10 file {path} has {labels.size} labels for {len(data)} images; {redo}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"CIFAR-10 file {path} has labels in {labels.min()}..{labels.max()}, expected 0..9; {redo}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel-first rows -> channels-last
    return np.ascontiguousarray(images), labels


def _one_level_too_deep(data_dir: Path, training: bool = False) -> str | None:
    """What `data_dir` is and the --data-dir to pass instead (with deploy.sh's --train-data-dir for
    `training` data), when it is a folder inside the layout: the cifar-10-batches-py folder itself, or the
    train/ or test/ folder of image folders (it holds class folders); None otherwise."""
    data_dir = Path(data_dir)
    parent = data_dir.resolve().parent
    fix = f"pass --data-dir {parent}" + (f" (deploy.sh: --train-data-dir {parent})" if training else "")
    if any((data_dir / name).is_file() for name in (TEST_BATCH, *TRAIN_BATCHES)):
        return f"{data_dir} is the {FOLDER} folder itself, not the folder that holds it; {fix}"
    classes = [f"{name}/" for name in image_folders.CLASS_NAMES if (data_dir / name).is_dir()]
    if classes:
        return (
            f"{data_dir} holds CIFAR-10 class folders ({', '.join(classes[:2])}{', ...' * (len(classes) > 2)}) "
            f"itself, as the train/ or test/ folder of image folders does, not the folder that holds train/ "
            f"and test/; {fix}"
        )
    return None


def _folder(data_dir: Path, training: bool = False) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"data folder {data_dir} not found; {_fix_hint(data_dir)}")
    folder = data_dir / FOLDER
    if not folder.is_dir():
        too_deep = _one_level_too_deep(data_dir, training)
        if too_deep:
            raise UserError(too_deep)
        raise UserError(f"CIFAR-10 folder {folder} not found; {_fix_hint(data_dir)}")
    return folder


def load_test(data_dir: Path) -> LoadedSet:
    """The test batch: a LoadedSet of images uint8 (N, 32, 32, 3), labels int64 (N,) in 0..9 and ids int64
    (N,) = row in test_batch, skipping nothing (a batch is read whole or refused). Without a test batch,
    the image folders' test split (`image_folders.read`: exactly the ten class folders), ids their paths,
    files that are not 32x32 images and what else the split holds skipped by name. A test set without
    images is a UserError, and so is a --data-dir one level inside the layout (naming the one to pass)."""
    if not (Path(data_dir) / FOLDER / TEST_BATCH).is_file() and image_folders.present(data_dir, "test"):
        images, labels, ids, skipped, _ = image_folders.read(data_dir, "test")
        if not len(images):
            raise UserError(
                f"no test image could be read under {Path(data_dir) / 'test'} ({len(skipped)} skipped); "
                f"{_fix_hint(Path(data_dir))}"
            )
        return LoadedSet(images, labels, np.array(ids), skipped)
    path = _folder(data_dir) / TEST_BATCH
    images, labels = _read_batch(path, Path(data_dir))
    if not len(images):
        raise UserError(
            f"CIFAR-10 file {path} holds no images (0 rows); nothing to test on: put a test batch "
            f"with images there, or {_fix_hint(Path(data_dir))}"
        )
    return LoadedSet(images, labels, np.arange(len(images), dtype=np.int64))


def load_train(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """data_batch_1..5 concatenated: images uint8 (N, 32, 32, 3), labels int64 (N,) in 0..9; without
    them, the image folders' training split (`image_folders.read_train`)."""
    if _reads_image_folders(data_dir):
        return image_folders.read_train(data_dir)
    folder = _folder(data_dir, training=True)
    batches = [_read_batch(folder / name, Path(data_dir)) for name in TRAIN_BATCHES]
    return np.concatenate([images for images, _ in batches]), np.concatenate([labels for _, labels in batches])


def _reads_image_folders(data_dir: Path) -> bool:
    """Whether load_train reads the image folders: no five training batches, and train/CLASS/ there."""
    batches_there = all((Path(data_dir) / FOLDER / name).is_file() for name in TRAIN_BATCHES)
    return not batches_there and image_folders.present(data_dir, "train")


def training_origin(data_dir: Path) -> DataOrigin:
    """What load_train reads from `data_dir`: the official batches, or image folders in their files' format
    (JPEG copies are lossy: not the official pixels)."""
    if _reads_image_folders(data_dir):
        images, _skipped = image_folders.listed(data_dir, "train")
        suffixes = {Path(path).suffix for path, _ in images}
        return DataOrigin(
            "CIFAR-10 as image folders (train/CLASS/), not the official batches",
            image_format(suffixes),
            str(Path(data_dir) / "train"),
        )
    return DataOrigin(OFFICIAL_TRAINING_DATA.source, OFFICIAL_TRAINING_DATA.format, str(Path(data_dir) / FOLDER))


def to_model_input(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 images (N, 32, 32, 3) -> float32 (N, 32, 32, 3) with the same 0..255 values (no scaling)."""
    return np.asarray(images_uint8, dtype=np.float32)


def augment_layer(seed: int) -> keras.Sequential:
    """The authors' train augmentation, drawn independently per sample of a float32 (B, 32, 32, 3) batch.

    Rotation uniform in +-15 degrees, width/height shift uniform in +-10 % of the size, horizontal flip
    with p=0.5; uncovered pixels repeat the nearest edge. Call with training=True to augment.
    """
    return keras.Sequential(
        [
            keras.layers.RandomRotation(15 / 360, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomFlip("horizontal", seed=seed + 2),
        ],
        name="cifar10_augment",
    )


def _as_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), labels


def train_dataset(
    images_uint8: np.ndarray, labels: np.ndarray, batch_size: int, augment: bool, seed: int, shuffle: bool = True
) -> tf.data.Dataset:
    """Batches of (float32 images (B, 32, 32, 3) in 0..255, labels (B,)), reshuffled every epoch.

    The last batch may be smaller. With `augment`, each image gets its own random `augment_layer` transform.
    """
    dataset = tf.data.Dataset.from_tensor_slices((images_uint8, labels))
    if shuffle:
        dataset = dataset.shuffle(len(images_uint8), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(_as_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmenter = augment_layer(seed)

        def augment_batch(images: tf.Tensor, batch_labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return augmenter(images, training=True), batch_labels

        dataset = dataset.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
