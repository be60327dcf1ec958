"""Synthetic CIFAR-10 files in the exact official python-pickle layout, for offline tests (not a test module)."""

import pickle
import tarfile
from pathlib import Path

import numpy as np

from image_classification.image_folders import CLASS_NAMES
from image_classification.task import synthetic_batch

FOLDER = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"


def write_pickle(path: Path, obj: object) -> None:
    """Pickle `obj` to `path` with protocol 2, as the official (Python 2) files are."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def random_batch(rng: np.random.Generator, n: int, batch_label: str) -> dict:
    """An official-format batch of `n` images: the task's `synthetic_batch` (class mean colour plus Gaussian
    noise, uint8 (n, 3072) channel-first)."""
    return synthetic_batch(rng, n, batch_label)


def write_cifar(root: Path, n_test: int, n_train_per_batch: int, seed: int = 0) -> Path:
    """Write `root`/cifar-10-batches-py with data_batch_1..5, test_batch and batches.meta; returns that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", random_batch(rng, n_train_per_batch, f"training batch {i} of 5"))
    write_pickle(folder / "test_batch", random_batch(rng, n_test, "testing batch 1 of 1"))
    write_pickle(
        folder / "batches.meta",
        {
            b"num_cases_per_batch": n_train_per_batch,
            b"label_names": [name.encode() for name in CLASS_NAMES],
            b"num_vis": 3072,
        },
    )
    return folder


def make_cifar_archive(root: Path, n_test: int, n_train_per_batch: int, seed: int = 0) -> Path:
    """Write synthetic CIFAR-10 under `root`/source and tar it as `root`/cifar-10-python.tar.gz.

    Laid out like the official archive: a single top-level cifar-10-batches-py/ folder (plus readme.html).
    """
    folder = write_cifar(Path(root) / "source", n_test, n_train_per_batch, seed)
    (folder / "readme.html").write_text("<html>synthetic CIFAR-10</html>\n")
    archive = Path(root) / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    return archive


def write_image_folders(root: Path, split: str, images: np.ndarray, labels: np.ndarray, suffix: str = ".png") -> Path:
    """CIFAR-10 as image folders: image i as `root`/SPLIT/CLASS/NNNNN.png (lossless), the layout
    image_classification/image_folders.py reads; returns `root`."""
    from PIL import Image

    for name in CLASS_NAMES:
        (Path(root) / split / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(Path(root) / split / CLASS_NAMES[label] / f"{i:05d}{suffix}")
    return Path(root)
