"""Deployable two-stage early exit: split, LiteRT export (float32 and int8), C arrays, a runtime that
really exits early, and measured latency.

A T-RecX model (`trecx_ev`, `trecx_noev`) is split at its exit tap (`ExitModel.tap`) into
  stage 1: input -> (early-exit softmax `ee`, tapped feature map `tap`)
  stage 2: tapped feature map -> final softmax `ef`
sharing the trained layers (no copy, no recomputation: every weight of the model is in exactly one
stage). The base model is one stage. Each is converted to LiteRT (.tflite) at batch 1 in float32 and
in full-integer int8 (post-training quantisation on a representative set; int8 input and outputs).

`EarlyExitRunner` runs a sample the way a microcontroller would: stage 1, then stage 2 on the tapped
feature map only when the early exit's max softmax is not > rho. The int8 feature map goes from stage 1
to stage 2 as it is when both sides share its scale and zero point (checked; else it is requantised).
Interpreters run as `Runtime` says: one thread and LiteRT's default XNNPACK kernels unless asked
otherwise (`reference` kernels: the portable code TensorFlow Lite Micro's kernels share, whose relative
op costs are a microcontroller's rather than a SIMD desktop's). Timing (`time.perf_counter_ns`) runs
from the quantised input in the input tensor to the predicted class: the invocations, the exit
decision, the feature-map copy and the argmax. Quantising the input and copying it into the input
tensor (on a microcontroller, the feature extractor's job) and recording dequantised softmaxes happen
outside it, for the base model alike. `op_profile` times each operator of a .tflite model alone
(`single_op_models`): where the time goes, beside where the MACs go.

`deploy` chooses rho on a validation split (or takes it), runs both precisions beside the base model,
and writes deploy.json, deploy.md, the float/int8 benefit figure and export/ (.tflite, C arrays).
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import tempfile
import time
from importlib import metadata

import numpy as np

from common import flops, plots, report, sweep
from common.errors import UserError
from common.native_logs import quiet_native_logs

PRECISIONS = ("float32", "int8")
STAGE_OUTPUTS = {"stage1": ("ee", "tap"), "stage2": ("ef",), "base": ("ef",)}  # signature order
DEFAULT_DROP = 1.0  # accuracy points below the base model that rho may cost (on the validation split)
NEVER_EXIT = 1.0  # max softmax > 1.0 never holds: every sample runs both stages
WARMUP_SAMPLES = 20
C_BYTES_PER_LINE = 12


# ------------------------------------------------------------------------------------------------
# Split and export


def split_stages(net):
    """(stage1, stage2) Keras models of a T-RecX `ExitModel`, on the model's own layers (shared weights).

    stage1: input -> [early-exit softmax (1, C), tapped feature map]; stage2: tapped feature map ->
    final softmax. Keras rebuilds each stage by re-applying the model's layers, in graph order, to a
    new input; it refuses (ValueError) if the final exit needed anything but the tap.
    """
    import keras

    if net.tap is None or tuple(net.exits) != ("ee", "ef"):
        raise UserError(f"model {net.model.name} has no T-RecX early exit to split at; "
                        "deploy a T-RecX model (trecx_ev or trecx_noev)")
    model = net.model
    tap = model.get_layer(net.tap).output
    stage1 = keras.Model(model.input, [model.outputs[0], tap], name=f"{model.name}_stage1")
    stage2 = keras.Model(tap, model.outputs[1], name=f"{model.name}_stage2")
    return stage1, stage2


def to_tflite(model, representative=None):
    """The LiteRT flatbuffer (bytes) of a single-input Keras model at batch 1.

    float32 without `representative`; with it (float32 array (N, *input shape), real inputs of the
    model), full-integer int8: int8 weights and activations, int8 input and output tensors.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input")
    with tempfile.TemporaryDirectory(prefix="trecx_export_") as tmp, quiet_native_logs():
        model.export(tmp, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if representative is not None:
            samples = np.asarray(representative, np.float32)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([sample[None]] for sample in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()


def export_models(net, base_net, calibration, log=print):
    """{precision: {"stage1", "stage2", "base": .tflite bytes}} for `net` split at its tap and `base_net`.

    `calibration`: float32 inputs (N, *input shape) from the training split. Stage 2's representative
    set is stage 1's (float) feature maps of the same inputs.
    """
    stage1, stage2 = split_stages(net)
    calibration = np.asarray(calibration, np.float32)
    taps = stage1.predict(calibration, batch_size=100, verbose=0)[1]
    models = {"float32": {}, "int8": {}}
    for part, model, representative in (("stage1", stage1, calibration), ("stage2", stage2, taps),
                                        ("base", base_net.model, calibration)):
        log(f"converting {part} to LiteRT float32 and int8")
        models["float32"][part] = to_tflite(model)
        models["int8"][part] = to_tflite(model, representative)
    return models


# ------------------------------------------------------------------------------------------------
# Tensors, quantisation and C arrays


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
    def quantized(self):
        return self.dtype == "int8"

    def quantize(self, x):
        """float array -> this tensor's dtype (round to nearest, saturate for int8)."""
        if not self.quantized:
            return np.asarray(x, np.float32)
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def dequantize(self, q):
        """This tensor's values as float64 (int8: scale * (q - zero_point), computed in float64)."""
        q = np.asarray(q)
        return (q.astype(np.float64) - self.zero_point) * self.scale if self.quantized else q.astype(np.float64)


def _load_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError("the LiteRT runtime is missing: pip install ai-edge-litert "
                        "(or pip install -r requirements.txt)") from None
    return Interpreter


def runtime_name():
    """The LiteRT runtime's package and version, for reports."""
    try:
        return f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    except metadata.PackageNotFoundError:
        return "ai-edge-litert (version unknown)"


def tensor_specs(interpreter, part):
    """({"input": TensorSpec}, {output name: TensorSpec}) of an allocated interpreter of `part`."""
    runner = interpreter.get_signature_runner()
    positions = {"inputs": [d["index"] for d in interpreter.get_input_details()],
                 "outputs": [d["index"] for d in interpreter.get_output_details()]}

    def spec(name, detail, kind):
        scale, zero_point = detail["quantization"]
        return TensorSpec(name, positions[kind].index(detail["index"]), int(detail["index"]),
                          tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name,
                          float(scale), int(zero_point))

    inputs = {"input": spec("input", runner.get_input_details()["input"], "inputs")}
    outputs = runner.get_output_details()
    names = STAGE_OUTPUTS[part]
    if len(outputs) != len(names):
        raise ValueError(f"{part} model has {len(outputs)} outputs, expected {len(names)} ({', '.join(names)})")
    return inputs, {name: spec(name, outputs[f"output_{k}"], "outputs") for k, name in enumerate(names)}


def model_tensors(tflite_bytes, part):
    """`tensor_specs` of a .tflite model given as bytes."""
    return tensor_specs(Runtime().interpreter(tflite_bytes), part)


def _flatbuffer(tflite_bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))


def weights_kb(tflite_bytes):
    """KiB of a .tflite model's constant tensors (weights, biases): its size without the flatbuffer's
    structure, tensor names and quantisation parameters (int8 per-channel scales and zero points)."""
    model = _flatbuffer(tflite_bytes)
    constants = {t.buffer for graph in model.subgraphs for t in graph.tensors}
    return sum(len(model.buffers[i].data) for i in constants if model.buffers[i].data is not None) / 1024


def _builtin_name(code):
    """The builtin operator name ("CONV_2D") of a flatbuffer operator code."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return names[max(code.builtinCode, code.deprecatedBuiltinCode)]


def builtin_ops(tflite_bytes):
    """Names of the builtin operators a .tflite model uses (what a TFLite Micro op resolver must hold)."""
    return sorted(_builtin_name(code) for code in _flatbuffer(tflite_bytes).operatorCodes)


def c_identifier(*words):
    """A C identifier from words ("image_classification", "trecx_ev", "stage1", "int8")."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", "_".join(words))
    return f"m_{name}" if name[0].isdigit() else name


