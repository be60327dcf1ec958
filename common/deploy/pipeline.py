"""The deploy command's work, end to end: choose rho, measure both precisions, write the results.

`run_deploy` is what `deploy.sh` runs: it checks the options, loads the T-RecX network and its base
model, reads the test, validation and calibration data and calls `deploy`. `deploy` exports the models
(common.deploy.export), takes rho as given or chooses it on the validation split with the float32
models (`validation_rho`: the cheapest rho within `drop` accuracy points of the base model there, never
the test set), runs each precision on the test set beside the base model (`evaluate_precision`), and
writes deploy.json, deploy.md, the float32/int8 benefit figure and export/. With MCU targets it also
runs the int8 export on emulated Cortex-M cores (common/deploy/mcu_measure.py) and adds their
instruction counts, the per-operator profile (mcu_layers.csv) and the benefit curve in instructions.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from common import files, flops, plots, report, sweep, target_cost, tasks, weights
from common.deploy import markdown, mcu_build, mcu_measure
from common.deploy.export import PRECISIONS, export_models, split_stages, weights_kb, write_export
from common.deploy.options import DeployFolders, DeployOptions
from common.deploy.profile import predicted_early_exit_cost
from common.deploy.results import (
    DeployData,
    DeploySummary,
    FlopsChoice,
    McuResults,
    PrecisionResult,
    RhoChoice,
    TargetCostResult,
)
from common.deploy.runtime import NEVER_EXIT, EarlyExitRunner, Runtime, SingleStageRunner, run_interleaved, runtime_name
from common.errors import UserError

if TYPE_CHECKING:
    from common.deploy.runtime import Trace
    from common.models import ExitModel

# deploy.sh's default output folder, under results/TASK: apart from test.sh's outputs there.
DEFAULT_SUBFOLDER = "deploy"

# ------------------------------------------------------------------------------------------------
# Choosing rho and measuring


def trace_curve(trace: Trace, labels: np.ndarray, path_mflops: Sequence[float]) -> sweep.Curve:
    """Benefit curve over common.sweep.RHOS from a trace in which every sample ran both stages."""
    if np.isnan(trace.softmax["ef"]).any():
        raise ValueError("the trace has samples without a final-exit softmax; run it with rho = 1.0")
    return sweep.benefit_curve([trace.softmax["ee"], trace.softmax["ef"]], labels, path_mflops, "strict")


def _saving(value: float, reference: float) -> float:
    """% of `reference` that `value` saves."""
    return float(100.0 * (1.0 - value / reference))


def evaluate_precision(
    models: Mapping[str, bytes],
    test: tuple[np.ndarray, np.ndarray],
    rho: float,
    path_mflops: Sequence[float],
    base_mflops: float,
    runtime: Runtime = Runtime(),
    log: Callable[[str], None] = print,
) -> tuple[PrecisionResult, sweep.Curve, tuple[Trace, Trace]]:
    """Measure one precision's exported models on (inputs, labels) at `rho`, beside the base model.

    Runs (1) every sample through both stages (rho = 1.0) for the benefit curve, then (2) the early-exit
    runner at `rho` interleaved sample by sample with the base model, for accuracy, exit rate and
    latency. Returns (`PrecisionResult`, curve, (trace at rho, base trace)).
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
    result = PrecisionResult(
        size_kb={part: len(models[part]) / 1024 for part in ("stage1", "stage2", "base")},
        weights_kb={part: weights_kb(models[part]) for part in ("stage1", "stage2", "base")},
        accuracy=trace.accuracy(labels),
        base_accuracy=base_trace.accuracy(labels),
        exit_rate=exit_rate,
        mflops=mean_mflops,
        base_mflops=base_mflops,
        mflops_saving_pct=mflops_saving,
        latency_ms=latency,
        base_latency_ms=base_latency,
        latency_saving_pct=latency_saving,
        latency_over_flops_saving=latency_saving / mflops_saving if mflops_saving > 0 else None,
        stage2_invocations=trace.stage2_invocations,
        tap_transfer="direct" if runner.direct_transfer else "requantized",
        full_path_latency_ms=full.latency_ms(),
    )
    log(
        f"  accuracy {result.accuracy:.2f} % (base {result.base_accuracy:.2f} %), exit rate "
        f"{exit_rate:.3f}, latency {latency['mean']:.4f} ms (base {base_latency['mean']:.4f} ms), "
        f"saving {latency_saving:.1f} % measured / {mflops_saving:.1f} % FLOPs"
    )
    return result, curve, (trace, base_trace)


