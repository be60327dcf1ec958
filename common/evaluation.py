"""Evaluate early-exit models on a test set: traces, FLOPs, benefit curves, tables and figures.

Each model runs once over the test set, keeping every exit's softmax; everything else (the threshold
sweep over rho, the trade-off points) is computed from those arrays.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from common import files, flops, plots, report, sweep, target_cost, tasks
from common.errors import UserError
from common.weights import load_nets, select_trained

if TYPE_CHECKING:
    from common.models import ExitModel

PREDICT_BATCH = 500  # large batches keep inference fast on a CPU
TARGET_UNIT = "M executed instructions per sample, predicted by the target's cost model (common/target_cost.py)"
INSTRUCTION_FIGURE_SUFFIX = "_instructions"


class _NotRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning. TensorFlow counts traces by the
    Python code of the function, so it fires when `predict_exits` compiles its fifth model, although
    each model's forward pass is traced exactly once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NotRetracing())


def predict_exits(net: ExitModel, inputs: np.ndarray, batch_size: int = PREDICT_BATCH) -> dict[str, np.ndarray]:
    """{exit name: softmax (N, classes) float32} from one batched pass.

    A compiled forward pass over slices of the in-memory inputs: the same computation as
    `model.predict`, without its per-batch data-adapter and callback overhead (about 30 % faster).
    """
    model = net.model

    @tf.function(input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    def forward(batch: tf.Tensor) -> list[tf.Tensor]:
        outputs = model(batch, training=False)
        return outputs if isinstance(outputs, list) else [outputs]

    batches = [forward(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    return {name: np.concatenate([b[k].numpy() for b in batches]) for k, name in enumerate(net.exits)}


def run_test(
    task: str | tasks.Task,
    source: str,
    models_dir: str | os.PathLike | None,
    data_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    names: Sequence[str] = (),
    log: Callable[[str], None] = print,
    target: str | None = target_cost.DEFAULT_TARGET,
    show_table: bool = True,
) -> tuple[dict[str, Any], pathlib.Path]:
    """test.sh: evaluate the task's models (pretrained or trained: all, or those in `names`; for trained,
    every one that exists when none are named) on its test set and write the results
    (`evaluate_models`, costs also in `target`'s predicted instructions unless it is None). The
    trade-off baseline is the evaluated `base`, else the pretrained one; show_table: log the task's Table 1
    (reproduce.sh logs the whole table once, at the end). Returns (summary, results folder)."""
    task = tasks.load_task(task)
    if source == "trained":
        names, untrained = select_trained(task, models_dir, names)
        if untrained:
            log(f"not trained in {models_dir}, so not evaluated: {', '.join(untrained)}")
    else:
        names = tasks.check_models(task, names)
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
    nets = load_nets(task, source, models_dir, names)
    baseline = {"model": "base", "source": source}
    if "base" not in nets:
        nets = {"base": load_nets(task, "pretrained", None, ["base"])["base"], **nets}
        baseline["source"] = "pretrained"
        log("trade-off baseline: the pretrained base model (base is not among the evaluated models)")
    summary = evaluate_models(
        task,
        nets,
        inputs,
        labels,
        ids,
        results_dir,
        log,
        skipped=skipped,
        source=source,
        baseline=baseline,
        target=target,
        data_dir=data_dir,
    )
    if show_table:
        log((results_dir / "table1.md").read_text())
    for name, result in summary["models"].items():
        accuracy = ", ".join(f"{e} {a:.2f}%" for e, a in result["accuracy"].items())
        mflops = ", ".join(f"{e} {m:.2f}" for e, m in result["mflops"].items())
        instructions = (
            f"; M instructions on {target}: " + ", ".join(f"{e} {m:.2f}" for e, m in result["minstructions"].items())
            if "minstructions" in result
            else ""
        )
        log(f"{name:<15} accuracy: {accuracy}; MFLOPs: {mflops}{instructions}")
    return summary, results_dir


def _stale_outputs(task):
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
    inputs: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    results_dir: str | os.PathLike,
    log: Callable[[str], None] = print,
    skipped: Sequence[tuple[str, str]] = (),
    source: str = "pretrained",
    baseline: dict[str, str] | None = None,
    target: str | None = target_cost.DEFAULT_TARGET,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run every model of `nets` ({name: ExitModel}, `base` among them) and write the results.

    Writes summary.json, traces/NAME.npz, benefit_curve_NAME.csv, table1.md and the task's figures
    under `results_dir`, replacing an earlier run's as a whole (common.files.staged_folder); returns the
    summary dict. skipped: (id, reason) of test inputs found but not scored; source: where the models'
    weights came from; baseline: {"model": "base", "source": ...} of the trade-off baseline; target:
    the microcontroller whose predicted instructions (common.target_cost) are reported beside the
    MFLOPs, or None; data_dir: the folder the inputs were read from, recorded (absolute) in the summary.
    """
    with files.staged_folder(results_dir, _stale_outputs(task)) as staging:
        return _evaluate(
            task,
            nets,
            inputs,
            labels,
            ids,
            staging,
            log,
            skipped,
            source,
            baseline or {"model": "base", "source": source},
            target,
            data_dir,
        )


def _evaluate(task, nets, inputs, labels, ids, results_dir, log, skipped, source, baseline, target, data_dir):
    cost_model = target_cost.load_cost_model(target) if target else None
    traces, costs, instructions = {}, {}, {}
    for name, net in nets.items():
        log(f"{name}: predicting {len(inputs)} samples")
        traces[name] = predict_exits(net, inputs)
        costs[name] = flops.path_mflops(net.model)
        if cost_model:
            try:
                instructions[name] = [v / 1e6 for v in target_cost.path_instructions(net.model, cost_model)]
            except ValueError as err:  # a layer or operator the cost model does not know: no prediction
                log(f"{name}: no instruction prediction on {target} ({err})")
        _save_trace(results_dir / "traces" / f"{name}.npz", ids, labels, traces[name])

    if "base" not in instructions:
        cost_model = None  # nothing to compare the others with
    base_accuracy = sweep.standalone_accuracy(traces["base"]["ef"], labels)
    base_mflops = costs["base"][0]
    curves, instruction_curves, summary_models = {}, {}, {}
    for name, net in nets.items():
        curves[name] = sweep.benefit_curve(list(traces[name].values()), labels, costs[name], net.rule)
        summary_models[name] = {
            "exits": list(net.exits),
            "accuracy": {e: sweep.standalone_accuracy(p, labels) for e, p in traces[name].items()},
            "mflops": dict(zip(net.exits, costs[name])),
            "params": int(net.model.count_params()),
            "tradeoff": sweep.tradeoff_points(curves[name], base_accuracy, base_mflops),
        }
        in_target = None
        if cost_model and name in instructions:
            in_target = sweep.mean_cost(curves[name], instructions[name])
            instruction_curves[name] = dataclasses.replace(curves[name], mflops=in_target)
            summary_models[name].update(
                _target_costs(
                    curves[name],
                    in_target,
                    net.exits,
                    instructions[name],
                    instructions["base"][0],
                    base_accuracy,
                    summary_models[name]["tradeoff"],
                )
            )
        report.write_curve_csv(
            results_dir / f"benefit_curve_{name}.csv",
            curves[name],
            net.exits,
            {f"minstructions_{target}": in_target} if in_target is not None else {},
        )
    summary = {
        "task": task.NAME,
        "num_samples": int(len(labels)),
        "inputs": {
            "folder": os.path.abspath(data_dir) if data_dir is not None else None,
            "found": int(len(labels)) + len(skipped),
            "scored": int(len(labels)),
            "skipped": [{"id": name, "reason": reason} for name, reason in skipped],
        },
        "source": source,
        "baseline": baseline,
        "models": summary_models,
        "paper": task.PAPER,
    }
    if cost_model:
        summary["target"] = {"name": target, "unit": TARGET_UNIT, "cost_model": target_cost.COST_FILE.name}
    report.write_json(results_dir / "summary.json", summary)
    report.write_text(
        results_dir / "table1.md", report.table1_markdown([table1_row(task, summary)]) + run_notes(summary)
    )

    for figure, (title, members, log_y) in task.FIGURES.items():
        present = {label: curves[m] for label, m in members.items() if m in curves}
        if present:
            plots.benefit_figure(present, (base_accuracy, base_mflops), title, results_dir / figure, log_y=log_y)
        if present and cost_model and all(m in instruction_curves for m in members.values() if m in curves):
            plots.benefit_panels(
                [
                    {
                        "curves": {label: instruction_curves[m] for label, m in members.items() if m in curves},
                        "base_point": (base_accuracy, instructions["base"][0]),
                        "title": f"{title}\non {target} (predicted executed instructions)",
                        "log_y": log_y,
                        "unit": "M instructions",
                    }
                ],
                results_dir / f"{figure}{INSTRUCTION_FIGURE_SUFFIX}",
            )
    return summary


def _target_costs(curve, in_target, exits, path_instructions, base, base_accuracy, flops_points):
    """A model's summary entries in the target's predicted M instructions (`in_target`: per rho of
    `curve`; `path_instructions`: per exit path; `base`: the base model's): per exit path, the trade-off
    points chosen in them, and the instruction saving at the rho of each FLOPs trade-off point
    (`flops_points`, None where that point does not exist)."""
    at_flops_points = []
    for point in flops_points:
        at = np.flatnonzero(curve.rho == point["rho"])[:1] if point["rho"] is not None else []
        at_flops_points.append(float(100.0 * (1.0 - in_target[at[0]] / base)) if len(at) else None)
    return {
        "minstructions": dict(zip(exits, path_instructions)),
        "tradeoff_target": sweep.tradeoff_points(curve, base_accuracy, base, cost=in_target, unit="minstructions"),
        "instruction_reduction_pct_at_flops_tradeoff": at_flops_points,
    }


def run_notes(summary: Mapping[str, Any]) -> str:
    """Markdown notes under a task's Table 1: the inputs skipped (counted and named) and where the models
    and the baseline came from, when not the pretrained weights."""
    inputs, notes = summary.get("inputs"), []
    if inputs and inputs["skipped"]:
        named = "; ".join(f"{s['id']} ({s['reason']})" for s in inputs["skipped"][:20])
        more = f"; and {len(inputs['skipped']) - 20} more (summary.json)" if len(inputs["skipped"]) > 20 else ""
        notes.append(
            f"{summary['task']}: {inputs['found']} test inputs found, {inputs['scored']} scored, "
            f"{len(inputs['skipped'])} skipped: {named}{more}."
        )
    if summary.get("source") == "trained":
        baseline = summary.get("baseline", {}).get("source", "trained")
        notes.append(f"{summary['task']}: your trained models; trade-off baseline: the {baseline} base model.")
    return "".join(f"\n{note}\n" for note in notes)


def table1_row(task: tasks.Task, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The task's Table 1 row: measured from `summary` (base and trecx_ev), and the paper's."""
    models = summary["models"]
    base, trecx = models["base"], models.get("trecx_ev")
    inputs = summary.get("inputs", {})
    measured = {
        "test_samples": summary["num_samples"],
        "test_skipped": len(inputs.get("skipped", [])),
        "test_folder": inputs.get("folder"),
        "baseline_accuracy": base["accuracy"]["ef"],
        "baseline_mflops": base["mflops"]["ef"],
        "baseline_params": base["params"],
    }
    if trecx is not None:
        measured.update(
            tradeoff_mflops=[p["mflops"] for p in trecx["tradeoff"]],
            tradeoff_reduction_pct=[p["reduction_pct"] for p in trecx["tradeoff"]],
            trecx_params=trecx["params"],
            standalone_ee=trecx["accuracy"]["ee"],
            standalone_ef=trecx["accuracy"]["ef"],
        )
    if "target" in summary:
        measured.update(target=summary["target"]["name"], baseline_minstructions=base["minstructions"]["ef"])
        if trecx is not None and "tradeoff_target" in trecx:
            measured.update(
                instruction_reduction_pct_at_flops_tradeoff=trecx["instruction_reduction_pct_at_flops_tradeoff"],
                tradeoff_instruction_reduction_pct=[p["reduction_pct"] for p in trecx["tradeoff_target"]],
            )
    return {"model": task.TITLE, "measured": measured, "paper": tasks.table1_paper(task)}


def _save_trace(path, ids, labels, softmaxes):
    files.save_npz(path, ids=ids, labels=labels, **softmaxes)


NUMBER, WHOLE, TEXT, NUMBER_OR_NONE, TEXT_OR_NONE = (int, float), int, str, (int, float, type(None)), (str, type(None))
# What Table 1 and its notes read of a summary.json: key path -> type ("*": every entry of a list); the
# trecx_ev keys when that model was evaluated, the inputs and baseline keys when they are there (the test
# set's folder, too: summaries written before it was recorded have none).
SUMMARY_KEYS = {
    ("task",): TEXT,
    ("num_samples",): WHOLE,
    ("models", "base", "accuracy", "ef"): NUMBER,
    ("models", "base", "mflops", "ef"): NUMBER,
    ("models", "base", "params"): WHOLE,
}
TRECX_KEYS = {
    ("models", "trecx_ev", "params"): WHOLE,
    ("models", "trecx_ev", "accuracy", "ee"): NUMBER,
    ("models", "trecx_ev", "accuracy", "ef"): NUMBER,
    ("models", "trecx_ev", "tradeoff"): list,
    ("models", "trecx_ev", "tradeoff", "*", "mflops"): NUMBER_OR_NONE,  # None: no point that accurate
    ("models", "trecx_ev", "tradeoff", "*", "reduction_pct"): NUMBER_OR_NONE,
}
INPUTS_KEYS = {
    ("inputs", "found"): WHOLE,
    ("inputs", "scored"): WHOLE,
    ("inputs", "skipped"): list,
    ("inputs", "skipped", "*", "id"): TEXT,
    ("inputs", "skipped", "*", "reason"): TEXT,
}
FOLDER_KEYS = {("inputs", "folder"): TEXT_OR_NONE}
BASELINE_KEYS = {("baseline", "source"): TEXT}
TARGET_KEYS = {("target", "name"): TEXT, ("models", "base", "minstructions", "ef"): NUMBER}
TRECX_TARGET_KEYS = {
    ("models", "trecx_ev", "tradeoff_target", "*", "reduction_pct"): NUMBER_OR_NONE,
    ("models", "trecx_ev", "instruction_reduction_pct_at_flops_tradeoff", "*"): NUMBER_OR_NONE,
}
TYPE_NAMES = {
    NUMBER: "a number",
    WHOLE: "a whole number",
    TEXT: "a string",
    list: "a list",
    NUMBER_OR_NONE: "a number or null",
    TEXT_OR_NONE: "a string or null",
}


def _check_summary(path, summary, task_name):
    """UserError naming `path` and the key when `summary` lacks what Table 1 reads, holds it with another
    type, has an empty trade-off list, or is another task's."""

    def fail(key, problem):
        raise UserError(
            f"{path} is damaged: {'.'.join(map(str, key)) or 'the file'} {problem}; run bash "
            f"{task_name}/test.sh again to rewrite it"
        )

    def values(node, key, done=()):
        """(key path, value) of every value at `key` under `node`."""
        if not key:
            yield done, node
        elif key[0] == "*":
            if not isinstance(node, list):
                fail(done, "is not a list")
            for i, item in enumerate(node):
                yield from values(item, key[1:], (*done, i))
        else:
            if not isinstance(node, dict) or key[0] not in node:
                fail((*done, key[0]), "is missing")
            yield from values(node[key[0]], key[1:], (*done, key[0]))

    if not isinstance(summary, dict):
        fail((), "is not a JSON object")
    models = summary.get("models")
    has_trecx = isinstance(models, dict) and "trecx_ev" in models
    keys = {
        **SUMMARY_KEYS,
        **(TRECX_KEYS if has_trecx else {}),
        **(INPUTS_KEYS if "inputs" in summary else {}),
        **(FOLDER_KEYS if isinstance(summary.get("inputs"), dict) and "folder" in summary["inputs"] else {}),
        **(BASELINE_KEYS if "baseline" in summary else {}),
        **(TARGET_KEYS if "target" in summary else {}),
        **(TRECX_TARGET_KEYS if "target" in summary and has_trecx and "tradeoff_target" in models["trecx_ev"] else {}),
    }
    for key, kind in keys.items():
        for where, value in values(summary, key):
            if not isinstance(value, kind) or isinstance(value, bool):
                fail(where, f"is {type(value).__name__}, expected {TYPE_NAMES[kind]}")
    if has_trecx and not models["trecx_ev"]["tradeoff"]:
        fail(("models", "trecx_ev", "tradeoff"), "is empty (expected the 1, 2 and 3 point trade-offs)")
    if summary["task"] != task_name:
        raise UserError(
            f"{path} holds results of task {summary['task']!r}, not of {task_name}, the folder it is "
            f"in; move it to {summary['task']}/ or run bash {task_name}/test.sh again"
        )


def write_table1(results_root: str | os.PathLike) -> str:
    """Table 1 over every task with RESULTS_ROOT/TASK/summary.json, and the headline (the mean FLOPs
    reduction at the 1 % point) when every row has it; written to RESULTS_ROOT/table1.md, returned."""
    results_root = pathlib.Path(results_root)
    files.recover(results_root)  # a reproduce.sh killed while replacing the results
    text = table1_text(results_root)
    files.write_text(results_root / "table1.md", text)
    return text


def table1_text(results_root: str | os.PathLike, folders: Mapping[str, pathlib.Path] | None = None) -> str:
    """Table 1 over every task with a summary.json in folders[TASK] (default RESULTS_ROOT/TASK), and the
    headline (the mean FLOPs reduction at the 1 % point) when every row has it."""
    results_root, folders = pathlib.Path(results_root), folders or {}
    rows, reductions, savings, notes = [], [], [], ""
    for name in tasks.task_names():
        folder = folders.get(name, results_root / name)
        files.recover(folder)  # a test.sh killed while replacing its results
        path = folder / "summary.json"
        if path.is_file():
            task = tasks.load_task(name)  # a task whose package is gone: one message naming it
            try:
                summary = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as err:
                raise UserError(
                    f"{path} is damaged ({type(err).__name__}: {err}); run bash {name}/test.sh again to rewrite it"
                ) from None
            _check_summary(path, summary, name)
            rows.append(table1_row(task, summary))
            notes += run_notes(summary)
            reductions.append(rows[-1]["measured"].get("tradeoff_reduction_pct", [None])[0])
            target = rows[-1]["measured"].get("target")
            savings.append((target, rows[-1]["measured"].get("tradeoff_instruction_reduction_pct", [None])[0]))
    if not rows:
        raise UserError(f"no TASK/summary.json under {results_root}; run the tasks' test.sh first")
    text = report.table1_markdown(rows) + notes
    if None not in reductions:
        text += (
            f"\nMean FLOPs reduction at the 1 % trade-off point over {len(reductions)} task(s): "
            f"{sum(reductions) / len(reductions):.2f} % (paper, over all three tasks: "
            f"{tasks.PAPER_MEAN_REDUCTION_PCT} %)\n"
        )
    targets = {target for target, _ in savings}
    if len(targets) == 1 and None not in targets and None not in [saving for _, saving in savings]:
        text += (
            f"Mean predicted instruction saving on {targets.pop()} at the 1 % trade-off point chosen in "
            f"instructions, over {len(savings)} task(s): {sum(s for _, s in savings) / len(savings):.2f} %\n"
        )
    return text


def reproduce(
    names: Sequence[str],
    data_root: str | os.PathLike,
    results_root: str | os.PathLike,
    mirror: str | None = None,
    verify_checksums: bool = True,
    log: Callable[[str], None] = print,
    target: str | None = target_cost.DEFAULT_TARGET,
) -> str:
    """reproduce.sh: for each task (all when `names` is empty) download what its test split needs into
    DATA_ROOT/TASK unless its test set is in place (from `mirror`, a URL or folder holding the official
    archives, when given), build the test set where the task builds one (`prepare_test`), evaluate the
    pretrained models into RESULTS_ROOT/TASK (costs also in `target`'s predicted instructions unless it
    is None); then Table 1 over them. The results of every task run and Table 1 replace the earlier ones as
    a whole (common.files.staged_folder over RESULTS_ROOT; the other tasks' results and other files there
    are kept). Returns the Table 1 text."""
    task_modules = [tasks.load_task(name) for name in names or tasks.task_names()]
    results_root = files.check_output_folder(results_root, "--results-root", whole=True)
    stale = ["table1.md", *(f"{task.NAME}/{pattern}" for task in task_modules for pattern in _stale_outputs(task))]
    with files.staged_folder(results_root, stale) as staging:
        for task in task_modules:
            log(f"== {task.NAME}")
            data_dir = pathlib.Path(data_root) / task.NAME
            folder = task.download(data_dir, mirror, split="test", verify_checksums=verify_checksums)
            log(f"data ready in {folder}")
            if task.prepare_test is not None:
                task.prepare_test(data_dir)
            run_test(
                task,
                "pretrained",
                None,
                tasks.folder_test_sh_reads(task, data_dir),
                staging / task.NAME,
                log=log,
                target=target,
                show_table=False,
            )
        text = table1_text(results_root, {task.NAME: staging / task.NAME for task in task_modules})
        files.write_text(staging / "table1.md", text)
    return text
