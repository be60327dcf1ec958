"""Visual wake words: the authors' "minival" test set, built from COCO val2017 (4,448 images).

Reading COCO's instance annotations, the authors' person / non_person / skipped rule
(`minival_labels`) and writing the labelled images as 96x96 JPEGs (`build_minival`). The class
names and the COCO folder names live here, not in data.py, because data.py (download, the training
split) imports this module and this module must not import it back.

One departure from the authors' code, on purpose: minival JPEGs are written at quality 95 with
4:4:4 chroma, so re-encoding loses little.
"""

import concurrent.futures
import json
import os
import shutil
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from PIL import Image

from common import files
from common.errors import UserError
from common.progress import Progress
from visual_wake_words import TEST_SUBDIR
from visual_wake_words.images import IMAGE_SUFFIXES, IO_THREADS, listed_images, to_model_size

IMAGES_FOLDER = "val2017"
ANNOTATIONS_FILE = "annotations/instances_val2017.json"
MINIVAL_FOLDER = TEST_SUBDIR  # under the data folder: what build_minival writes and test.sh reads
NON_PERSON, PERSON = "non_person", "person"
# index = label: 0 = non_person, 1 = person (the alphabetical class order of Keras' flow_from_directory).
CLASS_NAMES = (NON_PERSON, PERSON)
SKIPPED = "skipped"
JPEG_QUALITY = 95
# An image is `person` when a non-crowd person box covers more than this fraction of it.
PERSON_MIN_AREA_FRACTION = Fraction(25, 1000)


def download_hint(data_dir: Path) -> str:
    return f"run bash visual_wake_words/download.sh --data-dir {data_dir}"


def minival_present(data_dir: Path) -> bool:
    """`data_dir`/minival/ holds both class folders, each with images: a test set in place, which the
    test split needs nothing else for (COCO val2017 is only what it is built from)."""
    root = Path(data_dir) / MINIVAL_FOLDER
    return all((root / name).is_dir() and listed_images(root / name) for name in CLASS_NAMES)


def read_annotations(path: Path, data_dir: Path) -> dict:
    if not path.is_file():
        raise UserError(f"COCO annotations {path} not found; {download_hint(data_dir)}")
    redo = f"delete {path.parent} and {download_hint(data_dir)}"
    try:
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"COCO annotations {path} are not readable JSON ({err}); {redo}") from err
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise UserError(f"{path} lacks the images/annotations/categories lists of a COCO instances file; {redo}")
    return coco


def _is_large(box: Sequence[float], width: int, height: int) -> bool:
    """Whether the [x, y, w, h] box covers more than PERSON_MIN_AREA_FRACTION of width x height.

    Exact rational arithmetic, so a box of exactly 2.5 % is never "more" through rounding.
    """
    return Fraction(box[2]) * Fraction(box[3]) > PERSON_MIN_AREA_FRACTION * Fraction(width) * Fraction(height)


def minival_labels(coco: dict, source: str = "the annotations") -> dict[str, str | None]:
    """The authors' rule for each image of a parsed COCO instances file:
    file_name -> "person" if a non-crowd (iscrowd == 0) person box has bbox area w*h > 2.5 % of
    the image's width*height, None (skipped) if it has non-crowd person boxes but none that large,
    "non_person" if it has none (crowd-only and unannotated images included). The person category
    is looked up by name.
    """
    try:
        person_ids = [category["id"] for category in coco["categories"] if category.get("name") == "person"]
        if not person_ids:
            raise UserError(f"{source} have no category named 'person'; use the COCO instances_val2017.json")
        boxes: dict[object, list[Sequence[float]]] = {}
        for annotation in coco["annotations"]:
            if annotation["category_id"] in person_ids and not annotation.get("iscrowd", 0):
                boxes.setdefault(annotation["image_id"], []).append(annotation["bbox"])
        labels: dict[str, str | None] = {}
        for image in coco["images"]:
            person_boxes = boxes.get(image["id"], [])
            if not person_boxes:
                labels[image["file_name"]] = NON_PERSON
            elif any(_is_large(box, image["width"], image["height"]) for box in person_boxes):
                labels[image["file_name"]] = PERSON
            else:
                labels[image["file_name"]] = None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise UserError(
            f"{source} are not in the COCO instances format "
            f"({type(err).__name__}: {err}); use the official instances_val2017.json"
        ) from err
    return labels


