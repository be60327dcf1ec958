"""Fitting the target cost model (common/target_cost.py) to instructions counted on the emulated cores.

`fit-cost-model` measures three kinds of int8 models on each target with TFLM's profiler hooks:
- a probe per distinct operator of every model variant of every registered task (`task_operators`),
  each the operator alone as a one-layer Keras model, converted as deploy.sh converts;
- probes of shapes around them (`extra_operators`: other sizes, channels, kernels, strides, padding),
  so that new exits and taps are covered too;
- the three tasks' exported T-RecX stage 1, stage 2 and base models as a whole, whose counts outside
  the operators give TFLM's work per invocation and per operator.
Each measured operator's count is read from the profiled run; each model's total from an unprofiled
run (the hooks cost a few instructions per operator). The coefficients of every operator variant are
the least-squares fit of the model's terms, relative error minimised (every row divided by its
measured count), and written with the fit's errors to common/target_costs.json.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from common import files, tasks
from common.deploy import mcu, mcu_build, mcu_measure
from common.deploy.export import builtin_ops, c_array, c_identifier, export_models, to_tflite
from common.deploy.manifest import ExportedModel
from common.deploy.profile import tflite_operators
from common.deploy.runtime import model_tensors
from common.errors import UserError
from common.target_cost import COST_FILE, KINDS, MEASUREMENTS_FILE, TARGETS, Operator, features, model_form

if TYPE_CHECKING:
    import keras

PROBES_PER_PROGRAM = 24
CALIBRATION_SAMPLES = 32
SEED = 0


def probe_model(op: Operator) -> keras.Model:
    """A Keras model that converts to `op` alone (on a random int8 calibration, as deploy.sh converts)."""
    import keras

    from common.layers import ChannelSlice

    x = inputs = keras.Input(op.input_shape)
    common = dict(strides=op.stride, padding=op.padding)
    if op.kind == "CONV_2D":
        x = keras.layers.Conv2D(op.output_shape[-1], op.kernel, activation="relu", **common)(x)
    elif op.kind == "DEPTHWISE_CONV_2D":
        multiplier = op.output_shape[-1] // op.input_shape[-1]
        x = keras.layers.DepthwiseConv2D(op.kernel, depth_multiplier=multiplier, activation="relu", **common)(x)
    elif op.kind == "FULLY_CONNECTED":
        x = keras.layers.Dense(op.output_shape[-1])(x)
    elif op.kind == "AVERAGE_POOL_2D":
        x = keras.layers.AveragePooling2D(op.kernel, **common)(x)
    elif op.kind == "ADD":
        x = keras.layers.Add()([x, x])
    elif op.kind == "SOFTMAX":
        x = keras.layers.Softmax()(x)
    elif op.kind == "RESHAPE":
        x = keras.layers.Flatten()(x)
    elif op.kind == "STRIDED_SLICE":
        x = ChannelSlice(op.output_shape[-1])(x)
    elif op.kind == "CONCATENATION":
        x = keras.layers.Concatenate()([x, x])
    else:
        raise ValueError(f"no probe for operator {op.kind}")
    return keras.Model(inputs, x)


def task_operators() -> list[Operator]:
    """Every distinct operator of every model variant of every registered task, in a fixed order."""
    from common.models import build_model
    from common.target_cost import keras_operators

    seen = {}
    for name in tasks.task_names():
        task = tasks.load_task(name)
        for variant in task.MODELS:
            for path in keras_operators(build_model(task, variant).model):
                seen.update(dict.fromkeys(path))
    return list(seen)


def _conv(size: int, cin: int, cout: int, k: int, s: int, padding: str = "same", kind: str = "CONV_2D") -> Operator:
    out = math.ceil(size / s) if padding == "same" else (size - k) // s + 1
    cout = cin if kind == "DEPTHWISE_CONV_2D" else cout
    return Operator(kind, (size, size, cin), (out, out, cout), (k, k), (s, s), padding)


def extra_operators(rng: np.random.Generator) -> list[Operator]:
    """Shapes around the tasks' own: convolutions and depthwise convolutions of other sizes, channel
    counts, kernels, strides and padding; heads of other widths; element-wise operators of other sizes."""
    ops = []
    for _ in range(40):
        size = int(rng.choice([4, 6, 8, 12, 16, 24, 32]))
        cin, cout = (int(rng.choice([3, 8, 16, 24, 32, 48, 64, 96, 128])) for _ in range(2))
        k, s = int(rng.choice([1, 3, 5])), int(rng.choice([1, 2]))
        padding = str(rng.choice(["same", "valid"])) if k > 1 else "valid"
        if size * size * cin * cout * k * k <= 3_000_000 and (padding == "same" or size >= k):
            ops.append(_conv(size, cin, cout, k, s, padding))
    for _ in range(30):
        size, c = int(rng.choice([3, 4, 6, 8, 12, 16, 24, 32])), int(rng.choice([8, 16, 24, 32, 48, 64, 128, 256]))
        k, s = int(rng.choice([3, 3, 5])), int(rng.choice([1, 2, 4]))
        padding = str(rng.choice(["same", "valid"]))
        if size * size * c <= 40_000 and (padding == "same" or size >= k):
            ops.append(_conv(size, c, c, k, s, padding, "DEPTHWISE_CONV_2D"))
    for _ in range(10):
        n, units = int(rng.choice([32, 64, 128, 256, 512, 1024])), int(rng.choice([2, 10, 12, 35, 100]))
        ops += [Operator("FULLY_CONNECTED", (n,), (units,)), Operator("SOFTMAX", (units,), (units,))]
    for _ in range(10):
        size, c, p = int(rng.choice([3, 4, 6, 8, 12, 16])), int(rng.choice([16, 32, 64])), int(rng.choice([2, 3, 4]))
        pool = min(p, size)
        ops += [
            Operator("AVERAGE_POOL_2D", (size, size, c), (size // pool, size // pool, c), (pool, pool), (pool, pool)),
            Operator("ADD", (size, size, c), (size, size, c), inputs=2),
            Operator("RESHAPE", (size, size, c), (size * size * c,)),
            Operator("STRIDED_SLICE", (size, size, c), (size, size, c // 2)),
            Operator("CONCATENATION", (size * c,), (2 * size * c,), inputs=2),
        ]
    for _ in range(16):  # 1 x 1 convolutions off CMSIS-NN's fast path: strided, or channels not a multiple of 4
        size, cin = int(rng.choice([4, 6, 8, 12, 16, 24])), int(rng.choice([3, 6, 16, 24, 32, 64, 128]))
        cout, s = int(rng.choice([3, 8, 16, 32, 64])), int(rng.choice([1, 2, 2]))
        ops.append(_conv(size, cin, cout, 1, s, "valid"))
    for _ in range(12):  # first layers: one or three input channels
        size, cin, cout = int(rng.choice([8, 12, 16, 24, 32])), int(rng.choice([1, 3])), int(rng.choice([8, 16, 32]))
        k, s = int(rng.choice([3, 5])), int(rng.choice([1, 2]))
        ops.append(_conv(size, cin, cout, k, s, str(rng.choice(["same", "valid"]))))
    return list(dict.fromkeys(ops))


def _export(name: str, tflite: bytes, folder: pathlib.Path) -> ExportedModel:
    """An `ExportedModel` named `name` (its harness name) of one .tflite model, written to `folder`."""
    inputs, outputs = model_tensors(tflite, "base")
    symbol = c_identifier("probe", name)
    model = ExportedModel(name, name, "int8", symbol, tuple(builtin_ops(tflite)), inputs, outputs, folder)
    header, source = c_array(
        symbol, tflite, (inputs, outputs), f"cost-model probe {name}", model.ops, header_name=model.header.name
    )
    files.write_bytes(model.tflite, tflite)
    files.write_text(model.header, header)
    files.write_text(model.source, source)
    return model


def _arena_bytes(tflite: bytes) -> int:
    """Arena bytes for a single-operator probe: three times its tensors and some slack, within 16-512 KiB."""
    ops = tflite_operators(tflite)
    tensors = max(op.input_elements + op.output_elements for op in ops)
    return int(min(max(16_384, 3 * tensors + 8192), 512 * 1024)) // 16 * 16


def probe_models(
    ops: Sequence[Operator], folder: pathlib.Path, log: Callable[[str], None] = print
) -> list[tuple[ExportedModel, int]]:
    """[(ExportedModel, arena bytes)] of one int8 probe per operator, written to `folder`."""
    rng = np.random.default_rng(SEED)
    models = []
    for i, op in enumerate(ops):
        keras_model = probe_model(op)
        calibration = rng.normal(0.0, 1.0, (CALIBRATION_SAMPLES, *op.input_shape)).astype(np.float32)
        tflite = to_tflite(keras_model, calibration)
        models.append((_export(f"p{i:03d}", tflite, folder), _arena_bytes(tflite)))
        if (i + 1) % 25 == 0:
            log(f"  converted {i + 1} of {len(ops)} probes")
    return models


@dataclasses.dataclass(frozen=True)
class Measured:
    """One model measured on a target: its operators with their counts, and its unprofiled Invoke() count."""

    name: str
    ops: tuple
    op_instructions: tuple
    instructions: float

    @property
    def between(self) -> float:
        return self.instructions - sum(self.op_instructions)


def measure(
    models: Sequence[tuple[ExportedModel, int]], core: str, kernels: str, log: Callable[[str], None] = print
) -> list[Measured]:
    """[Measured] of `models` ([(ExportedModel, arena bytes)], standalone, or an early-exit pair run
    with rho 1.0) on one target, from one random sample (counts hardly depend on it)."""
    rng = np.random.default_rng(SEED)
    exported = [m for m, _ in models]
    arenas = {m.name: arena for m, arena in models}
    inputs = {m.name: rng.integers(-128, 128, (1, *m.input.shape[1:])).astype(np.int8) for m in exported}
    settings = mcu.McuRun(rho=1.0, core=core, kernels=kernels, arena_bytes=arenas)
    plain = mcu.run_models(exported, inputs, settings, log=log)
    profiled = mcu.run_models(exported, inputs, dataclasses.replace(settings, profile=True), log=log)
    results = []
    for m in exported:
        ops = tuple(tflite_operators(m.tflite.read_bytes()))
        counts = profiled.layer_instructions[m.name][0]
        results.append(Measured(m.stem, ops, tuple(float(c) for c in counts), float(plain.instructions[m.name][0])))
    return results


def measure_model(tflite: bytes, target: str, log: Callable[[str], None] = print) -> Measured:
    """The `Measured` of one int8 .tflite model on `target` (common.target_cost.TARGETS), from one random
    sample: each operator's count from a profiled run, the whole count from an unprofiled one."""
    import tempfile

    ((core, kernels),) = mcu_measure.parse_targets(target)
    with tempfile.TemporaryDirectory(prefix="trecx_cost_") as tmp:
        model = _export("model", tflite, pathlib.Path(tmp))
        arena = max(_arena_bytes(tflite), mcu.DEFAULT_ARENA_BYTES)
        (measured,) = measure([(model, arena)], core, kernels, log=log)
    return measured


