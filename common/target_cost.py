"""What a model costs on a microcontroller, predicted from its operators: executed instructions per sample.

An int8 model runs on a Cortex-M as TensorFlow Lite Micro operators, one kernel each. Every kernel's
instruction count is a fixed function of its shapes (inputs hardly matter: measured counts vary < 0.1 %
across inputs), so it can be predicted before any data is seen. The model, per target and per operator
variant (the kind, and for convolutions the kernel family: `Operator.variant`), is linear in a few shape
terms that the kernels' loops run over:

    instructions(op) = sum_i  c[target][variant][i] * feature_i(op)        (`FEATURES` names them)

e.g. a convolution pays per MAC, per element its im2col copies, per output element (requantisation),
per output pixel and once; a depthwise one per MAC inside the input (padding taps are skipped) and per
output element. A model adds TFLM's own work around its kernels (the profile's "between operators"):

    instructions(model) = sum over its operators + between[0] * invocations + between[1] * operators

The coefficients are fitted by least squares on relative error to operators measured on the emulator
(`python3 -m common.cli fit-cost-model`, common/deploy/cost_fit.py) and kept in target_costs.json beside
this module; nothing here needs the toolchain. `keras_operators` lists the TFLite operators a Keras
model converts to (convolutions with their batch norm and ReLU fused), so that the cost of every exit
path of any model is known without converting it; the .tflite reader is common.deploy.profile.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import UserError
from common.exit_paths import path_layers

if TYPE_CHECKING:
    import keras

COST_FILE = pathlib.Path(__file__).with_name("target_costs.json")
MEASUREMENTS_FILE = COST_FILE.with_name("target_cost_measurements.json")  # the emulator's counts it is fitted to
TARGETS = ("cortex-m4", "cortex-m4:reference", "cortex-m7", "cortex-m55")
DEFAULT_TARGET = "cortex-m4"
NO_TARGET = "none"


@dataclasses.dataclass(frozen=True)
class Operator:
    """One TFLite operator as its kernel sees it (batch 1, batch dimension dropped).

    kind: builtin name ("CONV_2D"); input_shape, output_shape: of its first input and its output
    ((H, W, C) or (N,)); kernel: filter or pool window (kh, kw); stride; padding: "same" or "valid";
    inputs: how many tensors it reads besides weights (CONCATENATION, ADD).
    """

    kind: str
    input_shape: tuple
    output_shape: tuple
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: str = "valid"
    inputs: int = 1

    @property
    def output_elements(self) -> int:
        return math.prod(self.output_shape)

    @property
    def input_elements(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_pixels(self) -> int:
        """Output positions (H x W) of a feature map; 1 for a vector."""
        return math.prod(self.output_shape[:-1]) if len(self.output_shape) == 3 else 1

    @property
    def window(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def taps_inside(self) -> int:
        """Kernel taps that fall inside the input, summed over the output positions (a padded
        convolution or pool skips the others)."""
        if len(self.input_shape) != 3:
            return self.window
        total = 1
        for size, out, k, s in zip(self.input_shape[:2], self.output_shape[:2], self.kernel, self.stride):
            pad = max((out - 1) * s + k - size, 0) // 2 if self.padding == "same" else 0
            starts = np.arange(out) * s - pad
            total *= int(np.sum(np.minimum(starts + k, size) - np.maximum(starts, 0)))
        return total

    @property
    def macs(self) -> int:
        if self.kind == "CONV_2D":
            return self.output_elements * self.window * self.input_shape[-1]
        if self.kind == "DEPTHWISE_CONV_2D":
            return self.output_elements * self.window
        if self.kind == "FULLY_CONNECTED":
            return self.output_elements * self.input_elements
        return 0

    @property
    def variant(self) -> str:
        """Kind, and for convolutions the kernel family CMSIS-NN's wrappers dispatch on (a 1 x 1
        convolution of stride 1 over a multiple of 4 channels, other 1 x 1 ones, a 3 x 3 depthwise one)."""
        if self.kind == "CONV_2D" and self.kernel == (1, 1):
            fast = self.stride == (1, 1) and self.input_shape[-1] % 4 == 0
            return "CONV_2D_1x1_fast" if fast else "CONV_2D_1x1"
        if self.kind == "DEPTHWISE_CONV_2D" and self.kernel == (3, 3) and self.input_shape[-1] == self.output_shape[-1]:
            return "DEPTHWISE_CONV_2D_3x3"
        return self.kind


def _conv_features(op: Operator) -> list[float]:
    """A convolution as CMSIS-NN runs it: an im2col copy of each tap inside the input (a call each, then
    per channel), a zero fill of each padded one, a matrix product over columns of kh x kw x Cin in
    blocks of 4 (16 with Helium; the rest one by one) for pairs (fours) of output pixels and channels (an
    odd one alone), and a
    requantisation of each output, once per weight (sums of each filter for the zero points); and as
    TFLM's reference kernel runs it: per output element a loop
    over the taps, skipping those outside the input, then over the input channels."""
    cin, cout = op.input_shape[-1], op.output_shape[-1]
    column = op.window * cin
    inside, pixels = op.taps_inside(), op.output_pixels
    return [
        op.macs,
        inside * cin * cout,
        op.output_elements * op.window,
        inside * cout,
        op.output_elements * (column % 4),
        inside * cin,
        (pixels * op.window - inside) * cin,
        inside,
        op.output_elements,
        pixels,
        cout,
        (pixels % 2) * cout * column,
        (cout % 2) * pixels * column,
        column * cout,
        op.output_elements * -(-column // 16),
        (pixels % 4) * cout * column,
        1,
    ]


CONV_TERMS = (
    "macs",
    "macs_inside",
    "tap_loops",
    "tap_loops_inside",
    "outputs_x_column_mod_4",
    "im2col_elements",
    "padding_elements",
    "taps_inside",
    "outputs",
    "pixels",
    "out_channels",
    "odd_pixel_macs",
    "odd_channel_macs",
    "weights",
    "outputs_x_column_vectors_of_16",
    "pixels_mod_4_macs",
    "one",
)


def _depthwise_features(op: Operator) -> list[float]:
    """A depthwise convolution: per tap inside the input (a call, then per channel or per group of 4
    channels with Helium), per padded tap, per output and pixel, channels not a multiple of 4 one by one."""
    channels = op.output_shape[-1]
    inside, pixels = op.taps_inside(), op.output_pixels
    return [
        op.macs,
        inside * channels,
        inside,
        (pixels * op.window - inside) * channels,
        op.output_elements,
        pixels,
        pixels * (channels % 4) * op.window,
        inside * -(-channels // 4),
        pixels * -(-channels // 4),
        (pixels % 4) * op.window * channels,
        -(-pixels // 4) * channels,
        1,
    ]


DEPTHWISE_TERMS = (
    "macs",
    "macs_inside",
    "taps_inside",
    "padding_elements",
    "outputs",
    "pixels",
    "channels_mod_4_macs",
    "taps_inside_x_channel_groups_of_4",
    "pixels_x_channel_groups_of_4",
    "odd_pixel_macs",
    "pixel_groups_of_4_x_channels",
    "one",
)


def _fully_connected_features(op: Operator) -> list[float]:
    """Per MAC, output and input; inputs not a multiple of 4 (DSP) or of 16 (MVE vectors) and outputs not
    a multiple of 4 (rows taken four at a time) by their rest."""
    n_in, n_out = op.input_elements, op.output_elements
    return [op.macs, n_out, n_in, n_out * (n_in % 4), n_out * -(-n_in // 16), (n_out % 4) * n_in, 1]


FULLY_CONNECTED_TERMS = ("macs", "outputs", "inputs", "macs_mod_4", "vectors_of_16", "odd_row_macs", "one")


def _pool_features(op: Operator) -> list[float]:
    """Per tap inside the input per channel, per tap, per window row of each output, per output and pixel."""
    inside = op.taps_inside()
    return [
        inside * op.output_shape[-1],
        inside,
        op.output_elements * op.kernel[0],
        op.output_elements,
        op.output_pixels,
        1,
    ]


POOL_TERMS = ("taps_inside_x_channels", "taps_inside", "window_rows", "outputs", "pixels", "one")

# Per variant: (names of the terms, their values for an operator). One home for the model's form.
FEATURES = {
    "CONV_2D": (CONV_TERMS, _conv_features),
    "CONV_2D_1x1": (CONV_TERMS, _conv_features),
    "CONV_2D_1x1_fast": (CONV_TERMS, _conv_features),
    "DEPTHWISE_CONV_2D": (DEPTHWISE_TERMS, _depthwise_features),
    "DEPTHWISE_CONV_2D_3x3": (DEPTHWISE_TERMS, _depthwise_features),
    "FULLY_CONNECTED": (FULLY_CONNECTED_TERMS, _fully_connected_features),
    "AVERAGE_POOL_2D": (POOL_TERMS, _pool_features),
    "ADD": (("outputs", "one"), lambda op: [op.output_elements, 1]),
    "SOFTMAX": (("outputs", "one"), lambda op: [op.output_elements, 1]),
    "RESHAPE": (("outputs", "one"), lambda op: [op.output_elements, 1]),
    "STRIDED_SLICE": (("outputs", "pixels", "one"), lambda op: [op.output_elements, op.output_pixels, 1]),
    "CONCATENATION": (("outputs", "inputs", "one"), lambda op: [op.output_elements, op.inputs, 1]),
}
BETWEEN = ("invocations", "operators")  # the terms of TFLM's work around the kernels
# The operator kinds the model has a form for (each of its variants is one of these kinds).
KINDS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "AVERAGE_POOL_2D",
    "ADD",
    "SOFTMAX",
    "RESHAPE",
    "STRIDED_SLICE",
    "CONCATENATION",
)


def features(op: Operator) -> list[float]:
    """The values of the model's terms for `op` (ValueError for a kind the model has no form for)."""
    if op.variant not in FEATURES:
        raise ValueError(f"no cost model form for operator {op.kind}")
    return [float(v) for v in FEATURES[op.variant][1](op)]


