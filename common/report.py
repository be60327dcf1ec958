"""Result writers: JSON, curve CSV, the paper's Table 1 as Markdown. Every file is written atomically
(common.files)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from common.files import atomic_output, write_text
from common.sweep import Curve

MISSING = "–"


def _jsonable(obj: object) -> object:
    """Plain-Python copy of obj: numpy scalars/arrays, dataclasses, tuples and paths converted;
    NaN/inf become None so the output is strict JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write obj as indented JSON (numpy types converted, non-finite floats as null)."""
    write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def write_curve_csv(
    path: str | os.PathLike, curve: Curve, exit_names: Sequence[str], extra: dict | None = None
) -> None:
    """One row per rho: rho, accuracy_pct, mflops, the `extra` columns ({name: (R,) values}, e.g. the
    cost in a target's instructions), exit_fraction_<name> for each of the K exits."""
    if len(exit_names) != curve.exit_fraction.shape[1]:
        raise ValueError(f"{len(exit_names)} exit names given for a curve with {curve.exit_fraction.shape[1]} exits")
    extra = extra or {}
    header = ["rho", "accuracy_pct", "mflops", *extra] + [f"exit_fraction_{name}" for name in exit_names]
    table = np.column_stack([curve.rho, curve.accuracy, curve.mflops, *extra.values(), curve.exit_fraction])
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([repr(float(v)) for v in row] for row in table)


def write_rows_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """One row per dict, in `columns` order (None as an empty cell; floats to 6 significant digits)."""

    def cell(value: object) -> object:
        return "" if value is None else f"{value:.6g}" if isinstance(value, float) else value

    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([cell(row[column]) for column in columns] for row in rows)


def number(value: float | None, decimals: int = 2) -> str:
    """`value` with `decimals` decimals, or the missing-value mark."""
    return MISSING if value is None else f"{value:.{decimals}f}"


def _params(value: int | None) -> str:
    """Parameter count in the paper's style: 78.7K, 1.23M."""
    if value is None:
        return MISSING
    if value >= 1_000_000:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.1f}K" if value >= 1000 else str(int(value))


def _pair(measured: str, paper: str) -> str:
    return f"{measured} / {paper}"


def _at(values: Sequence[float | None] | None, i: int) -> float | None:
    """values[i], None when the list or the value is missing."""
    return None if values is None or i >= len(values) else values[i]


def _flops_point(values: dict, i: int) -> str:
    """MFLOPs at the i-th trade-off point with its reduction: "19.80 (21.6 %)"."""
    mflops = _at(values.get("tradeoff_mflops"), i)
    reduction = _at(values.get("tradeoff_reduction_pct"), i)
    return number(mflops) + ("" if reduction is None else f" ({reduction:.1f} %)")


def _instruction_saving(measured: dict, i: int) -> tuple[str, bool]:
    """(cell, two figures): the instructions saved at the i-th point, one figure where the FLOPs point's rho
    saves what the point chosen in instructions saves, "A (B)" where they differ."""
    at_flops = number(_at(measured.get("instruction_reduction_pct_at_flops_tradeoff"), i), 1)
    chosen = number(_at(measured.get("tradeoff_instruction_reduction_pct"), i), 1)
    return (at_flops, False) if at_flops == chosen else (f"{at_flops} ({chosen})", True)


def _count(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


DROPS = (1, 2, 3)  # accuracy points below the base model of the trade-off points, in list order


def table1_markdown(rows: list[dict]) -> str:
    """The paper's Table 1 as Markdown, as the README shows it: one row per quantity, one column per task,
    measured / paper in each cell; below it, each task's test set (samples and folder) and what a cell
    of two instruction figures means.

    rows: {"model": str, "measured": {...}, "paper": {...}}; both value dicts may hold
    baseline_accuracy (%), baseline_mflops, baseline_params (int), tradeoff_mflops and
    tradeoff_reduction_pct (3 values for 1/2/3 % accuracy drop, entries or the list may be None),
    trecx_params (int), standalone_ee, standalone_ef (%); measured may hold test_samples,
    test_skipped (ints) and test_folder, and target (name), baseline_minstructions,
    instruction_reduction_pct_at_flops_tradeoff and tradeoff_instruction_reduction_pct (3 values
    each), which add the target's rows. Missing or None values print as "–".
    """
    measured = [row.get("measured", {}) for row in rows]
    paper = [row.get("paper", {}) for row in rows]
    titles = [str(row["model"]).replace("|", "\\|") for row in rows]

    def both(cell: Callable[[dict], str]) -> list[str]:
        """A row's cells: measured / paper of `cell(values)` for each task."""
        return [_pair(cell(m), cell(p)) for m, p in zip(measured, paper)]

    table = [
        (
            "Test samples",
            [
                _count(m.get("test_samples")) + (f" ({m['test_skipped']:,} skipped)" if m.get("test_skipped") else "")
                for m in measured
            ],
        ),
        ("Baseline accuracy %", both(lambda v: number(v.get("baseline_accuracy")))),
        ("Baseline MFLOPs", both(lambda v: number(v.get("baseline_mflops")))),
        ("Baseline parameters", both(lambda v: _params(v.get("baseline_params")))),
        ("T-RecX parameters", both(lambda v: _params(v.get("trecx_params")))),
        ("Standalone accuracy %, early exit", both(lambda v: number(v.get("standalone_ee")))),
        ("Standalone accuracy %, final exit", both(lambda v: number(v.get("standalone_ef")))),
        *[(f"MFLOPs at {d} % drop (reduction)", both(lambda v, i=i: _flops_point(v, i))) for i, d in enumerate(DROPS)],
    ]
    with_target = any("target" in m for m in measured)
    two_figures = False
    if with_target:
        table += [
            ("Instructions predicted on", [m.get("target", MISSING) for m in measured]),
            ("Baseline M instructions", [number(m.get("baseline_minstructions")) for m in measured]),
        ]
        for i, d in enumerate(DROPS):
            cells = [_instruction_saving(m, i) for m in measured]
            two_figures |= any(two for _, two in cells)
            table.append((f"Instructions saved % at {d} % drop", [cell for cell, _ in cells]))
    lines = [
        f"Measured / paper, where the paper has the quantity; {MISSING} = not available. A drop: accuracy points "
        "below the baseline."
        + (
            " Instructions: executed per sample on the target, predicted by its cost model (measured only; "
            "the paper counts FLOPs)."
            if with_target
            else ""
        ),
        "",
        "| | " + " | ".join(titles) + " |",
        "|---|" + "---:|" * len(rows),
        *[f"| {label} | " + " | ".join(cells) + " |" for label, cells in table],
        "",
        "Test sets: "
        + "; ".join(
            f"{title}, {_count(m.get('test_samples'))} samples from "
            + (f"`{m['test_folder']}`" if m.get("test_folder") else "a folder summary.json does not name")
            for title, m in zip(titles, measured)
        )
        + ".",
    ]
    if two_figures:
        lines.append(
            "Instructions saved, two figures A (B): A at the rho of the FLOPs trade-off point, B at the rho chosen as "
            "the cheapest in instructions within the same drop; one figure where the two are equal."
        )
    return "\n".join(lines) + "\n"
