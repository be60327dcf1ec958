"""Synthetic VWW, for tests and benchmarks without the dataset: images in the real inputs' range that look
like them to the networks (labels meaningless) as a minival folder, and COCO val2017 and VWW training
data in the official layouts and archives.

`write_coco` writes `val2017/*.jpg` and `annotations/instances_val2017.json` for the images in
`COCO_CASES`, each built to exercise one rule of the minival builder; `write_vww_train` writes a
`vw_coco2014_96/{person,non_person}/` tree; `make_archives` packs both into .tar.gz/.zip archives
laid out like the official ones.
"""

import json
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from visual_wake_words import minival
from visual_wake_words.images import IMAGE_SIZE

PERSON_CATEGORY_ID = 7  # deliberately not COCO's 1: the builder must look the id up by name
OTHER_CATEGORIES = [
    {"supercategory": "animal", "id": 1, "name": "dog"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
]
TRAIN_ARCHIVE, IMAGES_ARCHIVE, ANNOTATIONS_ARCHIVE = (
    "vw_coco2014_96.tar.gz",
    "val2017.zip",
    "annotations_trainval2017.zip",
)


@dataclass(frozen=True)
class Box:
    """One annotation: [x, y, w, h] box, category id, crowd flag."""

    w: float
    h: float
    category_id: int = PERSON_CATEGORY_ID
    iscrowd: int = 0


@dataclass(frozen=True)
class CocoCase:
    """One val2017 image: size, mode, annotations and the minival folder it must land in (None = skipped)."""

    name: str
    image_id: int
    width: int
    height: int
    boxes: tuple[Box, ...] = field(default_factory=tuple)
    expected: str | None = "non_person"
    mode: str = "RGB"

    @property
    def file_name(self) -> str:
        return f"{self.image_id:012d}.jpg"


# 200 x 200 = 40,000 pixels, whose 2.5 % is exactly 1,000.
COCO_CASES = (
    CocoCase("large person", 139, 640, 480, (Box(200, 300),), "person"),
    CocoCase("just above 2.5 %", 285, 200, 200, (Box(40, 25.01),), "person"),
    CocoCase("exactly 2.5 %", 632, 200, 200, (Box(40, 25),), None),
    CocoCase("just below 2.5 %", 724, 200, 200, (Box(40, 24.99),), None),
    CocoCase("crowd only", 776, 427, 640, (Box(300, 400, iscrowd=1),), "non_person"),
    CocoCase("large crowd, small non-crowd person", 785, 300, 200, (Box(250, 180, iscrowd=1), Box(10, 10)), None),
    CocoCase("no annotations", 802, 480, 640, (), "non_person"),
    CocoCase("other category only", 872, 320, 240, (Box(300, 200, category_id=1),), "non_person"),
    CocoCase("one small one large person", 885, 500, 375, (Box(5, 8), Box(100, 150)), "person"),
    CocoCase("grayscale with person", 1000, 150, 100, (Box(60, 80),), "person", mode="L"),
    CocoCase("small image no person", 1268, 64, 48, (Box(30, 30, category_id=3),), "non_person"),
)


def _pixels(rng: np.random.Generator, width: int, height: int, mode: str) -> np.ndarray:
    """Smooth random colour gradients plus mild noise (compresses like a photo, not like white noise)."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = []
    for _ in range(3 if mode == "RGB" else 1):
        a, b, c = rng.uniform(-200, 200, size=3)
        channels.append(128 + a * (x - 0.5) + b * (y - 0.5) + c * (x - 0.5) * (y - 0.5))
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 6, size=(height, width, len(channels)))
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return pixels if mode == "RGB" else pixels[..., 0]


def save_image(path: Path, pixels: np.ndarray, **save_args: object) -> Path:
    """Write uint8 (H, W, 3) or (H, W) `pixels` to `path`; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save_args)
    return path


