"""Result writers: JSON, curve CSV, the paper's Table 1 as Markdown. Every file is written atomically
(common.files)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.files import atomic_output, write_text
from common.sweep import Curve

MISSING = "–"


def _jsonable(obj: Any) -> Any:
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


def write_json(path: str | os.PathLike, obj: Any) -> None:
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

    def cell(value: Any) -> Any:
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


def _nums(values: Sequence[float | None] | None) -> str:
    return MISSING if values is None else ", ".join(number(v) for v in values)


def _pair(measured: str, paper: str) -> str:
    return f"{measured} / {paper}"


def table1_markdown(rows: list[dict]) -> str:
    """Markdown version of the paper's Table 1, measured and paper values side by side.

    rows: {"model": str, "measured": {...}, "paper": {...}}; both value dicts may hold
    baseline_accuracy (%), baseline_mflops, baseline_params (int), tradeoff_mflops and
    tradeoff_reduction_pct (3 values for 1/2/3 % accuracy drop, entries or the list may be None),
    trecx_params (int), standalone_ee, standalone_ef (%); measured may hold target (name),
    baseline_minstructions, instruction_reduction_pct_at_flops_tradeoff and
    tradeoff_instruction_reduction_pct (3 values each), which add the target's columns. Missing or None
    values print as "–".
    """
    header = [
        "Model",
        "Baseline acc %",
        "Baseline MFLOPs",
        "Baseline params",
        "MFLOPs at 1, 2, 3 % drop",
        "FLOPs reduction % at 1, 2, 3 % drop",
        "T-RecX params",
        "Standalone acc % EE, EF",
    ]
    with_target = any("target" in row.get("measured", {}) for row in rows)
    if with_target:
        header += [
            "Target",
            "Baseline M instr.",
            "Instr. saved % at the FLOPs points",
            "Instr. saved % at 1, 2, 3 % drop, rho chosen in instr.",
        ]
    lines = [
        "Each cell: measured / paper; lists give the values at 1, 2, 3 % accuracy drop "
        f"(or for the EE, EF exits); {MISSING} = not available."
        + (
            " Instr.: executed instructions per sample on the target, predicted by its cost model "
            "(measured only; the paper counts FLOPs)."
            if with_target
            else ""
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|",
    ]
    for row in rows:
        m, p = row.get("measured", {}), row.get("paper", {})
        cells = [
            str(row["model"]).replace("|", "\\|"),
            _pair(number(m.get("baseline_accuracy")), number(p.get("baseline_accuracy"))),
            _pair(number(m.get("baseline_mflops")), number(p.get("baseline_mflops"))),
            _pair(_params(m.get("baseline_params")), _params(p.get("baseline_params"))),
            _pair(_nums(m.get("tradeoff_mflops")), _nums(p.get("tradeoff_mflops"))),
            _pair(_nums(m.get("tradeoff_reduction_pct")), _nums(p.get("tradeoff_reduction_pct"))),
            _pair(_params(m.get("trecx_params")), _params(p.get("trecx_params"))),
            _pair(
                _nums([m.get("standalone_ee"), m.get("standalone_ef")]),
                _nums([p.get("standalone_ee"), p.get("standalone_ef")]),
            ),
        ]
        if with_target:
            cells += [
                m.get("target", MISSING),
                number(m.get("baseline_minstructions")),
                _nums(m.get("instruction_reduction_pct_at_flops_tradeoff")),
                _nums(m.get("tradeoff_instruction_reduction_pct")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
