"""Exported int8 models in TensorFlow Lite Micro on an emulated Cortex-M, counting executed instructions.

`run_on_mcu` links the C arrays that `deploy.sh` exports (stage 1, stage 2 and the base model) into a
bare-metal harness with TFLM and a kernel set (CMSIS-NN or TFLM's reference kernels), runs it in
`qemu-system-arm` on the core's board with a plugin that counts executed instructions between markers
around every Invoke(), and returns per sample the early-exit decision, the predicted class, each
model's int8 outputs and instruction counts, with the arena bytes each model used and the flash bytes
of each model and of the whole program (`McuResult`). Stage 2 runs only when the early exit's int8 top
score is not above the threshold `runtime.exit_threshold` derives from rho (the harness receives it;
docs/deployment.md's TFLM snippet computes the same in C). Counts are
executed instructions on an emulator, not cycles. Building is cached (mcu_build.py); what is missing
to run at all is named by one UserError with the command that installs it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import struct
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from common.deploy import mcu_build
from common.deploy.manifest import read_manifest
from common.deploy.runtime import exit_threshold
from common.errors import UserError

if TYPE_CHECKING:
    from common.deploy.manifest import ExportedModel

ARENA_POOL_BYTES = 1536 * 1024  # static pool the models' arenas are carved from (fits every board's RAM)
DEFAULT_ARENA_BYTES = 384 * 1024
MAX_PROBES = 16
HARNESS_VERSION = 3  # of in.bin's layout: the same as kVersion in mcu_src/harness.cc


def read_exported(
    export_dir: str | os.PathLike, stem: str, models: Mapping[str, ExportedModel] | None = None
) -> ExportedModel:
    """The `manifest.ExportedModel` `stem` of an export folder, checked for the harness (its C array
    written, a single int8 input, int8 outputs). models: the folder's manifest, when already read."""
    models = read_manifest(export_dir) if models is None else models
    if stem not in models:
        raise UserError(f"no exported model {stem} in {export_dir}: run deploy.sh to export the models")
    model = models[stem]
    if not model.header.is_file() or not model.source.is_file():
        raise UserError(f"no exported C array {model.header} (and its .cc): run deploy.sh to export the models")
    if len(model.inputs) != 1 or not all(t.quantized for t in [*model.inputs.values(), *model.outputs.values()]):
        raise UserError(f"{model.header} is not a single-input int8 model; the MCU harness runs the int8 exports")
    return model


def exported_models(
    export_dir: str | os.PathLike, model_name: str | None = "trecx_ev", base: bool = True
) -> list[ExportedModel]:
    """The int8 models of an export folder: model_name's stage 1 and stage 2 (none if model_name is
    None), then the base model when `base`."""
    stems = [f"{model_name}_{part}_int8" for part in ("stage1", "stage2")] if model_name else []
    manifest = read_manifest(export_dir)
    return [read_exported(export_dir, stem, manifest) for stem in stems + (["base_int8"] if base else [])]


def _build_entry(model: ExportedModel, role: str) -> mcu_build.HarnessModel:
    """The `mcu_build.HarnessModel` of an exported model in `role`."""
    stage1 = {}
    if role == "stage1":
        ee, tap = model.outputs["ee"], model.outputs["tap"]
        stage1 = dict(ee_position=ee.position, tap_position=tap.position)
    return mcu_build.HarnessModel(
        model.name,
        role,
        model.symbol,
        str(model.source),
        str(model.header),
        tuple(model.ops),
        model.input.position,
        **stage1,
    )


