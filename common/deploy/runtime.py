"""Running exported .tflite models on LiteRT the way a microcontroller would, and timing them.

`Runtime` says how interpreters are made (threads, kernel set); `tensor_specs` reads a model's inputs and
outputs as `manifest.TensorSpec`s. `EarlyExitRunner` runs a sample through stage 1 and runs
stage 2, on the tapped feature map, only when the early exit's top softmax is not > rho; the int8 map
crosses unchanged when both sides quantise it alike (checked, else it is requantised).
`SingleStageRunner` runs the base model the same way, and `run_interleaved` alternates runners sample
by sample so that machine load hits them alike. Each sample is timed (`time.perf_counter_ns`) from the
quantised input in the input tensor to the predicted class; quantising the input, copying it in and
recording dequantised softmaxes stay outside the timed part, for every runner alike.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from common.deploy.manifest import TensorSpec
from common.errors import UserError
from common.native_logs import quiet_native_logs

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

STAGE_OUTPUTS = {"stage1": ("ee", "tap"), "stage2": ("ef",), "base": ("ef",)}  # signature order
NEVER_EXIT = 1.0  # max softmax > 1.0 never holds: every sample runs both stages
WARMUP_SAMPLES = 20

KERNELS = {  # --kernels choice: what it runs, for reports
    "xnnpack": "LiteRT's default: optimised builtin kernels with the XNNPACK delegate (desktop/mobile SIMD)",
    "builtin": "LiteRT's optimised builtin kernels, no delegate",
    "reference": "LiteRT's reference kernels: the portable code TensorFlow Lite Micro's own kernels share, "
    "whose cost per op follows its arithmetic as a microcontroller's does",
}


def _load_interpreter_class() -> type[Interpreter]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError(
            "the LiteRT runtime is missing: pip install ai-edge-litert (or pip install -r requirements.txt)"
        ) from None
    return Interpreter


def runtime_name() -> str:
    """The LiteRT runtime's package and version, for reports."""
    try:
        return f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    except metadata.PackageNotFoundError:
        return "ai-edge-litert (version unknown)"


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How the LiteRT interpreters run: `threads` (1, as on a microcontroller) and `kernels` (a KERNELS key)."""

    threads: int = 1
    kernels: str = "xnnpack"

    def __post_init__(self) -> None:
        if self.kernels not in KERNELS:
            raise UserError(f"unknown kernels {self.kernels!r}; choose one of {', '.join(KERNELS)}")
        if self.threads < 1:
            raise UserError(f"interpreter threads must be at least 1, got {self.threads}")

    def interpreter(self, tflite_bytes: bytes) -> Interpreter:
        """An allocated LiteRT interpreter of a .tflite model given as bytes."""
        interpreter_class = _load_interpreter_class()
        from ai_edge_litert.interpreter import OpResolverType

        resolver = {
            "xnnpack": OpResolverType.AUTO,
            "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "reference": OpResolverType.BUILTIN_REF,
        }[self.kernels]
        with quiet_native_logs():
            interpreter = interpreter_class(
                model_content=bytes(tflite_bytes), num_threads=self.threads, experimental_op_resolver_type=resolver
            )
            interpreter.allocate_tensors()
        return interpreter


def tensor_specs(interpreter: Interpreter, part: str) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """({"input": TensorSpec}, {output name: TensorSpec}) of an allocated interpreter of `part`."""
    runner = interpreter.get_signature_runner()
    positions = {
        "inputs": [d["index"] for d in interpreter.get_input_details()],
        "outputs": [d["index"] for d in interpreter.get_output_details()],
    }

    def spec(name: str, detail: dict[str, Any], kind: str) -> TensorSpec:
        scale, zero_point = detail["quantization"]
        return TensorSpec(
            name,
            positions[kind].index(detail["index"]),
            int(detail["index"]),
            tuple(int(d) for d in detail["shape"]),
            np.dtype(detail["dtype"]).name,
            float(scale),
            int(zero_point),
        )

    inputs = {"input": spec("input", runner.get_input_details()["input"], "inputs")}
    outputs = runner.get_output_details()
    names = STAGE_OUTPUTS[part]
    if len(outputs) != len(names):
        raise ValueError(f"{part} model has {len(outputs)} outputs, expected {len(names)} ({', '.join(names)})")
    return inputs, {name: spec(name, outputs[f"output_{k}"], "outputs") for k, name in enumerate(names)}


def model_tensors(tflite_bytes: bytes, part: str) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """`tensor_specs` of a .tflite model given as bytes."""
    return tensor_specs(Runtime().interpreter(tflite_bytes), part)


class Stage:
    """One .tflite model on a LiteRT interpreter, batch 1, its tensors by name; counts invocations."""

    def __init__(self, tflite_bytes: bytes, part: str, runtime: Runtime = Runtime()) -> None:
        self.interpreter = runtime.interpreter(tflite_bytes)
        inputs, self.outputs = tensor_specs(self.interpreter, part)
        self.input = inputs["input"]
        self.invocations = 0

    def invoke(self) -> None:
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
    def exit_rate(self) -> float:
        """Fraction of samples that left at the early exit (0 for a base model)."""
        return float(np.mean(self.exits == 0)) if "ee" in self.softmax else 0.0

    def accuracy(self, labels: np.ndarray) -> float:
        return float(100.0 * np.mean(self.predictions == np.asarray(labels)))

    def latency_ms(self) -> dict[str, float]:
        ms = self.latency_ns / 1e6
        return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


class _Runner:
    """Shared protocol: `prepare` quantises the inputs, `load` puts one sample into the input tensor
    (both untimed: on a microcontroller the feature extractor writes the input tensor), `_step` runs
    the loaded sample and times itself."""

    def prepare(self, inputs: np.ndarray) -> np.ndarray:
        return self.first.input.quantize(inputs)

    def load(self, x: np.ndarray) -> None:
        self.first.interpreter.set_tensor(self.first.input.index, x)

    def run(self, inputs: np.ndarray, warmup: int = WARMUP_SAMPLES) -> Trace:
        """Run every sample of `inputs` (float32 (N, *input shape)) alone; returns a Trace."""
        return run_interleaved([self], inputs, warmup)[0]

    @property
    def stage2_invocations(self) -> int:
        return 0


def exit_threshold(rho: float, ee: TensorSpec) -> float:
    """The T-RecX exit rule, leave when the early exit's top softmax is > rho, as the value the top score
    of output `ee` (a TensorSpec) must exceed: rho itself for float32; for int8 the code
    rho / scale + zero point, computed in float32 as a microcontroller computes it. LiteRT's runner and
    the microcontroller harness (which receives this value) both compare against it."""
    if not ee.quantized:
        return float(rho)
    return float(np.float32(rho) / np.float32(ee.scale) + np.float32(ee.zero_point))


class EarlyExitRunner(_Runner):
    """Two-stage early exit on LiteRT: stage 2 runs only for samples whose early-exit max softmax is
    not > rho (the T-RecX rule), on stage 1's tapped feature map."""

    def __init__(self, stage1: bytes, stage2: bytes, rho: float, runtime: Runtime = Runtime()) -> None:
        self.rho = float(rho)
        self.first = Stage(stage1, "stage1", runtime)
        self.second = Stage(stage2, "stage2", runtime)
        self.ee, self.tap = self.first.outputs["ee"], self.first.outputs["tap"]
        self.threshold = exit_threshold(rho, self.ee)
        self.ef = self.second.outputs["ef"]
        target = self.second.input
        if self.tap.shape != target.shape or self.tap.dtype != target.dtype:
            raise ValueError(
                f"stage 1 feature map {self.tap.dtype}{self.tap.shape} does not fit stage 2's "
                f"input {target.dtype}{target.shape}"
            )
        # int8: the feature map passes as it is when requantising it would change no value.
        codes = np.arange(-128, 128, dtype=np.int8)
        self.direct_transfer = not self.tap.quantized or np.array_equal(
            target.quantize(self.tap.dequantize(codes)), codes
        )
        # Accessors of the two buffers (numpy views are taken, and dropped, per sample: an interpreter
        # refuses to run while a view of its memory is alive).
        self._tap_buffer = self.first.interpreter.tensor(self.tap.index)
        self._stage2_input = self.second.interpreter.tensor(target.index)

    @property
    def stage2_invocations(self) -> int:
        """Stage-2 invocations since this runner was made."""
        return self.second.invocations

    def _transfer(self) -> None:
        """Copy stage 1's feature map into stage 2's input buffer (requantised only if needed)."""
        if self.direct_transfer:
            self._stage2_input()[...] = self._tap_buffer()
        else:
            self._stage2_input()[...] = self.second.input.quantize(self.tap.dequantize(self._tap_buffer()))

    def _step(self) -> tuple[int, int, int, np.ndarray, np.ndarray | None]:
        """Run the loaded sample: (exit, prediction, ns, ee output, ef output or None)."""
        first, second = self.first, self.second
        ee_spec = self.ee
        start = time.perf_counter_ns()
        first.invoke()
        ee = first.interpreter.get_tensor(ee_spec.index)[0]
        k = int(ee.argmax())
        if ee[k] > self.threshold:
            elapsed = time.perf_counter_ns() - start
            return 0, k, elapsed, ee, None
        self._transfer()
        second.invoke()
        ef = second.interpreter.get_tensor(self.ef.index)[0]
        prediction = int(ef.argmax())
        elapsed = time.perf_counter_ns() - start
        return 1, prediction, elapsed, ee, ef

    def _record(self, n: int) -> dict[str, np.ndarray]:
        classes = self.ee.shape[-1]
        return {"ee": np.full((n, classes), np.nan), "ef": np.full((n, classes), np.nan)}

    def _store(self, softmax: dict[str, np.ndarray], i: int, outputs: Sequence[np.ndarray | None]) -> None:
        ee, ef = outputs
        softmax["ee"][i] = self.ee.dequantize(ee)
        if ef is not None:
            softmax["ef"][i] = self.ef.dequantize(ef)


