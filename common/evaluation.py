"""Evaluate early-exit models on a test set: traces, FLOPs, benefit curves, tables and figures.

Each model runs once over the test set, keeping every exit's softmax; everything else (the threshold
sweep over rho, the trade-off points) is computed from those arrays.
"""
import pathlib

import numpy as np
import tensorflow as tf

from common import flops, plots, report, sweep

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
               "paper": task.PAPER}
    report.write_json(results_dir / "summary.json", summary)
    report.write_text(results_dir / "table1.md", report.table1_markdown([table1_row(task, summary)]))

    for figure, (title, members, log_y) in task.FIGURES.items():
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
    return {"model": task.TITLE, "measured": measured, "paper": task.PAPER["table1"]}


def _save_trace(path, ids, labels, softmaxes):
    with report.atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=ids, labels=labels, **softmaxes)