def _c_float(value):
    """A C float literal that reads back as exactly `value` (a float32 scale)."""
    text = repr(float(value))
    return f"{text}f" if any(c in text for c in ".en") else f"{text}.0f"


def c_array(name, tflite_bytes, tensors, description="", ops=()):
    """(header text, source text) of a .tflite model as a C array for TensorFlow Lite Micro.

    The source defines `alignas(16) const unsigned char NAME[]` and `NAME_len`; the header declares
    them and #defines NAME_LEN (bytes) and, per tensor, its position among the model's inputs or
    outputs (NAME_OUTPUT_EE_INDEX ...), whether it is int8, its scale and zero point
    (NAME_INPUT_SCALE, NAME_INPUT_ZERO_POINT, NAME_OUTPUT_EE_SCALE ...; 0.0f and 0 for float32).
    `tensors`: (inputs, outputs) as `tensor_specs` returns them; `ops`: builtin operator names, listed
    in a comment for the op resolver.
    """
    data = bytes(tflite_bytes)
    macro = name.upper()
    inputs, outputs = tensors
    lines = [f"// {name}: {description}" if description else f"// {name}",
             "// Generated by common/deploy.py (T-RecX); do not edit. real = scale * (q - zero_point).",
             *([f"// Builtin ops (register them in a tflite::MicroMutableOpResolver): {', '.join(ops)}"]
               if ops else []),
             f"#ifndef {macro}_H_", f"#define {macro}_H_", "", f"#define {macro}_LEN {len(data)}"]
    for kind, specs in (("INPUT", inputs), ("OUTPUT", outputs)):
        for spec in specs.values():
            prefix = macro + ("_INPUT" if kind == "INPUT" else f"_OUTPUT_{spec.name.upper()}")
            shape = "x".join(str(d) for d in spec.shape)
            lines += [f"// {kind.lower()} '{spec.name}': {spec.dtype} {shape}",
                      f"#define {prefix}_INDEX {spec.position}",
                      f"#define {prefix}_IS_INT8 {int(spec.quantized)}",
                      f"#define {prefix}_SCALE {_c_float(spec.scale)}",
                      f"#define {prefix}_ZERO_POINT {spec.zero_point}"]
    lines += ["", f"extern const unsigned char {name}[];", f"extern const unsigned int {name}_len;", "",
              f"#endif  // {macro}_H_", ""]
    header = "\n".join(lines)
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + C_BYTES_PER_LINE])
            for i in range(0, len(data), C_BYTES_PER_LINE)]
    source = "\n".join([f"// {name}: generated by common/deploy.py (T-RecX); do not edit.",
                        f'#include "{name}.h"', "",
                        "// 16-byte alignment: TensorFlow Lite Micro reads the flatbuffer in place.",
                        f"alignas(16) const unsigned char {name}[] = {{",
                        *(f"    {row}," for row in rows),
                        "};", f"const unsigned int {name}_len = {len(data)};", ""])
    return header, source