def write_coco(root: Path, cases: tuple[CocoCase, ...] = COCO_CASES, seed: int = 0) -> Path:
    """Write `root`/val2017/<12-digit id>.jpg and `root`/annotations/instances_val2017.json for `cases`.

    The JSON has COCO's keys (info, licenses, images, annotations, categories), one annotation per Box.
    Returns `root`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for case in cases:
        save_image(root / "val2017" / case.file_name, _pixels(rng, case.width, case.height, case.mode), quality=90)
        images.append(
            {
                "license": 1,
                "file_name": case.file_name,
                "coco_url": "",
                "height": case.height,
                "width": case.width,
                "date_captured": "2013-11-14 17:02:52",
                "flickr_url": "",
                "id": case.image_id,
            }
        )
        for box in case.boxes:
            annotations.append(
                {
                    "segmentation": [[0, 0, box.w, 0, box.w, box.h]],
                    "area": box.w * box.h * 0.6,
                    "iscrowd": box.iscrowd,
                    "image_id": case.image_id,
                    "bbox": [1.0, 2.0, box.w, box.h],
                    "category_id": box.category_id,
                    "id": 900000 + len(annotations),
                }
            )
    coco = {
        "info": {"description": "synthetic COCO 2017"},
        "licenses": [{"id": 1, "name": "test"}],
        "images": images,
        "annotations": annotations,
        "categories": [*OTHER_CATEGORIES, {"supercategory": "person", "id": PERSON_CATEGORY_ID, "name": "person"}],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))
    return root


def expected_minival(cases: tuple[CocoCase, ...] = COCO_CASES) -> dict[str, list[str]]:
    """{"person": [...], "non_person": [...]} sorted file names the minival builder must write."""
    return {
        label: sorted(case.file_name for case in cases if case.expected == label) for label in ("person", "non_person")
    }


def write_vww_train(root: Path, n_non_person: int, n_person: int, seed: int = 0) -> Path:
    """Write `root`/vw_coco2014_96/{non_person,person}/COCO_*.jpg, 96x96 RGB JPEGs.

    Names mix COCO_train2014_ and COCO_val2014_ prefixes (as the real archive does) in an order
    that differs from their creation order. non_person images are dark, person images bright.
    Returns the vw_coco2014_96 folder.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "vw_coco2014_96"
    for class_name, count, base in (("non_person", n_non_person, 60), ("person", n_person, 190)):
        for i in range(count):
            prefix = "COCO_val2014_" if i % 3 == 0 else "COCO_train2014_"
            pixels = np.clip(_pixels(rng, 96, 96, "RGB").astype(int) - 128 + base, 0, 255).astype(np.uint8)
            save_image(folder / class_name / f"{prefix}{(i * 7919) % 100003:012d}.jpg", pixels, quality=90)
    return folder


def make_archives(root: Path, n_non_person: int = 12, n_person: int = 15, seed: int = 0) -> dict[str, Path]:
    """Synthetic sources under `root`/source, packed as the three official archives in `root`.

    vw_coco2014_96.tar.gz holds vw_coco2014_96/{person,non_person}/; val2017.zip holds val2017/;
    annotations_trainval2017.zip holds annotations/ with instances_val2017.json and a captions file.
    Returns {"train": ..., "images": ..., "annotations": ...} archive paths.
    """
    root = Path(root)
    source = root / "source"
    write_coco(source, seed=seed)
    (source / "annotations" / "captions_val2017.json").write_text('{"annotations": []}')
    train_folder = write_vww_train(source, n_non_person, n_person, seed=seed + 1)
    archives = {
        "train": root / TRAIN_ARCHIVE,
        "images": root / IMAGES_ARCHIVE,
        "annotations": root / ANNOTATIONS_ARCHIVE,
    }
    with tarfile.open(archives["train"], "w:gz") as tar:
        tar.add(train_folder, arcname="vw_coco2014_96")
    for key, folder in (("images", "val2017"), ("annotations", "annotations")):
        with zipfile.ZipFile(archives[key], "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.write(source / folder, f"{folder}/")
            for path in sorted((source / folder).iterdir()):
                zipped.write(path, f"{folder}/{path.name}")
    return archives


def synthetic_inputs(n: int, seed: int = 0, grid: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(float32 (n, 96, 96, 3) in [0, 1], labels (n,) in {0, 1}): bilinear upsampling of a (grid, grid, 3)
    random colour field plus mild noise."""
    rng, size = np.random.default_rng(seed), IMAGE_SIZE
    coarse = rng.uniform(0.0, 1.0, (n, grid, grid, 3))
    position = np.linspace(0, grid - 1, size)
    low = np.minimum(position.astype(int), grid - 2)
    frac = (position - low)[None, :, None, None]
    rows = coarse[:, low] * (1 - frac) + coarse[:, low + 1] * frac
    frac = frac.reshape(1, 1, size, 1)
    images = rows[:, :, low] * (1 - frac) + rows[:, :, low + 1] * frac
    images += rng.normal(0.0, 0.03, images.shape)
    return np.clip(images, 0.0, 1.0).astype(np.float32), rng.integers(0, 2, n).astype(np.int64)


def write_synthetic_test_set(folder: str | os.PathLike, n: int, seed: int = 0) -> Path:
    """`synthetic_inputs` as 96x96 JPEG files (as the minival builder writes them) in `folder`/person/ and
    `folder`/non_person/ by label, the minival's layout; returns the folder test.sh reads (`folder`)."""
    images, labels = synthetic_inputs(n, seed)
    for i, (image, label) in enumerate(zip(images, labels)):
        path = Path(folder) / minival.CLASS_NAMES[label] / f"synthetic_{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, quality=minival.JPEG_QUALITY, subsampling=0)
    return Path(folder)


def write_synthetic_archives(folder: str | os.PathLike) -> Path:
    """A mirror of the official archives, tiny, in `folder`; returns it."""
    make_archives(folder, n_non_person=12, n_person=14)
    return Path(folder)