def fit(measured: Sequence[Measured]) -> tuple[dict[str, list[float]], list[float]]:
    """(coefficients {variant: [float]}, between [per invocation, per operator]) from `Measured` models."""
    rows = {}
    for model in measured:
        for op, count in zip(model.ops, model.op_instructions):
            rows.setdefault(op.variant, []).append((features(op), count))
    coefficients = {}
    for variant, pairs in sorted(rows.items()):
        x = np.array([f for f, _ in pairs])
        y = np.array([c for _, c in pairs])
        solution, *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)
        coefficients[variant] = [float(v) for v in solution]
    x = np.array([[1.0, len(m.ops)] for m in measured])
    y = np.array([m.between for m in measured])
    between, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coefficients, [float(v) for v in between]


def _errors(
    measured: Sequence[Measured], coefficients: Mapping[str, Sequence[float]], between: Sequence[float]
) -> dict[str, Any]:
    """The fit's errors, in % of the counts: of the operators (count, median, worst, the five worst
    with their shapes) and of each of the tasks' exported models as a whole."""
    from common.target_cost import CostModel

    model = CostModel("fit", {k: tuple(v) for k, v in coefficients.items()}, tuple(between))
    ops = [
        (100.0 * (model.operator(op) / count - 1.0), op, m.name)
        for m in measured
        for op, count in zip(m.ops, m.op_instructions)
    ]
    worst = sorted(ops, key=lambda row: -abs(row[0]))
    return {
        "operators": {
            "count": len(ops),
            "median_pct": float(np.median([abs(e) for e, _, _ in ops])),
            "max_pct": float(abs(worst[0][0])),
            "worst": [{"error_pct": e, "operator": dataclasses.asdict(op), "in": name} for e, op, name in worst[:5]],
        },
        "models": {
            m.name: float(100.0 * (model.model(m.ops) / m.instructions - 1.0)) for m in measured if "/" in m.name
        },
        "worst_operator_in_models_pct": max((abs(e) for e, _, name in ops if "/" in name), default=None),
    }