def parse_c_array(source):
    """The bytes of the single array initialiser in a source written by `c_array`."""
    match = re.search(r"\[\]\s*=\s*\{(.*?)\};", source, re.S)
    if match is None:
        raise ValueError("no array initialiser found")
    return bytes(int(token, 16) for token in re.findall(r"0x([0-9a-fA-F]{2})", match.group(1)))


def parse_c_defines(header):
    """{macro: int or float} of the numeric #defines in a header written by `c_array`."""
    values = {}
    for macro, value in re.findall(r"^#define\s+(\w+)\s+(\S+)\s*$", header, re.M):
        values[macro] = float(value.rstrip("f")) if value.endswith("f") else int(value)
    return values


def write_export(export_dir, task_name, model_name, models, log=print):
    """Write every model of `export_models` as NAME.tflite, NAME.h and NAME.cc under `export_dir`.

    NAME: "{model}_{stage}_{precision}" or "base_{precision}"; the C symbol is "{task}_{NAME}".
    Returns {precision: {part: size in KiB}}.
    """
    export_dir = pathlib.Path(export_dir)
    what = {"stage1": f"{model_name} stage 1 (input -> early-exit softmax, tapped feature map)",
            "stage2": f"{model_name} stage 2 (tapped feature map -> final softmax)",
            "base": "base model (input -> softmax)"}
    sizes = {}
    for precision, parts in models.items():
        sizes[precision] = {}
        for part, data in parts.items():
            stem = f"base_{precision}" if part == "base" else f"{model_name}_{part}_{precision}"
            symbol = c_identifier(task_name, stem)
            header, source = c_array(symbol, data, model_tensors(data, part),
                                     f"{task_name} {what[part]}, LiteRT {precision}", builtin_ops(data))
            header_file = export_dir / f"{stem}.h"
            source = source.replace(f'#include "{symbol}.h"', f'#include "{header_file.name}"')
            with report.atomic_output(export_dir / f"{stem}.tflite") as tmp:
                tmp.write_bytes(data)
            report.write_text(header_file, header)
            report.write_text(export_dir / f"{stem}.cc", source)
            sizes[precision][part] = len(data) / 1024
    log(f"wrote {sum(len(p) for p in models.values())} models (.tflite, .h, .cc) to {export_dir}")
    return sizes


# ------------------------------------------------------------------------------------------------
# Runtime