@dataclasses.dataclass(frozen=True)
class CostModel:
    """The fitted model of one target: coefficients per operator variant and of the work between them."""

    target: str
    coefficients: dict  # variant -> tuple of floats, in FEATURES order
    between: tuple  # per invocation, per operator

    def operator(self, op: Operator) -> float:
        """Predicted executed instructions of one operator."""
        if op.variant not in self.coefficients:
            raise ValueError(
                f"the {self.target} cost model has no {op.variant} operators; refit it with a probe of that kind"
            )
        return float(np.dot(self.coefficients[op.variant], features(op)))

    def model(self, ops: Iterable[Operator], invocations: int = 1) -> float:
        """Predicted executed instructions of `ops` run as `invocations` Invoke() calls."""
        ops = list(ops)
        return sum(self.operator(op) for op in ops) + self.between[0] * invocations + self.between[1] * len(ops)


@dataclasses.dataclass(frozen=True)
class EarlyExitCost:
    """Executed instructions per Invoke() of an early-exit model's stage 1 and stage 2 and of its base
    model on one target (predicted or measured)."""

    target: str
    stage1: float
    stage2: float
    base: float

    @property
    def paths(self) -> list[float]:
        """Per exit path: leaving after stage 1, running both stages."""
        return [self.stage1, self.stage1 + self.stage2]

    def expected(self, exit_rate: float) -> float:
        """Instructions per sample when `exit_rate` of the samples leave after stage 1."""
        return self.stage1 + (1.0 - exit_rate) * self.stage2

    def saving_pct(self, exit_rate: float) -> float:
        """% of the base model's instructions saved at `exit_rate` (negative: early exit costs more)."""
        return float(100.0 * (1.0 - self.expected(exit_rate) / self.base))

    @property
    def break_even_exit_rate(self) -> float:
        """The exit rate above which early exit saves instructions (> 1: it never does; <= 0: always)."""
        return float((self.stage1 + self.stage2 - self.base) / self.stage2) if self.stage2 > 0 else float("inf")


