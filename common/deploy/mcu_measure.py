"""`deploy.sh --mcu`: the exported int8 models on emulated Cortex-M cores, checked and summarised.

For each target (a core and a kernel set, `parse_targets`), `measure_targets` runs the export folder's
early-exit pair and base model on the first K test samples in TensorFlow Lite Micro (common/deploy/
mcu.py) at the deployed rho, and checks every sample's exit decision and predicted class, and the base
model's class, against LiteRT's int8 run of the same models with its reference kernels. From the
executed instructions of each Invoke() it reports stage 1, stage 2 and base per sample (mean and
range), the expected instructions per sample at the exit rate LiteRT measured on the whole test set,
and that saving against the base model beside the FLOPs saving. A second run with TFLM's profiler
hooks counts each operator (`layer_rows`), beside its MACs and output elements. Counts are executed
instructions on an emulator, not cycles: QEMU models no pipeline, caches or flash wait states.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from common.arguments import comma_list
from common.deploy import mcu, mcu_build
from common.deploy.profile import operators, predicted_early_exit_cost, predicted_instructions
from common.deploy.results import McuTargetResult, PredictedCounts
from common.deploy.runtime import NEVER_EXIT, EarlyExitRunner, Runtime, SingleStageRunner
from common.errors import UserError
from common.target_cost import TARGETS, EarlyExitCost, load_cost_model

if TYPE_CHECKING:
    from common.deploy.mcu import McuResult
    from common.deploy.results import PrecisionResult
    from common.target_cost import CostModel

PROFILE_SAMPLES = 3  # per-operator counts hardly depend on the input: a few samples show them
ALL_TARGETS = ("cortex-m4", "cortex-m4:reference", "cortex-m7", "cortex-m55")
NOTE = (
    "executed instructions counted on an emulator (qemu-system-arm), not cycles: QEMU models no "
    "pipeline, caches or flash wait states"
)
LAYER_COLUMNS = (
    "core",
    "kernels",
    "model",
    "index",
    "operator",
    "macs",
    "output_elements",
    "instructions",
    "instructions_pct",
    "macs_pct",
    "instructions_per_mac",
    "instructions_per_output",
    "predicted_instructions",
    "prediction_error_pct",
)


def parse_targets(text: str) -> list[tuple[str, str]]:
    """[(core, kernels)] from --mcu's value: comma-separated CORE or CORE:KERNELS (kernels default
    cmsis-nn), or "all" for every core with CMSIS-NN and the M4 with the reference kernels too."""
    targets = []
    for name in comma_list(text, every=ALL_TARGETS):
        core, _, kernels = name.partition(":")
        if core not in mcu_build.CORES or (kernels or "cmsis-nn") not in mcu_build.KERNEL_SETS:
            raise UserError(
                f"--mcu: unknown target {name!r}; give CORE or CORE:KERNELS with CORE one of "
                f"{', '.join(mcu_build.CORES)} and KERNELS one of {', '.join(mcu_build.KERNEL_SETS)} "
                f"(default cmsis-nn), comma-separated, or all"
            )
        if (core, kernels or "cmsis-nn") not in targets:
            targets.append((core, kernels or "cmsis-nn"))
    if not targets:
        raise UserError("--mcu needs at least one target, e.g. --mcu cortex-m4,cortex-m7,cortex-m55")
    return targets


def _stats(values: np.ndarray | Sequence[float]) -> dict[str, float | int] | None:
    """{mean, min, max, samples} of instruction counts, None when there are none."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None
    return {
        "mean": float(values.mean()),
        "min": int(values.min()),
        "max": int(values.max()),
        "samples": int(values.size),
    }


def litert_reference(
    models: Mapping[str, bytes], inputs: np.ndarray, rho: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exits, classes, base classes) of LiteRT's int8 run with its reference kernels, one sample at a time."""
    runtime = Runtime(kernels="reference")
    trace = EarlyExitRunner(models["stage1"], models["stage2"], rho, runtime).run(inputs, warmup=0)
    base = SingleStageRunner(models["base"], runtime).run(inputs, warmup=0)
    return trace.exits, trace.predictions, base.predictions


