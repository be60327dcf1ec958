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

from common.deploy.runtime import KERNELS
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


def write_curve_csv(path: str | os.PathLike, curve: Curve, exit_names: Sequence[str]) -> None:
    """One row per rho: rho, accuracy_pct, mflops, exit_fraction_<name> for each of the K exits."""
    if len(exit_names) != curve.exit_fraction.shape[1]:
        raise ValueError(f"{len(exit_names)} exit names given for a curve with {curve.exit_fraction.shape[1]} exits")
    header = ["rho", "accuracy_pct", "mflops"] + [f"exit_fraction_{name}" for name in exit_names]
    table = np.column_stack([curve.rho, curve.accuracy, curve.mflops, curve.exit_fraction])
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([repr(float(v)) for v in row] for row in table)


def write_rows_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """One row per dict, in `columns` order (None as an empty cell; floats to 6 significant digits)."""

    def cell(value):
        return "" if value is None else f"{value:.6g}" if isinstance(value, float) else value

    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([cell(row[column]) for column in columns] for row in rows)


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


def deploy_markdown(summary: dict, task: Any) -> str:
    """deploy.md: the measured table of a deploy.json dict, and how it was measured.

    task: the task module (its TITLE; its PAPER's "int8_size_reduction_pct", when it has one, is quoted
    beside the measured int8 size reduction).
    """
    rho_note = (
        "given on the command line"
        if summary["rho_source"] == "given"
        else f"chosen on {summary['validation']['num_samples']} validation samples, "
        f"{summary['drop']:g} point(s) below the float32 base model there "
        f"(validation accuracy {summary['validation']['accuracy']:.2f} % vs base "
        f"{summary['validation']['base_accuracy']:.2f} %"
        + ("" if summary["validation"]["met"] else "; target not reached, most accurate rho")
        + ")"
    )
    threads = (
        f"{summary['kernels']} kernels, {summary['num_threads']} interpreter "
        f"thread{'s' if summary['num_threads'] > 1 else ''}"
    )
    lines = [
        f"# Deployed early exit: {task.TITLE}, {summary['model']}",
        "",
        f"{summary['num_samples']} test samples, one at a time, {summary['runtime']} ({threads}); "
        f"rho = {summary['rho']:.4f}, {rho_note}.",
        "",
        "| | float32 | int8 |",
        "|---|---:|---:|",
    ]
    rows = [
        (
            "size KiB: stage 1 / stage 2 / base",
            lambda r: " / ".join(_num(r["size_kb"][p], 1) for p in ("stage1", "stage2", "base")),
        ),
        (
            "of which weights KiB",
            lambda r: " / ".join(_num(r["weights_kb"][p], 1) for p in ("stage1", "stage2", "base")),
        ),
        ("accuracy % (base)", lambda r: f"{_num(r['accuracy'])} ({_num(r['base_accuracy'])})"),
        ("exit rate", lambda r: _num(r["exit_rate"], 3)),
        ("MFLOPs per sample (base)", lambda r: f"{_num(r['mflops'])} ({_num(r['base_mflops'])})"),
        ("FLOPs saving %", lambda r: _num(r["mflops_saving_pct"], 1)),
        (
            "latency ms mean / p50 / p99",
            lambda r: " / ".join(_num(r["latency_ms"][k], 4) for k in ("mean", "p50", "p99")),
        ),
        (
            "base latency ms mean / p50 / p99",
            lambda r: " / ".join(_num(r["base_latency_ms"][k], 4) for k in ("mean", "p50", "p99")),
        ),
        ("latency saving %", lambda r: _num(r["latency_saving_pct"], 1)),
        ("latency saving / FLOPs saving", lambda r: _num(r["latency_over_flops_saving"])),
        ("stage-1 feature map to stage 2", lambda r: r["tap_transfer"]),
    ]
    lines += [f"| {label} | {cell(summary['float32'])} | {cell(summary['int8'])} |" for label, cell in rows]
    files, weights = summary["int8_size_reduction_pct"], summary["int8_weights_reduction_pct"]
    paper = getattr(task, "PAPER", {}).get("int8_size_reduction_pct")
    paper_note = "" if paper is None else f"; the paper reports {paper:.1f} % for this model"
    lines += [
        "",
        f"int8 size reduction against float32: {files['early_exit']:.1f} % for stage 1 + stage 2, "
        f"{files['base']:.1f} % for the base model (.tflite files; weights alone: "
        f"{weights['early_exit']:.1f} % and {weights['base']:.1f} %{paper_note}). Per-channel int8 "
        "quantisation parameters (a float32 scale and an int64 zero point per output channel) are what "
        "keeps the files above a quarter of float32.",
        "",
        f"Kernels: {KERNELS[summary['kernels']]}.",
        "",
        "Latency per sample runs from the (quantised) input in the model's input tensor to the "
        "predicted class: the invocation(s), the exit decision, copying the feature map into stage 2 "
        "and the argmax; the base model runs interleaved with the early-exit model, sample by sample. "
        "FLOPs savings use the exit rate measured here and the FLOPs of each exit path "
        "(common/flops.py).",
        "",
        "Figure: int8_vs_float.png / .pdf (benefit curves of both precisions over rho). "
        "Models: export/*.tflite, C arrays export/*.h and export/*.cc.",
        "",
    ]
    if summary.get("mcu"):
        lines += mcu_markdown(summary["mcu"])
    return "\n".join(lines)