KERNELS = {  # --kernels choice: what it runs, for reports
    "xnnpack": "LiteRT's default: optimised builtin kernels with the XNNPACK delegate (desktop/mobile SIMD)",
    "builtin": "LiteRT's optimised builtin kernels, no delegate",
    "reference": "LiteRT's reference kernels: the portable code TensorFlow Lite Micro's own kernels share, "
                 "whose cost per op follows its arithmetic as a microcontroller's does",
}


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How the LiteRT interpreters run: `threads` (1, as on a microcontroller) and `kernels` (a KERNELS key)."""
    threads: int = 1
    kernels: str = "xnnpack"

    def __post_init__(self):
        if self.kernels not in KERNELS:
            raise UserError(f"unknown kernels {self.kernels!r}; choose one of {', '.join(KERNELS)}")
        if self.threads < 1:
            raise UserError(f"interpreter threads must be at least 1, got {self.threads}")

    def interpreter(self, tflite_bytes):
        """An allocated LiteRT interpreter of a .tflite model given as bytes."""
        interpreter_class = _load_interpreter_class()
        from ai_edge_litert.interpreter import OpResolverType

        resolver = {"xnnpack": OpResolverType.AUTO,
                    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                    "reference": OpResolverType.BUILTIN_REF}[self.kernels]
        with quiet_native_logs():
            interpreter = interpreter_class(model_content=bytes(tflite_bytes), num_threads=self.threads,
                                            experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
        return interpreter


class Stage:
    """One .tflite model on a LiteRT interpreter, batch 1, its tensors by name; counts invocations."""

    def __init__(self, tflite_bytes, part, runtime=Runtime()):
        self.interpreter = runtime.interpreter(tflite_bytes)
        inputs, self.outputs = tensor_specs(self.interpreter, part)
        self.input = inputs["input"]
        self.invocations = 0

    def invoke(self):
        self.invocations += 1
        self.interpreter.invoke()


@dataclasses.dataclass(eq=False)
class Trace:
    """Per-sample record of one run over N samples.

    exits: (N,) exit taken (0 = early exit, 1 = final; base models: 0 = their only exit);
    predictions: (N,) class; latency_ns: (N,) per-sample time; softmax: {exit name: (N, C) float64,
    dequantised; rows of a stage that did not run are NaN}; stage2_invocations: stage-2 runs counted
    by the interpreter wrapper during the timed loop (early-exit runners only).
    """
    exits: np.ndarray
    predictions: np.ndarray
    latency_ns: np.ndarray
    softmax: dict
    stage2_invocations: int = 0

    @property
    def exit_rate(self):
        """Fraction of samples that left at the early exit (0 for a base model)."""
        return float(np.mean(self.exits == 0)) if "ee" in self.softmax else 0.0

    def accuracy(self, labels):
        return float(100.0 * np.mean(self.predictions == np.asarray(labels)))

    def latency_ms(self):
        ms = self.latency_ns / 1e6
        return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


class _Runner:
    """Shared protocol: `prepare` quantises the inputs, `load` puts one sample into the input tensor
    (both untimed: on a microcontroller the feature extractor writes the input tensor), `_step` runs
    the loaded sample and times itself."""

    def prepare(self, inputs):
        return self.first.input.quantize(inputs)

    def load(self, x):
        self.first.interpreter.set_tensor(self.first.input.index, x)

    def run(self, inputs, warmup=WARMUP_SAMPLES):
        """Run every sample of `inputs` (float32 (N, *input shape)) alone; returns a Trace."""
        return run_interleaved([self], inputs, warmup)[0]

    @property
    def stage2_invocations(self):
        return 0


class EarlyExitRunner(_Runner):
    """Two-stage early exit on LiteRT: stage 2 runs only for samples whose early-exit max softmax is
    not > rho (the T-RecX rule), on stage 1's tapped feature map."""

    def __init__(self, stage1, stage2, rho, runtime=Runtime()):
        self.rho = float(rho)
        self.first = Stage(stage1, "stage1", runtime)
        self.second = Stage(stage2, "stage2", runtime)
        self.ee, self.tap = self.first.outputs["ee"], self.first.outputs["tap"]
        self.ef = self.second.outputs["ef"]
        target = self.second.input
        if self.tap.shape != target.shape or self.tap.dtype != target.dtype:
            raise ValueError(f"stage 1 feature map {self.tap.dtype}{self.tap.shape} does not fit stage 2's "
                             f"input {target.dtype}{target.shape}")
        # int8: the feature map passes as it is when requantising it would change no value.
        codes = np.arange(-128, 128, dtype=np.int8)
        self.direct_transfer = (not self.tap.quantized
                                or np.array_equal(target.quantize(self.tap.dequantize(codes)), codes))
        # Accessors of the two buffers (numpy views are taken, and dropped, per sample: an interpreter
        # refuses to run while a view of its memory is alive).
        self._tap_buffer = self.first.interpreter.tensor(self.tap.index)
        self._stage2_input = self.second.interpreter.tensor(target.index)

    @property
    def stage2_invocations(self):
        """Stage-2 invocations since this runner was made."""
        return self.second.invocations

    def _transfer(self):
        """Copy stage 1's feature map into stage 2's input buffer (requantised only if needed)."""
        if self.direct_transfer:
            self._stage2_input()[...] = self._tap_buffer()
        else:
            self._stage2_input()[...] = self.second.input.quantize(self.tap.dequantize(self._tap_buffer()))

    def _step(self):
        """Run the loaded sample: (exit, prediction, ns, ee output, ef output or None)."""
        first, second = self.first, self.second
        ee_spec = self.ee
        start = time.perf_counter_ns()
        first.invoke()
        ee = first.interpreter.get_tensor(ee_spec.index)[0]
        k = int(ee.argmax())
        confidence = (float(ee[k]) - ee_spec.zero_point) * ee_spec.scale if ee_spec.quantized else float(ee[k])
        if confidence > self.rho:
            elapsed = time.perf_counter_ns() - start
            return 0, k, elapsed, ee, None
        self._transfer()
        second.invoke()
        ef = second.interpreter.get_tensor(self.ef.index)[0]
        prediction = int(ef.argmax())
        elapsed = time.perf_counter_ns() - start
        return 1, prediction, elapsed, ee, ef

    def _record(self, n):
        classes = self.ee.shape[-1]
        return {"ee": np.full((n, classes), np.nan), "ef": np.full((n, classes), np.nan)}

    def _store(self, softmax, i, outputs):
        ee, ef = outputs
        softmax["ee"][i] = self.ee.dequantize(ee)
        if ef is not None:
            softmax["ef"][i] = self.ef.dequantize(ef)


