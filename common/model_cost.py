"""`python3 -m common.cli cost MODEL`: what any int8 model costs on a target, per operator and in total.

A `.tflite` is read as data (its flatbuffer parsed, nothing in it run: common.deploy.profile.
tflite_operators); a `.keras` is loaded with Keras' safe mode (no Lambda code) and priced from its layers
(common.target_cost.keras_operators, the operators deploy.sh's int8 conversion gives, as `flops --target`
and Table 1 price the tasks' models), so no conversion is needed. Each operator's executed instructions
are predicted by the target's cost model; on a board (common/boards.py) they become ESTIMATED
milliseconds and millijoules. `--measure` runs the model on the emulated core (common/deploy/cost_fit.py's
`measure_model`; a `.keras` converted to int8 first, calibrated on random normal inputs, as the
cost-model probes are: counts hardly depend on the values) and puts each count beside its prediction.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from common import files
from common.errors import UserError
from common.exit_paths import path_layers
from common.target_cost import (
    BETWEEN,
    COST_FILE,
    CostModel,
    Operator,
    layer_consumers,
    layer_operators,
    load_cost_model,
)

if TYPE_CHECKING:
    import keras

    from common.boards import Board

SUFFIXES = (".tflite", ".keras")
CALIBRATION_SAMPLES = 32  # random normal calibration inputs of a .keras converted for --measure
TFLITE_INT8 = 9  # schema TensorType.INT8
BETWEEN_ROW = "(between operators)"


@dataclasses.dataclass(frozen=True)
class Row:
    """One operator: what it is, where it came from (a Keras layer's name, or its index in the .tflite),
    its predicted executed instructions and, with --measure, the emulator's count."""

    op: Operator | None  # None for TFLM's work between the operators
    origin: str
    predicted: float
    measured: float | None = None

    @property
    def name(self) -> str:
        if self.op is None:
            return BETWEEN_ROW
        op = self.op
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"):
            return f"{op.kind} {op.kernel[0]}x{op.kernel[1]}/{op.stride[0]} {op.padding}"
        return op.kind

    @property
    def shapes(self) -> str:
        if self.op is None:
            return ""
        return f"{'x'.join(map(str, self.op.input_shape))} -> {'x'.join(map(str, self.op.output_shape))}"

    @property
    def error_pct(self) -> float | None:
        return _error(self.predicted, self.measured)


def _error(predicted: float, measured: float | None) -> float | None:
    return None if measured is None or not measured else float(100.0 * (predicted / measured - 1.0))


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """A model's cost on one target: its rows (operators, then TFLM's work between them) and totals."""

    model: str
    read_as: str
    target: str
    rows: tuple
    measured_on: str | None = None

    @property
    def predicted(self) -> float:
        return float(sum(row.predicted for row in self.rows))

    @property
    def measured(self) -> float | None:
        return None if self.measured_on is None else float(sum(row.measured for row in self.rows))


# ------------------------------------------------------------------------------------------------
# Reading a model


def _read_tflite(path: pathlib.Path) -> tuple[bytes, list[Operator], list[str]]:
    """(bytes, operators, their output tensors' names) of an int8 .tflite file; one UserError for anything
    else. The names carry the Keras layers' (`model/LAYER/...`) in a converted model."""
    from common.deploy.export import read_flatbuffer
    from common.deploy.profile import tflite_operators

    data = path.read_bytes()
    fix = "give an int8 .tflite written by TensorFlow Lite's converter, or the .keras model"
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{path} is not a .tflite model (no TFL3 flatbuffer identifier); {fix}")
    try:
        model = read_flatbuffer(data)
        graph = model.subgraphs[0]
        input_types = [graph.tensors[i].type for i in graph.inputs]
        ops = tflite_operators(data)
        names = [_text(graph.tensors[op.outputs[0]].name) for op in graph.operators]
    except Exception as err:  # a damaged flatbuffer fails anywhere in the parser: one message, no traceback
        raise UserError(f"cannot read {path} as a .tflite model ({type(err).__name__}: {err}); {fix}") from None
    if any(t != TFLITE_INT8 for t in input_types):
        raise UserError(
            f"{path} is not an int8 model (its input tensors are not int8); the cost models price int8 models "
            "converted with full-integer quantisation, as deploy.sh converts: give the .keras model instead"
        )
    return data, ops, names


def _text(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def _load_keras(path: pathlib.Path) -> keras.Model:
    from common.native_logs import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    import common.layers  # noqa: F401  (registers the pipeline's own layers for deserialisation)

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # damaged zip, unknown layer, unsafe Lambda: one message
        if "safe_mode" in str(err):
            raise UserError(
                f"{path} holds Python code (a Lambda layer), which is never run here: rebuild the model without "
                "Lambda layers, or give its int8 .tflite"
            ) from None
        raise UserError(f"cannot load {path} as a Keras model ({type(err).__name__}: {err})") from None


def _keras_rows(model: keras.Model, cost: CostModel) -> list[tuple[Operator, str]]:
    """[(Operator, layer name)] of every layer of a Keras model (all its exits), in dependency order."""
    consumers = layer_consumers(model)
    ops = []
    for layer in path_layers(model)[-1]:
        try:
            ops += [(op, layer.name) for op in layer_operators(layer, consumers.get(layer.name, []))]
        except ValueError:
            raise UserError(
                f"the {cost.target} cost model has no rule for layer {layer.name} ({type(layer).__name__}); "
                f"{_priced(cost)}"
            ) from None
    return ops


def _priced(cost: CostModel) -> str:
    kinds = sorted({variant.split("_1x1")[0].split("_3x3")[0] for variant in cost.coefficients})
    return (
        f"the cost model prices: {', '.join(kinds)} (and the Keras layers that convert to them, batch norm and "
        "ReLU fused): rebuild the model from those; another operator needs a cost rule (common/target_cost.py "
        "FEATURES) fitted on the emulator (python3 -m common.cli fit-cost-model)"
    )


def _check_priced(ops: list[tuple[Operator, str]], cost: CostModel) -> None:
    for op, origin in ops:
        if op.variant not in cost.coefficients:
            raise UserError(f"the {cost.target} cost model has no {op.kind} operators ({origin}); {_priced(cost)}")


def _between(cost: CostModel, operators: int) -> float:
    return float(cost.between[0] + cost.between[1] * operators)


# ------------------------------------------------------------------------------------------------
# Pricing and measuring


def model_cost(
    path: str | pathlib.Path, target: str, measure: bool = False, log: Callable[[str], None] = print
) -> ModelCost:
    """The `ModelCost` of the model file `path` on `target` (common.target_cost.TARGETS), measured on the
    emulator too when `measure` (needs the MCU toolchain)."""
    path = pathlib.Path(path)
    if path.suffix not in SUFFIXES:
        raise UserError(f"{path}: give a .tflite (int8) or .keras model; got a {path.suffix or 'suffix-less'} file")
    if not path.is_file():
        raise UserError(f"no model file {path}")
    cost = load_cost_model(target)
    tflite = None
    if path.suffix == ".tflite":
        tflite, ops, names = _read_tflite(path)
        pairs = [
            (op, f"operator {i}, {Row(op, '', 0.0).shapes}, output {name}")
            for i, (op, name) in enumerate(zip(ops, names))
        ]
        read_as = "int8 .tflite, read as data"
    else:
        keras_model = _load_keras(path)
        pairs = _keras_rows(keras_model, cost)
        read_as = "Keras layers, priced as deploy.sh's int8 conversion gives them"
    _check_priced(pairs, cost)
    if not measure:
        rows = [Row(op, origin, cost.operator(op)) for op, origin in pairs]
        return ModelCost(str(path), read_as, target, (*rows, Row(None, "", _between(cost, len(rows)))))
    from common.deploy.cost_fit import measure_model

    if tflite is None:  # the .keras converted as deploy.sh converts, on random calibration inputs
        from common.deploy.export import to_tflite

        if len(keras_model.inputs) != 1:
            raise UserError(f"{path} has {len(keras_model.inputs)} inputs; --measure runs single-input models")
        shape = tuple(int(d) for d in keras_model.input_shape[1:])
        calibration = np.random.default_rng(0).normal(0.0, 1.0, (CALIBRATION_SAMPLES, *shape)).astype(np.float32)
        log(f"converting {path.name} to int8 (calibrated on {CALIBRATION_SAMPLES} random normal inputs)")
        tflite = to_tflite(keras_model, calibration)
        read_as = f"converted to int8 (calibrated on {CALIBRATION_SAMPLES} random normal inputs), read as data"
    measured = measure_model(tflite, target, log=log)
    ops = list(measured.ops)
    rows = [
        Row(op, f"operator {i}", cost.operator(op), float(count))
        for i, (op, count) in enumerate(zip(ops, measured.op_instructions))
    ]
    between = Row(None, "", _between(cost, len(rows)), float(measured.instructions - sum(measured.op_instructions)))
    return ModelCost(str(path), read_as, target, (*rows, between), measured_on=f"emulated {target}")


# ------------------------------------------------------------------------------------------------
# Reporting


def _count(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def format_cost(result: ModelCost, board: Board | None = None) -> str:
    """The table `cost` prints: per operator and in total, predicted (measured, error) instructions, and on
    a board the estimated milliseconds."""
    measured = result.measured_on is not None
    lines = [
        f"{result.model} ({result.read_as}): {len(result.rows) - 1} operators on {result.target}",
        f"executed instructions per Invoke(), predicted by the cost model ({COST_FILE.name})"
        + (f", measured on the {result.measured_on} (qemu-system-arm)" if measured else ""),
    ]
    header = f"{'#':>3}  {'operator':<30} {'input -> output':<24} {'predicted':>13}"
    if measured:
        header += f" {'measured':>13} {'error':>8}"
    if board:
        header += f" {'est. ms':>9}"
    lines.append(header)
    for i, row in enumerate([*result.rows, None]):
        if row is None:
            name, shapes, index = "total", "", ""
            predicted, count = result.predicted, result.measured
            error = _error(predicted, count)
        else:
            name, shapes, index = row.name, row.shapes, "" if row.op is None else str(i)
            predicted, count, error = row.predicted, row.measured, row.error_pct
        line = f"{index:>3}  {name:<30} {shapes:<24} {_count(predicted):>13}"
        if measured:
            line += f" {_count(count):>13} {'' if error is None else f'{error:+.2f} %':>8}"
        if board:
            line += f" {board.ms(predicted):>9.3f}"
        lines.append(line)
    if board:
        lines.append(board_line(result, board))
    return "\n".join(lines)


def board_line(result: ModelCost, board: Board) -> str:
    """The ESTIMATED ms and mJ on `board`, with where the figures come from and their error."""
    mj = board.mj(result.predicted)
    energy = f"{mj:.3f} mJ" if mj is not None else "no mJ (no published power for this board)"
    measured = ""
    if result.measured is not None:
        measured_mj = board.mj(result.measured)
        measured = f" (from the measured count: {board.ms(result.measured):.3f} ms" + (
            f", {measured_mj:.3f} mJ)" if measured_mj is not None else ")"
        )
    return (
        f"ESTIMATED on board {board.name}: {board.ms(result.predicted):.3f} ms, {energy}{measured}; "
        f"{board.cycles_per_instruction:.3f} cycles per {board.target} instruction at {board.mhz:g} MHz"
        + (f" and {board.power_mw:.1f} mW" if board.power_mw is not None else "")
        + (f" (measured on {board.power_from}, assumed)" if board.power_from else "")
        + f", calibrated on MLPerf Tiny's published ms of the three base models ({board.engine}"
        + (f"; {board.mapped}" if board.mapped else "")
        + f"); leave-one-model-out error up to {board.worst_leave_one_out_pct:.1f} % (sources: common/boards.json)"
    )


def cost_json(result: ModelCost, board: Board | None = None) -> dict[str, Any]:
    """The same figures as `format_cost`, for scripts."""

    def row_json(i: int, row: Row) -> dict[str, Any]:
        out = {"index": i, "operator": row.name if row.op is None else row.op.kind, "from": row.origin}
        if row.op is not None:
            out.update(dataclasses.asdict(row.op))
            out["macs"] = row.op.macs
        out.update(predicted_instructions=row.predicted, measured_instructions=row.measured, error_pct=row.error_pct)
        if board:
            out["estimated_ms"] = board.ms(row.predicted)
        return out

    content = {
        "model": result.model,
        "read_as": result.read_as,
        "target": result.target,
        "unit": "executed instructions per Invoke()",
        "cost_model": str(COST_FILE.name),
        "between_form": list(BETWEEN),
        "measured_on": result.measured_on,
        "operators": [row_json(i, row) for i, row in enumerate(result.rows) if row.op is not None],
        "between_operators": row_json(len(result.rows) - 1, result.rows[-1]),
        "total": {
            "predicted_instructions": result.predicted,
            "measured_instructions": result.measured,
            "error_pct": _error(result.predicted, result.measured),
        },
        "board": None,
    }
    if board:
        content["board"] = {
            "name": board.name,
            "estimate": "ESTIMATED from the executed instructions; see leave_one_out_error_pct and sources",
            "chip": board.chip,
            "engine": board.engine,
            "mapped": board.mapped,
            "target": board.target,
            "mhz": board.mhz,
            "cycles_per_instruction": board.cycles_per_instruction,
            "power_mw": board.power_mw,
            "power_from": board.power_from,
            "estimated_ms": board.ms(result.predicted),
            "estimated_mj": board.mj(result.predicted),
            "estimated_ms_from_measured": None if result.measured is None else board.ms(result.measured),
            "leave_one_out_error_pct": board.leave_one_out_error_pct,
            "sources": board.sources,
        }
    return content


def write_json(path: str | pathlib.Path, content: dict[str, Any]) -> None:
    """`content` as JSON at `path`, atomically."""
    files.write_text(path, json.dumps(content, indent=1, allow_nan=False) + "\n")
