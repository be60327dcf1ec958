"""Measured latency of the deployed early exit against its FLOPs, and the int8 size reduction, per task.

For each task, the pretrained `trecx_ev` (split into two LiteRT stages) and `base` models are exported
in float32 and int8 (common.deploy.export; int8 calibrated on synthetic inputs of another seed) and run
one sample at a time, interleaved sample by sample, on synthetic inputs in the task's real input range
(each task's `synthetic_inputs`), and on the real test set too when it is present under --data-root. rho is
set so that a chosen fraction of the samples leaves at the early exit (a quantile of the float32
early-exit confidences); the int8 runner uses the same rho, so its exit rate may differ slightly.

Each is measured with LiteRT's default kernels (XNNPACK: SIMD, tuned for desktop and phone CPUs) and
with its reference kernels, the portable code that TensorFlow Lite Micro's own kernels share: slow
here, but their cost per op follows its arithmetic (loops over MACs, one requantisation per int8
output) as on a microcontroller without SIMD, so their ratios are the better guide to one.

Printed per task, kernel set and precision: rho, exit rate, FLOPs saving and measured latency saving against the
base model, their ratio (goal >= 0.8), and why it falls short when it does: the share of the full
two-stage path that stage 1 takes in latency beside its share in FLOPs, and the full path's latency
over the base model's beside the same ratio in FLOPs. Then the int8 size reduction against float32
for stage 1 + stage 2 and for the base model (files, and weights alone).

Synthetic inputs give meaningless accuracies, but the same work per sample as real ones; the exit
rate, which is what the saving depends on, is set by rho.

Usage, from the repository root:
    python -m benchmarks.deploy_latency [--num-samples 2000] [--kernels xnnpack,reference]
                                        [--exit-fractions 0.5,0.8] [--tasks T1,T2]
"""

import argparse
import os
import pathlib
import sys
import time

from common.arguments import ALL, choice_list, comma_list
from common.tasks import REPO_ROOT, task_names


