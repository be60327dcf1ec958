"""Synthetic CIFAR-10, for tests and benchmarks without the dataset: images in the real inputs' range that
look like them to the networks (labels meaningless), written in the official python-pickle layout (test
batch, all batches, the .tar.gz archive) or as image folders."""

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from image_classification import data
from image_classification.image_folders import CLASS_NAMES

ARCHIVE_NAME = "cifar-10-python.tar.gz"

SYNTHETIC_CLASS_RGB = np.random.default_rng(1234).integers(40, 216, size=(10, 3))


def synthetic_batch(rng: np.random.Generator, n: int, batch_label: str = "synthetic") -> dict[bytes, object]:
    """A batch of `n` synthetic images in the official pickle layout ({b"batch_label", b"labels", b"data":
    uint8 (n, 3072) channel-first rows, b"filenames"}): a class's mean colour plus Gaussian noise (std 25),
    rounded to 8 bits as a CIFAR-10 image is. Draws the labels, then the noise, from `rng`."""
    labels = rng.integers(0, 10, size=n)
    images = SYNTHETIC_CLASS_RGB[labels][:, None, None, :] + rng.normal(0.0, 25.0, size=(n, 32, 32, 3))
    rows = np.clip(np.rint(images), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2).reshape(n, data.VALUES_PER_IMAGE)
    return {
        b"batch_label": batch_label.encode(),
        b"labels": labels.tolist(),
        b"data": rows,
        b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(n)],
    }


def synthetic_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(float32 (n, 32, 32, 3) in [0, 255], labels (n,)) of a `synthetic_batch`."""
    batch = synthetic_batch(np.random.default_rng(seed), n)
    images = batch[b"data"].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return data.to_model_input(np.ascontiguousarray(images)), np.asarray(batch[b"labels"], np.int64)


def write_synthetic_test_set(folder: str | os.PathLike, n: int, seed: int = 0) -> Path:
    """A `synthetic_batch` as `folder`/cifar-10-batches-py/test_batch; returns the folder test.sh reads
    (`folder`)."""
    target = Path(folder) / data.FOLDER / data.TEST_BATCH
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:  # protocol 2, as the official (Python 2) files are
        pickle.dump(synthetic_batch(np.random.default_rng(seed), n, "synthetic test batch"), f, protocol=2)
    return Path(folder)


def write_pickle(path: Path, obj: object) -> None:
    """Pickle `obj` to `path` with protocol 2, as the official (Python 2) files are."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root: Path, n_test: int, n_train_per_batch: int, seed: int = 0) -> Path:
    """Write `root`/cifar-10-batches-py with data_batch_1..5, test_batch and batches.meta; returns that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / data.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", synthetic_batch(rng, n_train_per_batch, f"training batch {i} of 5"))
    write_pickle(folder / "test_batch", synthetic_batch(rng, n_test, "testing batch 1 of 1"))
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
        tar.add(folder, arcname=data.FOLDER)
    return archive


def write_image_folders(root: Path, split: str, images: np.ndarray, labels: np.ndarray, suffix: str = ".png") -> Path:
    """CIFAR-10 as image folders: image i as `root`/SPLIT/CLASS/NNNNN.png (lossless), the layout
    image_classification/image_folders.py reads; returns `root`."""
    for name in CLASS_NAMES:
        (Path(root) / split / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(Path(root) / split / CLASS_NAMES[label] / f"{i:05d}{suffix}")
    return Path(root)


def write_synthetic_archives(folder: str | os.PathLike) -> Path:
    """A mirror of the official archive (30 test images, 12 per training batch) in `folder`; returns it."""
    make_cifar_archive(folder, n_test=30, n_train_per_batch=12)
    return Path(folder)
