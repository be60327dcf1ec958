"""Where a .tflite model spends its time, operator by operator.

Early exit saves the layers after its tap, so its time saving follows its FLOPs saving only if each
layer's time follows its MACs. `single_op_models` cuts every operator of a model out as a model of its
own, on the same tensors (weights, shapes, int8 scales and zero points), so that it computes exactly
what it computes inside the whole model; `op_profile` times each of them alone on a `Runtime`, giving
each operator's share of the time beside its share of the MACs. `operators` lists them without cutting
(name, output shape, MACs), for profiles measured elsewhere (the MCU's, common/deploy/mcu_measure.py).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from common.deploy.export import builtin_name, read_flatbuffer
from common.deploy.runtime import Runtime

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.schema_py_generated import ModelT, OperatorT, SubGraphT, TensorT

    from common.target_cost import CostModel, EarlyExitCost, Operator


@dataclasses.dataclass(frozen=True)
class OpModel:
    """One operator of a .tflite model as a model of its own (`single_op_models`).

    name: builtin operator ("CONV_2D"); output_shape: its first output's shape; macs: multiply-accumulates
    (convolutions and fully connected layers; 0 for other operators); tflite: the one-operator model.
    """

    name: str
    output_shape: tuple
    macs: int
    tflite: bytes

    @property
    def outputs(self) -> int:
        """Output elements per sample."""
        return math.prod(self.output_shape[1:])


def _options(
    op: OperatorT, tensors: Sequence[TensorT], name: str, constant: Sequence[bool]
) -> tuple[tuple[int, int], tuple[int, int], str, int]:
    """(kernel, stride, padding, non-constant inputs) of a flatbuffer operator, for `target_cost.Operator`."""
    options = op.builtinOptions
    kernel = (1, 1)
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kernel = tuple(int(d) for d in tensors[op.inputs[1]].shape[1:3])
    elif hasattr(options, "filterHeight"):
        kernel = (int(options.filterHeight), int(options.filterWidth))
    stride = (int(options.strideH), int(options.strideW)) if hasattr(options, "strideH") else (1, 1)
    padding = ("same" if options.padding == 0 else "valid") if hasattr(options, "padding") else "valid"
    inputs = sum(1 for t in op.inputs if t >= 0 and not constant[t])
    return kernel, stride, padding, inputs


def tflite_operators(tflite_bytes: bytes) -> list[Operator]:
    """The `target_cost.Operator` of every operator of a single-graph .tflite model, in execution order."""
    from common.target_cost import Operator

    model, graph = _graph(tflite_bytes)
    constant = [model.buffers[t.buffer].data is not None for t in graph.tensors]
    ops = []
    for op in graph.operators:
        name = builtin_name(model.operatorCodes[op.opcodeIndex])
        kernel, stride, padding, inputs = _options(op, graph.tensors, name, constant)
        first = next(t for t in op.inputs if t >= 0 and not constant[t])
        input_shape = tuple(int(d) for d in graph.tensors[first].shape[1:])
        if name == "FULLY_CONNECTED":
            input_shape = (math.prod(input_shape),)
        output_shape = tuple(int(d) for d in graph.tensors[op.outputs[0]].shape[1:])
        ops.append(Operator(name, input_shape, output_shape, kernel, stride, padding, inputs))
    return ops


def predicted_instructions(tflite_bytes: bytes, cost_model: CostModel) -> tuple[float, list[float]]:
    """(total, [per operator]) executed instructions of one Invoke() of a .tflite model, predicted by a
    `target_cost.CostModel`."""
    ops = tflite_operators(tflite_bytes)
    return cost_model.model(ops), [cost_model.operator(op) for op in ops]


def predicted_early_exit_cost(int8_models: Mapping[str, bytes], cost_model: CostModel) -> EarlyExitCost:
    """The `target_cost.EarlyExitCost` of an export's stage 1, stage 2 and base model ({part: .tflite}),
    each one Invoke() as `cost_model` predicts it."""
    from common.target_cost import EarlyExitCost

    totals = {part: predicted_instructions(int8_models[part], cost_model)[0] for part in ("stage1", "stage2", "base")}
    return EarlyExitCost(cost_model.target, **totals)


def _graph(tflite_bytes: bytes) -> tuple[ModelT, SubGraphT]:
    """(the model's object tree, its one subgraph); ValueError for a model of several."""
    model = read_flatbuffer(tflite_bytes)
    if len(model.subgraphs) != 1:
        raise ValueError(f"expected one subgraph, found {len(model.subgraphs)}")
    return model, model.subgraphs[0]


def operators(tflite_bytes: bytes) -> list[tuple[str, tuple[int, ...], int]]:
    """[(builtin name, first output's shape with its batch of 1, MACs)] of a single-graph .tflite model, in
    execution order (from `tflite_operators`)."""
    return [(op.kind, (1, *op.output_shape), op.macs) for op in tflite_operators(tflite_bytes)]


def single_op_models(tflite_bytes: bytes) -> list[OpModel]:
    """Each operator of a single-graph .tflite model, in execution order, as an `OpModel`: the operator
    alone on the model's own tensors (weights, shapes, int8 scales and zero points), its non-constant
    inputs the model inputs, its outputs the model outputs. Run on the tensors the whole model feeds it,
    it computes what it computes inside the whole model; timed alone, its share of the model's time."""
    from ai_edge_litert.tools import flatbuffer_utils

    model, graph = _graph(tflite_bytes)
    constant = [model.buffers[t.buffer].data is not None for t in graph.tensors]
    models = []
    for i, (op, (name, output_shape, macs)) in enumerate(zip(graph.operators, operators(tflite_bytes))):
        alone = copy.deepcopy(model)
        alone.signatureDefs = []
        alone_graph = alone.subgraphs[0]
        alone_graph.operators = [alone_graph.operators[i]]
        alone_graph.inputs = [int(t) for t in op.inputs if t >= 0 and not constant[t]]
        alone_graph.outputs = [int(t) for t in op.outputs]
        models.append(OpModel(name, output_shape, macs, bytes(flatbuffer_utils.convert_object_to_bytearray(alone))))
    return models


def median_invoke_us(interpreter: Interpreter, repeats: int, seed: int = 0) -> float:
    """Median time (microseconds) of `repeats` invocations on random inputs, after a few untimed ones."""
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        values = rng.integers(-128, 128, detail["shape"]) if dtype == np.int8 else rng.normal(0.0, 1.0, detail["shape"])
        interpreter.set_tensor(detail["index"], values.astype(dtype))
    for _ in range(max(3, repeats // 10)):
        interpreter.invoke()
    times = np.empty(repeats, np.int64)
    for k in range(repeats):
        start = time.perf_counter_ns()
        interpreter.invoke()
        times[k] = time.perf_counter_ns() - start
    return float(np.median(times)) / 1e3


def op_profile(tflite_bytes: bytes, runtime: Runtime = Runtime(), repeats: int = 100) -> list[tuple[OpModel, float]]:
    """[(OpModel, median microseconds)] per operator of a .tflite model, each timed alone on `runtime`
    (element-wise cost does not depend on the values, so random inputs time it as real ones would)."""
    return [(op, median_invoke_us(runtime.interpreter(op.tflite), repeats)) for op in single_op_models(tflite_bytes)]
