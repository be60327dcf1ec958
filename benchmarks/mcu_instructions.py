"""Executed instructions of the deployed int8 models on emulated Cortex-M cores, against FLOPs.

For each task, the pretrained trecx_ev model is split and exported in int8 (as deploy.sh does, calibrated
on synthetic inputs in the task's input range), linked with TensorFlow Lite Micro into a bare-metal
program, and run on qemu-system-arm for K synthetic samples with every sample running both stages,
beside the base model; then once more with TFLM's profiler hooks for the per-operator counts. It prints,
per task and target (core, kernel set): instructions per sample of stage 1, stage 2 and the base model
(mean and range), the saving of a sample that leaves at the early exit against the base model beside
the FLOPs saving, the saving at 50 % and 80 % exits beside FLOPs (each path's count weighed by the exit
rate, as deploy.sh does with a test set's), arena and flash bytes; and writes every operator's count
beside its MACs and output elements to OUT/mcu_layers_TASK.csv, and prints where stage 1's instructions
go: the backbone before the tap and the early-exit branch, each as a share of the base model's
instructions beside its share of the base model's MACs. These are instructions counted exactly
on an emulator, not cycles. Needs `bash install_mcu_toolchain.sh` (and, per core and kernel set, one
TFLM build: 4-9 minutes on 2 cores, cached).

Usage, from the repository root:
  python3 -m benchmarks.mcu_instructions [--tasks T1,T2] [--mcu all] [--samples 10] [--out results/mcu]
"""

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

EXIT_RATES = (0.5, 0.8)


def main(argv=None):
    from common.arguments import ALL, choice_list
    from common.tasks import task_names

    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tasks",
        type=choice_list(task_names()),
        default=ALL,
        help=f"tasks to measure, comma-separated, of {', '.join(task_names())} (default: %(default)s)",
    )
    parser.add_argument("--mcu", default="all", help="targets as deploy.sh --mcu takes them (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=10, help="synthetic samples per task (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("results/mcu"), help="folder for the per-operator CSVs")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no start-up chatter

    from common import flops, report
    from common.deploy import mcu
    from common.deploy.export import export_models, write_export
    from common.deploy.mcu_measure import (
        LAYER_COLUMNS,
        PROFILE_SAMPLES,
        expected_cost,
        layer_rows,
        parse_targets,
        stage1_shares,
    )
    from common.deploy.runtime import NEVER_EXIT
    from common.native_logs import import_tensorflow_quietly
    from common.tasks import load_task
    from common.weights import load_nets

    targets = parse_targets(args.mcu)
    import_tensorflow_quietly()
    args.out.mkdir(parents=True, exist_ok=True)
    rates = " | ".join(f"saving at {100 * e:.0f} % exits: instr. / FLOPs (ratio)" for e in EXIT_RATES)
    print(
        f"| task | core, kernels | stage 1 | stage 2 | base | saving at exit: instr. / FLOPs (ratio) | {rates} "
        "| arena bytes s1 / s2 / base | flash bytes s1 / s2 / base / program |"
    )
    print("|---|---|---:|---:|---:|---:|" + "---:|" * len(EXIT_RATES) + "---:|---:|")
    for task in args.tasks:
        nets = load_nets(load_task(task), "pretrained", None, ["base", "trecx_ev"])
        calibration, _ = load_task(task).synthetic_inputs(200, seed=1)
        inputs, _ = load_task(task).synthetic_inputs(args.samples, seed=2)
        ee_mflops, ef_mflops = flops.path_mflops(nets["trecx_ev"].model)
        base_mflops = flops.path_mflops(nets["base"].model)[0]
        layers = []
        with tempfile.TemporaryDirectory(prefix="mcu_instructions_") as tmp:
            models = export_models(nets["trecx_ev"], nets["base"], calibration, log=lambda *_: None)
            write_export(Path(tmp), task, "trecx_ev", {"int8": models["int8"]}, log=lambda *_: None)
            for core, kernels in targets:
                settings = mcu.McuRun(rho=NEVER_EXIT, core=core, kernels=kernels)
                run = mcu.run_on_mcu(tmp, "trecx_ev", inputs, settings, log=lambda *_: None)
                profiled = mcu.run_on_mcu(
                    tmp,
                    "trecx_ev",
                    inputs[:PROFILE_SAMPLES],
                    dataclasses.replace(settings, profile=True),
                    log=lambda *_: None,
                )
                layers += layer_rows(profiled, models["int8"])
                counts = {name: run.instructions[name] for name in ("stage1", "stage2", "base")}
                s1, s2, base = (counts[name].mean() for name in ("stage1", "stage2", "base"))

                def cell(values):
                    return f"{values.mean() / 1e6:.3f} M ({values.min() / 1e6:.3f}-{values.max() / 1e6:.3f})"

                def pair(e, instr_costs=(s1, s2, base), flop_costs=(ee_mflops, ef_mflops - ee_mflops, base_mflops)):
                    """Saving at exit rate e in instructions and in FLOPs, and their ratio."""
                    instr, flop = expected_cost(*instr_costs, e)[1], expected_cost(*flop_costs, e)[1]
                    return f"{instr:.1f} / {flop:.1f} ({instr / flop:.2f})"

                arena = " / ".join(f"{run.arena_used_bytes[m]:,}" for m in ("stage1", "stage2", "base"))
                flash = " / ".join(f"{run.flash_bytes[m]:,}" for m in ("stage1", "stage2", "base", "program"))
                print(
                    f"| {task} | {core}, {kernels} | {cell(counts['stage1'])} | {cell(counts['stage2'])} | "
                    f"{cell(counts['base'])} | {pair(1.0)} | "
                    + " | ".join(pair(e) for e in EXIT_RATES)
                    + f" | {arena} | {flash} |",
                    flush=True,
                )
        report.write_rows_csv(args.out / f"mcu_layers_{task}.csv", layers, LAYER_COLUMNS)
        for core, kernels in targets:
            parts = stage1_shares([row for row in layers if (row["core"], row["kernels"]) == (core, kernels)])
            backbone, branch = parts["backbone"], parts["branch"]
            print(
                f"  {task}, {core} {kernels}: stage 1 = backbone before the tap {backbone['instructions_pct']:.1f} % "
                f"of the base model's instructions ({backbone['macs_pct']:.1f} % of its MACs) + early-exit branch "
                f"{branch['instructions_pct']:.1f} % ({branch['macs_pct']:.1f} %)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