def _task_exports(folder: pathlib.Path, log: Callable[[str], None]) -> dict[str, list[tuple[ExportedModel, int]]]:
    """{task: [(ExportedModel, arena)] of its pretrained trecx_ev stage 1 and stage 2 and its base model},
    converted with synthetic calibration inputs (counts do not depend on the values)."""
    from common.deploy.export import write_export
    from common.deploy.manifest import read_manifest
    from common.weights import load_nets

    exports = {}
    for name in tasks.task_names():
        task = tasks.load_task(name)
        if "trecx_ev" not in task.MODELS:
            continue
        log(f"exporting {name}'s pretrained trecx_ev and base model")
        nets = load_nets(task, "pretrained", None, ["base", "trecx_ev"])
        calibration = task.synthetic_inputs(CALIBRATION_SAMPLES)[0]
        models = export_models(nets["trecx_ev"], nets["base"], calibration, log=lambda *_: None)
        export_dir = folder / name
        write_export(export_dir, name, "trecx_ev", {"int8": models["int8"]}, log=lambda *_: None)
        manifest = read_manifest(export_dir)
        exports[name] = [
            (manifest[stem], mcu.DEFAULT_ARENA_BYTES)
            for stem in ("trecx_ev_stage1_int8", "trecx_ev_stage2_int8", "base_int8")
        ]
    return exports


