"""FLOPs, MACs and parameters per exit path, counted from the Keras graph.

Convention (the paper's: keras-flops 0.1.2 on the batch-1 graph; every count here equals the one that
tool gives on the authors' own TF 2.3 graphs):
- Conv2D / DepthwiseConv2D / Dense: 2 x MACs, plus 1 per output element for the bias;
- AveragePooling2D: output elements x pool window;  Add: 1 per output element per extra input;
- softmax (layer or Dense activation): 5 per element;
- BatchNormalization: 2 x elements + 6 x channels (keras-flops' own rule);
- ReLU, Flatten, Concatenate, Dropout, channel slices and the input: 0.

A path is everything an exit's output depends on; `path_costs` charges exit k with the union of the
paths of exits 0..k, i.e. what a sample that leaves at exit k has computed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras

from common import target_cost
from common.exit_paths import path_layers
from common.layers import ChannelSlice

if TYPE_CHECKING:
    from common.tasks import Task

FREE_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Flatten,
    keras.layers.Concatenate,
    keras.layers.Dropout,
    ChannelSlice,
)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    output_shape: tuple
    macs: int
    flops: int
    params: int


def _elements(shape: Sequence[int]) -> int:
    return math.prod(d for d in shape[1:])


def _activation_flops(layer: keras.layers.Layer, output_shape: Sequence[int]) -> int:
    activation = getattr(layer, "activation", None)
    if activation is None or activation.__name__ in ("linear", "relu"):
        return 0
    if activation.__name__ == "softmax":
        return 5 * _elements(output_shape)
    raise ValueError(f"no FLOP rule for activation {activation.__name__!r} in layer {layer.name}")


def layer_cost(layer: keras.layers.Layer) -> LayerCost:
    """The cost of one layer for a batch-1 input."""
    inputs = layer.input if isinstance(layer.input, list) else [layer.input]
    out_shape = tuple(layer.output.shape)
    out = _elements(out_shape)
    macs, flops = 0, 0
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        macs = out * kh * kw
        flops = 2 * macs + (out if layer.use_bias else 0) + _activation_flops(layer, out_shape)
    elif isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        macs = out * kh * kw * inputs[0].shape[-1] // layer.groups
        flops = 2 * macs + (out if layer.use_bias else 0) + _activation_flops(layer, out_shape)
    elif isinstance(layer, keras.layers.Dense):
        macs = inputs[0].shape[-1] * out
        flops = 2 * macs + (out if layer.use_bias else 0) + _activation_flops(layer, out_shape)
    elif isinstance(layer, keras.layers.AveragePooling2D):
        flops = out * math.prod(layer.pool_size)
    elif isinstance(layer, keras.layers.Add):
        flops = out * (len(inputs) - 1)
    elif isinstance(layer, keras.layers.Softmax):
        flops = 5 * out
    elif isinstance(layer, keras.layers.BatchNormalization):
        flops = 2 * out + 6 * out_shape[-1]
    elif isinstance(layer, keras.layers.Activation):
        flops = _activation_flops(layer, out_shape)
    elif not isinstance(layer, FREE_LAYERS):
        raise ValueError(f"no FLOP rule for layer {layer.name} ({type(layer).__name__})")
    params = sum(math.prod(w.shape) for w in layer.weights)
    return LayerCost(layer.name, type(layer).__name__, out_shape[1:], macs, flops, params)


def path_costs(model: keras.Model) -> list[list[LayerCost]]:
    """[[LayerCost, ...] per exit], cumulative (common.exit_paths.path_layers)."""
    return [[layer_cost(layer) for layer in layers] for layers in path_layers(model)]


def path_mflops(model: keras.Model) -> list[float]:
    """MFLOPs of each cumulative exit path, in output order."""
    return [sum(c.flops for c in path) / 1e6 for path in path_costs(model)]


def format_table(costs: Sequence[LayerCost]) -> str:
    """A per-layer table (name, kind, output shape, MACs, FLOPs, params) with totals."""
    rows = [f"{'layer':<30} {'kind':<20} {'output':<16} {'MACs':>12} {'FLOPs':>12} {'params':>8}"]
    for c in costs:
        shape = "x".join(str(d) for d in c.output_shape)
        rows.append(f"{c.name:<30} {c.kind:<20} {shape:<16} {c.macs:>12,} {c.flops:>12,} {c.params:>8,}")
    rows.append(
        f"{'total':<68} {sum(c.macs for c in costs):>12,} {sum(c.flops for c in costs):>12,} "
        f"{sum(c.params for c in costs):>8,}"
    )
    return "\n".join(rows)


def task_tables(task: str | Task, models: Sequence[str] = (), target: str | None = None) -> str:
    """Per-layer tables of every exit path of the task's models (all, or those named), as text; with
    `target` (common.target_cost.TARGETS), each path's predicted instructions there too, and for
    two-exit models the exit rate above which early exit saves instructions on it."""
    from common.models import build_model
    from common.tasks import check_models, load_task

    task = load_task(task)
    cost = target_cost.load_cost_model(target) if target else None
    base = target_cost.path_instructions(build_model(task, "base").model, cost)[0] if cost else None
    parts = []
    for name in check_models(task, models):
        net = build_model(task, name)
        instructions = target_cost.path_instructions(net.model, cost) if cost else [None] * len(net.exits)
        for exit_name, costs, count in zip(net.exits, path_costs(net.model), instructions):
            on_target = f", {count / 1e6:.3f} M instructions on {target} (predicted)" if cost else ""
            parts.append(
                f"\n{task.NAME}/{name}, path to exit {exit_name}: "
                f"{sum(c.flops for c in costs) / 1e6:.3f} MFLOPs{on_target}\n{format_table(costs)}"
            )
        if cost and len(net.exits) == 2:
            stages = target_cost.EarlyExitCost(target, instructions[0], instructions[1] - instructions[0], base)
            parts.append(
                f"\n{task.NAME}/{name} on {target}: early exit saves instructions above an exit rate of "
                f"{stages.break_even_exit_rate:.3f} (base model {base / 1e6:.3f} M)"
            )
    return "\n".join(parts)
