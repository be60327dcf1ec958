"""What test.sh measures, as typed results: summary.json is `to_json(Summary)`, and Table 1 and the
`report` command read it back with `load_summary`, so no result is read through string keys.

Reading is the validation: `Summary.from_json` checks every field's JSON type against its annotation
and raises `SummaryError` naming the dotted key path. A field with a default may be absent (summaries
written before it was recorded, e.g. `inputs.folder`); a field marked `OPTIONAL` is left out of the
JSON when it is None (a run without a target has no instruction fields).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import types
import typing
from typing import Any, TypeVar

from common.errors import UserError
from common.records import OPTIONAL, to_json

T = TypeVar("T")

# What Table 1 reads of each model's per-exit results (accuracy, MFLOPs, and instructions with a target).
TABLE1_EXITS = {"base": ("ef",), "trecx_ev": ("ee", "ef")}


class SummaryError(ValueError):
    """A summary.json value that does not fit its field: `key` is its path (str keys, int list indices,
    () for the whole file), `problem` says how ("is missing", "is str, expected a number")."""

    def __init__(self, key: tuple[str | int, ...], problem: str) -> None:
        super().__init__(f"{'.'.join(map(str, key)) or 'the file'} {problem}")
        self.key, self.problem = key, problem


@dataclasses.dataclass(frozen=True)
class TradeoffPoint:
    """The cheapest point of a benefit curve within `drop` accuracy points of the base model
    (common.sweep.tradeoff_points): accuracy %, MFLOPs per sample, their saving % and the rho; all None
    but drop when no rho is that accurate."""

    drop: float
    accuracy: float | None
    mflops: float | None
    reduction_pct: float | None
    rho: float | None


@dataclasses.dataclass(frozen=True)
class InstructionTradeoffPoint:
    """As `TradeoffPoint`, the cost in the target's predicted M instructions per sample."""

    drop: float
    accuracy: float | None
    minstructions: float | None
    reduction_pct: float | None
    rho: float | None


@dataclasses.dataclass(frozen=True)
class ModelResult:
    """One model on the test set: per exit (in path order) its standalone accuracy %, the MFLOPs of the
    path to it and, with a target, its predicted M instructions; the trade-off points in MFLOPs and in
    instructions, and the instruction saving % at the rho of each FLOPs point (None where it has none)."""

    exits: list[str]
    accuracy: dict[str, float]
    mflops: dict[str, float]
    params: int
    tradeoff: list[TradeoffPoint]
    minstructions: dict[str, float] | None = dataclasses.field(default=None, metadata=OPTIONAL)
    tradeoff_target: list[InstructionTradeoffPoint] | None = dataclasses.field(default=None, metadata=OPTIONAL)
    instruction_reduction_pct_at_flops_tradeoff: list[float | None] | None = dataclasses.field(
        default=None, metadata=OPTIONAL
    )


@dataclasses.dataclass(frozen=True)
class SkippedInput:
    """A test input found but not scored, and why."""

    id: str
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class InputsRecord:
    """The test set read: its folder (absolute; None when the inputs came from memory, or from a summary
    written before it was recorded), the inputs found, scored and skipped."""

    folder: str | None = None
    found: int
    scored: int
    skipped: list[SkippedInput]


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The model the trade-off points are measured against, and where its weights came from."""

    model: str
    source: str


@dataclasses.dataclass(frozen=True)
class TargetRecord:
    """The microcontroller whose predicted instructions are reported beside the MFLOPs."""

    name: str
    unit: str
    cost_model: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Summary:
    """summary.json: a task's models on its test set. source: where the models' weights came from
    ("pretrained" or "trained"); paper: the task's published numbers (its PAPER); target: present when
    instructions were predicted for the base model. inputs, source and baseline may be absent from
    summaries written before they were recorded."""

    task: str
    num_samples: int
    inputs: InputsRecord | None = dataclasses.field(default=None, metadata=OPTIONAL)
    source: str | None = dataclasses.field(default=None, metadata=OPTIONAL)
    baseline: Baseline | None = dataclasses.field(default=None, metadata=OPTIONAL)
    models: dict[str, ModelResult]
    paper: dict[str, Any] = dataclasses.field(default_factory=dict)
    target: TargetRecord | None = dataclasses.field(default=None, metadata=OPTIONAL)

    @classmethod
    def from_json(cls, data: object) -> Summary:
        """The summary held by parsed JSON `data`; SummaryError naming the key when a value is missing or
        of another type, a trade-off list is empty, or Table 1's models and exits are not there."""
        summary = _read_dataclass(data, cls, ())
        summary.check_table1()
        return summary

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict written as summary.json (fields in order, OPTIONAL ones left out when None)."""
        return to_json(self)

    def check_table1(self) -> None:
        """SummaryError unless the models and exits Table 1 reads are there: base, and trecx_ev when it
        was evaluated, with every model's trade-off points, and the instruction fields with a target."""
        if "base" not in self.models:
            raise SummaryError(("models", "base"), "is missing")
        for name, model in self.models.items():
            where = ("models", name)
            if not model.tradeoff:
                raise SummaryError((*where, "tradeoff"), "is empty (expected the 1, 2 and 3 point trade-offs)")
            if model.tradeoff_target is not None and model.instruction_reduction_pct_at_flops_tradeoff is None:
                raise SummaryError((*where, "instruction_reduction_pct_at_flops_tradeoff"), "is missing")
            per_exit = {"accuracy": model.accuracy, "mflops": model.mflops}
            if self.target is not None and name == "base":
                per_exit["minstructions"] = model.minstructions
            for field, values in per_exit.items():
                for exit_name in TABLE1_EXITS.get(name, ()):
                    if values is None or exit_name not in values:
                        raise SummaryError((*where, field, *([] if values is None else [exit_name])), "is missing")


