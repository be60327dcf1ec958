"""Training configuration: YAML -> a validated, frozen `TrainConfig`.

Every key is checked: an unknown key, a value of the wrong type, or a value out of range (a non-finite
or negative number, zero epochs, boundaries not increasing) is reported with the dotted key and where
it came from: the YAML file, or the command-line override (`--set epochs=3`) that set it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from common.errors import UserError

MAX_SEED = 2**32 - 1  # numpy's seeds
FLOAT32_MAX = 3.4028234663852886e38  # what training computes in
_Config = typing.TypeVar("_Config")  # a config dataclass that `_build` fills


class ConfigError(ValueError):
    """A bad config value; `key` is the dotted key it belongs to."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _at_least(key: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise ConfigError(key, f"{key} must be at least {low}, got {value}")


def _number(key: str, value: float, low: float = 0.0, above: bool = False) -> None:
    """A finite float32 >= low (> low when `above`)."""
    if not abs(value) <= FLOAT32_MAX or value < low or (above and value == low):
        raise ConfigError(key, f"{key} must be a finite number {'above' if above else 'at least'} {low:g}, got {value}")


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """Per-epoch learning rate: `constant`, `exponential` (initial * decay ** epoch) or `step`
    (values[i] from epoch boundaries[i-1] on; values has one more entry than boundaries).
    A rate of 0 is allowed (it freezes the weights, for checks); negative or non-finite ones are not."""

    schedule: str = "constant"
    initial: float = 1e-3
    decay: float = 0.99
    boundaries: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        key = "learning_rate."
        if self.schedule not in ("constant", "exponential", "step"):
            raise ConfigError(
                key + "schedule", f"learning_rate.schedule must be constant, exponential or step, got {self.schedule!r}"
            )
        _number(key + "initial", self.initial)
        _number(key + "decay", self.decay, above=True)
        for i, value in enumerate(self.values):
            _number(f"{key}values[{i}]", value)
        for i, boundary in enumerate(self.boundaries):
            _at_least(f"{key}boundaries[{i}]", boundary, 1 if i == 0 else self.boundaries[i - 1] + 1)
        if self.schedule == "step" and len(self.values) != len(self.boundaries) + 1:
            raise ConfigError(key + "values", "learning_rate.values needs one more entry than learning_rate.boundaries")

    def at(self, epoch: int) -> float:
        if self.schedule == "exponential":
            return self.initial * self.decay**epoch
        if self.schedule == "step":
            return self.values[sum(epoch >= b for b in self.boundaries)]
        return self.initial