def agreement(result: McuResult, reference: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, Any]:
    """How the MCU's exits and classes compare with LiteRT's (`litert_reference`), sample by sample."""
    exits, classes, base_classes = reference
    checks = {
        "exits": (result.exits, exits),
        "classes": (result.classes, classes),
        "base_classes": (result.model_classes["base"], base_classes),
    }
    equal = {
        name: np.asarray(mcu_values) == np.asarray(litert_values)
        for name, (mcu_values, litert_values) in checks.items()
    }
    differ = np.flatnonzero(~np.logical_and.reduce(list(equal.values())))
    return {
        **{name: int(same.sum()) for name, same in equal.items()},
        "samples": int(len(exits)),
        "differing_samples": differ.tolist(),
    }


def cost_model_name(core: str, kernels: str) -> str | None:
    """The name of a target's cost model (common.target_cost.TARGETS), None when it has none."""
    name = core if kernels == "cmsis-nn" else f"{core}:{kernels}"
    return name if name in TARGETS else None


def _error_pct(predicted: float | None, measured: float | None) -> float | None:
    """How far `predicted` lies from `measured`, in % of it; None without both."""
    return float(100.0 * (predicted / measured - 1.0)) if predicted is not None and measured else None


def layer_rows(
    result: McuResult, tflite_models: Mapping[str, bytes], cost_model: CostModel | None = None
) -> list[dict[str, Any]]:
    """Per-operator rows (LAYER_COLUMNS) of a profiled McuResult, with each model's MACs and output
    elements from its .tflite, the `cost_model`'s prediction beside each operator's count when given,
    and per model a last row, "(between operators)": its Invoke() count less the operators' sum (the
    interpreter's loop and the profiler's hooks). Means over the samples each model ran on; shares are
    of the profiled Invoke() count."""
    rows = []
    for model, ops in result.layer_ops.items():
        counts = result.layer_instructions[model][result.ran[model]]
        table = operators(tflite_models[model])
        if [name for name, _, _ in table] != list(ops):
            raise RuntimeError(
                f"TFLM ran {model}'s operators as {list(ops)}, its .tflite lists {[name for name, _, _ in table]}"
            )
        means = counts.mean(axis=0)
        total_macs = sum(macs for _, _, macs in table) or 1
        total = result.instructions[model][result.ran[model]].mean()
        base = {"core": result.core, "kernels": result.kernels, "model": model}
        predicted = predicted_instructions(tflite_models[model], cost_model)[1] if cost_model else [None] * len(table)
        for index, ((name, shape, macs), instructions) in enumerate(zip(table, means)):
            elements = int(np.prod(shape[1:]))
            rows.append(
                {
                    **base,
                    "index": index,
                    "operator": name,
                    "macs": macs,
                    "output_elements": elements,
                    "instructions": float(instructions),
                    "instructions_pct": 100.0 * instructions / total,
                    "macs_pct": 100.0 * macs / total_macs,
                    "instructions_per_mac": instructions / macs if macs else None,
                    "instructions_per_output": instructions / elements,
                    "predicted_instructions": predicted[index],
                    "prediction_error_pct": _error_pct(predicted[index], instructions),
                }
            )
        between = total - means.sum()
        rows.append(
            {
                **base,
                "index": len(table),
                "operator": "(between operators)",
                "macs": 0,
                "output_elements": 0,
                "instructions": float(between),
                "instructions_pct": 100.0 * between / total,
                "macs_pct": 0.0,
                "instructions_per_mac": None,
                "instructions_per_output": None,
                "predicted_instructions": None,
                "prediction_error_pct": None,
            }
        )
    return rows


