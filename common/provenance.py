"""What data a network was trained on, or an early exit designed on: where they came from and in what format.

A design that wins on data unlike the backbone's training data (JPEG copies against the lossless
originals, say) may only be adapting to the difference. Each task states what its pretrained models were
trained on (`PRETRAINED_TRAINING_DATA`) and what a data folder holds (`training_data_origin(data_dir)`);
a trained model keeps what it was trained on in `training_data.json` beside its weights, where the code
that wrote it knew; otherwise it is unknown. A light module: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.tasks import Task

FILE = "training_data.json"  # beside a trained model's weights: {"backbone": origin, "early_exit": origin}

IMAGE_FORMATS = {".png": "PNG images (lossless)", ".jpg": "JPEG images (lossy)", ".jpeg": "JPEG images (lossy)"}


@dataclasses.dataclass(frozen=True)
class DataOrigin:
    """source: what the data are ("the official CIFAR-10 python batches"); format: how they are stored,
    lossless or not ("JPEG images (lossy)"); folder: where they were read, when known. Two origins are the
    same data domain when source and format agree (the folder may differ)."""

    source: str
    format: str
    folder: str = ""

    @property
    def known(self) -> bool:
        return self.source != UNKNOWN.source

    def describe(self) -> str:
        if not self.known:
            return "unknown"
        return f"{self.source}, {self.format}" + (f", from {self.folder}" if self.folder else "")


UNKNOWN = DataOrigin("unknown", "unknown")


def image_format(suffixes: Iterable[str]) -> str:
    """The format of image files with these suffixes: "JPEG images (lossy)", "PNG images (lossless)", or
    both joined with "and" when a folder mixes them."""
    formats = sorted({IMAGE_FORMATS.get(suffix.lower(), f"{suffix} files") for suffix in suffixes})
    return " and ".join(formats) if formats else "no image files"


def differences(data: DataOrigin, backbone: DataOrigin) -> list[str]:
    """Sentences flagging how the design data differ from the backbone's training data (none: same source
    and format)."""
    if not backbone.known:
        return [
            f"what the backbone was trained on is unknown; the design data are {data.source}, {data.format}: "
            "a design that wins here may only be adapting to them; compare on data in the backbone's domain"
        ]
    if (data.source, data.format) == (backbone.source, backbone.format):
        return []
    lossy = "lossy" in data.format and "lossy" not in backbone.format
    adapting = "JPEG compression" if lossy and "JPEG" in data.format else "the difference"
    differ = {"source": data.source != backbone.source, "format": data.format != backbone.format}
    what = " and ".join(word for word, different in differ.items() if different)
    return [
        f"the design data are {data.source}, {data.format}; the backbone was trained on {backbone.source}, "
        f"{backbone.format}: they differ in {what}, and a design that wins here may only be adapting to "
        f"{adapting}; compare on data in the backbone's domain"
    ]


def pretrained_origin(task: Task) -> DataOrigin:
    """What the task's pretrained models were trained on (its PRETRAINED_TRAINING_DATA), or UNKNOWN."""
    return task.PRETRAINED_TRAINING_DATA


def data_origin(task: Task, data_dir: str | os.PathLike) -> DataOrigin:
    """What the task reads from `data_dir` (made absolute) for training (its training_data_origin), or
    UNKNOWN with the folder."""
    data_dir = pathlib.Path(os.path.abspath(data_dir))
    if task.training_data_origin is None:
        return dataclasses.replace(UNKNOWN, folder=str(data_dir))
    return task.training_data_origin(data_dir)


def read_trained(model_folder: str | os.PathLike, part: str = "backbone") -> DataOrigin:
    """What a trained model's `part` ("backbone" or "early_exit") was trained on, from its training_data.json;
    UNKNOWN where the file or the part is missing or unreadable."""
    path = pathlib.Path(model_folder) / FILE
    try:
        return DataOrigin(**json.loads(path.read_text(encoding="utf-8"))[part])
    except (OSError, ValueError, TypeError, KeyError):
        return UNKNOWN


def trained_record(backbone: DataOrigin, early_exit: DataOrigin) -> str:
    """training_data.json's text: what the backbone (and final exit) and the early exit were trained on."""
    record = {"backbone": dataclasses.asdict(backbone), "early_exit": dataclasses.asdict(early_exit)}
    return json.dumps(record, indent=2) + "\n"
