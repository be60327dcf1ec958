"""Result writers: JSON, curve CSV, the paper's Table 1 as Markdown. Every file is written atomically."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from common.sweep import Curve

MISSING = "–"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results should be readable like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


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


def write_curve_csv(path: str | os.PathLike, curve: Curve, exit_names: Sequence[str]) -> None:
    """One row per rho: rho, accuracy_pct, mflops, exit_fraction_<name> for each of the K exits."""
    if len(exit_names) != curve.exit_fraction.shape[1]:
        raise ValueError(
            f"{len(exit_names)} exit names given for a curve with {curve.exit_fraction.shape[1]} exits"
        )
    header = ["rho", "accuracy_pct", "mflops"] + [f"exit_fraction_{name}" for name in exit_names]
    table = np.column_stack([curve.rho, curve.accuracy, curve.mflops, curve.exit_fraction])
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([repr(float(v)) for v in row] for row in table)


def _num(value: float | None, decimals: int = 2) -> str:
    return MISSING if value is None else f"{value:.{decimals}f}"


def _params(value: int | None) -> str:
    """Parameter count in the paper's style: 78.7K, 1.23M."""
    if value is None:
        return MISSING
    if value >= 1_000_000:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.1f}K" if value >= 1000 else str(int(value))


def _nums(values: Sequence[float | None] | None) -> str:
    return MISSING if values is None else ", ".join(_num(v) for v in values)


def _pair(measured: str, paper: str) -> str:
    return f"{measured} / {paper}"


def table1_markdown(rows: list[dict]) -> str:
    """Markdown version of the paper's Table 1, measured and paper values side by side.

    rows: {"model": str, "measured": {...}, "paper": {...}}; both value dicts may hold
    baseline_accuracy (%), baseline_mflops, baseline_params (int), tradeoff_mflops and
    tradeoff_reduction_pct (3 values for 1/2/3 % accuracy drop, entries or the list may be None),
    trecx_params (int), standalone_ee, standalone_ef (%). Missing or None values print as "–".
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
    lines = [
        "Each cell: measured / paper; lists give the values at 1, 2, 3 % accuracy drop "
        f"(or for the EE, EF exits); {MISSING} = not available.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|",
    ]
    for row in rows:
        m, p = row.get("measured", {}), row.get("paper", {})
        cells = [
            str(row["model"]).replace("|", "\\|"),
            _pair(_num(m.get("baseline_accuracy")), _num(p.get("baseline_accuracy"))),
            _pair(_num(m.get("baseline_mflops")), _num(p.get("baseline_mflops"))),
            _pair(_params(m.get("baseline_params")), _params(p.get("baseline_params"))),
            _pair(_nums(m.get("tradeoff_mflops")), _nums(p.get("tradeoff_mflops"))),
            _pair(_nums(m.get("tradeoff_reduction_pct")), _nums(p.get("tradeoff_reduction_pct"))),
            _pair(_params(m.get("trecx_params")), _params(p.get("trecx_params"))),
            _pair(
                _nums([m.get("standalone_ee"), m.get("standalone_ef")]),
                _nums([p.get("standalone_ee"), p.get("standalone_ef")]),
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