def check_target(name: str | None, option: str = "--target") -> str | None:
    """`name` as a target, None for "none"; UserError naming the valid ones otherwise."""
    if name is None or name == NO_TARGET:
        return None
    if name not in TARGETS:
        raise UserError(f"{option}: unknown target {name!r}; valid targets: {', '.join(TARGETS)}, or {NO_TARGET}")
    return name


@functools.cache
def _cost_file(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot read the cost models {path} ({err}); restore it with git checkout, or refit it with "
            "python3 -m common.cli fit-cost-model"
        ) from None


def model_form() -> dict[str, Any]:
    """The model's form as target_costs.json records it beside the coefficients: per variant the names
    of its terms (`FEATURES`), and those of TFLM's work between the kernels (`BETWEEN`)."""
    return {"form": {variant: list(names) for variant, (names, _) in FEATURES.items()}, "between_form": list(BETWEEN)}


def load_cost_model(target: str, path: pathlib.Path = COST_FILE) -> CostModel:
    """The fitted `CostModel` of `target` (one of TARGETS); UserError when `path` lacks it, was fitted
    for another form of the model, or holds coefficients that do not fit that form."""
    content = _cost_file(pathlib.Path(path))
    entry = content.get("targets", {}).get(target) if isinstance(content, dict) else None
    if entry is None:
        raise UserError(f"{path} has no cost model for {target}; refit with python3 -m common.cli fit-cost-model")
    if {key: content.get(key) for key in ("form", "between_form")} != model_form():
        raise UserError(
            f"{path} was fitted for another form of the cost model than common/target_cost.py's; refit it "
            "with python3 -m common.cli fit-cost-model --from-measurements"
        )
    try:
        coefficients = {variant: tuple(map(float, values)) for variant, values in entry["coefficients"].items()}
        between = tuple(map(float, entry["between"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        coefficients, between = None, ()
    if (
        coefficients is None
        or len(between) != len(BETWEEN)
        or any(len(values) != len(FEATURES.get(variant, ((),))[0]) for variant, values in coefficients.items())
    ):
        raise UserError(
            f"{path} is damaged: the {target} coefficients do not fit the model's form; restore it with git "
            "checkout, or refit it with python3 -m common.cli fit-cost-model --from-measurements"
        )
    return CostModel(target, coefficients, between)


# ------------------------------------------------------------------------------------------------
# The TFLite operators of a Keras model, without converting it


def _layer_of(tensor: keras.KerasTensor) -> keras.layers.Layer:
    return tensor._keras_history[0]


def _inbound(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    inputs = layer.input if isinstance(layer.input, list) else [layer.input]
    return [_layer_of(t) for t in inputs]


def _shape(tensor: keras.KerasTensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def _padding(layer: keras.layers.Layer) -> str:
    return getattr(layer, "padding", "valid").lower()


def layer_operators(layer: keras.layers.Layer, consumers: Sequence[keras.layers.Layer]) -> list[Operator]:
    """The TFLite operators one Keras layer becomes in the int8 conversion (the converter's fusions:
    batch norm folded into the convolution before it, ReLU into the operator before it, a Flatten of a
    1 x 1 map read only by Dense layers dropped). consumers: the layers that read its output."""
    import keras

    from common.layers import ChannelSlice

    if isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout)):
        return []
    kind = type(layer).__name__
    out = _shape(layer.output)
    ins = layer.input if isinstance(layer.input, list) else [layer.input]
    first = _shape(ins[0])
    activation = getattr(layer, "activation", None)
    softmax = [Operator("SOFTMAX", out, out)] if activation is not None and activation.__name__ == "softmax" else []
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [
            Operator("DEPTHWISE_CONV_2D", first, out, tuple(layer.kernel_size), tuple(layer.strides), _padding(layer))
        ]
    if isinstance(layer, keras.layers.Conv2D):
        return [Operator("CONV_2D", first, out, tuple(layer.kernel_size), tuple(layer.strides), _padding(layer))]
    if isinstance(layer, keras.layers.Dense):
        return [Operator("FULLY_CONNECTED", (math.prod(first),), out), *softmax]
    if isinstance(layer, keras.layers.AveragePooling2D):
        return [Operator("AVERAGE_POOL_2D", first, out, tuple(layer.pool_size), tuple(layer.strides), _padding(layer))]
    if isinstance(layer, keras.layers.Add):
        return [Operator("ADD", first, out, inputs=2) for _ in ins[1:]]
    if isinstance(layer, keras.layers.Concatenate):
        return [Operator("CONCATENATION", first, out, inputs=len(ins))]
    if isinstance(layer, ChannelSlice):
        return [] if out == first else [Operator("STRIDED_SLICE", first, out)]
    if isinstance(layer, keras.layers.Flatten):
        squeeze = all(d == 1 for d in first[:-1])
        if squeeze and consumers and all(isinstance(c, keras.layers.Dense) for c in consumers):
            return []
        return [Operator("RESHAPE", first, out)]
    if isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.Activation) and softmax):
        return [Operator("SOFTMAX", out, out)]
    (before,) = _inbound(layer)
    convolution = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    if isinstance(layer, keras.layers.BatchNormalization) and isinstance(before, convolution):
        return []  # folded into the convolution's weights and bias
    fuses_relu = (*convolution, keras.layers.Dense, keras.layers.BatchNormalization, keras.layers.Add)
    if isinstance(layer, keras.layers.Activation) and activation.__name__ == "relu" and isinstance(before, fuses_relu):
        return []  # the operator before clamps its own output
    raise ValueError(f"no TFLite operator rule for layer {layer.name} ({kind})")


def layer_consumers(model: keras.Model) -> dict[str, list[keras.layers.Layer]]:
    """{layer name: the layers that read its output} of a Keras model (for `layer_operators`)."""
    import keras

    consumers = {}
    for layer in model.layers:
        for parent in [] if isinstance(layer, keras.layers.InputLayer) else _inbound(layer):
            consumers.setdefault(parent.name, []).append(layer)
    return consumers


def keras_operators(model: keras.Model) -> list[list[Operator]]:
    """[[Operator, ...] per exit], cumulative as common.exit_paths.path_layers: exit k holds the
    operators of everything exits 0..k compute."""

    consumers = layer_consumers(model)
    return [
        [op for layer in layers for op in layer_operators(layer, consumers.get(layer.name, []))]
        for layers in path_layers(model)
    ]


def path_instructions(model: keras.Model, cost: CostModel) -> list[float]:
    """Predicted instructions of each cumulative exit path of a Keras model on `cost`'s target. Exit k
    runs as k + 1 Invoke() calls (a model cut at its exits, as deploy.sh cuts T-RecX into two stages)."""
    return [cost.model(ops, invocations=k + 1) for k, ops in enumerate(keras_operators(model))]
