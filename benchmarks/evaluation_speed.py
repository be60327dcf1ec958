"""How long each task's `bash TASK/test.sh` takes, against the bare inference it cannot avoid.

On a synthetic test set of the real size and format (CIFAR-10 pickle, Speech Commands wav folders,
VWW image folders; written to a temporary folder), in one process, this measures
  1. the wall time of the whole `bash TASK/test.sh --data-dir D --results-dir OUT` as a subprocess:
     interpreter and TensorFlow start-up, data loading (for keyword spotting: reading the clips and
     computing MFCCs), building the models and loading their pretrained weights, inference, benefit
     curves, Table 1, figures;
  2. in this process, a bare `model.predict(x)` of the task's pretrained models over the same inputs,
     at Keras' default batch size (32) and at the evaluation's (common.predict.PREDICT_BATCH).
     Each model first predicts on a few samples with the same batch shapes (a full batch, plus the
     last partial one if any), so graph tracing is excluded from the timed predict and reported on
     its own line.
Synthetic data gives meaningless accuracies but the same amount of work as the real test set.

Usage, from the repository root: python -m benchmarks.evaluation_speed [TASK ...] [--scale 1.0] [--repeats 1]
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
KERAS_DEFAULT_BATCH = 32
TIME_LIMIT_S = 120.0  # the evaluation should finish within two minutes on a small CPU machine


def run_test_sh(task, data_dir, results_dir):
    """Wall seconds of one full test.sh run, and the seconds test.sh reports itself (None if absent)."""
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    start = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / task / "test.sh"), "--data-dir", str(data_dir), "--results-dir", str(results_dir)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"test.sh failed with status {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    reported = re.search(r"results in .* \(([\d.]+) s in all\)", proc.stdout)
    return seconds, float(reported.group(1)) if reported else None


def time_predicts(nets, inputs, batch_size, repeats):
    """(warm-up seconds, best-of-`repeats` seconds) of predicting `inputs` with every net in turn."""
    # Exactly the batch shapes the timed run feeds (a full batch, plus the last partial one if any):
    # a batch shape seen for the first time would retrace, and extra shapes relax the traced graph.
    warm = inputs[: batch_size + len(inputs) % batch_size]
    start = time.perf_counter()
    for net in nets.values():
        net.model.predict(warm, batch_size=batch_size, verbose=0)
    warmup = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for net in nets.values():
            net.model.predict(inputs, batch_size=batch_size, verbose=0)
        best = min(best, time.perf_counter() - start)
    return warmup, best


def measure(task_name, tmp, scale, repeats):
    """Rows of (label, seconds or ratio) for one task."""
    from common.tasks import load_task

    task = load_task(task_name)
    n = max(1, round(task.TEST_SET_SIZE * scale))
    data_dir = task.write_synthetic_test_set(tmp / task_name, n)

    # 1. The whole command, in a subprocess, so nothing else of ours competes for the cores.
    runs = [run_test_sh(task_name, data_dir, tmp / f"results_{task_name}{i}") for i in range(repeats)]
    test_sh_s, reported_s = min(runs, key=lambda r: r[0])

    # 2. Bare predict in this process.
    from common.predict import PREDICT_BATCH
    from common.weights import load_nets

    task = load_task(task_name)
    start = time.perf_counter()
    inputs, _, _ = task.load_test(data_dir)
    load_s = time.perf_counter() - start

    def pretrained_nets():
        return load_nets(task, "pretrained", None)

    start = time.perf_counter()
    nets = pretrained_nets()
    build_s = time.perf_counter() - start
    warm32_s, predict32_s = time_predicts(nets, inputs, KERAS_DEFAULT_BATCH, repeats)
    # Fresh models: a model caches its predict function, and the batch-32 shapes it has already
    # traced would make TensorFlow relax the graph traced for PREDICT_BATCH (slower, unlike test.sh).
    warm_big_s, predict_big_s = time_predicts(pretrained_nets(), inputs, PREDICT_BATCH, repeats)
    k = len(task.MODELS)
    return (
        n,
        test_sh_s,
        [
            (f"test.sh total (subprocess, {n} samples, {k} models)", test_sh_s),
            ("  of which test.sh reports itself", reported_s),
            (f"bare predict, {k} models, batch {KERAS_DEFAULT_BATCH}", predict32_s),
            (f"bare predict, {k} models, batch {PREDICT_BATCH} (PREDICT_BATCH)", predict_big_s),
            (f"ratio test.sh / bare predict batch {KERAS_DEFAULT_BATCH}", test_sh_s / predict32_s),
            (f"ratio test.sh / bare predict batch {PREDICT_BATCH}", test_sh_s / predict_big_s),
            ("(not timed above) load test set in-process", load_s),
            (f"(not timed above) build {k} models + load weights", build_s),
            (f"(not timed above) warm-up/tracing, batch {KERAS_DEFAULT_BATCH}", warm32_s),
            (f"(not timed above) warm-up/tracing, batch {PREDICT_BATCH}", warm_big_s),
        ],
    )


def main(argv=None):
    from common.tasks import task_names

    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        description=__doc__.split("\n")[0],
        epilog="Prints a table of seconds per task; no assertions on time.",
    )
    parser.add_argument(
        "tasks", nargs="*", metavar="TASK", help=f"tasks to measure: {', '.join(task_names())} (default: all)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="test-set size as a fraction of the real one (default: %(default)s)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each measurement; the best is reported (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.repeats < 1:
        parser.error("--scale must be positive and --repeats at least 1")
    unknown = sorted(set(args.tasks) - set(task_names()))
    if unknown:
        parser.error(f"unknown task {unknown[0]}; choose from {', '.join(task_names())}")
    from common.native_logs import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # several models' predict functions trip a retracing warning

    for task_name in args.tasks or task_names():
        with tempfile.TemporaryDirectory(prefix="evaluation_speed_") as tmp:
            n, test_sh_s, rows = measure(task_name, pathlib.Path(tmp), args.scale, args.repeats)
        width = max(len(label) for label, _ in rows)
        print(f"\n{task_name}: {n} synthetic samples, best of {args.repeats}, {os.cpu_count()} CPU cores visible")
        print(f"{'measurement':<{width}}  seconds / ratio")
        print("-" * (width + 17))
        for label, value in rows:
            print(f"{label:<{width}}  {'n/a' if value is None else f'{value:10.2f}'}")
        verdict = "yes" if test_sh_s < TIME_LIMIT_S else "NO"
        print(f"test.sh total under {TIME_LIMIT_S:.0f} s: {verdict} ({test_sh_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