def stage1_shares(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Where stage 1's instructions go, from one target's per-operator rows (`layer_rows`):
    {"backbone"|"branch": {"instructions_pct", "macs_pct"}}, each a share of the base model's
    instructions and MACs. The backbone is the operators stage 1 shares, in order, with the start of
    the base model (same operator, MACs and outputs); the rest of stage 1 is the early-exit branch."""
    ops = {
        model: [row for row in rows if row["model"] == model and row["output_elements"]] for model in ("stage1", "base")
    }
    same = 0
    while same < min(len(ops["stage1"]), len(ops["base"])) and all(
        ops["stage1"][same][key] == ops["base"][same][key] for key in ("operator", "macs", "output_elements")
    ):
        same += 1
    base_instructions = sum(row["instructions"] for row in rows if row["model"] == "base")
    base_macs = sum(row["macs"] for row in ops["base"]) or 1

    def share(part: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        return {
            "instructions_pct": 100.0 * sum(row["instructions"] for row in part) / base_instructions,
            "macs_pct": 100.0 * sum(row["macs"] for row in part) / base_macs,
        }

    return {"backbone": share(ops["stage1"][:same]), "branch": share(ops["stage1"][same:])}


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: identity equality, no elementwise ==
class McuExport:
    """The int8 export every target runs: its folder, the T-RecX model's name in it, its int8 .tflite models
    ({"stage1", "stage2", "base": bytes}), the inputs (float32, the first K test samples) and rho."""

    export_dir: str | os.PathLike
    model_name: str
    int8_models: Mapping[str, bytes]
    inputs: np.ndarray
    rho: float


def measure_target(
    export: McuExport,
    core: str,
    kernels: str,
    reference: tuple[np.ndarray, np.ndarray, np.ndarray],
    test_exit_rate: float,
    flops_saving_pct: float,
    log: Callable[[str], None] = print,
) -> tuple[McuTargetResult, list[dict[str, Any]]]:
    """Run `export` on one target; `reference`: `litert_reference` on the same inputs; test_exit_rate,
    flops_saving_pct: the int8 models' on the whole test set. Returns (its `McuTargetResult`, its
    per-operator rows)."""
    inputs, int8_models = export.inputs, export.int8_models
    n = len(inputs)
    target = mcu.McuRun(core=core, kernels=kernels)

    def run_on(samples: np.ndarray, rho: float, profile: bool = False, base: bool = True) -> McuResult:
        """One run of `samples` on this target (the base model too when `base`)."""
        settings = dataclasses.replace(target, rho=rho, profile=profile)
        return mcu.run_on_mcu(export.export_dir, export.model_name, samples, settings, base=base, log=log)

    log(f"{core} with {kernels} kernels: {n} samples on the emulator")
    run = run_on(inputs, export.rho)
    ran = {name: run.instructions[name][run.ran[name]] for name in ("stage1", "stage2", "base")}
    profiled = run_on(inputs[:PROFILE_SAMPLES], NEVER_EXIT, profile=True)
    if ran["stage2"].size == 0:  # every sample exited: stage 2's count from samples that run it
        ran["stage2"] = run_on(inputs[:PROFILE_SAMPLES], NEVER_EXIT, base=False).instructions["stage2"]
    stats = {name: _stats(values) for name, values in ran.items()}
    stage1, stage2, base = (stats[name]["mean"] for name in ("stage1", "stage2", "base"))
    measured = EarlyExitCost(f"{core}:{kernels}", stage1, stage2, base)
    expected, saving = measured.expected(test_exit_rate), measured.saving_pct(test_exit_rate)
    name = cost_model_name(core, kernels)
    cost_model = load_cost_model(name) if name else None
    rows = layer_rows(profiled, int8_models, cost_model)
    same = agreement(run, reference)
    result = McuTargetResult(
        core=core,
        kernels=kernels,
        board=run.board,
        samples=n,
        agreement_with_litert_int8=same,
        exit_rate_samples=float(np.mean(run.exits == 0)),
        stage2_invocations=int(run.invocations["stage2"]),
        samples_not_exited=int(np.sum(run.exits == 1)),
        instructions=stats,
        early_exit_instructions_samples=_stats(run.instructions["stage1"] + run.instructions["stage2"]),
        exit_rate_test=test_exit_rate,
        expected_instructions=expected,
        instruction_saving_pct=saving,
        flops_saving_pct=flops_saving_pct,
        instruction_over_flops_saving=saving / flops_saving_pct if flops_saving_pct > 0 else None,
        arena_used_bytes=run.arena_used_bytes,
        flash_bytes=run.flash_bytes,
        ram_bytes=run.ram_bytes,
        stage1_shares=stage1_shares(rows),
        predicted=predicted_beside(measured, int8_models, cost_model, test_exit_rate) if cost_model else None,
    )
    log(
        f"  instructions per sample: stage 1 {stage1 / 1e6:.3f} M, stage 2 {stage2 / 1e6:.3f} M, base "
        f"{base / 1e6:.3f} M; expected at exit rate {test_exit_rate:.3f}: {expected / 1e6:.3f} M, saving "
        f"{saving:.1f} % (FLOPs {flops_saving_pct:.1f} %); LiteRT agreement: exits {same['exits']}/{n}, "
        f"classes {same['classes']}/{n}, base {same['base_classes']}/{n}"
    )
    if result.predicted:
        errors = result.predicted.error_pct
        log(
            f"  cost model {name}: stage 1 {errors['stage1']:+.2f} %, stage 2 {errors['stage2']:+.2f} %, base "
            f"{errors['base']:+.2f} %, expected per sample {errors['expected']:+.2f} % against the counts"
        )
    if same["differing_samples"]:
        log(
            f"  WARNING: the emulated {core} and LiteRT's int8 reference kernels differ on samples "
            f"{same['differing_samples']} (see deploy.json)"
        )
    return result, rows


def predicted_beside(
    measured: EarlyExitCost, int8_models: Mapping[str, bytes], cost_model: CostModel, exit_rate: float
) -> PredictedCounts:
    """The `PredictedCounts` of one target: the cost model's instructions of stage 1, stage 2, base
    and the expected count per sample at `exit_rate`, each with its error against `measured` (an
    `EarlyExitCost` of the emulator's means)."""
    predicted = predicted_early_exit_cost(int8_models, cost_model)
    totals = {"stage1": predicted.stage1, "stage2": predicted.stage2, "base": predicted.base}
    values = {**totals, "expected": predicted.expected(exit_rate)}
    counts = {"stage1": measured.stage1, "stage2": measured.stage2, "base": measured.base}
    counts["expected"] = measured.expected(exit_rate)
    return PredictedCounts(
        cost_model=cost_model.target,
        instructions=values,
        error_pct={key: _error_pct(values[key], counts[key]) for key in values},
        instruction_saving_pct=predicted.saving_pct(exit_rate),
    )


def measure_targets(
    export: McuExport,
    targets: Sequence[tuple[str, str]],
    int8: PrecisionResult,
    log: Callable[[str], None] = print,
) -> tuple[list[McuTargetResult], list[dict[str, Any]]]:
    """Every target of `targets` on `export` (`McuExport`); int8: the int8 `PrecisionResult` on the whole
    test set (its exit rate and FLOPs saving). Returns ([McuTargetResult], per-operator rows of all targets)."""
    log(f"LiteRT int8 with reference kernels on the same {len(export.inputs)} samples (the MCU's reference)")
    reference = litert_reference(export.int8_models, export.inputs, export.rho)
    runs = [
        measure_target(export, core, kernels, reference, int8.exit_rate, int8.mflops_saving_pct, log)
        for core, kernels in targets
    ]
    return [result for result, _ in runs], [row for _, rows in runs for row in rows]
