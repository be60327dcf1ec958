"""Command line shared by all tasks: `python -m common.cli COMMAND TASK ...`.

Commands: download, preprocess, train, test, deploy (what the per-task shell scripts `TASK/*.sh` call),
flops (per-layer counts) and report (Table 1 over all tasks). User errors (missing data, bad YAML,
unknown model) print one message and exit with status 2.
"""
import argparse
import importlib
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the way

from common.errors import UserError  # noqa: E402
from common.native_logs import quiet_native_logs  # noqa: E402

START = time.perf_counter()  # reported run times include start-up and the TensorFlow import
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TASKS = ("image_classification", "keyword_spotting", "visual_wake_words")


def import_tensorflow_quietly():
    """Import TensorFlow and find its devices without its C++ start-up notes."""
    with quiet_native_logs():
        import tensorflow as tf
        tf.config.list_physical_devices()


def load_task(name):
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return importlib.import_module(f"{name}.task")


def _names(requested, valid, what):
    unknown = [n for n in requested if n not in valid]
    if unknown:
        raise UserError(f"unknown {what} {unknown[0]!r}; valid: {', '.join(valid)}")
    return list(requested) or list(valid)


def cmd_download(args):
    task = load_task(args.task)
    folder = task.download(args.data_dir or REPO_ROOT / "data" / task.NAME, args.mirror)
    print(f"data ready in {folder}")


def cmd_preprocess(args):
    task = load_task(args.task)
    task.preprocess(args.data_dir or REPO_ROOT / "data" / task.NAME)


def _config_path(task, name):
    return REPO_ROOT / task.NAME / "configs" / f"{name}.yaml"


def cmd_train(args):
    from common.config import load_config
    from common.training import train

    task = load_task(args.task)
    if args.config:
        if args.models:
            raise UserError("--config names its model itself; drop the model names or the --config")
        config_paths = [args.config]
    else:
        config_paths = [_config_path(task, name) for name in _names(args.models, task.MODELS, "model")]
    data_dir = args.data_dir or REPO_ROOT / "data" / task.NAME
    for path in config_paths:
        config = load_config(path, args.set)
        if config.task != task.NAME:
            raise UserError(f"{path} is a {config.task} config; train it with bash {config.task}/train.sh")
        train_data, validation_data = task.training_data(config, data_dir)
        train(config, train_data, args.models_dir / task.NAME / config.model, validation_data, force=args.force)


def weights_paths(task, source, models_dir, names=None):
    """{name: weights file} for every model of the task (or those in `names`); UserError naming all
    missing trained ones."""
    from common.pretrained import pretrained_path

    names = task.MODELS if names is None else names
    if source == "pretrained":
        return {name: pretrained_path(task.NAME, name) for name in names}
    paths = {name: models_dir / task.NAME / name / "weights.npz" for name in names}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise UserError(f"no trained {', '.join(missing)} model(s) in {models_dir / task.NAME}; train with "
                        f"bash {task.NAME}/train.sh {' '.join(missing)}, or use --models pretrained")
    return paths


def load_nets(task, source, models_dir, names=None):
    """{name: ExitModel with weights} for every model of the task (or those in `names`), pretrained or
    trained.

    A trained model is rebuilt from the config saved beside its weights."""
    from common.config import load_config
    from common.models import build_model
    from common.pretrained import load_weights

    nets = {}
    for name, path in weights_paths(task, source, models_dir, names).items():
        if source == "trained":
            config = load_config(path.parent / "config.yaml")
            if (config.task, config.model) != (task.NAME, name):
                raise UserError(f"{path.parent / 'config.yaml'} describes {config.task}/{config.model}, "
                                f"not {task.NAME}/{name}; retrain it with --force")
        net = build_model(task.NAME, name)
        load_weights(net.model, path)
        nets[name] = net
    return nets


def _test_data_dir(task, data_dir):
    """The test data folder (default data/TASK[/TEST_SUBDIR]); UserError when it does not exist."""
    data_dir = data_dir or REPO_ROOT / "data" / task.NAME / getattr(task, "TEST_SUBDIR", "")
    if not pathlib.Path(data_dir).is_dir():
        raise UserError(f"data folder {data_dir} not found; run bash {task.NAME}/download.sh "
                        f"--data-dir {data_dir}, or pass --data-dir DIR holding {task.DATA_LAYOUT}")
    return data_dir


