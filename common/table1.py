"""The paper's Table 1 from test.sh's results: a task's row and notes from its `Summary`, and the table
over every task's RESULTS_ROOT/TASK/summary.json (the `report` command and reproduce.sh)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

from common import files, report, tasks
from common.errors import UserError
from common.summary import Summary, load_summary


def run_notes(summary: Summary) -> str:
    """Markdown notes under a task's Table 1: the inputs skipped (counted and named) and where the models
    and the baseline came from, when not the pretrained weights."""
    inputs, notes = summary.inputs, []
    if inputs and inputs.skipped:
        named = "; ".join(f"{s.id} ({s.reason})" for s in inputs.skipped[:20])
        more = f"; and {len(inputs.skipped) - 20} more (summary.json)" if len(inputs.skipped) > 20 else ""
        notes.append(
            f"{summary.task}: {inputs.found} test inputs found, {inputs.scored} scored, "
            f"{len(inputs.skipped)} skipped: {named}{more}."
        )
    if summary.source == "trained":
        baseline = summary.baseline.source if summary.baseline else "trained"
        notes.append(f"{summary.task}: your trained models; trade-off baseline: the {baseline} base model.")
    return "".join(f"\n{note}\n" for note in notes)


def table1_row(task: tasks.Task, summary: Summary) -> dict[str, Any]:
    """The task's Table 1 row: measured from `summary` (base and trecx_ev), and the paper's."""
    base, trecx = summary.models["base"], summary.models.get("trecx_ev")
    measured = {
        "test_samples": summary.num_samples,
        "test_skipped": len(summary.inputs.skipped) if summary.inputs else 0,
        "test_folder": summary.inputs.folder if summary.inputs else None,
        "baseline_accuracy": base.accuracy["ef"],
        "baseline_mflops": base.mflops["ef"],
        "baseline_params": base.params,
    }
    if trecx is not None:
        measured.update(
            tradeoff_mflops=[p.mflops for p in trecx.tradeoff],
            tradeoff_reduction_pct=[p.reduction_pct for p in trecx.tradeoff],
            trecx_params=trecx.params,
            standalone_ee=trecx.accuracy["ee"],
            standalone_ef=trecx.accuracy["ef"],
        )
    if summary.target is not None:
        measured.update(target=summary.target.name, baseline_minstructions=base.minstructions["ef"])
        if trecx is not None and trecx.tradeoff_target is not None:
            measured.update(
                instruction_reduction_pct_at_flops_tradeoff=trecx.instruction_reduction_pct_at_flops_tradeoff,
                tradeoff_instruction_reduction_pct=[p.reduction_pct for p in trecx.tradeoff_target],
            )
    return {"model": task.TITLE, "measured": measured, "paper": tasks.table1_paper(task)}


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
            summary = load_summary(path, name)
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
