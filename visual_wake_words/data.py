"""Visual wake words: download, the test set as laid out on disk, the training split, tf.data pipelines.

Layout under a data directory:
  vw_coco2014_96/{person,non_person}/*.jpg   training data: the Silicon Labs archive MLPerf Tiny trains on
  val2017/*.jpg                              COCO 2017 validation images (5,000)
  annotations/instances_val2017.json         their instance annotations
  minival/{person,non_person}/*.jpg          the test set, written by `build_minival` (4,448 images)

How one image file becomes model input (RGB conversion, the 96x96 resize, [0, 1] scaling) is in
images.py; the minival, its labelling rule and the class and COCO folder names in minival.py, which
this module imports (never the reverse). Here: what reads or fetches a whole data directory.

Departures from the authors' code, on purpose:
  * the validation split is not augmented (theirs reuses the augmenting generator);
  * JPEGs are decoded with the accurate integer DCT in tf.data too, so that they equal what
    Pillow (and hence Keras' ImageDataGenerator) decodes; TensorFlow's default DCT differs by
    up to ~9 grey levels.
"""

import concurrent.futures
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import keras
import numpy as np
import tensorflow as tf

from common.download import check_split, extract, fetch
from common.errors import UserError
from common.tasks import LoadedSet
from visual_wake_words.images import (
    IMAGE_SHAPE,
    IMAGE_SIZE,
    IMAGE_SUFFIXES,
    IO_THREADS,
    RESCALE,
    listed_images,
    read_images,
)
from visual_wake_words.minival import (
    ANNOTATIONS_FILE,
    CLASS_NAMES,
    IMAGES_FOLDER,
    MINIVAL_FOLDER,
    NON_PERSON,
    PERSON,
    download_hint,
    minival_present,
    read_annotations,
)

TRAIN_URL = "https://www.silabs.com/public/files/github/machine_learning/benchmarks/datasets/vw_coco2014_96.tar.gz"
# SHA-1 published by Silicon Labs, the archive's host, in its MLTK model definition
# (github.com/SiliconLabs/mltk, mltk/models/tinyml/visual_wake_words.py: download_verify_extract(...,
# file_hash='A5A465082D3F396407F8B5ABAF824DD5B28439C4'); a 40-digit hash there is a SHA-1). No MD5 or
# SHA-256 of this archive is published that we could find.
TRAIN_SHA1 = "a5a465082d3f396407f8b5abaf824dd5b28439c4"
COCO_IMAGES_URL = "http://images.cocodataset.org/zips/val2017.zip"
COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
# cocodataset.org publishes no checksums. The MD5s are published by MLCommons
# (github.com/mlcommons/mlperf-automations, script/get-dataset-coco/customize.py, the same values
# in PaddleDetection's COCO reader test); the SHA-256s by ParlAI (github.com/facebookresearch/ParlAI,
# parlai/tasks/coco_caption/build_2017.py). Sizes: 815,585,330 and 252,907,541 bytes.
COCO_IMAGES_MD5 = "442b8da7639aecaf257c1dceb8ba8c80"
COCO_IMAGES_SHA256 = "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05"
COCO_ANNOTATIONS_MD5 = "f4bbac642086de4f52a3fdda2de5fa2c"
COCO_ANNOTATIONS_SHA256 = "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268"

TRAIN_FOLDER = "vw_coco2014_96"
VALIDATION_SPLIT = 0.1


# ------------------------------------------------------------------------------------------------
# Download


def _train_complete(data_dir: Path) -> bool:
    folders = [data_dir / TRAIN_FOLDER / name for name in CLASS_NAMES]
    return all(folder.is_dir() and listed_images(folder) for folder in folders)


def _annotations_complete(data_dir: Path) -> bool:
    return (data_dir / ANNOTATIONS_FILE).is_file()


