"""Training configuration: YAML -> a validated, frozen `TrainConfig`.

Every key is checked: an unknown key or a value of the wrong type is reported with the file and the
dotted key, and command-line overrides (`--set epochs=3`) go through the same validation.
"""
import dataclasses
import pathlib
import types
import typing

import yaml

from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """Per-epoch learning rate: `constant`, `exponential` (initial * decay ** epoch) or `step`
    (values[i] from epoch boundaries[i-1] on; values has one more entry than boundaries)."""
    schedule: str = "constant"
    initial: float = 1e-3
    decay: float = 0.99
    boundaries: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    def __post_init__(self):
        if self.schedule not in ("constant", "exponential", "step"):
            raise ValueError(f"learning_rate.schedule must be constant, exponential or step, "
                             f"got {self.schedule!r}")
        if self.schedule == "step" and len(self.values) != len(self.boundaries) + 1:
            raise ValueError("learning_rate.values needs one more entry than learning_rate.boundaries")

    def at(self, epoch):
        if self.schedule == "exponential":
            return self.initial * self.decay ** epoch
        if self.schedule == "step":
            return self.values[sum(epoch >= b for b in self.boundaries)]
        return self.initial


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
    steps_per_epoch: typing.Optional[int] = None
    distribute: str = "none"
    jit_compile: bool = False

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.distribute not in ("none", "mirrored"):
            raise ValueError(f"distribute must be none or mirrored, got {self.distribute!r}")


def _check(value, kind, key):
    """`value` converted to `kind`, or ValueError naming `key`."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return _build(kind, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        return _check(value, kind, key)
    if origin is dict:
        key_kind, value_kind = typing.get_args(kind)
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return {_check(k, key_kind, f"{key}"): _check(v, value_kind, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        item_kind = typing.get_args(kind)[0]
        return tuple(_check(v, item_kind, f"{key}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls, mapping, prefix=""):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ValueError(f"unknown key {prefix}{unknown[0]}; valid keys: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in mapping and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"missing key {prefix}{missing[0]}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _check(value, hints[name], prefix + name) for name, value in mapping.items()})


def parse_overrides(pairs):
    """["a.b=1", ...] -> nested dict, values parsed as YAML ("3" -> 3, "true" -> True)."""
    result = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"override {pair!r} must look like KEY=VALUE, e.g. epochs=3")
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(text)
    return result


def _merge(base, overrides):
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def load_config(path, overrides=()):
    """Read and validate a YAML training config; UserError names the file and the key."""
    path = pathlib.Path(path)
    try:
        mapping = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(mapping, dict):
        raise UserError(f"{path}: expected a mapping of keys to values")
    try:
        return _build(TrainConfig, _merge(mapping, parse_overrides(overrides)))
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: {err}") from None


def to_dict(config):
    """A plain mapping that `load_config` reads back into the same config."""
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}