def cmd_test(args):
    from common.evaluation import evaluate_models

    task = load_task(args.task)
    weights_paths(task, args.models, args.models_dir)  # fail on missing models before reading data
    data_dir = _test_data_dir(task, args.data_dir)
    inputs, labels, ids = task.load_test(data_dir)
    print(f"{task.NAME}: {len(labels)} test samples from {data_dir}")
    nets = load_nets(task, args.models, args.models_dir)
    results_dir = args.results_dir or REPO_ROOT / "results" / task.NAME
    summary = evaluate_models(task, nets, inputs, labels, ids, results_dir)
    print((pathlib.Path(results_dir) / "table1.md").read_text())
    for name, result in summary["models"].items():
        accuracy = ", ".join(f"{e} {a:.2f}%" for e, a in result["accuracy"].items())
        mflops = ", ".join(f"{e} {m:.2f}" for e, m in result["mflops"].items())
        print(f"{name:<15} accuracy: {accuracy}; MFLOPs: {mflops}")
    print(f"results in {results_dir} ({time.perf_counter() - START:.1f} s in all)")


def cmd_deploy(args):
    """Export a T-RecX model and its base model to LiteRT (float32, int8) and C arrays, run them one
    sample at a time with early exit, and report accuracy, exit rate and latency (common.deploy)."""
    from common import deploy

    task = load_task(args.task)
    names = ("base", args.model)
    if args.model not in task.MODELS:
        raise UserError(f"unknown model {args.model!r} for {task.NAME}; valid models: {', '.join(task.MODELS)}")
    if args.rho is not None and not 0.0 <= args.rho <= 1.0:
        raise UserError(f"--rho must lie in [0, 1], got {args.rho}")
    if args.calibration_samples < 1 or args.threads < 1 or args.drop < 0:
        raise UserError("--calibration-samples and --threads must be at least 1 and --drop at least 0, got "
                        f"{args.calibration_samples}, {args.threads} and {args.drop}")
    runtime = deploy.Runtime(args.threads, args.kernels)
    nets = load_nets(task, args.models, args.models_dir, names)  # fail on a missing model before reading data
    deploy.split_stages(nets[args.model])  # and on a model without an early exit
    data_dir = _test_data_dir(task, args.data_dir)
    train_dir = args.train_data_dir or REPO_ROOT / "data" / task.NAME
    inputs, labels, _ = task.load_test(data_dir)
    print(f"{task.NAME}: {len(labels)} test samples from {data_dir}")
    validation = None
    if args.rho is None:
        validation = task.validation_set(train_dir)
        print(f"{len(validation[1])} validation samples from {train_dir}")
    calibration_dir = args.calibration_data or train_dir
    calibration = task.calibration_set(calibration_dir, n=args.calibration_samples)
    print(f"{len(calibration)} int8 calibration samples from the training split in {calibration_dir}")
    results_dir = args.results_dir or REPO_ROOT / "results" / task.NAME
    deploy.deploy(task, args.model, nets[args.model], nets["base"], (inputs, labels), results_dir,
                  calibration=calibration, validation=validation, rho=args.rho, drop=args.drop,
                  runtime=runtime)
    print((pathlib.Path(results_dir) / "deploy.md").read_text())
    print(f"results in {results_dir} ({time.perf_counter() - START:.1f} s in all)")


def cmd_report(args):
    """Table 1 over every task with results, and the headline: mean FLOPs reduction at the 1 % point."""
    import json

    from common import report
    from common.evaluation import table1_row

    rows, reductions = [], []
    for name in TASKS:
        path = args.results_root / name / "summary.json"
        if path.is_file():
            summary = json.loads(path.read_text())
            rows.append(table1_row(load_task(name), summary))
            reductions.append(rows[-1]["measured"].get("tradeoff_reduction_pct", [None])[0])
    if not rows:
        raise UserError(f"no TASK/summary.json under {args.results_root}; run the tasks' test.sh first")
    text = report.table1_markdown(rows)
    if None not in reductions:
        text += (f"\nMean FLOPs reduction at the 1 % trade-off point over {len(reductions)} task(s): "
                 f"{sum(reductions) / len(reductions):.2f} % (paper, over all three tasks: 31.58 %)\n")
    report.write_text(args.results_root / "table1.md", text)
    print(text)