def _images_complete(data_dir: Path) -> bool:
    """val2017/ holds every image the annotations name (or, without annotations, at least one)."""
    folder = data_dir / IMAGES_FOLDER
    if not folder.is_dir():
        return False
    present = set(os.listdir(folder))
    if not _annotations_complete(data_dir):
        return any(name.lower().endswith(IMAGE_SUFFIXES) for name in present)
    coco = read_annotations(data_dir / ANNOTATIONS_FILE, data_dir)
    return all(image.get("file_name") in present for image in coco["images"])


def download(
    data_dir: Path,
    train_url: str = TRAIN_URL,
    images_url: str = COCO_IMAGES_URL,
    annotations_url: str = COCO_ANNOTATIONS_URL,
    verify_checksums: bool = True,
    split: str = "all",
    force: bool = False,
) -> Path:
    """Fetch and unpack what `split` needs into `data_dir`: "train" the training archive, "test" COCO
    val2017 images and annotations (the minival is built from them), "all" the three.

    Each of `vw_coco2014_96/`, `annotations/instances_val2017.json` and `val2017/` is skipped when
    already complete (val2017/ is complete when it holds every image the annotations name); the COCO
    archives are also skipped when the minival is in place (`minival_present`). Archives
    are kept in `data_dir`, named after their URL, so an interrupted download resumes. URLs may be
    http(s)://, file:// or local paths. With `verify_checksums`, the training archive is checked
    against Silicon Labs' SHA-1 and the COCO archives against their published MD5 and SHA-256 (see
    the constants); `verify_checksums=False` skips all checks (for mirrors and tests). Unpacking keeps
    files the archives do not hold and never replaces one whose content differs unless `force`.
    Returns `data_dir`.
    """
    check_split(split)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Annotations before images: the images' completeness check reads them.
    parts: tuple[tuple[str, str, str, Callable[[Path], bool], dict[str, str]], ...] = (
        ("training set", train_url, TRAIN_FOLDER, _train_complete, {"sha1": TRAIN_SHA1}),
        (
            "COCO val2017 annotations",
            annotations_url,
            ANNOTATIONS_FILE,
            _annotations_complete,
            {"md5": COCO_ANNOTATIONS_MD5, "sha256": COCO_ANNOTATIONS_SHA256},
        ),
        (
            "COCO val2017 images",
            images_url,
            IMAGES_FOLDER,
            _images_complete,
            {"md5": COCO_IMAGES_MD5, "sha256": COCO_IMAGES_SHA256},
        ),
    )
    test_in_place = minival_present(data_dir)
    if test_in_place and split != "train":
        print(f"VWW test set: {data_dir / MINIVAL_FOLDER} already present (COCO val2017 is not needed)")
    for what, url, target, complete, checksums in parts:
        if split != "all" and (split == "train") != (target == TRAIN_FOLDER):
            continue
        if test_in_place and target != TRAIN_FOLDER:
            continue
        if complete(data_dir):
            print(f"{what}: {data_dir / target} already present")
            continue
        checks = checksums if verify_checksums else {}
        name = PurePosixPath(url.split("?")[0]).name or f"{PurePosixPath(target).parts[0]}.archive"
        archive = fetch(url, data_dir / name, **checks)
        print(f"Extracting {archive} into {data_dir}")
        extract(archive, data_dir, force=force)
        if not complete(data_dir):
            raise UserError(
                f"{archive} did not unpack to a complete {data_dir / target}; check that the URL "
                f"points at the {what} archive, delete {archive} and re-run"
            )
    return data_dir


# ------------------------------------------------------------------------------------------------
# The test set