def validation_rho(
    models: Mapping[str, bytes],
    validation: tuple[np.ndarray, np.ndarray],
    path_mflops: Sequence[float],
    base_mflops: float,
    drop: float,
    runtime: Runtime = Runtime(),
    target: target_cost.EarlyExitCost | None = None,
) -> tuple[float, RhoChoice]:
    """rho chosen on the validation split with the float32 models: (rho, `RhoChoice`).

    Without `target` (an `EarlyExitCost` of the int8 models), the cheapest rho in MFLOPs within `drop`;
    with it, the cheapest in the target's instructions, the MFLOPs choice reported beside it
    (`flops_choice`) and `saves` telling whether the chosen rho saves anything on the target.
    """
    inputs, labels = validation
    full = EarlyExitRunner(models["stage1"], models["stage2"], NEVER_EXIT, runtime).run(inputs, warmup=0)
    base = SingleStageRunner(models["base"], runtime).run(inputs, warmup=0)
    base_accuracy = base.accuracy(labels)
    curve = trace_curve(full, labels, path_mflops)
    split = dict(num_samples=int(len(labels)), base_accuracy=base_accuracy, target_accuracy=base_accuracy - drop)
    in_flops = sweep.choose_rho(curve, base_accuracy, base_mflops, drop)
    if target is None:
        return in_flops.rho, RhoChoice(**split, **in_flops.to_json(), chosen_in="MFLOPs")
    in_target = sweep.mean_cost(curve, target.paths)
    point = sweep.choose_rho(curve, base_accuracy, target.base, drop, cost=in_target, unit="instructions")

    def at(rho: float) -> dict[str, float]:
        i = int(np.flatnonzero(curve.rho == rho)[0])
        return {
            "flops_reduction_pct": float(100.0 * (1.0 - curve.mflops[i] / base_mflops)),
            "instruction_reduction_pct": float(100.0 * (1.0 - in_target[i] / target.base)),
            "exit_rate": float(curve.exit_fraction[i, 0]),
        }

    return point.rho, RhoChoice(
        **split,
        **point.to_json(),
        **at(point.rho),
        chosen_in=f"instructions on {target.target}",
        saves=point.reduction_pct > 0,
        flops_choice=FlopsChoice(rho=in_flops.rho, accuracy=in_flops.accuracy, **at(in_flops.rho)),
    )


def size_reduction(float32: PrecisionResult, int8: PrecisionResult, key: str = "size_kb") -> dict[str, float]:
    """% saved by int8 against float32 (`PrecisionResult`s) in `key` ("size_kb": files, "weights_kb":
    constant tensors), for the early-exit model (stage 1 + stage 2) and the base model."""

    def early_exit(result: PrecisionResult) -> float:
        return sum(getattr(result, key)[part] for part in ("stage1", "stage2"))

    return {
        "early_exit": _saving(early_exit(int8), early_exit(float32)),
        "base": _saving(getattr(int8, key)["base"], getattr(float32, key)["base"]),
    }


# ------------------------------------------------------------------------------------------------
# Deploying one model


@dataclasses.dataclass(frozen=True)
class Deployment:
    """One T-RecX model of a task beside its base model: what `deploy` exports, runs and reports.

    task: the task module; model_name: the T-RecX model's name in task.MODELS; net, base_net: the networks.
    """

    task: tasks.Task
    model_name: str
    net: ExitModel
    base_net: ExitModel


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: identity equality, no elementwise ==
class DeployInputs:
    """The data a deployment runs on.

    test, validation: (inputs float32 (N, ...), labels (N,)), validation None where rho is given;
    calibration: float32 inputs for int8; data: where they all came from (`DeployData`, recorded in
    deploy.json and deploy.md).
    """

    test: tuple[np.ndarray, np.ndarray]
    calibration: np.ndarray
    data: DeployData
    validation: tuple[np.ndarray, np.ndarray] | None = None