def cmd_flops(args):
    from common import flops
    from common.models import build_model

    task = load_task(args.task)
    for name in _names(args.models, task.MODELS, "model"):
        net = build_model(task.NAME, name)
        for exit_name, costs in zip(net.exits, flops.path_costs(net.model)):
            print(f"\n{task.NAME}/{name}, path to exit {exit_name}: "
                  f"{sum(c.flops for c in costs) / 1e6:.3f} MFLOPs")
            print(flops.format_table(costs))


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m common.cli", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    # A task script (TASK/NAME.sh) names itself in TRECX_SCRIPT and passes the task: its usage shows the
    # script and hides the task argument.
    script = os.environ.get("TRECX_SCRIPT")

    def add(name, help_text, func):
        sub = commands.add_parser(name, help=help_text, description=help_text, prog=script)
        sub.add_argument("task", help=argparse.SUPPRESS if script else f"one of {', '.join(TASKS)}")
        sub.add_argument("--data-dir", type=pathlib.Path,
                         help="dataset folder (default: data/TASK in the repository)")
        sub.set_defaults(func=func)
        return sub

    sub = add("download", "Download and unpack the task's dataset (checksum-verified, resumable).", cmd_download)
    sub.add_argument("--mirror", help="a URL or folder holding the archives under their official file "
                                      "names, used instead of the official sites (checksums still apply)")

    add("preprocess", "Build the task's splits and caches from the downloaded data "
                      "(keyword spotting, visual wake words).", cmd_preprocess)

    sub = add("train", "Train models from their YAML configs (TASK/configs/NAME.yaml).", cmd_train)
    sub.add_argument("models", nargs="*", help="models to train (default: all)")
    sub.add_argument("--config", type=pathlib.Path,
                     help="train from this YAML config (it names its model) instead of TASK/configs/NAME.yaml")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set epochs=10 (repeatable)")
    sub.add_argument("--models-dir", type=pathlib.Path, default=REPO_ROOT / "trained_models",
                     help="where trained models go, as MODELS_DIR/TASK/NAME/ (default: %(default)s)")
    sub.add_argument("--force", action="store_true", help="overwrite an already trained model")

    sub = add("test", "Evaluate every model: traces, benefit curves, Table 1, figures.", cmd_test)
    sub.add_argument("--results-dir", type=pathlib.Path, help="output folder (default: results/TASK)")
    sub.add_argument("--models", choices=("pretrained", "trained"), default="pretrained",
                     help="the authors' converted weights, or your own from train (default: pretrained)")
    sub.add_argument("--models-dir", type=pathlib.Path, default=REPO_ROOT / "trained_models",
                     help="trained models root, for --models trained (default: %(default)s)")

    sub = add("deploy", "Export a T-RecX model to LiteRT float32/int8 and C arrays; run it with early exit "
                        "and measure accuracy, exit rate and latency against the base model.", cmd_deploy)
    sub.add_argument("--results-dir", type=pathlib.Path,
                     help="output folder: deploy.json, deploy.md, int8_vs_float.png/pdf, export/ "
                          "(default: results/TASK)")
    sub.add_argument("--models", choices=("pretrained", "trained"), default="pretrained",
                     help="the authors' converted weights, or your own from train (default: pretrained)")
    sub.add_argument("--models-dir", type=pathlib.Path, default=REPO_ROOT / "trained_models",
                     help="trained models root, for --models trained (default: %(default)s)")
    sub.add_argument("--model", default="trecx_ev", help="the T-RecX model to deploy: trecx_ev or trecx_noev "
                                                          "(default: %(default)s)")
    sub.add_argument("--rho", type=float, help="early-exit threshold in [0, 1]; default: chosen on the "
                                               "validation split (needs no validation data when given)")
    sub.add_argument("--drop", type=float, default=1.0,
                     help="accuracy points below the base model that the validation choice of rho may cost "
                          "(default: %(default)s)")
    sub.add_argument("--train-data-dir", type=pathlib.Path,
                     help="folder holding the training and validation splits (default: data/TASK)")
    sub.add_argument("--calibration-data", type=pathlib.Path,
                     help="folder whose training split gives the int8 representative set "
                          "(default: the --train-data-dir)")
    sub.add_argument("--calibration-samples", type=int, default=500,
                     help="size of the int8 representative set (default: %(default)s)")
    sub.add_argument("--threads", type=int, default=1,
                     help="interpreter threads; 1, as on a microcontroller (default: %(default)s)")
    sub.add_argument("--kernels", choices=("xnnpack", "builtin", "reference"), default="xnnpack",
                     help="LiteRT kernels: xnnpack (LiteRT's default, SIMD), builtin (optimised, no delegate) or "
                          "reference (the portable kernels TensorFlow Lite Micro shares; slow, but their relative "
                          "op costs are a microcontroller's) (default: %(default)s)")

    sub = commands.add_parser("report", help="Table 1 over all tasks from their results (results/table1.md).",
                              description="Table 1 over all tasks from RESULTS_ROOT/TASK/summary.json, "
                                          "written to RESULTS_ROOT/table1.md.")
    sub.add_argument("--results-root", type=pathlib.Path, default=REPO_ROOT / "results",
                     help="folder holding TASK/summary.json (default: %(default)s)")
    sub.set_defaults(func=cmd_report)

    sub = commands.add_parser("flops", help="Per-layer FLOPs, MACs and parameters of each exit path.",
                              description="Per-layer FLOPs, MACs and parameters of each exit path.")
    sub.add_argument("task", help=f"one of {', '.join(TASKS)}")
    sub.add_argument("models", nargs="*", help="models to count (default: all)")
    sub.set_defaults(func=cmd_flops)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    import_tensorflow_quietly()
    try:
        args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
