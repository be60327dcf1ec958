"""Evaluate early-exit models on a test set: traces, FLOPs, benefit curves, tables and figures.

Each model runs once over the test set, keeping every exit's softmax; everything else (the threshold
sweep over rho, the trade-off points) is computed from those arrays.
"""
import json
import pathlib

import numpy as np
import tensorflow as tf

from common import files, flops, plots, report, sweep, tasks
from common.errors import UserError
from common.weights import load_nets, weights_paths

PREDICT_BATCH = 500  # large batches keep inference fast on a CPU


def predict_exits(net, inputs, batch_size=PREDICT_BATCH):
    """{exit name: softmax (N, classes) float32} from one batched pass.

    A compiled forward pass over slices of the in-memory inputs: the same computation as
    `model.predict`, without its per-batch data-adapter and callback overhead (about 30 % faster).
    """
    model = net.model

    @tf.function(input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    def forward(batch):
        outputs = model(batch, training=False)
        return outputs if isinstance(outputs, list) else [outputs]

    batches = [forward(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)]
    return {name: np.concatenate([b[k].numpy() for b in batches]) for k, name in enumerate(net.exits)}


def run_test(task, source, models_dir, data_dir=None, results_dir=None, log=print):
    """test.sh: evaluate every model of the task (pretrained or trained) on its test set and write the
    results (`evaluate_models`). Returns (summary, results folder)."""
    task = tasks.load_task(task)
    weights_paths(task, source, models_dir)  # fail on missing models before reading data
    data_dir = tasks.test_data_dir(task, data_dir)
    inputs, labels, ids = task.load_test(data_dir)
    log(f"{task.NAME}: {len(labels)} test samples from {data_dir}")
    nets = load_nets(task, source, models_dir)
    results_dir = tasks.results_dir(task, results_dir)
    summary = evaluate_models(task, nets, inputs, labels, ids, results_dir, log)
    log((results_dir / "table1.md").read_text())
    for name, result in summary["models"].items():
        accuracy = ", ".join(f"{e} {a:.2f}%" for e, a in result["accuracy"].items())
        mflops = ", ".join(f"{e} {m:.2f}" for e, m in result["mflops"].items())
        log(f"{name:<15} accuracy: {accuracy}; MFLOPs: {mflops}")
    return summary, results_dir


def evaluate_models(task, nets, inputs, labels, ids, results_dir, log=print):
    """Run every model of `nets` ({name: ExitModel}, `base` among them) and write the results.

    Writes summary.json, traces/NAME.npz, benefit_curve_NAME.csv, table1.md and the task's figures
    under `results_dir`; returns the summary dict.
    """
    results_dir = pathlib.Path(results_dir)
    traces, costs = {}, {}
    for name, net in nets.items():
        log(f"{name}: predicting {len(inputs)} samples")
        traces[name] = predict_exits(net, inputs)
        costs[name] = flops.path_mflops(net.model)
        _save_trace(results_dir / "traces" / f"{name}.npz", ids, labels, traces[name])

    base_accuracy = sweep.standalone_accuracy(traces["base"]["ef"], labels)
    base_mflops = costs["base"][0]
    curves, summary_models = {}, {}
    for name, net in nets.items():
        curves[name] = sweep.benefit_curve(list(traces[name].values()), labels, costs[name], net.rule)
        report.write_curve_csv(results_dir / f"benefit_curve_{name}.csv", curves[name], net.exits)
        summary_models[name] = {
            "exits": list(net.exits),
            "accuracy": {e: sweep.standalone_accuracy(p, labels) for e, p in traces[name].items()},
            "mflops": dict(zip(net.exits, costs[name])),
            "params": int(net.model.count_params()),
            "tradeoff": sweep.tradeoff_points(curves[name], base_accuracy, base_mflops),
        }
    summary = {"task": task.NAME, "num_samples": int(len(labels)), "models": summary_models,
               "paper": getattr(task, "PAPER", {})}
    report.write_json(results_dir / "summary.json", summary)
    report.write_text(results_dir / "table1.md", report.table1_markdown([table1_row(task, summary)]))

    for figure, (title, members, log_y) in getattr(task, "FIGURES", {}).items():
        present = {label: curves[m] for label, m in members.items() if m in curves}
        if present:
            plots.benefit_figure(present, (base_accuracy, base_mflops), title, results_dir / figure, log_y=log_y)
    return summary


def table1_row(task, summary):
    """The task's Table 1 row: measured from `summary` (base and trecx_ev), and the paper's."""
    models = summary["models"]
    base, trecx = models["base"], models.get("trecx_ev")
    measured = {"baseline_accuracy": base["accuracy"]["ef"], "baseline_mflops": base["mflops"]["ef"],
                "baseline_params": base["params"]}
    if trecx is not None:
        measured.update(
            tradeoff_mflops=[p["mflops"] for p in trecx["tradeoff"]],
            tradeoff_reduction_pct=[p["reduction_pct"] for p in trecx["tradeoff"]],
            trecx_params=trecx["params"], standalone_ee=trecx["accuracy"]["ee"],
            standalone_ef=trecx["accuracy"]["ef"])
    return {"model": task.TITLE, "measured": measured, "paper": tasks.table1_paper(task)}


def _save_trace(path, ids, labels, softmaxes):
    files.save_npz(path, ids=ids, labels=labels, **softmaxes)


def write_table1(results_root):
    """Table 1 over every task with RESULTS_ROOT/TASK/summary.json, and the headline (the mean FLOPs
    reduction at the 1 % point) when every row has it; written to RESULTS_ROOT/table1.md, returned."""
    results_root = pathlib.Path(results_root)
    rows, reductions = [], []
    for name in tasks.task_names():
        path = results_root / name / "summary.json"
        if path.is_file():
            summary = json.loads(path.read_text())
            rows.append(table1_row(tasks.load_task(name), summary))
            reductions.append(rows[-1]["measured"].get("tradeoff_reduction_pct", [None])[0])
    if not rows:
        raise UserError(f"no TASK/summary.json under {results_root}; run the tasks' test.sh first")
    text = report.table1_markdown(rows)
    if None not in reductions:
        text += (f"\nMean FLOPs reduction at the 1 % trade-off point over {len(reductions)} task(s): "
                 f"{sum(reductions) / len(reductions):.2f} % (paper, over all three tasks: "
                 f"{tasks.PAPER_MEAN_REDUCTION_PCT} %)\n")
    files.write_text(results_root / "table1.md", text)
    return text


def reproduce(names, data_root, results_root, log=print):
    """reproduce.sh: for each task (all when `names` is empty) download the data into DATA_ROOT/TASK,
    build the test set where the task builds one (`prepare_test`), evaluate the pretrained models into
    RESULTS_ROOT/TASK; then Table 1 over them. Returns the Table 1 text."""
    for name in names or tasks.task_names():
        task = tasks.load_task(name)
        log(f"== {task.NAME}")
        data_dir = pathlib.Path(data_root) / task.NAME
        log(f"data ready in {task.download(data_dir)}")
        if hasattr(task, "prepare_test"):
            task.prepare_test(data_dir)
        run_test(task, "pretrained", None, data_dir / getattr(task, "TEST_SUBDIR", ""),
                 pathlib.Path(results_root) / task.NAME, log)
    return write_table1(results_root)