class SingleStageRunner(_Runner):
    """A one-stage model (the base model) on LiteRT, run the same way as `EarlyExitRunner`."""

    def __init__(self, tflite_bytes, runtime=Runtime()):
        self.first = Stage(tflite_bytes, "base", runtime)
        self.ef = self.first.outputs["ef"]

    def _step(self):
        stage = self.first
        start = time.perf_counter_ns()
        stage.invoke()
        ef = stage.interpreter.get_tensor(self.ef.index)[0]
        prediction = int(ef.argmax())
        elapsed = time.perf_counter_ns() - start
        return 0, prediction, elapsed, ef

    def _record(self, n):
        return {"ef": np.full((n, self.ef.shape[-1]), np.nan)}

    def _store(self, softmax, i, outputs):
        softmax["ef"][i] = self.ef.dequantize(outputs[0])


def run_interleaved(runners, inputs, warmup=WARMUP_SAMPLES):
    """Run each sample through every runner in turn (so that machine load hits them alike); a Trace each.

    Each runner first runs `warmup` samples untimed and unrecorded.
    """
    inputs = np.asarray(inputs, np.float32)
    n = len(inputs)
    prepared = [runner.prepare(inputs) for runner in runners]
    for runner, x in zip(runners, prepared):
        for i in range(min(warmup, n)):
            runner.load(x[i:i + 1])
            runner._step()
    counts = [runner.stage2_invocations for runner in runners]
    records = [(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), runner._record(n))
               for runner in runners]
    for i in range(n):
        for runner, x, (exits, predictions, latency, softmax) in zip(runners, prepared, records):
            runner.load(x[i:i + 1])
            exit_taken, prediction, elapsed, *outputs = runner._step()
            exits[i], predictions[i], latency[i] = exit_taken, prediction, elapsed
            runner._store(softmax, i, outputs)
    return [Trace(*record, stage2_invocations=runner.stage2_invocations - count)
            for runner, count, record in zip(runners, counts, records)]


# ------------------------------------------------------------------------------------------------
# Per-operator profile


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
    def outputs(self):
        """Output elements per sample."""
        return math.prod(self.output_shape[1:])


def _macs(name, op, tensors):
    """MACs of one flatbuffer operator, from its output and weight tensor shapes."""
    output = math.prod(tensors[op.outputs[0]].shape[1:])
    if name == "CONV_2D":  # weights (out, kh, kw, in)
        return output * math.prod(tensors[op.inputs[1]].shape[1:])
    if name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, out)
        return output * math.prod(tensors[op.inputs[1]].shape[1:3])
    if name == "FULLY_CONNECTED":  # weights (out, in)
        return output * int(tensors[op.inputs[1]].shape[1])
    return 0