def _write_jpeg(source: Path, target: Path) -> None:
    """`source` as RGB 96x96 JPEG at `target`, written atomically."""
    try:
        with Image.open(source) as image:
            small = to_model_size(image)
    except Exception as err:  # corrupt files fail inside Pillow's decoders in many ways
        raise UserError(
            f"Cannot read COCO image {source} ({type(err).__name__}: {err}); delete "
            f"{source.parent} and {download_hint(source.parent.parent)}"
        ) from err
    with files.atomic_output(target) as temporary:
        small.save(temporary, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def _set_aside(files: list[Path], root: Path) -> Path:
    """Move `files` (under `root`/CLASS/) to `root`_set_aside/CLASS/, never over an existing file."""
    aside = root.with_name(f"{root.name}_set_aside")
    for path in files:
        target = aside / path.parent.name / path.name
        for n in range(1, 10_000):
            if not target.exists():
                break
            target = target.with_name(f"{path.stem}.{n}{path.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    return aside


def build_minival(data_dir: Path, out_dir: Path | None = None) -> dict[str, int]:
    """Write the authors' VWW test set from COCO val2017 to `out_dir`/minival/{person,non_person}/.

    Labels follow `minival_labels`; each kept image is converted to RGB, squashed to 96x96 with
    RESAMPLE and saved as JPEG (quality 95, 4:4:4) under its original file name. Missing images are
    written into a temporary sibling folder (.minival.building, which an interrupted run resumes from) and
    moved in only once all are written, so a failed build leaves minival/ as it was; a complete minival is
    left as it is. Nothing is deleted: image files in the class folders that are not part of minival
    are moved to minival_set_aside/. `out_dir` defaults to `data_dir`. Prints and returns the counts
    {"person": n, "non_person": n, "skipped": n}.
    """
    data_dir = Path(data_dir)
    root = Path(out_dir if out_dir is not None else data_dir) / MINIVAL_FOLDER
    annotations = data_dir / ANNOTATIONS_FILE
    labels = minival_labels(read_annotations(annotations, data_dir), str(annotations))
    counts = {PERSON: 0, NON_PERSON: 0, SKIPPED: 0}
    targets: dict[str, Path] = {}  # "person/NAME.jpg" -> its COCO image
    for name, label in sorted(labels.items()):
        counts[label or SKIPPED] += 1
        if label is not None:
            targets[f"{label}/{name}"] = data_dir / IMAGES_FOLDER / name
    strays = [
        entry
        for class_name in CLASS_NAMES
        if (root / class_name).is_dir()
        for entry in sorted((root / class_name).iterdir())
        if entry.name.lower().endswith((*IMAGE_SUFFIXES, ".tmp"))
        and entry.is_file()
        and f"{class_name}/{entry.name}" not in targets
    ]
    todo = [(source, target) for target, source in targets.items() if not (root / target).is_file()]
    summary = f"{counts[PERSON]} person, {counts[NON_PERSON]} non_person, {counts[SKIPPED]} skipped (small persons)"
    if not todo and not strays:
        print(f"minival already complete at {root}: {summary}")
        return counts
    missing = [source for source, _ in todo if not source.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} images named in {annotations} are missing from {data_dir / IMAGES_FOLDER} "
            f"(first: {missing[0].name}); {download_hint(data_dir)}"
        )
    staging = root.with_name(f".{root.name}.building")
    for class_name in CLASS_NAMES:
        (staging / class_name).mkdir(parents=True, exist_ok=True)
    jobs = [(source, staging / target) for source, target in todo if not (staging / target).is_file()]
    progress = Progress(f"minival {len(jobs)} images", len(jobs))
    with concurrent.futures.ThreadPoolExecutor(IO_THREADS) as pool:
        for _ in pool.map(lambda job: _write_jpeg(*job), jobs):
            progress.advance()
    progress.finish()
    if strays:  # all written: now the swap, by renames only
        aside = _set_aside(strays, root)
        print(f"Moved {len(strays)} files under {root} that are not part of minival to {aside}")
    for _, target in todo:
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / target, root / target)
    shutil.rmtree(staging)  # holds only what this builder wrote
    print(f"minival written to {root}: {summary}")
    return counts
