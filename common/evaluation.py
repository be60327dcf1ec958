"""test.sh: evaluate a task's early-exit models on its test set: traces, FLOPs, benefit curves, the
summary (common.summary), the task's Table 1 and its figures.

Each model runs once over the test set, keeping every exit's softmax (common.predict); everything else
(the threshold sweep over rho, the trade-off points) is computed from those arrays.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from common import files, flops, plots, report, sweep, target_cost, tasks
from common.errors import UserError
from common.predict import predict_exits
from common.summary import (
    Baseline,
    InputsRecord,
    InstructionTradeoffPoint,
    ModelResult,
    SkippedInput,
    Summary,
    TargetRecord,
    TradeoffPoint,
)
from common.table1 import run_notes, table1_row
from common.weights import load_nets, select_trained

if TYPE_CHECKING:
    from common.models import ExitModel

TARGET_UNIT = "M executed instructions per sample, predicted by the target's cost model (common/target_cost.py)"
INSTRUCTION_FIGURE_SUFFIX = "_instructions"


@dataclasses.dataclass(frozen=True)
class ModelSelection:
    """Which models test.sh evaluates: where their weights come from ("pretrained" or "trained"), the
    folder of trained models (MODELS_DIR, None for pretrained) and their names (none: all; for trained,
    every one that exists)."""

    source: str
    models_dir: str | os.PathLike | None = None
    names: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class EvaluationInputs:
    """The test set in memory: inputs (N, ...), labels (N,), ids (N,); skipped: (id, reason) of the
    inputs found but not scored; folder: where they were read from, recorded (absolute) in the summary."""

    inputs: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    skipped: Sequence[tuple[str, str]] = ()
    folder: str | os.PathLike | None = None


def run_test(
    task: str | tasks.Task,
    models: ModelSelection,
    data_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    target: str | None = target_cost.DEFAULT_TARGET,
    show_table: bool = True,
) -> tuple[Summary, pathlib.Path]:
    """test.sh: evaluate the task's `models` on its test set and write the results (`evaluate_models`,
    costs also in `target`'s predicted instructions unless it is None). The trade-off baseline is the
    evaluated `base`, else the pretrained one; show_table: log the task's Table 1 (reproduce.sh logs the
    whole table once, at the end). Returns (summary, results folder)."""
    task = tasks.load_task(task)
    source = models.source
    if source == "trained":
        names, untrained = select_trained(task, models.models_dir, models.names)
        if untrained:
            log(f"not trained in {models.models_dir}, so not evaluated: {', '.join(untrained)}")
    else:
        names = tasks.check_models(task, models.names)
    results_dir = files.check_output_folder(tasks.results_dir(task, results_dir), "--results-dir", whole=True)
    data_dir = tasks.test_data_dir(task, data_dir)
    loaded = task.load_test(data_dir)
    inputs, labels, ids = loaded
    skipped = tasks.skipped_inputs(loaded)
    if len(labels) == 0:
        raise UserError(
            f"no test sample could be read from {data_dir} ({len(skipped)} skipped); it should hold {task.DATA_LAYOUT}"
        )
    log(f"{task.NAME}: {len(labels)} test samples from {data_dir}" + (f" ({len(skipped)} skipped)" if skipped else ""))
    nets = load_nets(task, source, models.models_dir, names)
    baseline = Baseline("base", source)
    if "base" not in nets:
        nets = {"base": load_nets(task, "pretrained", None, ["base"])["base"], **nets}
        baseline = Baseline("base", "pretrained")
        log("trade-off baseline: the pretrained base model (base is not among the evaluated models)")
    data = EvaluationInputs(inputs, labels, ids, skipped, data_dir)
    summary = evaluate_models(task, nets, data, results_dir, log, source=source, baseline=baseline, target=target)
    if show_table:
        log((results_dir / "table1.md").read_text())
    for name, result in summary.models.items():
        accuracy = ", ".join(f"{e} {a:.2f}%" for e, a in result.accuracy.items())
        mflops = ", ".join(f"{e} {m:.2f}" for e, m in result.mflops.items())
        instructions = (
            f"; M instructions on {target}: " + ", ".join(f"{e} {m:.2f}" for e, m in result.minstructions.items())
            if result.minstructions is not None
            else ""
        )
        log(f"{name:<15} accuracy: {accuracy}; MFLOPs: {mflops}{instructions}")
    return summary, results_dir


def stale_outputs(task: tasks.Task) -> list[str]:
    """Glob patterns of what test.sh writes: an earlier run's files that a new run did not rewrite."""
    figures = [
        f"{figure}{suffix}.{ext}"
        for figure in task.FIGURES
        for suffix in ("", INSTRUCTION_FIGURE_SUFFIX)
        for ext in ("png", "pdf")
    ]
    return ["summary.json", "table1.md", "traces/*.npz", "benefit_curve_*.csv", *figures]


