"""How long `python3 -m common.cli cost MODEL` takes: start-up, and pricing a model after it.

For each task the pretrained base model is saved as `.keras` and converted to int8 `.tflite` (as deploy.sh
converts, calibrated on synthetic inputs in the task's input range). Then, per model file, it times the
whole command as a user runs it (a new process: Python, the imports, reading the model, printing; with a
board), and, in this process after one untimed call, `common.model_cost.model_cost` alone (reading and
pricing; for a `.keras`, loading it). It prints medians of --repeats and the predicted totals, which are
the same for a model's two files.

Usage, from the repository root:
    python3 -m benchmarks.cost_command [--tasks T1,T2] [--repeats 5] [--board stm32l4r5-microtvm]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _median_s(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    from common.arguments import ALL, choice_list
    from common.tasks import task_names

    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.split("\n")[0], epilog="Prints a table; asserts nothing."
    )
    parser.add_argument(
        "--tasks",
        type=choice_list(task_names()),
        default=ALL,
        help=f"tasks to measure, comma-separated, of {', '.join(task_names())} (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (default: %(default)s)")
    parser.add_argument("--board", default="stm32l4r5-microtvm", help="the board of the timed command")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from common.deploy.export import to_tflite
    from common.model_cost import model_cost
    from common.tasks import load_task
    from common.weights import load_nets

    rows = []
    with tempfile.TemporaryDirectory(prefix="trecx_cost_bench_") as tmp:
        for name in args.tasks:
            task = load_task(name)
            model = load_nets(task, "pretrained", None, ["base"])["base"].model
            paths = {".keras": Path(tmp) / f"{name}.keras", ".tflite": Path(tmp) / f"{name}.tflite"}
            model.save(paths[".keras"])
            paths[".tflite"].write_bytes(to_tflite(model, task.synthetic_inputs(32)[0]))
            for suffix, path in paths.items():
                command = [sys.executable, "-m", "common.cli", "cost", str(path), "--board", args.board]
                run = lambda command=command: subprocess.run(command, check=True, capture_output=True)  # noqa: E731
                whole = _median_s(run, args.repeats)
                total = model_cost(path, "cortex-m4").predicted  # untimed: the first call loads the cost model
                alone = _median_s(lambda path=path: model_cost(path, "cortex-m4"), args.repeats)
                rows.append((name, suffix, whole, alone, total))
    print(f"{'task':<22} {'file':<8} {'command, s':>11} {'model_cost alone, s':>20} {'predicted M instr.':>19}")
    for name, suffix, whole, alone, total in rows:
        print(f"{name:<22} {suffix:<8} {whole:>11.2f} {alone:>20.3f} {total / 1e6:>19.3f}")
    print(f"medians of {args.repeats} runs; the command includes Python's start-up and the imports")


if __name__ == "__main__":
    main()