def load_test(data_dir: Path) -> LoadedSet:
    """A test set laid out as `data_dir`/{person,non_person}/ (what `build_minival` writes).

    Returns a LoadedSet of images float32 (N, 96, 96, 3) in [0, 1] (see `load_images`), labels int64 (N,)
    (1 = person, 0 = non_person) and ids (N,) str, each image's path relative to `data_dir`
    ("person/000000000139.jpg"), sorted. Files ending in .png/.jpg/.jpeg (any case) are read; an
    unreadable one is reported by name on stderr, skipped and counted (LoadedSet.skipped).
    """
    data_dir = Path(data_dir)
    hint = "build it with bash visual_wake_words/preprocess.sh --data-dir DATA and pass --data-dir DATA/minival"
    if (data_dir / MINIVAL_FOLDER).is_dir() and not (data_dir / PERSON).is_dir():
        hint += f" (here: --data-dir {data_dir / MINIVAL_FOLDER})"
    elif (data_dir / IMAGES_FOLDER).is_dir():  # COCO downloaded, minival not built
        hint = (
            f"build it with bash visual_wake_words/preprocess.sh --data-dir {data_dir}, then pass "
            f"--data-dir {data_dir / MINIVAL_FOLDER}"
        )
    ids: list[str] = []
    labels: list[int] = []
    for label, class_name in enumerate(CLASS_NAMES):
        folder = data_dir / class_name
        if not folder.is_dir():
            raise UserError(f"Test folder {folder} not found; {hint}")
        names = listed_images(folder)
        ids += [f"{class_name}/{name}" for name in names]
        labels += [label] * len(names)
    if not ids:
        raise UserError(f"No .png/.jpg/.jpeg images in {data_dir / PERSON} or {data_dir / NON_PERSON}; {hint}")
    images, failures = read_images([data_dir / image_id for image_id in ids])
    keep = np.ones(len(ids), bool)
    skipped = []
    for row, error in failures:
        print(f"skipping unreadable image {data_dir / ids[row]} ({error})", file=sys.stderr)
        keep[row] = False
        skipped.append(
            (
                ids[row],
                "empty file"
                if (data_dir / ids[row]).stat().st_size == 0
                else f"unreadable image ({error.split(':')[0]})",
            )
        )
    if failures:
        print(f"{len(failures)} of {len(ids)} test images could not be read and were skipped", file=sys.stderr)
        if not keep.any():
            raise UserError(f"None of the {len(ids)} images under {data_dir} could be read; {hint}")
        images = images[keep]
    return LoadedSet(images, np.asarray(labels, np.int64)[keep], np.asarray(ids, dtype=str)[keep], skipped)


# ------------------------------------------------------------------------------------------------
# Training data