def evaluate_models(
    task: tasks.Task,
    nets: Mapping[str, ExitModel],
    data: EvaluationInputs,
    results_dir: str | os.PathLike,
    log: Callable[[str], None] = print,
    source: str = "pretrained",
    baseline: Baseline | None = None,
    target: str | None = target_cost.DEFAULT_TARGET,
) -> Summary:
    """Run every model of `nets` ({name: ExitModel}, `base` among them) on `data` and write the results.

    Writes summary.json, traces/NAME.npz, benefit_curve_NAME.csv, table1.md and the task's figures
    under `results_dir`, replacing an earlier run's as a whole (common.files.staged_folder); returns the
    summary. source: where the models' weights came from; baseline: the trade-off baseline (default the
    base model from `source`); target: the microcontroller whose predicted instructions
    (common.target_cost) are reported beside the MFLOPs, or None.
    """
    with files.staged_folder(results_dir, stale_outputs(task)) as staging:
        return _evaluate(task, nets, data, staging, log, source, baseline or Baseline("base", source), target)


@dataclasses.dataclass(frozen=True)
class _Measured:
    """Every model's exit softmaxes over the test set, MFLOPs per exit path and, where the target's cost
    model prices every layer, M instructions per exit path."""

    traces: dict[str, dict[str, np.ndarray]]
    mflops: dict[str, list[float]]
    minstructions: dict[str, list[float]]


def _measure(
    nets: Mapping[str, ExitModel],
    data: EvaluationInputs,
    results_dir: pathlib.Path,
    log: Callable[[str], None],
    target: str | None,
) -> _Measured:
    """Predict with every model (its trace written to results_dir/traces/NAME.npz) and count its costs."""
    cost_model = target_cost.load_cost_model(target) if target else None
    measured = _Measured({}, {}, {})
    for name, net in nets.items():
        log(f"{name}: predicting {len(data.inputs)} samples")
        measured.traces[name] = predict_exits(net, data.inputs)
        measured.mflops[name] = flops.path_mflops(net.model)
        if cost_model:
            try:
                measured.minstructions[name] = [v / 1e6 for v in target_cost.path_instructions(net.model, cost_model)]
            except ValueError as err:  # a layer or operator the cost model does not know: no prediction
                log(f"{name}: no instruction prediction on {target} ({err})")
        files.save_npz(
            results_dir / "traces" / f"{name}.npz", ids=data.ids, labels=data.labels, **measured.traces[name]
        )
    return measured