def single_op_models(tflite_bytes):
    """Each operator of a single-graph .tflite model, in execution order, as an `OpModel`: the operator
    alone on the model's own tensors (weights, shapes, int8 scales and zero points), its non-constant
    inputs the model inputs, its outputs the model outputs. Run on the tensors the whole model feeds it,
    it computes what it computes inside the whole model; timed alone, its share of the model's time."""
    import copy

    from ai_edge_litert.tools import flatbuffer_utils

    model = _flatbuffer(tflite_bytes)
    if len(model.subgraphs) != 1:
        raise ValueError(f"expected one subgraph, found {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    constant = [model.buffers[t.buffer].data is not None for t in graph.tensors]
    models = []
    for i, op in enumerate(graph.operators):
        name = _builtin_name(model.operatorCodes[op.opcodeIndex])
        alone = copy.deepcopy(model)
        alone.signatureDefs = []
        alone_graph = alone.subgraphs[0]
        alone_graph.operators = [alone_graph.operators[i]]
        alone_graph.inputs = [int(t) for t in op.inputs if t >= 0 and not constant[t]]
        alone_graph.outputs = [int(t) for t in op.outputs]
        models.append(OpModel(name, tuple(int(d) for d in graph.tensors[op.outputs[0]].shape),
                              _macs(name, op, graph.tensors),
                              bytes(flatbuffer_utils.convert_object_to_bytearray(alone))))
    return models


def median_invoke_us(interpreter, repeats, seed=0):
    """Median time (microseconds) of `repeats` invocations on random inputs, after a few untimed ones."""
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        values = (rng.integers(-128, 128, detail["shape"]) if dtype == np.int8
                  else rng.normal(0.0, 1.0, detail["shape"]))
        interpreter.set_tensor(detail["index"], values.astype(dtype))
    for _ in range(max(3, repeats // 10)):
        interpreter.invoke()
    times = np.empty(repeats, np.int64)
    for k in range(repeats):
        start = time.perf_counter_ns()
        interpreter.invoke()
        times[k] = time.perf_counter_ns() - start
    return float(np.median(times)) / 1e3


def op_profile(tflite_bytes, runtime=Runtime(), repeats=100):
    """[(OpModel, median microseconds)] per operator of a .tflite model, each timed alone on `runtime`
    (element-wise cost does not depend on the values, so random inputs time it as real ones would)."""
    return [(op, median_invoke_us(runtime.interpreter(op.tflite), repeats))
            for op in single_op_models(tflite_bytes)]


# ------------------------------------------------------------------------------------------------
# Choosing rho, evaluating, reporting


def choose_rho(curve, base_accuracy, base_mflops, drop=DEFAULT_DROP):
    """The trade-off point of `curve` (a validation benefit curve) at `drop` points below `base_accuracy`:
    the cheapest rho whose accuracy is at least base_accuracy - drop (common.sweep.tradeoff_points).

    Returns that point's dict (drop, accuracy, mflops, reduction_pct, rho) with "met": True; when no
    rho reaches the target, the most accurate point (cheapest among equals) with "met": False.
    """
    point = sweep.tradeoff_points(curve, base_accuracy, base_mflops, drops=(drop,))[0]
    if point["rho"] is not None:
        return {**point, "met": True}
    best = np.lexsort((curve.mflops, -curve.accuracy))[0]
    return {"drop": point["drop"], "accuracy": float(curve.accuracy[best]), "mflops": float(curve.mflops[best]),
            "reduction_pct": float(100.0 * (1.0 - curve.mflops[best] / base_mflops)),
            "rho": float(curve.rho[best]), "met": False}


def trace_curve(trace, labels, path_mflops):
    """Benefit curve over common.sweep.RHOS from a trace in which every sample ran both stages."""
    if np.isnan(trace.softmax["ef"]).any():
        raise ValueError("the trace has samples without a final-exit softmax; run it with rho = 1.0")
    return sweep.benefit_curve([trace.softmax["ee"], trace.softmax["ef"]], labels, path_mflops, "strict")


def _saving(value, reference):
    return float(100.0 * (1.0 - value / reference))


def evaluate_precision(models, test, rho, path_mflops, base_mflops, runtime=Runtime(), log=print):
    """Measure one precision's exported models on (inputs, labels) at `rho`, beside the base model.

    Runs (1) every sample through both stages (rho = 1.0) for the benefit curve, then (2) the early-exit
    runner at `rho` interleaved sample by sample with the base model, for accuracy, exit rate and
    latency. Returns (result dict in deploy.json's per-precision layout, curve, (trace at rho, base trace)).
    """
    inputs, labels = test
    full = EarlyExitRunner(models["stage1"], models["stage2"], NEVER_EXIT, runtime).run(inputs)
    curve = trace_curve(full, labels, path_mflops)
    runner = EarlyExitRunner(models["stage1"], models["stage2"], rho, runtime)
    base = SingleStageRunner(models["base"], runtime)
    trace, base_trace = run_interleaved([runner, base], inputs)
    exit_rate = trace.exit_rate
    mean_mflops = exit_rate * path_mflops[0] + (1.0 - exit_rate) * path_mflops[1]
    latency, base_latency = trace.latency_ms(), base_trace.latency_ms()
    mflops_saving = _saving(mean_mflops, base_mflops)
    latency_saving = _saving(latency["mean"], base_latency["mean"])
    result = {
        "size_kb": {part: len(models[part]) / 1024 for part in ("stage1", "stage2", "base")},
        "weights_kb": {part: weights_kb(models[part]) for part in ("stage1", "stage2", "base")},
        "accuracy": trace.accuracy(labels),
        "base_accuracy": base_trace.accuracy(labels),
        "exit_rate": exit_rate,
        "mflops": mean_mflops,
        "base_mflops": base_mflops,
        "mflops_saving_pct": mflops_saving,
        "latency_ms": latency,
        "base_latency_ms": base_latency,
        "latency_saving_pct": latency_saving,
        "latency_over_flops_saving": latency_saving / mflops_saving if mflops_saving > 0 else None,
        "stage2_invocations": trace.stage2_invocations,
        "tap_transfer": "direct" if runner.direct_transfer else "requantized",
        "full_path_latency_ms": full.latency_ms(),
    }
    log(f"  accuracy {result['accuracy']:.2f} % (base {result['base_accuracy']:.2f} %), exit rate "
        f"{exit_rate:.3f}, latency {latency['mean']:.4f} ms (base {base_latency['mean']:.4f} ms), "
        f"saving {latency_saving:.1f} % measured / {mflops_saving:.1f} % FLOPs")
    return result, curve, (trace, base_trace)


def validation_rho(models, validation, path_mflops, base_mflops, drop, runtime=Runtime()):
    """rho chosen on the validation split with the float32 models: (rho, details dict)."""
    inputs, labels = validation
    full = EarlyExitRunner(models["stage1"], models["stage2"], NEVER_EXIT, runtime).run(inputs, warmup=0)
    base = SingleStageRunner(models["base"], runtime).run(inputs, warmup=0)
    base_accuracy = base.accuracy(labels)
    point = choose_rho(trace_curve(full, labels, path_mflops), base_accuracy, base_mflops, drop)
    return point["rho"], {"num_samples": int(len(labels)), "base_accuracy": base_accuracy,
                          "target_accuracy": base_accuracy - drop, **point}


def deploy(task, model_name, net, base_net, test, results_dir, *, calibration, validation=None, rho=None,
           drop=DEFAULT_DROP, runtime=Runtime(), log=print):
    """Export, run and report one T-RecX model of `task` against its base model.

    test, validation: (inputs float32 (N, ...), labels (N,)); calibration: float32 inputs for int8.
    rho: given, or None to choose it on `validation` (float32 models, `drop` points below the base
    model there). Writes under `results_dir`: deploy.json, deploy.md, int8_vs_float.png/.pdf and
    export/. Returns the deploy.json dict.
    """
    if rho is None and validation is None:
        raise UserError("no rho given and no validation split to choose it on; pass --rho R")
    results_dir = pathlib.Path(results_dir)
    path_mflops = flops.path_mflops(net.model)
    base_mflops = flops.path_mflops(base_net.model)[0]
    models = export_models(net, base_net, calibration, log)
    write_export(results_dir / "export", task.NAME, model_name, models, log)

    details = None
    if rho is None:
        log(f"choosing rho on {len(validation[1])} validation samples ({drop:g} point(s) below the base model)")
        rho, details = validation_rho(models["float32"], validation, path_mflops, base_mflops, drop, runtime)
        met = "" if details["met"] else " (target not reached: most accurate rho)"
        log(f"  rho = {rho:.4f}: validation accuracy {details['accuracy']:.2f} % against base "
            f"{details['base_accuracy']:.2f} %{met}")
    summary = {"task": task.NAME, "model": model_name, "num_samples": int(len(test[1])), "rho": float(rho),
               "rho_source": "given" if details is None else "validation"}
    curves = {}
    for precision in PRECISIONS:
        log(f"{precision}: running {len(test[1])} test samples one at a time")
        summary[precision], curves[precision], _ = evaluate_precision(
            models[precision], test, rho, path_mflops, base_mflops, runtime, log)
    summary.update(
        validation=details, drop=drop, path_mflops={"ee": path_mflops[0], "ef": path_mflops[1]},
        base_mflops=base_mflops, runtime=runtime_name(), kernels=runtime.kernels, num_threads=runtime.threads,
        int8_size_reduction_pct=size_reduction(summary, "size_kb"),
        int8_weights_reduction_pct=size_reduction(summary, "weights_kb"))
    report.write_json(results_dir / "deploy.json", summary)
    plots.benefit_figure({f"LiteRT {p}": curves[p] for p in PRECISIONS},
                         (summary["float32"]["base_accuracy"], base_mflops),
                         f"{task.TITLE}, {model_name}: LiteRT float32 vs int8\n(cross: float32 base "
                         f"model; int8 base model {summary['int8']['base_accuracy']:.2f} %)",
                         results_dir / "int8_vs_float")
    report.write_text(results_dir / "deploy.md", deploy_markdown(summary, task.TITLE))
    return summary


def size_reduction(summary, key="size_kb"):
    """% saved by int8 against float32 in `key` ("size_kb": files, "weights_kb": constant tensors), for
    the early-exit model (stage 1 + stage 2) and the base model."""
    def early_exit(precision):
        return sum(summary[precision][key][part] for part in ("stage1", "stage2"))

    return {"early_exit": _saving(early_exit("int8"), early_exit("float32")),
            "base": _saving(summary["int8"][key]["base"], summary["float32"][key]["base"])}


def _fmt(value, digits=2):
    return report.MISSING if value is None else f"{value:.{digits}f}"


def deploy_markdown(summary, title):
    """deploy.md: the measured table of a deploy.json dict, and how it was measured."""
    rho_note = ("given on the command line" if summary["rho_source"] == "given" else
                f"chosen on {summary['validation']['num_samples']} validation samples, "
                f"{summary['drop']:g} point(s) below the float32 base model there "
                f"(validation accuracy {summary['validation']['accuracy']:.2f} % vs base "
                f"{summary['validation']['base_accuracy']:.2f} %"
                + ("" if summary["validation"]["met"] else "; target not reached, most accurate rho") + ")")
    threads = (f"{summary['kernels']} kernels, {summary['num_threads']} interpreter "
               f"thread{'s' if summary['num_threads'] > 1 else ''}")
    lines = [f"# Deployed early exit: {title}, {summary['model']}", "",
             f"{summary['num_samples']} test samples, one at a time, {summary['runtime']} ({threads}); "
             f"rho = {summary['rho']:.4f}, {rho_note}.", "",
             "| | float32 | int8 |", "|---|---:|---:|"]
    rows = [
        ("size KiB: stage 1 / stage 2 / base",
         lambda r: " / ".join(_fmt(r["size_kb"][p], 1) for p in ("stage1", "stage2", "base"))),
        ("of which weights KiB",
         lambda r: " / ".join(_fmt(r["weights_kb"][p], 1) for p in ("stage1", "stage2", "base"))),
        ("accuracy % (base)", lambda r: f"{_fmt(r['accuracy'])} ({_fmt(r['base_accuracy'])})"),
        ("exit rate", lambda r: _fmt(r["exit_rate"], 3)),
        ("MFLOPs per sample (base)", lambda r: f"{_fmt(r['mflops'])} ({_fmt(r['base_mflops'])})"),
        ("FLOPs saving %", lambda r: _fmt(r["mflops_saving_pct"], 1)),
        ("latency ms mean / p50 / p99",
         lambda r: " / ".join(_fmt(r["latency_ms"][k], 4) for k in ("mean", "p50", "p99"))),
        ("base latency ms mean / p50 / p99",
         lambda r: " / ".join(_fmt(r["base_latency_ms"][k], 4) for k in ("mean", "p50", "p99"))),
        ("latency saving %", lambda r: _fmt(r["latency_saving_pct"], 1)),
        ("latency saving / FLOPs saving", lambda r: _fmt(r["latency_over_flops_saving"])),
        ("stage-1 feature map to stage 2", lambda r: r["tap_transfer"]),
    ]
    lines += [f"| {label} | {cell(summary['float32'])} | {cell(summary['int8'])} |" for label, cell in rows]
    files, weights = summary["int8_size_reduction_pct"], summary["int8_weights_reduction_pct"]
    lines += ["", f"int8 size reduction against float32: {files['early_exit']:.1f} % for stage 1 + stage 2, "
                  f"{files['base']:.1f} % for the base model (.tflite files; weights alone: "
                  f"{weights['early_exit']:.1f} % and {weights['base']:.1f} %; the paper reports 70.4 % for the "
                  "early-exit MobileNet). Per-channel int8 quantisation parameters (a float32 scale and an int64 "
                  "zero point per output channel) are what keeps the files above a quarter of float32.",
              "", f"Kernels: {KERNELS[summary['kernels']]}.",
              "", "Latency per sample runs from the (quantised) input in the model's input tensor to the "
                  "predicted class: the invocation(s), the exit decision, copying the feature map into stage 2 "
                  "and the argmax; the base model runs interleaved with the early-exit model, sample by sample. "
                  "FLOPs savings use the exit rate measured here and the FLOPs of each exit path "
                  "(common/flops.py).",
              "", "Figure: int8_vs_float.png / .pdf (benefit curves of both precisions over rho). "
                  "Models: export/*.tflite, C arrays export/*.h and export/*.cc.", ""]
    return "\n".join(lines)