def deploy(
    deployment: Deployment,
    inputs: DeployInputs,
    results_dir: str | os.PathLike,
    *,
    options: DeployOptions = DeployOptions(),
    log: Callable[[str], None] = print,
) -> DeploySummary:
    """Export, run and report one T-RecX model against its base model (`Deployment`) on `inputs`.

    options: `DeployOptions` (rho given, or None to choose it on `inputs.validation` with the float32 models).
    Writes under `results_dir`: deploy.json, deploy.md, int8_vs_float.png/.pdf and export/, and with MCU
    targets mcu_layers.csv and mcu_benefit.png/.pdf. Returns the `DeploySummary` (deploy.json).
    """
    if options.rho is None and inputs.validation is None:
        raise UserError("no rho given and no validation split to choose it on; pass --rho R")
    # An earlier deploy.sh run's outputs are replaced as a whole, and only when this one has finished.
    stale = [
        "deploy.json",
        "deploy.md",
        "int8_vs_float.png",
        "int8_vs_float.pdf",
        "export/*",
        "mcu_layers.csv",
        "mcu_benefit.png",
        "mcu_benefit.pdf",
    ]
    with files.staged_folder(results_dir, stale) as staging:
        return _deploy(deployment, inputs, staging, options, log, shown_as=pathlib.Path(results_dir))


def _deploy(
    deployment: Deployment,
    inputs: DeployInputs,
    results_dir: pathlib.Path,
    options: DeployOptions,
    log: Callable[[str], None],
    shown_as: pathlib.Path,
) -> DeploySummary:
    """`deploy`'s work, writing into `results_dir` (the staging folder) and naming it `shown_as` in messages."""
    task, model_name, test, validation = deployment.task, deployment.model_name, inputs.test, inputs.validation
    rho, runtime = options.rho, options.runtime
    path_mflops = flops.path_mflops(deployment.net.model)
    base_mflops = flops.path_mflops(deployment.base_net.model)[0]
    models = export_models(deployment.net, deployment.base_net, inputs.calibration, log)
    write_export(results_dir / "export", task.NAME, model_name, models, log=lambda *_: None)
    log(f"wrote {sum(len(p) for p in models.values())} models (.tflite, .h, .cc) to {shown_as / 'export'}")
    target = (
        predicted_early_exit_cost(models["int8"], target_cost.load_cost_model(options.target))
        if options.target
        else None
    )

    details = None
    if rho is None:
        unit = f"{options.target} instructions" if target else "MFLOPs"
        log(
            f"choosing rho on {len(validation[1])} validation samples, cheapest in {unit} within "
            f"{options.drop:g} point(s) of the base model"
        )
        rho, details = validation_rho(
            models["float32"], validation, path_mflops, base_mflops, options.drop, runtime, target
        )
        met = "" if details.met else " (target not reached: most accurate rho)"
        log(
            f"  rho = {rho:.4f}: validation accuracy {details.accuracy:.2f} % against base "
            f"{details.base_accuracy:.2f} %{met}"
        )
        if target:
            flops_choice = details.flops_choice
            log(
                f"  on {options.target}: {details.instruction_reduction_pct:.1f} % of the base model's instructions "
                f"saved there ({details.flops_reduction_pct:.1f} % of its FLOPs); the cheapest rho in FLOPs, "
                f"{flops_choice.rho:.4f}, would save {flops_choice.instruction_reduction_pct:.1f} % of the "
                f"instructions ({flops_choice.flops_reduction_pct:.1f} % of the FLOPs)"
            )
    precisions, curves = {}, {}
    for precision in PRECISIONS:
        log(f"{precision}: running {len(test[1])} test samples one at a time")
        precisions[precision], curves[precision], _ = evaluate_precision(
            models[precision], test, rho, path_mflops, base_mflops, runtime, log
        )
    float32, int8 = precisions["float32"], precisions["int8"]
    summary = DeploySummary(
        task=task.NAME,
        model=model_name,
        num_samples=int(len(test[1])),
        data=inputs.data,
        rho=float(rho),
        rho_source="given" if details is None else "validation",
        float32=float32,
        int8=int8,
        validation=details,
        drop=options.drop,
        path_mflops={"ee": path_mflops[0], "ef": path_mflops[1]},
        base_mflops=base_mflops,
        runtime=runtime_name(),
        kernels=runtime.kernels,
        num_threads=runtime.threads,
        int8_size_reduction_pct=size_reduction(float32, int8, "size_kb"),
        int8_weights_reduction_pct=size_reduction(float32, int8, "weights_kb"),
        target=target_summary(target, int8.exit_rate, details, log) if target else None,
    )
    if options.mcu:
        export = mcu_measure.McuExport(
            results_dir / "export", model_name, models["int8"], test[0][: options.mcu_samples], rho
        )
        mcu = on_mcu(task, export, results_dir, list(options.mcu), summary, curves["int8"], log)
        summary = dataclasses.replace(summary, mcu=mcu)
    report.write_json(results_dir / "deploy.json", summary.to_json())
    plots.benefit_figure(
        {f"LiteRT {p}": curves[p] for p in PRECISIONS},
        (float32.base_accuracy, base_mflops),
        f"{task.TITLE}, {model_name}: LiteRT float32 vs int8\n(cross: float32 base "
        f"model; int8 base model {int8.base_accuracy:.2f} %)",
        results_dir / "int8_vs_float",
    )
    files.write_text(results_dir / "deploy.md", markdown.deploy_markdown(summary, task))
    return summary


