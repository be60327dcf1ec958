"""How long `bash image_classification/test.sh` takes, against the bare inference it cannot avoid.

On one synthetic CIFAR-10 test batch (official pickle layout, written to a temporary folder), in one
process, this measures
  1. the wall time of the whole `bash image_classification/test.sh --data-dir D --results-dir OUT`
     as a subprocess: interpreter and TensorFlow start-up, data loading, building the five models
     and loading their pretrained weights, inference, benefit curves, Table 1, figures;
  2. in this process, a bare `model.predict(x)` of the five pretrained models over the same images,
     at Keras' default batch size (32) and at the evaluation's (common.evaluation.PREDICT_BATCH).
     Each model first predicts on a few samples with the same batch shapes (a full batch, plus the
     last partial one if any), so graph tracing is excluded from the timed predict and reported on
     its own line.
Synthetic images give meaningless accuracies but the same amount of work as the real test set.

Usage: python benchmarks/evaluation_speed.py [--num-samples 10000] [--repeats 1]
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


def run_test_sh(data_dir, results_dir):
    """Wall seconds of one full test.sh run, and the seconds test.sh reports itself (None if absent)."""
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(REPO_ROOT / "image_classification" / "test.sh"), "--data-dir", str(data_dir),
                           "--results-dir", str(results_dir)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"test.sh failed with status {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    reported = re.search(r"results in .* \(([\d.]+) s\)", proc.stdout)
    return seconds, float(reported.group(1)) if reported else None


def time_predicts(nets, inputs, batch_size, repeats):
    """(warm-up seconds, best-of-`repeats` seconds) of predicting `inputs` with every net in turn."""
    # Exactly the batch shapes the timed run feeds (a full batch, plus the last partial one if any):
    # a batch shape seen for the first time would retrace, and extra shapes relax the traced graph.
    warm = inputs[:batch_size + len(inputs) % batch_size]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="Prints a table of seconds; no assertions on time.")
    parser.add_argument("--num-samples", type=int, default=10000,
                        help="synthetic test images (default: %(default)s, the size of the CIFAR-10 test set)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each measurement; the best is reported (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.num_samples < 1 or args.repeats < 1:
        parser.error("--num-samples and --repeats must be at least 1")

    for path in (REPO_ROOT, REPO_ROOT / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from synthetic import write_cifar

    with tempfile.TemporaryDirectory(prefix="evaluation_speed_") as tmp:
        tmp = pathlib.Path(tmp)
        write_cifar(tmp / "data", n_test=args.num_samples, n_train_per_batch=1, seed=0)

        # 1. The whole command, before TensorFlow is loaded here, so nothing else competes for the cores.
        runs = [run_test_sh(tmp / "data", tmp / f"results{i}") for i in range(args.repeats)]
        test_sh_s, reported_s = min(runs, key=lambda r: r[0])

        # 2. Bare predict in this process.
        from common.cli import import_tensorflow_quietly
        import_tensorflow_quietly()
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")  # the five models' predict functions trip a retracing warning
        from common.evaluation import PREDICT_BATCH
        from common.models import build_model
        from common.pretrained import load_weights, pretrained_path
        from image_classification import task

        start = time.perf_counter()
        inputs, _, _ = task.load_test(tmp / "data")
        load_s = time.perf_counter() - start

        def pretrained_nets():
            nets = {}
            for name in task.MODELS:
                nets[name] = build_model(task.NAME, name)
                load_weights(nets[name].model, pretrained_path(task.NAME, name))
            return nets

        start = time.perf_counter()
        nets = pretrained_nets()
        build_s = time.perf_counter() - start
        warm32_s, predict32_s = time_predicts(nets, inputs, KERAS_DEFAULT_BATCH, args.repeats)
        # Fresh models: a model caches its predict function, and the batch-32 shapes it has already
        # traced would make TensorFlow relax the graph traced for PREDICT_BATCH (slower, unlike test.sh).
        warm_big_s, predict_big_s = time_predicts(pretrained_nets(), inputs, PREDICT_BATCH, args.repeats)

    rows = [
        (f"test.sh total (subprocess, {args.num_samples} images, 5 models)", test_sh_s),
        ("  of which test.sh reports itself (after TF import)", reported_s),
        (f"bare predict, 5 models, batch {KERAS_DEFAULT_BATCH}", predict32_s),
        (f"bare predict, 5 models, batch {PREDICT_BATCH} (PREDICT_BATCH)", predict_big_s),
        (f"ratio test.sh / bare predict batch {KERAS_DEFAULT_BATCH}", test_sh_s / predict32_s),
        (f"ratio test.sh / bare predict batch {PREDICT_BATCH}", test_sh_s / predict_big_s),
        ("(not timed above) load test batch in-process", load_s),
        ("(not timed above) build 5 models + load weights", build_s),
        (f"(not timed above) warm-up/tracing, batch {KERAS_DEFAULT_BATCH}", warm32_s),
        (f"(not timed above) warm-up/tracing, batch {PREDICT_BATCH}", warm_big_s),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"evaluation speed: {args.num_samples} synthetic CIFAR-10 images, best of {args.repeats}, "
          f"{os.cpu_count()} CPU cores visible")
    print(f"{'measurement':<{width}}  seconds / ratio")
    print("-" * (width + 17))
    for label, value in rows:
        print(f"{label:<{width}}  {'n/a' if value is None else f'{value:10.2f}'}")
    verdict = "yes" if test_sh_s < TIME_LIMIT_S else "NO"
    print(f"test.sh total under {TIME_LIMIT_S:.0f} s: {verdict} ({test_sh_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
