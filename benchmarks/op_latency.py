"""Where the time goes: each base model's operators, their share of MACs against their share of latency.

Early exit saves the layers after its tap; its measured time saving follows its FLOPs saving only if
a layer's time follows its MACs. This benchmark tests that, operator by operator. For each task the
pretrained base model is exported to LiteRT float32 and int8 (common.deploy.export.to_tflite; int8
calibrated on synthetic inputs, each task's `synthetic_inputs`), each operator is cut out as a model of its
own on the same tensors (common.deploy.profile.single_op_models) and timed alone (median of --repeats
invocations, batch 1, one thread), with LiteRT's default XNNPACK kernels and its reference kernels (the
portable code TensorFlow Lite Micro's kernels share).

Printed per task: per operator, its output, MACs per output element, share of the model's MACs, and its
share of the summed operator time for each kernel set and precision; then the shares of MACs and of time
of the backbone up to the T-RecX tap, which stage 1 runs for every sample. Where an output element costs
much beside a MAC (int8: requantising each output), operators with many outputs and few MACs per output
(the first convolution, on 1 or 3 input channels at full resolution; depthwise convolutions) take more
than their share of the MACs, and those are the early layers that early exit cannot skip.

Each timed alone, an operator also pays one invocation's fixed cost (about half a microsecond here), so
the shares of the smallest operators are upper bounds.

Usage, from the repository root:
    python -m benchmarks.op_latency [--tasks T1,T2] [--kernels xnnpack,reference] [--repeats 200]
"""

import argparse
import sys

from common.arguments import ALL, choice_list, comma_list
from common.tasks import task_names


def operators_before_tap(ops, tap_macs):
    """How many leading operators compute the backbone up to the T-RecX tap: those whose MACs add up to
    `tap_macs` (the Keras layers up to the tap), with the MAC-free operators (a residual ADD) that follow."""
    total, count = 0, 0
    while count < len(ops) and total < tap_macs:
        total += ops[count].macs
        count += 1
    if total != tap_macs:
        raise SystemExit(f"the operators' MACs do not add up to the tap's {tap_macs}")
    while count < len(ops) and ops[count].macs == 0:
        count += 1
    return count


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
        "--kernels",
        default="xnnpack,reference",
        help="LiteRT kernel sets: xnnpack, builtin, reference, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=200,
        help="timed invocations per operator; a quarter of it for the slow reference kernels (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-samples", type=int, default=100, help="synthetic int8 calibration inputs (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 10 or args.calibration_samples < 1:
        parser.error("need --repeats >= 10 and --calibration-samples >= 1")

    from common.native_logs import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from common import flops
    from common.deploy.export import PRECISIONS, to_tflite
    from common.deploy.profile import op_profile
    from common.deploy.runtime import Runtime, runtime_name
    from common.errors import UserError
    from common.models import build_model
    from common.tasks import load_task
    from common.weights import load_nets

    try:
        runtimes = [Runtime(1, k) for k in comma_list(args.kernels)]
    except UserError as err:  # an unknown kernel set
        parser.error(str(err))
    configs = [(runtime, precision) for runtime in runtimes for precision in PRECISIONS]
    print(f"operator latency: {runtime_name()}, 1 interpreter thread\n")
    for name in args.tasks:
        net = load_nets(load_task(name), "pretrained", None, ("base",))["base"]
        calibration, _ = load_task(name).synthetic_inputs(args.calibration_samples, seed=1)
        models = {"float32": to_tflite(net.model), "int8": to_tflite(net.model, calibration)}
        ops, times = {}, {}
        for runtime, precision in configs:
            repeats = args.repeats // 4 if runtime.kernels == "reference" else args.repeats
            print(f"{name}: timing each operator, {runtime.kernels} kernels, {precision}", flush=True)
            profile = op_profile(models[precision], runtime, repeats)
            ops[precision] = [op for op, _ in profile]
            times[runtime.kernels, precision] = [t for _, t in profile]
        if [(op.name, op.output_shape) for op in ops["float32"]] != [(op.name, op.output_shape) for op in ops["int8"]]:
            raise SystemExit(f"{name}: the float32 and int8 models have different operators")

        total_macs = sum(op.macs for op in ops["int8"])
        totals = {key: sum(values) for key, values in times.items()}
        labels = [f"{runtime.kernels} {precision}" for runtime, precision in configs]
        print(
            f"\n{name}, base model: {total_macs / 1e6:.2f} M MACs; summed operator time "
            + ", ".join(f"{label} {totals[r.kernels, p]:.0f} us" for label, (r, p) in zip(labels, configs))
            + "\n"
        )
        print(
            "| # | operator | output | MACs per output | MACs % | "
            + " | ".join(f"{label} %" for label in labels)
            + " |"
        )
        print("|---:|---|---|---:|---:|" + "---:|" * len(configs))
        for i, op in enumerate(ops["int8"]):
            shares = " | ".join(f"{100 * times[r.kernels, p][i] / totals[r.kernels, p]:.1f}" for r, p in configs)
            per_output = f"{op.macs / op.outputs:.0f}" if op.macs else ""
            print(
                f"| {i} | {op.name} | {'x'.join(map(str, op.output_shape[1:]))} | {per_output} | "
                f"{100 * op.macs / total_macs:.1f} | {shares} |"
            )
        tap = build_model(name, "trecx_ev").tap
        tap_macs = sum(
            c.macs for c in flops.path_costs(keras.Model(net.model.input, net.model.get_layer(tap).output))[0]
        )
        k = operators_before_tap(ops["int8"], tap_macs)
        print(
            f"\nbackbone up to the T-RecX tap ({tap}, operators 0-{k - 1}): {100 * tap_macs / total_macs:.1f} % "
            "of the MACs; of the time: "
            + ", ".join(
                f"{label} {100 * sum(times[r.kernels, p][:k]) / totals[r.kernels, p]:.1f} %"
                for label, (r, p) in zip(labels, configs)
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