def measure(task_name, x, labels, models, path_mflops, base_mflops, fractions, runtime):
    """One row per (exit fraction, precision): the measured numbers."""
    import numpy as np

    from common.deploy.export import PRECISIONS
    from common.deploy.pipeline import evaluate_precision
    from common.deploy.runtime import NEVER_EXIT, EarlyExitRunner

    full = EarlyExitRunner(models["float32"]["stage1"], models["float32"]["stage2"], NEVER_EXIT, runtime).run(x)
    confidence = full.softmax["ee"].max(axis=1)
    rows = []
    for fraction in fractions:
        rho = float(np.quantile(confidence, 1.0 - fraction))
        for precision in PRECISIONS:
            result, _, (trace, base_trace) = evaluate_precision(
                models[precision], (x, labels), rho, path_mflops, base_mflops, runtime, log=lambda *_: None
            )
            exited = trace.exits == 0
            stage1_ms = trace.latency_ns[exited].mean() / 1e6 if exited.any() else float("nan")
            full_ms = result.full_path_latency_ms["mean"]
            rows.append(
                {
                    "task": task_name,
                    "kernels": runtime.kernels,
                    "precision": precision,
                    "rho": rho,
                    "exit_rate": result.exit_rate,
                    "flops_saving": result.mflops_saving_pct,
                    "latency_saving": result.latency_saving_pct,
                    "ratio": result.latency_over_flops_saving,
                    "latency_ms": result.latency_ms["mean"],
                    "base_ms": result.base_latency_ms["mean"],
                    "stage1_share_latency": stage1_ms / full_ms,
                    "stage1_share_flops": path_mflops[0] / path_mflops[1],
                    "full_over_base_latency": full_ms / result.base_latency_ms["mean"],
                    "full_over_base_flops": path_mflops[1] / base_mflops,
                }
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.split("\n")[0], epilog="Prints tables; asserts nothing."
    )
    parser.add_argument(
        "--tasks",
        type=choice_list(task_names()),
        default=ALL,
        help=f"tasks to measure, comma-separated, of {', '.join(task_names())} (default: %(default)s)",
    )
    parser.add_argument(
        "--num-samples", type=int, default=2000, help="synthetic test inputs per task (default: %(default)s)"
    )
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=200,
        help="synthetic int8 calibration inputs per task (default: %(default)s)",
    )
    parser.add_argument(
        "--exit-fractions",
        default="0.5,0.8",
        help="fractions of samples to leave early, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default: %(default)s)")
    parser.add_argument(
        "--kernels",
        default="xnnpack,reference",
        help="LiteRT kernel sets to measure, comma-separated, of xnnpack, builtin, reference "
        "(common.deploy.runtime.KERNELS; default: %(default)s)",
    )
    parser.add_argument(
        "--reference-samples",
        type=int,
        default=400,
        help="inputs per task for the (slow) reference kernels: the first of the synthetic and "
        "real sets (default: %(default)s)",
    )
    parser.add_argument(
        "--data-root",
        type=pathlib.Path,
        default=REPO_ROOT / "data",
        help="where real test sets are looked for, as DATA_ROOT/TASK[/minival] (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    fractions = [float(f) for f in comma_list(args.exit_fractions)]
    kernels = list(comma_list(args.kernels))
    if (
        min(args.num_samples, args.reference_samples) < 10
        or args.calibration_samples < 1
        or not all(0 < f < 1 for f in fractions)
    ):
        parser.error(
            "need --num-samples and --reference-samples >= 10, --calibration-samples >= 1 and exit fractions in (0, 1)"
        )

    from common.native_logs import import_tensorflow_quietly

    import_tensorflow_quietly()
    from common import flops
    from common.deploy.export import PRECISIONS, export_models, weights_kb
    from common.deploy.runtime import Runtime, runtime_name
    from common.errors import UserError
    from common.tasks import folder_test_sh_reads, load_task
    from common.weights import load_nets

    try:
        runtimes = [Runtime(args.threads, k) for k in kernels]
    except UserError as err:  # an unknown kernel set or thread count
        parser.error(str(err))

    def measure_all(data, x, labels):
        rows = []
        for runtime in runtimes:
            n = args.reference_samples if runtime.kernels == "reference" else len(x)
            print(f"{name}: {runtime.kernels} kernels, {min(n, len(x))} {data} inputs", flush=True)
            rows += [
                dict(r, data=data)
                for r in measure(name, x[:n], labels[:n], models, path_mflops, base_mflops, fractions, runtime)
            ]
        return rows

    rows, sizes = [], {}
    start = time.perf_counter()
    for name in args.tasks:
        task = load_task(name)
        nets = load_nets(task, "pretrained", None, ("trecx_ev", "base"))
        calibration, _ = task.synthetic_inputs(args.calibration_samples, seed=1)
        print(f"{name}: exporting (calibration: {len(calibration)} synthetic inputs)", flush=True)
        models = export_models(nets["trecx_ev"], nets["base"], calibration, log=lambda *_: None)
        sizes[name] = {
            p: {
                part: (len(models[p][part]) / 1024, weights_kb(models[p][part]))
                for part in ("stage1", "stage2", "base")
            }
            for p in PRECISIONS
        }
        path_mflops = flops.path_mflops(nets["trecx_ev"].model)
        base_mflops = flops.path_mflops(nets["base"].model)[0]
        x, labels = task.synthetic_inputs(args.num_samples, seed=2)
        rows += measure_all("synthetic", x, labels)
        real_dir = folder_test_sh_reads(task, args.data_root / name)
        if real_dir.is_dir():
            try:
                x, labels, _ = task.load_test(real_dir)
            except UserError as err:
                print(f"{name}: real test set in {real_dir} not usable ({err})")
            else:
                print(f"{name}: real test set from {real_dir}", flush=True)
                rows += measure_all("real", x, labels)

    print(
        f"\ndeploy latency: {runtime_name()}, {args.threads} interpreter thread(s), "
        f"{os.cpu_count()} CPU cores visible, {time.perf_counter() - start:.0f} s in all\n"
    )
    print(
        "| task | data | kernels | precision | rho | exit rate | FLOPs saving % | latency saving % | ratio | "
        "latency ms (base) | stage 1 share: latency / FLOPs | full path / base: latency / FLOPs |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(
            f"| {r['task']} | {r['data']} | {r['kernels']} | {r['precision']} | {r['rho']:.3f} | "
            f"{r['exit_rate']:.3f} | "
            f"{r['flops_saving']:.1f} | {r['latency_saving']:.1f} | {ratio} | "
            f"{r['latency_ms']:.4f} ({r['base_ms']:.4f}) | {r['stage1_share_latency']:.2f} / "
            f"{r['stage1_share_flops']:.2f} | {r['full_over_base_latency']:.2f} / {r['full_over_base_flops']:.2f} |"
        )

    def reduction(by_precision, parts, k):
        total = {p: sum(by_precision[p][part][k] for part in parts) for p in ("float32", "int8")}
        return 100 * (1 - total["int8"] / total["float32"])

    print(
        "\n| task | precision | KiB stage 1 / stage 2 / base (weights alone) | int8 reduction, stage 1 + 2: "
        "file (weights) | base: file (weights) |"
    )
    print("|---|---|---|---:|---:|")
    for name, by_precision in sizes.items():
        for precision, parts in by_precision.items():
            cells = " / ".join(f"{parts[p][0]:.1f} ({parts[p][1]:.1f})" for p in ("stage1", "stage2", "base"))
            columns = ["", ""]
            if precision == "int8":
                columns = [
                    f"{reduction(by_precision, group, 0):.1f} % ({reduction(by_precision, group, 1):.1f} %)"
                    for group in (("stage1", "stage2"), ("base",))
                ]
            print(f"| {name} | {precision} | {cells} | {columns[0]} | {columns[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