def load_summary(path: pathlib.Path, task_name: str) -> Summary:
    """The summary.json at `path`, in the folder of task `task_name`; one UserError naming the file (and
    the key) when it is not JSON, is damaged, or holds another task's results."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path} is damaged ({type(err).__name__}: {err}); run bash {task_name}/test.sh again to rewrite it"
        ) from None
    try:
        summary = Summary.from_json(data)
    except SummaryError as err:
        raise UserError(f"{path} is damaged: {err}; run bash {task_name}/test.sh again to rewrite it") from None
    if summary.task != task_name:
        raise UserError(
            f"{path} holds results of task {summary.task!r}, not of {task_name}, the folder it is "
            f"in; move it to {summary.task}/ or run bash {task_name}/test.sh again"
        )
    return summary


# ------------------------------------------------------------------------------------------------
# Reading JSON into the dataclasses above, by their annotations

_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string"}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(kind: object) -> str:
    """How an error names the JSON a type expects: "a number", "a string or null", "a list"."""
    args = typing.get_args(kind)
    if _is_union(kind):
        named = [_describe(arg) for arg in args if arg is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    origin = typing.get_origin(kind) or kind
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(origin):
        return "a JSON object"
    return _TYPE_NAMES[origin]


def _is_union(kind: object) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


def _fits(value: object, kind: type) -> bool:
    """Whether a JSON scalar is of `kind` (int, float or str): an int is a number; a bool is neither."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def _mismatch(value: object, kind: object, where: tuple[str | int, ...]) -> SummaryError:
    if isinstance(value, dict) or not _expects_object(kind):
        return SummaryError(where, f"is {type(value).__name__}, expected {_describe(kind)}")
    return SummaryError(where, "is not a JSON object")


def _expects_object(kind: object) -> bool:
    kinds = typing.get_args(kind) if _is_union(kind) else (kind,)
    return all((typing.get_origin(k) or k) is dict or dataclasses.is_dataclass(k) for k in kinds if k is not type(None))


def _read(value: object, kind: object, where: tuple[str | int, ...]) -> object:
    """`value` (parsed JSON) as `kind`: a dataclass, list[X], dict[str, X], X | None, int, float, str or
    Any; SummaryError naming `where` (the key path) when it does not fit."""
    if kind is Any:
        return value
    if _is_union(kind):
        if value is None and type(None) in typing.get_args(kind):
            return None
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if value is None:
            raise _mismatch(value, kind, where)
        try:
            return _read(value, inner, where)
        except SummaryError as err:
            if err.key == where:  # the value itself, not one inside it: name the whole union
                raise _mismatch(value, kind, where) from None
            raise
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        if not isinstance(value, list):
            raise _mismatch(value, kind, where)
        return [_read(item, args[0], (*where, i)) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _mismatch(value, kind, where)
        return {key: _read(item, args[1], (*where, key)) for key, item in value.items()}
    if dataclasses.is_dataclass(kind):
        return _read_dataclass(value, kind, where)
    if not _fits(value, kind):
        raise _mismatch(value, kind, where)
    return value


def _read_dataclass(value: object, cls: type[T], where: tuple[str | int, ...]) -> T:
    if not isinstance(value, dict):
        raise SummaryError(where, "is not a JSON object")
    hints, fields = _hints(cls), {}
    for field in dataclasses.fields(cls):
        if field.name in value:
            fields[field.name] = _read(value[field.name], hints[field.name], (*where, field.name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SummaryError((*where, field.name), "is missing")
    return cls(**fields)