class SingleStageRunner(_Runner):
    """A one-stage model (the base model) on LiteRT, run the same way as `EarlyExitRunner`."""

    def __init__(self, tflite_bytes: bytes, runtime: Runtime = Runtime()) -> None:
        self.first = Stage(tflite_bytes, "base", runtime)
        self.ef = self.first.outputs["ef"]

    def _step(self) -> tuple[int, int, int, np.ndarray]:
        """Run the loaded sample: (exit 0, prediction, ns, ef output)."""
        stage = self.first
        start = time.perf_counter_ns()
        stage.invoke()
        ef = stage.interpreter.get_tensor(self.ef.index)[0]
        prediction = int(ef.argmax())
        elapsed = time.perf_counter_ns() - start
        return 0, prediction, elapsed, ef

    def _record(self, n: int) -> dict[str, np.ndarray]:
        return {"ef": np.full((n, self.ef.shape[-1]), np.nan)}

    def _store(self, softmax: dict[str, np.ndarray], i: int, outputs: Sequence[np.ndarray]) -> None:
        softmax["ef"][i] = self.ef.dequantize(outputs[0])


def run_interleaved(runners: Sequence[_Runner], inputs: np.ndarray, warmup: int = WARMUP_SAMPLES) -> list[Trace]:
    """Run each sample through every runner in turn (so that machine load hits them alike); a Trace each.

    Each runner first runs `warmup` samples untimed and unrecorded.
    """
    inputs = np.asarray(inputs, np.float32)
    n = len(inputs)
    prepared = [runner.prepare(inputs) for runner in runners]
    for runner, x in zip(runners, prepared):
        for i in range(min(warmup, n)):
            runner.load(x[i : i + 1])
            runner._step()
    counts = [runner.stage2_invocations for runner in runners]
    records = [
        (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), runner._record(n)) for runner in runners
    ]
    for i in range(n):
        for runner, x, (exits, predictions, latency, softmax) in zip(runners, prepared, records):
            runner.load(x[i : i + 1])
            exit_taken, prediction, elapsed, *outputs = runner._step()
            exits[i], predictions[i], latency[i] = exit_taken, prediction, elapsed
            runner._store(softmax, i, outputs)
    return [
        Trace(*record, stage2_invocations=runner.stage2_invocations - count)
        for runner, count, record in zip(runners, counts, records)
    ]