def _roles(models: Sequence[ExportedModel]) -> dict[str, str]:
    """{model name: "stage1", "stage2" or "standalone"}, checked: at most one early-exit pair, whose
    tapped map crosses to stage 2 unchanged."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise UserError(f"model names must differ: {names}")
    roles = {
        m.name: ("stage1" if "tap" in m.outputs else "stage2" if m.name == "stage2" else "standalone") for m in models
    }
    if sorted(r for r in roles.values() if r != "standalone") not in ([], ["stage1", "stage2"]):
        raise UserError("an early-exit pair needs exactly one stage 1 (outputs ee, tap) and one model named stage2")
    if "stage1" in roles.values():
        tap = next(m for m in models if roles[m.name] == "stage1").outputs["tap"]
        into = next(m for m in models if roles[m.name] == "stage2").input
        codes = np.arange(-128, 128)  # the map crosses as it is: requantising it must change no value
        if tap.shape != into.shape or not np.array_equal(into.quantize(tap.dequantize(codes)), codes):
            raise UserError(
                "stage 1's tapped feature map does not fit stage 2's input as it is (shape or "
                "quantisation differ); re-export the models with deploy.sh"
            )
    return roles


@dataclasses.dataclass
class McuResult:
    """One run on the emulated MCU over N samples.

    exits: (N,) 0 = left at the early exit, 1 = ran stage 2 (-1 without an early-exit pair); classes:
    (N,) the early-exit pair's prediction; model_classes: {standalone model: (N,) class}; outputs:
    {model: {output: (N, *shape) int8}}, zero rows where the model did not run; ran: {model: (N,) bool};
    instructions: {model: (N,) executed instructions between the markers around its Invoke() (Invoke()
    and about six instructions of marker calls), 0 where it did not run}; invocations: {model:
    Invoke() calls counted on the MCU}; arena_used_bytes and arena_bytes (configured) per model;
    flash_bytes per model and "program" (all that a device keeps in flash); probes: {iterations:
    instructions counted} for the assembly probe (0: its empty region). When profiled: layer_ops
    {model: operator names in execution order} and layer_instructions {model: (N, operators) executed
    instructions of each operator (its kernel and TFLM's bookkeeping around it), 0 where the model did
    not run}; their hooks add a few instructions per operator to `instructions`. Empty otherwise.
    """

    core: str
    kernels: str
    board: str
    rho: float | None
    threshold: float | None
    exits: np.ndarray
    classes: np.ndarray
    model_classes: dict
    outputs: dict
    ran: dict
    instructions: dict
    invocations: dict
    arena_used_bytes: dict
    arena_bytes: dict
    flash_bytes: dict
    ram_bytes: int
    probes: dict
    total_instructions: int
    layer_ops: dict = dataclasses.field(default_factory=dict)
    layer_instructions: dict = dataclasses.field(default_factory=dict)


def _input_bytes(
    models: Sequence[ExportedModel],
    roles: Mapping[str, str],
    inputs: np.ndarray | dict[str, np.ndarray],
    n: int,
) -> bytes:
    """Per sample, the int8 input of every model fed from the input, in table order, as bytes."""
    fed = [m for m in models if roles[m.name] != "stage2"]
    per_model = []
    for m in fed:
        x = inputs[m.name] if isinstance(inputs, dict) else inputs
        x = np.asarray(x)[:n]
        q = x if x.dtype == np.int8 else m.input.quantize(x)
        if q.reshape(len(q), -1).shape[1] != int(np.prod(m.input.shape)):
            raise UserError(f"inputs of shape {x.shape[1:]} do not fit {m.name}'s input {m.input.shape}")
        per_model.append(q.reshape(len(q), -1))
    if any(len(q) < n for q in per_model):
        raise UserError(f"asked for {n} samples, the inputs hold {min(len(q) for q in per_model)}")
    return b"".join(q[i].tobytes() for i in range(n) for q in per_model)


def _parse(out_text: str, counts_text: str, models: Sequence[ExportedModel]) -> dict[str, Any]:
    """Records of the harness's out.txt, paired with the plugin's counts."""
    lines = out_text.splitlines()
    error = next((line.split() for line in lines if line.startswith("ERROR ")), None)
    if error:
        return {"error": error}
    if "END" not in lines:
        raise RuntimeError("the MCU harness stopped before the end; its output ends with:\n" + "\n".join(lines[-5:]))
    counts = [int(line.split()[1]) for line in counts_text.splitlines() if line.startswith("region ")]
    layer_counts = iter([int(line.split()[1]) for line in counts_text.splitlines() if line.startswith("layer ")])
    total = next(int(line.split()[1]) for line in counts_text.splitlines() if line.startswith("total "))
    regions = [line.split()[1:] for line in lines if line.startswith("REGION ")]
    if len(regions) != len(counts):
        raise RuntimeError(f"the plugin counted {len(counts)} regions, the harness announced {len(regions)}")
    counts = iter(counts)
    parsed = {"models": {}, "samples": [], "invokes": {}, "probes": {}, "total": total}
    sample = None
    for line in filter(str.strip, lines):
        word, *rest = line.split()
        if word == "MODEL":
            parsed["models"][rest[0]] = int(rest[1])
        elif word == "REGION" and rest[0] == "probe":
            parsed["probes"].setdefault(int(rest[1]), next(counts))
        elif word == "SAMPLE":
            sample = {"counts": {}, "outputs": {}, "classes": {}, "layers": {}}
            parsed["samples"].append(sample)
        elif word == "REGION":
            sample["counts"][rest[0]] = next(counts)
        elif word == "LAYERS":
            try:
                sample["layers"][rest[0]] = [(op, next(layer_counts)) for op in rest[1:]]
            except StopIteration:
                raise RuntimeError("the plugin counted fewer operators than the harness announced") from None
        elif word == "OUT":
            sample["outputs"].setdefault(rest[0], {})[int(rest[1])] = bytes.fromhex(rest[2] if len(rest) > 2 else "")
        elif word == "EXIT":
            sample["exit"], sample["class"] = int(rest[0]), int(rest[1])
        elif word == "CLASS":
            sample["classes"][rest[0]] = int(rest[1])
        elif word == "INVOKES":
            parsed["invokes"][rest[0]] = int(rest[1])
    if next(layer_counts, None) is not None:
        raise RuntimeError("the plugin counted more operators than the harness announced")
    return parsed


@dataclasses.dataclass(frozen=True)
class McuRun:
    """How a run on the emulated MCU goes, beside the models and inputs it runs.

    rho: the early exit's softmax threshold (an early-exit pair needs it); core, kernels: the emulated
    core and TFLM's kernel set; samples: the first K inputs (None: all); arena_bytes: {model: bytes}
    (default DEFAULT_ARENA_BYTES each); probes: iteration counts of the assembly probe to count first (a
    check of the counter, see markers.S); profile: also count each operator (`McuResult.layer_ops`,
    `layer_instructions`); timeout: seconds the emulator may take (None: 120 + 20 per sample).
    """

    rho: float | None = None
    core: str = "cortex-m4"
    kernels: str = "cmsis-nn"
    samples: int | None = None
    arena_bytes: Mapping[str, int] | None = None
    probes: Sequence[int] = ()
    profile: bool = False
    timeout: float | None = None


def run_models(
    models: Sequence[ExportedModel],
    inputs: np.ndarray | dict[str, np.ndarray],
    settings: McuRun = McuRun(),
    log: Callable[[str], None] = print,
) -> McuResult:
    """Run `ExportedModel`s on the emulated MCU as `settings` say; see `run_on_mcu`. A model with outputs
    ee and tap is stage 1 and needs one named "stage2"; any other model runs on its own on every sample."""
    rho, core, kernels, samples = settings.rho, settings.core, settings.kernels, settings.samples
    arena_bytes, probes, profile, timeout = settings.arena_bytes, settings.probes, settings.profile, settings.timeout
    roles = _roles(models)
    first = np.asarray(inputs[models[0].name] if isinstance(inputs, dict) else inputs)
    n = len(first) if samples is None else int(samples)
    if "stage1" in roles.values() and rho is None:
        raise UserError("an early-exit pair needs rho")
    stage1 = next((m for m in models if roles[m.name] == "stage1"), None)
    threshold = exit_threshold(rho, stage1.outputs["ee"]) if stage1 else None  # the rule's one home
    arenas = {m.name: DEFAULT_ARENA_BYTES for m in models}
    unknown = set(arena_bytes or {}) - set(arenas)
    if unknown:
        raise UserError(f"arena_bytes names models that are not run: {', '.join(sorted(unknown))}")
    arenas.update(arena_bytes or {})
    if sum(arenas.values()) > ARENA_POOL_BYTES:
        raise UserError(
            f"the arenas ({sum(arenas.values()):,} bytes) exceed the harness's pool "
            f"({ARENA_POOL_BYTES:,} bytes); give smaller arena_bytes"
        )
    if len(probes) > MAX_PROBES or any(int(p) < 1 for p in probes):
        raise UserError(f"at most {MAX_PROBES} probes, each of at least one iteration")
    payload = _input_bytes(models, roles, inputs, n)
    lib = mcu_build.library(core, kernels, log=log)
    counter = mcu_build.plugin(log=log)
    prog = mcu_build.program(lib, [_build_entry(m, roles[m.name]) for m in models], ARENA_POOL_BYTES, log=log)
    header = (
        b"TRXI"
        + struct.pack("<IIfI", HARNESS_VERSION, n, threshold or 0.0, len(models))
        + struct.pack(f"<{len(models)}I", *(arenas[m.name] for m in models))
        + struct.pack(f"<I{len(probes)}I", len(probes), *(int(p) for p in probes))
        + struct.pack("<I", int(bool(profile)))
    )
    with tempfile.TemporaryDirectory(prefix="trecx_mcu_") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "in.bin").write_bytes(header + payload)
        markers = f"begin={prog.begin:#x},end={prog.end:#x}" + (
            f",layer_begin={prog.layer_begin:#x},layer_end={prog.layer_end:#x}" if profile else ""
        )
        command = [
            "qemu-system-arm",
            "-M",
            prog.board,
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "null",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
            prog.elf,
            "-plugin",
            f"{counter},{markers},out={tmp / 'counts.txt'}",
        ]
        try:
            run = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=timeout or 120 + 20 * n)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the emulated {core} did not finish within {timeout or 120 + 20 * n} s") from None
        out = (tmp / "out.txt").read_text() if (tmp / "out.txt").is_file() else ""
        counts = (tmp / "counts.txt").read_text() if (tmp / "counts.txt").is_file() else ""
    if not out or (not counts and "ERROR" not in out):
        raise RuntimeError(
            f"the emulated {core} wrote no results (exit {run.returncode}):\n{(run.stdout + run.stderr)[-3000:]}"
        )
    parsed = _parse(out, counts, models)
    if "error" in parsed:
        what, name, value = (parsed["error"] + ["", "", ""])[1:4]
        if what == "allocate":
            raise UserError(
                f"model {name} does not fit its {int(value):,}-byte arena on the emulated {core} "
                f"(TFLM's AllocateTensors failed); give it more with arena_bytes"
            )
        raise RuntimeError(f"the MCU harness failed ({what} {name} {value}): {(run.stdout + run.stderr)[-2000:]}")
    return _result(parsed, models, roles, n, rho, threshold, prog, arenas)


def _result(
    parsed: dict[str, Any],
    models: Sequence[ExportedModel],
    roles: Mapping[str, str],
    n: int,
    rho: float | None,
    threshold: float | None,
    prog: mcu_build.Program,
    arenas: Mapping[str, int],
) -> McuResult:
    """The `McuResult` of a run's parsed records (`_parse`)."""
    outputs = {m.name: {t.name: np.zeros((n, *t.shape[1:]), np.int8) for t in m.outputs.values()} for m in models}
    ran = {m.name: np.zeros(n, bool) for m in models}
    instructions = {m.name: np.zeros(n, np.int64) for m in models}
    by_position = {m.name: {t.position: t for t in m.outputs.values()} for m in models}
    layer_ops, layer_instructions = {}, {}
    exits, classes = np.full(n, -1), np.full(n, -1)
    model_classes = {m.name: np.full(n, -1) for m in models if roles[m.name] == "standalone"}
    for i, sample in enumerate(parsed["samples"]):
        for name, count in sample["counts"].items():
            ran[name][i], instructions[name][i] = True, count
        for name, tensors in sample["outputs"].items():
            for position, data in tensors.items():
                t = by_position[name][position]
                outputs[name][t.name][i] = np.frombuffer(data, np.int8).reshape(t.shape[1:])
        exits[i], classes[i] = sample.get("exit", -1), sample.get("class", -1)
        for name, c in sample["classes"].items():
            model_classes[name][i] = c
        for name, layers in sample["layers"].items():
            ops = tuple(op for op, _ in layers)
            if layer_ops.setdefault(name, ops) != ops:
                raise RuntimeError(f"{name} ran different operators on different samples")
            layer_instructions.setdefault(name, np.zeros((n, len(ops)), np.int64))[i] = [c for _, c in layers]
    return McuResult(
        core=prog.core,
        kernels=prog.kernels,
        board=prog.board,
        rho=rho,
        threshold=threshold,
        exits=exits,
        classes=classes,
        model_classes=model_classes,
        outputs=outputs,
        ran=ran,
        instructions=instructions,
        invocations=parsed["invokes"],
        arena_used_bytes=parsed["models"],
        arena_bytes=arenas,
        flash_bytes={**prog.model_bytes, "program": prog.flash_bytes},
        ram_bytes=prog.ram_bytes,
        probes={k: v for k, v in parsed["probes"].items()},
        total_instructions=parsed["total"],
        layer_ops=layer_ops,
        layer_instructions=layer_instructions,
    )


def run_on_mcu(
    export_dir: str | os.PathLike,
    model_name: str | None = "trecx_ev",
    inputs: np.ndarray | dict[str, np.ndarray] | None = None,
    settings: McuRun = McuRun(),
    *,
    base: bool = True,
    log: Callable[[str], None] = print,
) -> McuResult:
    """Run an export folder's int8 models (model_name's stage 1 and 2, and the base model when `base`)
    on the emulated core as `settings` (`McuRun`) say; returns an `McuResult`.

    inputs: float32 (N, *input shape), quantised here with each model's own input quantisation, or int8
    used as is, or {model: array}.
    """
    if inputs is None:
        raise UserError("run_on_mcu needs inputs")
    mcu_build.check_prerequisites()
    models = exported_models(export_dir, model_name, base)
    return run_models(models, inputs, settings, log)