def _millions(stats: dict | None) -> str:
    if stats is None:
        return MISSING
    return f"{stats['mean'] / 1e6:.3f} M ({stats['min'] / 1e6:.3f}-{stats['max'] / 1e6:.3f})"


def mcu_markdown(mcu: dict) -> list[str]:
    """deploy.md's microcontroller section: one column per emulated target (deploy.json's "mcu")."""
    targets = mcu["targets"]
    lines = [
        "## On emulated microcontrollers (TensorFlow Lite Micro)",
        "",
        f"The int8 models of export/ in TensorFlow Lite Micro, run on the first {mcu['samples']} test samples "
        f"with the early-exit loop at the same rho. Counts are {mcu['note']}. Instructions per sample: mean "
        "(range) over the samples a model ran on; the expected count combines stage 1 and stage 2 with the "
        "int8 exit rate LiteRT measured on the whole test set, and its saving against the base model stands "
        "beside the FLOPs saving at that exit rate.",
        "",
        "| | " + " | ".join(f"{t['core']}, {t['kernels']}" for t in targets) + " |",
        "|---|" + "---:|" * len(targets),
    ]

    def agree(t):
        a = t["agreement_with_litert_int8"]
        return f"{a['exits']} / {a['classes']} / {a['base_classes']} of {a['samples']}"

    rows = [
        ("equal to LiteRT int8 (reference kernels): exits / classes / base classes", agree),
        ("stage 1 instructions", lambda t: _millions(t["instructions"]["stage1"])),
        ("stage 2 instructions", lambda t: _millions(t["instructions"]["stage2"])),
        ("base instructions", lambda t: _millions(t["instructions"]["base"])),
        (
            "exit rate: these samples / whole test set (LiteRT int8)",
            lambda t: f"{t['exit_rate_samples']:.3f} / {t['exit_rate_test']:.3f}",
        ),
        (
            "stage 2 invocations counted on the MCU (samples not exited)",
            lambda t: f"{t['stage2_invocations']} ({t['samples_not_exited']})",
        ),
        ("expected instructions per sample", lambda t: f"{t['expected_instructions'] / 1e6:.3f} M"),
        (
            "instruction saving % / FLOPs saving %",
            lambda t: f"{t['instruction_saving_pct']:.1f} / {t['flops_saving_pct']:.1f}",
        ),
        ("instruction saving / FLOPs saving", lambda t: _num(t["instruction_over_flops_saving"])),
        (
            "stage 1's backbone to the tap: % of base instructions / MACs",
            lambda t: (
                f"{t['stage1_shares']['backbone']['instructions_pct']:.1f} / "
                f"{t['stage1_shares']['backbone']['macs_pct']:.1f}"
            ),
        ),
        (
            "stage 1's early-exit branch: % of base instructions / MACs",
            lambda t: (
                f"{t['stage1_shares']['branch']['instructions_pct']:.1f} / "
                f"{t['stage1_shares']['branch']['macs_pct']:.1f}"
            ),
        ),
        (
            "arena bytes used: stage 1 / stage 2 / base",
            lambda t: " / ".join(f"{t['arena_used_bytes'][m]:,}" for m in ("stage1", "stage2", "base")),
        ),
        (
            "flash bytes: stage 1 / stage 2 / base / whole program",
            lambda t: " / ".join(f"{t['flash_bytes'][m]:,}" for m in ("stage1", "stage2", "base", "program")),
        ),
    ]
    lines += [f"| {label} | " + " | ".join(cell(t) for t in targets) + " |" for label, cell in rows]
    differing = [t for t in targets if t["agreement_with_litert_int8"]["differing_samples"]]
    for t in differing:
        lines += [
            "",
            f"**The emulated {t['core']} ({t['kernels']}) and LiteRT differ on samples "
            f"{t['agreement_with_litert_int8']['differing_samples']}.**",
        ]
    lines += [
        "",
        "Per-operator instructions (TFLM's profiler hooks, beside each operator's MACs and output elements): "
        "mcu_layers.csv. Figure: mcu_benefit.png / .pdf (the int8 benefit curve in MFLOPs and in "
        f"{mcu['figure_target']} instructions).",
        "",
    ]
    return lines