def target_summary(
    target: target_cost.EarlyExitCost, exit_rate: float, details: RhoChoice | None, log: Callable[[str], None] = print
) -> TargetCostResult:
    """The `TargetCostResult` of the deployed models (`target`: their `EarlyExitCost`) at the int8 test
    exit rate: whether early exit pays there. Says plainly when it does not: a rho chosen on validation
    (`details`, a `RhoChoice`) that saves nothing within the drop (deploy the base model), or a given rho
    (`details` None) below the break-even exit rate."""
    saving = target.saving_pct(exit_rate)
    break_even = target.break_even_exit_rate
    where = f"on {target.target}"
    log(
        f"  {where} (predicted): stage 1 {target.stage1 / 1e6:.3f} M, stage 2 {target.stage2 / 1e6:.3f} M, base "
        f"{target.base / 1e6:.3f} M instructions; at the int8 test exit rate {exit_rate:.3f}: "
        f"{target.expected(exit_rate) / 1e6:.3f} M, saving {saving:.1f} % (break-even exit rate {break_even:.3f})"
    )
    deploy, message = "early exit", None
    if details is not None and details.saves is False:
        deploy = "base model"
        message = (
            f"no rho within {details.drop:g} point(s) of the base model saves instructions {where}: "
            f"early exit costs more than the base model at every exit rate the validation split reaches "
            f"(break-even exit rate {break_even:.3f}); deploy the base model. The numbers below are for the "
            f"cheapest rho, {details.rho:.4f}"
        )
        log(f"  NOTE: {message}")
    elif saving <= 0:
        message = (
            f"at this rho the early exit costs more {where} than the base model: {exit_rate:.3f} of the "
            f"samples exit, it saves only above an exit rate of {break_even:.3f}"
        )
        log(f"  WARNING: {message}")
    return TargetCostResult(
        target=target.target,
        instructions={"stage1": target.stage1, "stage2": target.stage2, "base": target.base},
        break_even_exit_rate=break_even,
        exit_rate=exit_rate,
        expected_instructions=target.expected(exit_rate),
        instruction_saving_pct=saving,
        saves=saving > 0,
        deploy=deploy,
        message=message,
    )


def on_mcu(
    task: tasks.Task,
    export: mcu_measure.McuExport,
    results_dir: pathlib.Path,
    targets: Sequence[tuple[str, str]],
    summary: DeploySummary,
    int8_curve: sweep.Curve,
    log: Callable[[str], None],
) -> McuResults:
    """Run the int8 `export` (in results_dir/export) on the MCU `targets`; writes mcu_layers.csv and
    mcu_benefit.png/.pdf in `results_dir` and returns the `McuResults`. summary: the `DeploySummary` so far."""
    # The benefit curve with the cost in instructions: each rho's exit fractions weigh the two paths.
    core, kernels = ("cortex-m4", "cmsis-nn") if ("cortex-m4", "cmsis-nn") in targets else targets[0]
    measured, layers = mcu_measure.measure_targets(export, targets, summary.int8, log)
    report.write_rows_csv(results_dir / "mcu_layers.csv", layers, mcu_measure.LAYER_COLUMNS)
    counts = next(t for t in measured if (t.core, t.kernels) == (core, kernels)).instructions
    stage1, stage2, base = (counts[name]["mean"] for name in ("stage1", "stage2", "base"))
    in_instructions = dataclasses.replace(int8_curve, mflops=int8_curve.exit_fraction @ [stage1, stage1 + stage2] / 1e6)
    base_accuracy = summary.int8.base_accuracy
    plots.benefit_panels(
        [
            {
                "curves": {"LiteRT int8": int8_curve},
                "base_point": (base_accuracy, summary.base_mflops),
                "title": f"{task.TITLE}, {export.model_name}, int8: FLOPs",
            },
            {
                "curves": {f"TFLM int8, {core} ({kernels})": in_instructions},
                "base_point": (base_accuracy, base / 1e6),
                "title": f"executed instructions, emulated {core} (not cycles)",
                "unit": "M instructions",
            },
        ],
        results_dir / "mcu_benefit",
    )
    return McuResults(
        samples=int(len(export.inputs)), note=mcu_measure.NOTE, targets=measured, figure_target=f"{core} ({kernels})"
    )


