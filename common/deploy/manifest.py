"""What an export holds, as everything downstream reads it.

`TensorSpec` describes one input or output tensor of a model, with its int8 quantisation; `ExportedModel`
one exported model: its files (NAME.tflite, NAME.h, NAME.cc), C symbol, builtin operators and tensors.
`write_export` (common/deploy/export.py) writes them all as export/manifest.json beside the models, and
the microcontroller path reads that file instead of parsing the generated C.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from common import files
from common.errors import UserError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def c_float(value: float) -> str:
    """A C float literal that reads back as exactly `value` (a float32 scale)."""
    text = repr(float(value))
    return f"{text}f" if any(c in text for c in ".en") else f"{text}.0f"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a .tflite model.

    name: signature name ("input", "ee", "tap", "ef"); position: its place among the interpreter's
    inputs or outputs (what TFLite Micro's `input(i)` / `output(i)` take); index: tensor index;
    scale, zero_point: real = scale * (q - zero_point) for int8 (0.0 and 0 for float32).
    """

    name: str
    position: int
    index: int
    shape: tuple
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype == "int8"

    @property
    def c_scale(self) -> str:
        """The scale as the C literal the generated header defines and the harness compiles."""
        return c_float(self.scale)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float array -> this tensor's dtype (round half to even, saturate for int8)."""
        if not self.quantized:
            return np.asarray(x, np.float32)
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's values as float64 (int8: scale * (q - zero_point), computed in float64)."""
        q = np.asarray(q)
        return (q.astype(np.float64) - self.zero_point) * self.scale if self.quantized else q.astype(np.float64)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(**{**data, "shape": tuple(data["shape"])})


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """One exported model. stem: its files' name ("trecx_ev_stage1_int8", "base_int8"); part: "stage1",
    "stage2" or "base"; precision: "float32" or "int8"; symbol: the C array's name; ops: its builtin
    operators; inputs and outputs: {name: TensorSpec}; folder: where its files are."""

    stem: str
    part: str
    precision: str
    symbol: str
    ops: tuple
    inputs: dict
    outputs: dict
    folder: pathlib.Path = dataclasses.field(default=pathlib.Path("."), compare=False)

    @property
    def name(self) -> str:
        """How the microcontroller harness calls it: its part."""
        return self.part

    @property
    def input(self) -> TensorSpec:
        return self.inputs["input"]

    @property
    def header(self) -> pathlib.Path:
        return self.folder / f"{self.stem}.h"

    @property
    def source(self) -> pathlib.Path:
        return self.folder / f"{self.stem}.cc"

    @property
    def tflite(self) -> pathlib.Path:
        return self.folder / f"{self.stem}.tflite"

    def to_json(self) -> dict[str, Any]:
        return {
            "stem": self.stem,
            "part": self.part,
            "precision": self.precision,
            "symbol": self.symbol,
            "ops": list(self.ops),
            "inputs": [spec.to_json() for spec in self.inputs.values()],
            "outputs": [spec.to_json() for spec in self.outputs.values()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], folder: str | os.PathLike) -> ExportedModel:
        specs = {kind: {s["name"]: TensorSpec.from_json(s) for s in data[kind]} for kind in ("inputs", "outputs")}
        fields = {key: data[key] for key in ("stem", "part", "precision", "symbol")}
        return cls(**fields, ops=tuple(data["ops"]), **specs, folder=pathlib.Path(folder))


def write_manifest(
    export_dir: str | os.PathLike, task_name: str, model_name: str, models: Sequence[ExportedModel]
) -> None:
    """export_dir/manifest.json: the task, the model and every `ExportedModel`, in writing order."""
    content = {
        "version": MANIFEST_VERSION,
        "task": task_name,
        "model": model_name,
        "models": [m.to_json() for m in models],
    }
    files.write_text(pathlib.Path(export_dir) / MANIFEST, json.dumps(content, indent=1) + "\n")


def read_manifest(export_dir: str | os.PathLike) -> dict[str, ExportedModel]:
    """{stem: ExportedModel} of an export folder; UserError when it has no readable manifest."""
    path = pathlib.Path(export_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"no export manifest {path}: run deploy.sh to export the models")
    try:
        content = json.loads(path.read_text())
        if content.get("version") != MANIFEST_VERSION:
            raise ValueError(f"version {content.get('version')!r}, expected {MANIFEST_VERSION}")
        models = [ExportedModel.from_json(entry, path.parent) for entry in content["models"]]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"export manifest {path} is damaged ({err}); run deploy.sh again to re-export") from None
    return {model.stem: model for model in models}