@dataclasses.dataclass(frozen=True)
class EarlyExit:
    """Where a T-RecX model's early exit attaches (`tap`, a backbone tap of the task's architecture) and
    which branch it is (`branch`, one of common.exits.BRANCHES): a design of `design-exit`. Without one,
    a T-RecX model has the architecture's own (the paper's) early exit."""

    tap: str
    branch: str


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What `common.training.train` needs; see `TASK/configs/*.yaml` for the authors' values.

    loss_weights: weight of each exit's cross-entropy (exit names as in the model: ee, ef, ee1, ...).
    loss_weight_ramp: per exit, weight(epoch) = loss_weights[exit] + epoch * ramp / epochs
        (SDN's schedule, which the authors' code froze at its first value).
    weight_transfer_epochs: early view only: in epochs [0, N) the early exit's depthwise kernel is
        copied into the final exit's early-view kernel at the start of every batch.
    optimizer_restarts: epochs at which Adam starts afresh (its moments and step count zeroed), as the
        authors' staged VWW training did by compiling a new optimizer per stage.
    steps_per_epoch: null for full epochs; a number to cut epochs short (smoke runs).
    distribute: "none", or "mirrored" for tf.distribute.MirroredStrategy over all visible GPUs.
    jit_compile: compile the train step with XLA (worth trying on a GPU; on a CPU compiling costs
        more than it saves for these small networks).
    early_exit: T-RecX models only: the early exit's tap and branch (`EarlyExit`), as `design-exit`
        writes them; null for the architecture's own.
    """

    task: str
    model: str
    epochs: int
    batch_size: int
    learning_rate: LearningRate
    loss_weights: dict[str, float]
    loss_weight_ramp: dict[str, float] = dataclasses.field(default_factory=dict)
    weight_transfer_epochs: int = 0
    optimizer_restarts: tuple[int, ...] = ()
    augment: bool = True
    seed: int = 0
    steps_per_epoch: int | None = None
    distribute: str = "none"
    jit_compile: bool = False
    early_exit: EarlyExit | None = None

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "steps_per_epoch"):
            _at_least(key, getattr(self, key), 1)
        _at_least("weight_transfer_epochs", self.weight_transfer_epochs, 0)
        for i, epoch in enumerate(self.optimizer_restarts):
            _at_least(f"optimizer_restarts[{i}]", epoch, 0)
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError("seed", f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        for name, weight in self.loss_weights.items():
            _number(f"loss_weights.{name}", weight)
        if not any(self.loss_weights.values()):
            raise ConfigError("loss_weights", "loss_weights: at least one exit needs a weight above 0")
        for name, ramp in self.loss_weight_ramp.items():
            key = f"loss_weight_ramp.{name}"
            if name not in self.loss_weights:
                raise ConfigError(key, f"{key}: exit {name} has no loss_weights entry to ramp from")
            if not abs(ramp) <= FLOAT32_MAX or self.loss_weights[name] + ramp < 0:
                raise ConfigError(
                    key,
                    f"{key} must be finite and keep the weight at least 0 "
                    f"(loss_weights.{name} + ramp >= 0), got {ramp}",
                )
        if self.distribute not in ("none", "mirrored"):
            raise ConfigError("distribute", f"distribute must be none or mirrored, got {self.distribute!r}")


def _check(value: object, kind: object, key: str) -> object:
    """`value` converted to `kind`, or ConfigError naming `key`."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(key, f"{key}: expected a mapping, got {value!r}")
        return _build(kind, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        return _check(value, kind, key)
    if origin is dict:
        key_kind, value_kind = typing.get_args(kind)
        if not isinstance(value, dict):
            raise ConfigError(key, f"{key}: expected a mapping, got {value!r}")
        return {_check(k, key_kind, f"{key}"): _check(v, value_kind, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"{key}: expected a list, got {value!r}")
        item_kind = typing.get_args(kind)[0]
        return tuple(_check(v, item_kind, f"{key}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(key, f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type[_Config], mapping: Mapping[str, object], prefix: str = "") -> _Config:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(prefix + unknown[0], f"unknown key {prefix}{unknown[0]}; valid keys: {', '.join(fields)}")
    missing = [
        n
        for n, f in fields.items()
        if n not in mapping and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(prefix + missing[0], f"missing key {prefix}{missing[0]}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _check(value, hints[name], prefix + name) for name, value in mapping.items()})


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """["a.b=1", ...] -> nested dict, values parsed as YAML ("3" -> 3, "true" -> True)."""
    result = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set {pair}: an override must look like KEY=VALUE, e.g. --set epochs=3")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise UserError(
                f"--set {pair}: {text!r} is not a YAML value ({str(err).splitlines()[0]}); "
                "quote lists and mappings, e.g. --set 'optimizer_restarts=[20, 30]'"
            ) from None
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {pair}: {part} is set to a value by another --set; set it once")
        node[leaf] = value
    return result


def origin(path: str | os.PathLike, overrides: Iterable[str], key: str) -> str:
    """Where the value of the dotted `key` came from: "--set KEY=VALUE" (the last override that set it, or a
    key above or below it), else the YAML file."""

    def base(name: str) -> str:
        return name.split("[")[0]

    key = base(key)
    for pair in reversed(list(overrides)):
        name = base(pair.partition("=")[0])
        if key == name or key.startswith(name + ".") or name.startswith(key + "."):
            return f"--set {pair}"
    return str(path)


def _merge(base: Mapping[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read and validate a YAML training config with `overrides` ("key=value") applied; a UserError names
    the key and the file or the override it came from."""
    path = pathlib.Path(path)
    try:
        mapping = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read config file {path} ({err})") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(mapping, dict):
        raise UserError(f"{path}: expected a mapping of keys to values")
    try:
        return _build(TrainConfig, _merge(mapping, parse_overrides(overrides)))
    except ConfigError as err:
        raise UserError(f"{origin(path, overrides, err.key)}: {err}") from None
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: {err}") from None


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """A plain mapping that `load_config` reads back into the same config."""

    def plain(value: object) -> object:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def to_yaml(config: TrainConfig) -> str:
    """The config as the config.yaml saved beside a trained model (`to_dict` as YAML, in field order)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def summary(config: TrainConfig, width: int = 100) -> str:
    """The resolved config as a compact block of `key: value` items, YAML flow style as --set takes them."""

    def flow(value: object) -> str:
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v not in ([], ())}
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1e9)
        return text.removesuffix("\n...\n").strip()

    lines = [""]
    for key, value in to_dict(config).items():
        item = f"{key}: {flow(value)}"
        if lines[-1] and len(lines[-1]) + len(item) + 2 > width:
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + item
    return "\n".join("  " + line for line in lines)