def _train_root(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    root = data_dir / TRAIN_FOLDER
    if not root.is_dir():
        raise UserError(f"Training folder {root} not found; {download_hint(data_dir)}")
    return root


def split_train(data_dir: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, validation) lists of (path relative to `data_dir`, label) from `data_dir`/vw_coco2014_96/.

    As Keras' flow_from_directory(validation_split=0.1) splits: per class, the .png/.jpg/.jpeg files
    sorted by name, the first int(0.1 * n) of them (= n // 10 for every n, since float 0.1 is just
    above 1/10) are validation and the rest train. Classes in label order (non_person = 0, person = 1).
    Deterministic; hidden files and subfolders are ignored.
    """
    root = _train_root(data_dir)
    train: list[tuple[str, int]] = []
    validation: list[tuple[str, int]] = []
    for label, class_name in enumerate(CLASS_NAMES):
        folder = root / class_name
        if not folder.is_dir():
            raise UserError(f"Training class folder {folder} not found; {download_hint(Path(data_dir))}")
        names = listed_images(folder)
        n_validation = int(VALIDATION_SPLIT * len(names))
        paths = [f"{TRAIN_FOLDER}/{class_name}/{name}" for name in names]
        validation += [(path, label) for path in paths[:n_validation]]
        train += [(path, label) for path in paths[n_validation:]]
    if not train:
        raise UserError(
            f"No .png/.jpg/.jpeg images under {root}/{{person,non_person}}/; {download_hint(Path(data_dir))}"
        )
    return train, validation


def augment_layer(seed: int) -> keras.Sequential:
    """MLPerf Tiny's VWW train augmentation (ImageDataGenerator rotation_range=10,
    width/height_shift_range=0.05, zoom_range=0.1, horizontal_flip, fill 'nearest'), drawn
    independently per image of a float32 (B, 96, 96, 3) batch; call with training=True.

    Rotation uniform in +-10 degrees, shifts uniform in +-5 % of the size, zoom factors uniform in
    [0.9, 1.1], drawn independently for height and width as ImageDataGenerator does, flip with p=0.5;
    uncovered pixels repeat the nearest edge, sampling is bilinear.
    """
    return keras.Sequential(
        [
            keras.layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom((-0.1, 0.1), (-0.1, 0.1), fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomFlip("horizontal", seed=seed + 3),
        ],
        name="vww_augment",
    )


def _decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """float32 (96, 96, 3) pixel values in [0, 255] of one PNG/JPEG file, and its label."""
    raw = tf.io.read_file(path)
    image = tf.cond(
        tf.io.is_jpeg(raw),
        lambda: tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(raw, channels=3, expand_animations=False),
    )
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    image = tf.cond(
        tf.logical_and(tf.equal(shape[0], IMAGE_SIZE), tf.equal(shape[1], IMAGE_SIZE)),
        lambda: image,
        lambda: tf.clip_by_value(
            tf.round(tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear", antialias=True)), 0.0, 255.0
        ),
    )
    return tf.ensure_shape(image, IMAGE_SHAPE), label


def _rescale(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.clip_by_value(images * RESCALE, 0.0, 1.0), labels


# What tf.io.decode_image reads, by their first bytes: JPEG, PNG, GIF, BMP.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def _check_decodable(paths: Sequence[str]) -> None:
    """UserError naming the first of `paths` that is empty or not a JPEG/PNG/GIF/BMP file by its first
    bytes, which tf.data would only fail on, deep inside training."""

    def problem(path: str) -> str | None:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as err:
            return f"cannot be read ({err})"
        if not head:
            return "is empty (0 bytes)"
        return None if head.startswith(IMAGE_SIGNATURES) else "is not a JPEG, PNG, GIF or BMP image"

    with concurrent.futures.ThreadPoolExecutor(IO_THREADS * 4) as pool:
        bad = [(path, error) for path, error in zip(paths, pool.map(problem, paths, chunksize=256)) if error]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(
            f"Training image {bad[0][0]} {bad[0][1]}{more}; delete or replace it, or download "
            f"the training set again (bash visual_wake_words/download.sh)"
        )


def _file_dataset(data_dir: Path, examples: list[tuple[str, int]]) -> tf.data.Dataset:
    paths = [str(Path(data_dir) / path) for path, _ in examples]
    _check_decodable(paths)
    labels = np.array([label for _, label in examples], np.int64)
    return tf.data.Dataset.from_tensor_slices((paths, labels))


def train_dataset(data_dir: Path, batch_size: int, augment: bool, seed: int, shuffle: bool = True) -> tf.data.Dataset:
    """Batches of (float32 images (B, 96, 96, 3) in [0, 1], int64 labels (B,)) from the train split
    of `split_train`, decoded from disk in the pipeline, reshuffled every epoch (seeded by `seed`).

    With `augment`, each image gets its own random `augment_layer(seed)` transform before the
    scaling to [0, 1]. The last batch may be smaller.
    """
    train, _ = split_train(data_dir)
    dataset = _file_dataset(data_dir, train)
    if shuffle:
        dataset = dataset.shuffle(len(train), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(_decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    if augment:
        augmenter = augment_layer(seed)

        def augment_batch(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return augmenter(images, training=True), labels

        dataset = dataset.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.map(_rescale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def validation_dataset(data_dir: Path, batch_size: int) -> tf.data.Dataset:
    """Batches of (float32 images (B, 96, 96, 3) in [0, 1], int64 labels (B,)) of the validation split
    of `split_train`, in its order, not augmented (the authors augmented it, a bug), last batch kept."""
    _, validation = split_train(data_dir)
    dataset = _file_dataset(data_dir, validation)
    dataset = dataset.map(_decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    return dataset.map(_rescale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