def _to_json(measured: Sequence[Measured]) -> list[dict[str, Any]]:
    return [
        {
            "name": m.name,
            "instructions": m.instructions,
            "ops": [[*dataclasses.astuple(op), count] for op, count in zip(m.ops, m.op_instructions)],
        }
        for m in measured
    ]


KEPT_FIX = "restore them with git checkout, or delete the file and measure every target again"
OPERATOR_KEYS = ("kind", "input_shape", "output_shape", "kernel", "stride", "padding", "inputs", "count")
WINDOWED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D")  # (H, W, C) in and out, kernel and stride


def _count(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _operator_problem(values: object) -> tuple[str, str] | None:
    """(key, what is wrong) with one measured operator [kind, input_shape, output_shape, kernel, stride,
    padding, inputs, count], or None when it makes sense: a kind the cost model has a form for, shapes of
    positive whole numbers of the kind's rank, the output a convolution or pool of that input gives, and
    a finite, positive count."""
    if not isinstance(values, list) or len(values) != len(OPERATOR_KEYS):
        return "the operator", f"is {values!r}, expected a list [{', '.join(OPERATOR_KEYS)}]"
    kind, ins, outs, kernel, stride, padding, inputs, count = values
    if kind not in KINDS:
        return "kind", f"is {kind!r}, not an operator the cost model has a form for ({', '.join(KINDS)})"
    ranks = (3,) if kind in WINDOWED else (1, 3)  # (H, W, C) or (N,)
    for key, shape, rank in (("input_shape", ins, ranks), ("output_shape", outs, ranks), ("kernel", kernel, (2,))):
        if not isinstance(shape, list) or len(shape) not in rank or not all(map(_whole, shape)):
            expected = " or ".join(map(str, rank))
            return key, f"is {shape!r}, expected {expected} positive whole numbers for {kind}"
    if not isinstance(stride, list) or len(stride) != 2 or not all(map(_whole, stride)):
        return "stride", f"is {stride!r}, expected 2 positive whole numbers"
    if padding not in ("same", "valid"):
        return "padding", f"is {padding!r}, expected same or valid"
    if not _whole(inputs):
        return "inputs", f"is {inputs!r}, expected a positive whole number"
    if not _count(count):
        return "count", f"is {count!r}, expected a finite, positive number of instructions"
    if kind in WINDOWED:
        expected = [
            math.ceil(size / s) if padding == "same" else (size - k) // s + 1
            for size, k, s in zip(ins[:2], kernel, stride)
        ]
        if outs[:2] != expected:
            return "output_shape", f"is {outs!r}: {kind} {kernel} stride {stride} {padding} of {ins} gives {expected}"
        if (kind == "DEPTHWISE_CONV_2D" and outs[-1] % ins[-1]) or (kind == "AVERAGE_POOL_2D" and outs[-1] != ins[-1]):
            return "output_shape", f"has {outs[-1]} channels, which {kind} cannot make of {ins[-1]}"
    elif kind in ("ADD", "SOFTMAX") and ins != outs:
        return "output_shape", f"is {outs!r}, expected {ins!r}, the input's shape ({kind})"
    elif kind == "RESHAPE" and math.prod(ins) != math.prod(outs):
        return "output_shape", f"is {outs!r}, not the {math.prod(ins)} elements of the input {ins!r}"
    elif kind == "STRIDED_SLICE" and (len(ins) != len(outs) or ins[:-1] != outs[:-1] or outs[-1] > ins[-1]):
        return "output_shape", f"is {outs!r}, not a slice of the channels of {ins!r}"
    elif kind == "CONCATENATION" and (len(ins) != len(outs) or math.prod(outs) < math.prod(ins)):
        return "output_shape", f"is {outs!r}, not a concatenation of {ins!r} with others"
    return None


def _from_json(
    entries: object, path: pathlib.Path = MEASUREMENTS_FILE, target: str = "", fix: str = KEPT_FIX
) -> list[Measured]:
    """[Measured] of one target's entries in the kept counts `path`, each checked first: a name, a finite,
    positive whole-model count and operators that make sense (`_operator_problem`); UserError naming the
    file, the target, the entry and the key otherwise."""

    def fail(where: str, key: str, problem: str) -> NoReturn:
        raise UserError(f"the kept counts {path} are damaged: {target} {where}: {key} {problem}; {fix}")

    if not isinstance(entries, list):
        fail("", "the entries", f"are a JSON {type(entries).__name__}, not a list")
    measured = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"entry {i}" + (f" ({name})" if isinstance(name, str) else "")
        if not isinstance(entry, dict) or set(entry) != {"name", "instructions", "ops"}:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            fail(where, "the entry", f"holds {keys}, expected name, instructions and ops")
        if not isinstance(name, str) or not name:
            fail(where, "name", f"is {name!r}, expected the model's name")
        if not _count(entry["instructions"]):
            fail(where, "instructions", f"is {entry['instructions']!r}, expected a finite, positive number")
        if not isinstance(entry["ops"], list) or not entry["ops"]:
            fail(where, "ops", f"is {entry['ops']!r}, expected a list of measured operators")
        for j, values in enumerate(entry["ops"]):
            problem = _operator_problem(values)
            if problem:
                fail(f"{where}, ops[{j}]", *problem)
        ops = tuple(
            Operator(kind, tuple(ins), tuple(outs), tuple(kernel), tuple(stride), padding, inputs)
            for kind, ins, outs, kernel, stride, padding, inputs, _ in entry["ops"]
        )
        measured.append(Measured(name, ops, tuple(float(o[-1]) for o in entry["ops"]), float(entry["instructions"])))
    return measured


def _read_json(path: pathlib.Path, what: str, fix: str) -> dict:
    """The JSON object in `path` ({} when there is no file); UserError naming it and `fix` when it is damaged."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
        problem = None if isinstance(content, dict) else f"a JSON {type(content).__name__}, not an object"
    except (OSError, ValueError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem:
        raise UserError(f"{what} {path} cannot be read ({problem}); {fix}")
    return content


def measure_target(
    target: str,
    probes: Sequence[tuple[ExportedModel, int]],
    exports: Mapping[str, Sequence[tuple[ExportedModel, int]]],
    log: Callable[[str], None] = print,
) -> list[Measured]:
    """[Measured] of `probes` ([(ExportedModel, arena bytes)]) and every task's exported models on `target`."""
    ((core, kernels),) = mcu_measure.parse_targets(target)
    log(f"{target}: measuring {len(probes)} probes and {len(exports)} tasks' exported models")
    measured = []
    for start in range(0, len(probes), PROBES_PER_PROGRAM):
        measured += measure(probes[start : start + PROBES_PER_PROGRAM], core, kernels, log=log)
        log(f"  {min(start + PROBES_PER_PROGRAM, len(probes))} of {len(probes)} probes measured")
    for task, models in exports.items():
        measured += [dataclasses.replace(m, name=f"{task}/{m.name}") for m in measure(models, core, kernels, log=log)]
    return measured


def _probe_ops(measured: Sequence[Measured]) -> set[Operator]:
    """The operators of the single-operator probes among `measured`."""
    return {m.ops[0] for m in measured if "/" not in m.name and len(m.ops) == 1}


def fit_cost_models(
    targets: Sequence[str] = TARGETS,
    path: pathlib.Path = COST_FILE,
    measurements: pathlib.Path = MEASUREMENTS_FILE,
    remeasure: bool = True,
    fresh: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit the cost model of every target of `targets` and write it to `path`; returns what was written.

    With `remeasure`, first measure on the emulator the probes whose operator `measurements` does not
    hold yet for a target (all of them when `fresh`) and the tasks' exported models, and keep the counts
    there (after each target: an interrupted run resumes); without, refit from the counts kept there
    (no toolchain needed)."""
    import pathlib
    import tempfile

    path = pathlib.Path(path)
    if path.is_dir():
        raise UserError(f"--output {path} is a folder; give the cost model file to write, e.g. {path / COST_FILE.name}")
    files.check_output_folder(path.parent, "--output")
    kept = _read_json(measurements, "the kept counts", KEPT_FIX)
    before = {target: [] if fresh else _from_json(kept.get(target, []), measurements, target) for target in targets}
    if remeasure:
        mcu_build.check_prerequisites()
        mcu_build.check_cache_writable()
        rng = np.random.default_rng(SEED)
        ops = task_operators()
        ops += [op for op in extra_operators(rng) if op not in ops]
        done = {target: _probe_ops(before[target]) for target in targets}
        needed = [op for op in ops if any(op not in done[target] for target in targets)]
        with tempfile.TemporaryDirectory(prefix="trecx_costfit_") as tmp:
            tmp = pathlib.Path(tmp)
            log(f"converting {len(needed)} single-operator probes to int8 ({len(ops) - len(needed)} measured before)")
            probes = dict(zip(needed, probe_models(needed, tmp / "probes", log)))
            exports = _task_exports(tmp / "exports", log)
            for target in targets:
                old = [m for m in before[target] if "/" not in m.name and len(m.ops) == 1]  # probes; models anew
                todo = [probes[op] for op in needed if op not in done[target]]
                kept[target] = _to_json(old + measure_target(target, todo, exports, log))
                files.write_text(measurements, json.dumps(kept) + "\n")
    missing = [target for target in targets if target not in kept]
    if missing:
        raise UserError(f"no measurements of {', '.join(missing)} in {measurements}: refit with the emulator")
    content = _read_json(path, "the cost models", "restore them with git checkout, or give another --output")
    for target in targets:
        measured = _from_json(kept[target], measurements, target) if remeasure else before[target]
        coefficients, between = fit(measured)
        content.setdefault("targets", {})[target] = {
            "coefficients": coefficients,
            "between": between,
            "fit": _errors(measured, coefficients, between),
            "measured_models": len(measured),
        }
    content.update(
        version=1,
        **model_form(),
        fitted=datetime.date.today().isoformat(),
        command="python3 -m common.cli fit-cost-model",
    )
    files.write_text(path, json.dumps(content, indent=1) + "\n")
    return content