def _evaluate(
    task: tasks.Task,
    nets: Mapping[str, ExitModel],
    data: EvaluationInputs,
    results_dir: pathlib.Path,
    log: Callable[[str], None],
    source: str,
    baseline: Baseline,
    target: str | None,
) -> Summary:
    measured = _measure(nets, data, results_dir, log, target)
    labels = data.labels
    in_target = "base" in measured.minstructions  # else nothing to compare the others with
    base_accuracy = sweep.standalone_accuracy(measured.traces["base"]["ef"], labels)
    base_mflops = measured.mflops["base"][0]
    curves, instruction_curves, results = {}, {}, {}
    for name, net in nets.items():
        costs, instructions = measured.mflops[name], measured.minstructions.get(name)
        curves[name] = sweep.benefit_curve(list(measured.traces[name].values()), labels, costs, net.rule)
        results[name] = ModelResult(
            exits=list(net.exits),
            accuracy={e: sweep.standalone_accuracy(p, labels) for e, p in measured.traces[name].items()},
            mflops=dict(zip(net.exits, costs)),
            params=int(net.model.count_params()),
            tradeoff=[TradeoffPoint(**p) for p in sweep.tradeoff_points(curves[name], base_accuracy, base_mflops)],
        )
        curve_in_target = None
        if in_target and instructions is not None:
            curve_in_target = sweep.mean_cost(curves[name], instructions)
            instruction_curves[name] = dataclasses.replace(curves[name], mflops=curve_in_target)
            base = measured.minstructions["base"][0]
            results[name] = _with_target_costs(results[name], curves[name], curve_in_target, base, base_accuracy)
            results[name] = dataclasses.replace(results[name], minstructions=dict(zip(net.exits, instructions)))
        report.write_curve_csv(
            results_dir / f"benefit_curve_{name}.csv",
            curves[name],
            net.exits,
            {f"minstructions_{target}": curve_in_target} if curve_in_target is not None else {},
        )
    summary = Summary(
        task=task.NAME,
        num_samples=int(len(labels)),
        inputs=InputsRecord(
            folder=os.path.abspath(data.folder) if data.folder is not None else None,
            found=int(len(labels)) + len(data.skipped),
            scored=int(len(labels)),
            skipped=[SkippedInput(name, reason) for name, reason in data.skipped],
        ),
        source=source,
        baseline=baseline,
        models=results,
        paper=task.PAPER,
        target=TargetRecord(target, TARGET_UNIT, target_cost.COST_FILE.name) if in_target else None,
    )
    report.write_json(results_dir / "summary.json", summary.to_json())
    report.write_text(
        results_dir / "table1.md", report.table1_markdown([table1_row(task, summary)]) + run_notes(summary)
    )
    base = (base_accuracy, base_mflops, measured.minstructions["base"][0] if in_target else None)
    _write_figures(task, curves, instruction_curves, base, target, results_dir)
    return summary


def _with_target_costs(
    result: ModelResult, curve: sweep.Curve, in_target: np.ndarray, base: float, base_accuracy: float
) -> ModelResult:
    """`result` with its trade-off points chosen in the target's predicted M instructions (`in_target`: per
    rho of `curve`; `base`: the base model's) and the instruction saving at the rho of each FLOPs
    trade-off point (None where that point does not exist)."""
    at_flops_points = []
    for point in result.tradeoff:
        at = np.flatnonzero(curve.rho == point.rho)[:1] if point.rho is not None else []
        at_flops_points.append(float(100.0 * (1.0 - in_target[at[0]] / base)) if len(at) else None)
    points = sweep.tradeoff_points(curve, base_accuracy, base, cost=in_target, unit="minstructions")
    return dataclasses.replace(
        result,
        tradeoff_target=[InstructionTradeoffPoint(**p) for p in points],
        instruction_reduction_pct_at_flops_tradeoff=at_flops_points,
    )


def _write_figures(
    task: tasks.Task,
    curves: Mapping[str, sweep.Curve],
    instruction_curves: Mapping[str, sweep.Curve],
    base: tuple[float, float, float | None],
    target: str | None,
    results_dir: pathlib.Path,
) -> None:
    """The task's benefit figures in MFLOPs and, where every model drawn has them, in the target's
    instructions. base: the base model's (accuracy %, MFLOPs, M instructions or None)."""
    base_accuracy, base_mflops, base_instructions = base
    for figure, (title, members, log_y) in task.FIGURES.items():
        present = {label: curves[m] for label, m in members.items() if m in curves}
        if present:
            plots.benefit_figure(present, (base_accuracy, base_mflops), title, results_dir / figure, log_y=log_y)
        if (
            present
            and base_instructions is not None
            and all(m in instruction_curves for m in members.values() if m in curves)
        ):
            plots.benefit_panels(
                [
                    {
                        "curves": {label: instruction_curves[m] for label, m in members.items() if m in curves},
                        "base_point": (base_accuracy, base_instructions),
                        "title": f"{title}\non {target} (predicted executed instructions)",
                        "log_y": log_y,
                        "unit": "M instructions",
                    }
                ],
                results_dir / f"{figure}{INSTRUCTION_FIGURE_SUFFIX}",
            )
