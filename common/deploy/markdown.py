"""deploy.md: the deployment's measured table (deploy.json) as Markdown, with how it was measured, and
its microcontroller section."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from common.deploy.results import DeploySummary, McuResults, McuTargetResult, RhoChoice, TargetCostResult
from common.deploy.runtime import KERNELS
from common.report import MISSING, number

if TYPE_CHECKING:
    from common.tasks import Task


def deploy_markdown(summary: DeploySummary, task: Task) -> str:
    """deploy.md: the measured table of a `DeploySummary`, and how it was measured.

    task: the task module (its TITLE; its PAPER's "int8_size_reduction_pct", when it has one, is quoted
    beside the measured int8 size reduction).
    """
    validation = summary.validation
    rho_note = (
        "given on the command line"
        if validation is None
        else f"chosen on {validation.num_samples} validation samples, the cheapest in "
        f"{validation.chosen_in} within {summary.drop:g} point(s) of the "
        "float32 base model there "
        f"(validation accuracy {validation.accuracy:.2f} % vs base "
        f"{validation.base_accuracy:.2f} %"
        + ("" if validation.met else "; target not reached, most accurate rho")
        + ")"
        + _flops_choice(validation)
    )
    threads = (
        f"{summary.kernels} kernels, {summary.num_threads} interpreter thread{'s' if summary.num_threads > 1 else ''}"
    )
    lines = [
        f"# Deployed early exit: {task.TITLE}, {summary.model}",
        "",
        f"{summary.num_samples} test samples, one at a time, {summary.runtime} ({threads}); "
        f"rho = {summary.rho:.4f}, {rho_note}.",
        "",
        *_data_lines(summary),
        "| | float32 | int8 |",
        "|---|---:|---:|",
    ]
    rows = [
        (
            "size KiB: stage 1 / stage 2 / base",
            lambda r: " / ".join(number(r.size_kb[p], 1) for p in ("stage1", "stage2", "base")),
        ),
        (
            "of which weights KiB",
            lambda r: " / ".join(number(r.weights_kb[p], 1) for p in ("stage1", "stage2", "base")),
        ),
        ("accuracy % (base)", lambda r: f"{number(r.accuracy)} ({number(r.base_accuracy)})"),
        ("exit rate", lambda r: number(r.exit_rate, 3)),
        ("MFLOPs per sample (base)", lambda r: f"{number(r.mflops)} ({number(r.base_mflops)})"),
        ("FLOPs saving %", lambda r: number(r.mflops_saving_pct, 1)),
        (
            "latency ms mean / p50 / p99",
            lambda r: " / ".join(number(r.latency_ms[k], 4) for k in ("mean", "p50", "p99")),
        ),
        (
            "base latency ms mean / p50 / p99",
            lambda r: " / ".join(number(r.base_latency_ms[k], 4) for k in ("mean", "p50", "p99")),
        ),
        ("latency saving %", lambda r: number(r.latency_saving_pct, 1)),
        ("latency saving / FLOPs saving", lambda r: number(r.latency_over_flops_saving)),
        ("stage-1 feature map to stage 2", lambda r: r.tap_transfer),
    ]
    lines += [f"| {label} | {cell(summary.float32)} | {cell(summary.int8)} |" for label, cell in rows]
    files, weights = summary.int8_size_reduction_pct, summary.int8_weights_reduction_pct
    paper = task.PAPER.get("int8_size_reduction_pct")
    paper_note = "" if paper is None else f"; the paper reports {paper:.1f} % for this model"
    lines += [
        "",
        f"int8 size reduction against float32: {files['early_exit']:.1f} % for stage 1 + stage 2, "
        f"{files['base']:.1f} % for the base model (.tflite files; weights alone: "
        f"{weights['early_exit']:.1f} % and {weights['base']:.1f} %{paper_note}). Per-channel int8 "
        "quantisation parameters (a float32 scale and an int64 zero point per output channel) are what "
        "keeps the files above a quarter of float32.",
        "",
        f"Kernels: {KERNELS[summary.kernels]}.",
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
    if summary.target:
        lines += target_markdown(summary.target)
    if summary.mcu:
        lines += mcu_markdown(summary.mcu)
    return "\n".join(lines)


def _data_lines(summary: DeploySummary) -> list[str]:
    """What the deployment read (deploy.json's "data"): models, test set, validation split, calibration."""
    data = summary.data
    validation = "" if data.validation is None else f"; validation split (rho chosen): `{data.validation}`"
    return [
        f"Read: the {data.models} models; {summary.num_samples} test samples from `{data.test}`{validation}; "
        f"int8 calibration: {data.calibration_samples} inputs from {data.calibration_from} in `{data.calibration}`.",
        "",
    ]


def _flops_choice(validation: RhoChoice) -> str:
    """The rho FLOPs would have chosen, beside the one chosen in the target's instructions."""
    choice = validation.flops_choice
    if choice is None:
        return ""
    return (
        f"; there it saves {validation.instruction_reduction_pct:.1f} % of the instructions and "
        f"{validation.flops_reduction_pct:.1f} % of the FLOPs, where the cheapest rho in FLOPs, "
        f"{choice.rho:.4f}, saves {choice.instruction_reduction_pct:.1f} % and "
        f"{choice.flops_reduction_pct:.1f} %"
    )


def _millions(stats: dict | None) -> str:
    if stats is None:
        return MISSING
    return f"{stats['mean'] / 1e6:.3f} M ({stats['min'] / 1e6:.3f}-{stats['max'] / 1e6:.3f})"


def _predicted(key: str) -> Callable[[McuTargetResult], str]:
    """A cell maker: the cost model's prediction of `key` and its error against the count."""

    def cell(t: McuTargetResult) -> str:
        predicted = t.predicted
        if not predicted:
            return MISSING
        return f"{predicted.instructions[key] / 1e6:.3f} M ({predicted.error_pct[key]:+.2f})"

    return cell


def target_markdown(target: TargetCostResult) -> list[str]:
    """deploy.md's lines on the predicted cost on the target (deploy.json's "target")."""
    counts = target.instructions
    lines = [
        "## Predicted cost on the target",
        "",
        f"On {target.target} (executed instructions per Invoke(), predicted by its cost model, "
        "common/target_cost.py): stage 1 "
        f"{counts['stage1'] / 1e6:.3f} M, stage 2 {counts['stage2'] / 1e6:.3f} M, base {counts['base'] / 1e6:.3f} M. "
        f"At the int8 test exit rate {target.exit_rate:.3f}: {target.expected_instructions / 1e6:.3f} M "
        f"per sample, {target.instruction_saving_pct:.1f} % saved; early exit saves above an exit rate of "
        f"{target.break_even_exit_rate:.3f}. Deploy: **{target.deploy}**.",
        "",
    ]
    if target.message:
        lines += [f"**{target.message[0].upper()}{target.message[1:]}.**", ""]
    return lines


def mcu_markdown(mcu: McuResults) -> list[str]:
    """deploy.md's microcontroller section: one column per emulated target (deploy.json's "mcu")."""
    targets = mcu.targets
    lines = [
        "## On emulated microcontrollers (TensorFlow Lite Micro)",
        "",
        f"The int8 models of export/ in TensorFlow Lite Micro, run on the first {mcu.samples} test samples "
        f"with the early-exit loop at the same rho. Counts are {mcu.note}. Instructions per sample: mean "
        "(range) over the samples a model ran on; the expected count combines stage 1 and stage 2 with the "
        "int8 exit rate LiteRT measured on the whole test set, and its saving against the base model stands "
        "beside the FLOPs saving at that exit rate.",
        "",
        "| | " + " | ".join(f"{t.core}, {t.kernels}" for t in targets) + " |",
        "|---|" + "---:|" * len(targets),
    ]

    def agree(t: McuTargetResult) -> str:
        a = t.agreement_with_litert_int8
        return f"{a['exits']} / {a['classes']} / {a['base_classes']} of {a['samples']}"

    rows = [
        ("equal to LiteRT int8 (reference kernels): exits / classes / base classes", agree),
        ("stage 1 instructions", lambda t: _millions(t.instructions["stage1"])),
        ("stage 2 instructions", lambda t: _millions(t.instructions["stage2"])),
        ("base instructions", lambda t: _millions(t.instructions["base"])),
        (
            "exit rate: these samples / whole test set (LiteRT int8)",
            lambda t: f"{t.exit_rate_samples:.3f} / {t.exit_rate_test:.3f}",
        ),
        (
            "stage 2 invocations counted on the MCU (samples not exited)",
            lambda t: f"{t.stage2_invocations} ({t.samples_not_exited})",
        ),
        ("expected instructions per sample", lambda t: f"{t.expected_instructions / 1e6:.3f} M"),
        *[
            (f"{label} predicted by the cost model (error %)", _predicted(key))
            for key, label in (
                ("stage1", "stage 1"),
                ("stage2", "stage 2"),
                ("base", "base"),
                ("expected", "expected per sample"),
            )
        ],
        (
            "instruction saving % / FLOPs saving %",
            lambda t: f"{t.instruction_saving_pct:.1f} / {t.flops_saving_pct:.1f}",
        ),
        ("instruction saving / FLOPs saving", lambda t: number(t.instruction_over_flops_saving)),
        (
            "stage 1's backbone to the tap: % of base instructions / MACs",
            lambda t: (
                f"{t.stage1_shares['backbone']['instructions_pct']:.1f} / {t.stage1_shares['backbone']['macs_pct']:.1f}"
            ),
        ),
        (
            "stage 1's early-exit branch: % of base instructions / MACs",
            lambda t: (
                f"{t.stage1_shares['branch']['instructions_pct']:.1f} / {t.stage1_shares['branch']['macs_pct']:.1f}"
            ),
        ),
        (
            "arena bytes used: stage 1 / stage 2 / base",
            lambda t: " / ".join(f"{t.arena_used_bytes[m]:,}" for m in ("stage1", "stage2", "base")),
        ),
        (
            "flash bytes: stage 1 / stage 2 / base / whole program",
            lambda t: " / ".join(f"{t.flash_bytes[m]:,}" for m in ("stage1", "stage2", "base", "program")),
        ),
    ]
    lines += [f"| {label} | " + " | ".join(cell(t) for t in targets) + " |" for label, cell in rows]
    differing = [t for t in targets if t.agreement_with_litert_int8["differing_samples"]]
    for t in differing:
        lines += [
            "",
            f"**The emulated {t.core} ({t.kernels}) and LiteRT differ on samples "
            f"{t.agreement_with_litert_int8['differing_samples']}.**",
        ]
    lines += [
        "",
        "Per-operator instructions (TFLM's profiler hooks, beside each operator's MACs and output elements): "
        "mcu_layers.csv. Figure: mcu_benefit.png / .pdf (the int8 benefit curve in MFLOPs and in "
        f"{mcu.figure_target} instructions).",
        "",
    ]
    return lines