def calibration_inputs(
    task: tasks.Task, folder: str | os.PathLike, n: int, given: bool = True
) -> tuple[np.ndarray, str]:
    """(inputs, where from): `n` int8 calibration inputs from the training split in `folder`, or, when
    `folder` holds no training split but is laid out as the task's test set, drawn from it (seeded): a
    representative set needs no labels. UserError naming both layouts and --calibration-data when it is
    neither; given: whether --calibration-data named `folder` (else it is the --train-data-dir's default)."""
    training_problem = "the task draws none from it"
    if task.calibration_set is not None:  # optional in the task protocol
        try:
            return task.calibration_set(folder, n=n), "the training split"
        except UserError as err:
            training_problem = str(err).split("; ")[0]  # the problem, without a fix that names another flag
    try:
        inputs = task.load_test(folder)[0]
    except UserError:
        where = (
            f"--calibration-data {folder}"
            if given
            else f"int8 calibration reads {n} inputs from --calibration-data, by default the --train-data-dir, "
            f"{folder}, which"
        )
        raise UserError(
            f"{where} holds neither the training split ({training_problem}) nor a test set ({task.DATA_LAYOUT}); "
            "pass --calibration-data DIR holding either (labels are not read)"
        ) from None
    if len(inputs) == 0:
        raise UserError(f"--calibration-data {folder}: no input could be read; pass a folder holding some")
    return inputs[tasks.sample_rows(len(inputs), n)], "the test-layout folder"


def run_deploy(
    task_or_name: str | tasks.Task,
    model: str,
    *,
    source: str = "pretrained",
    folders: DeployFolders,
    options: DeployOptions = DeployOptions(),
    log: Callable[[str], None] = print,
) -> tuple[DeploySummary, pathlib.Path]:
    """What `deploy.sh` does: deploy `model` of a task (a `Task` or its name) against its base model.

    source: "pretrained" or "trained" (from `folders.models`/TASK/MODEL); folders: where the data is read
    and the results written (`DeployFolders`); options: `DeployOptions`, rho chosen on the validation
    split in `folders.train_data` when `options.rho` is None. A missing model, a model without an early
    exit or a missing or damaged MCU toolchain raise UserError before any data is read.

    Returns (the `DeploySummary`, the results folder).
    """
    task = tasks.load_task(task_or_name)
    if model not in task.MODELS:
        raise UserError(f"unknown model {model!r} for {task.NAME}; valid models: {', '.join(task.MODELS)}")
    if options.rho is None and task.validation_set is None:  # optional in the task protocol
        raise UserError(f"task {task.NAME} defines no validation_set to choose rho on; pass --rho R")
    if options.mcu:  # every check of the MCU path before the minutes of LiteRT work that precede it
        mcu_build.check_prerequisites()
        mcu_build.check_cache_writable()
    out = pathlib.Path(folders.results) if folders.results else tasks.results_dir(task) / DEFAULT_SUBFOLDER
    out = files.check_output_folder(out, "--results-dir", whole=True)
    nets = weights.load_nets(task, source, folders.models, ("base", model))  # a missing model fails here
    split_stages(nets[model])  # and a model without an early exit here, before any data is read
    test_dir = tasks.test_data_dir(task, folders.test_data)
    train_dir = tasks.data_dir(task, folders.train_data)
    inputs, labels, _ = task.load_test(test_dir)
    log(f"{task.NAME}: {len(labels)} test samples from {test_dir}")
    validation = None
    if options.rho is None:
        validation = task.validation_set(train_dir)
        log(f"{len(validation[1])} validation samples from {train_dir}")
    calibration_dir = pathlib.Path(folders.calibration_data or train_dir)
    calibration, calibration_from = calibration_inputs(
        task, calibration_dir, options.calibration_samples, given=folders.calibration_data is not None
    )
    log(f"{len(calibration)} int8 calibration samples from {calibration_from} in {calibration_dir}")
    data = DeployData(
        models=source,
        test=os.path.abspath(test_dir),
        validation=os.path.abspath(train_dir) if validation is not None else None,
        calibration=os.path.abspath(calibration_dir),
        calibration_from=calibration_from,
        calibration_samples=int(len(calibration)),
    )
    summary = deploy(
        Deployment(task, model, nets[model], nets["base"]),
        DeployInputs((inputs, labels), calibration, data, validation),
        out,
        options=options,
        log=log,
    )
    return summary, out
