"""Command line shared by all tasks: `python -m common.cli COMMAND TASK ...`.

Commands: download, preprocess, train, test, deploy (what the per-task shell scripts `TASK/*.sh` call),
reproduce (what reproduce.sh calls), design-exit (an early exit designed in a target's instructions),
flops (per-layer counts), cost (any int8 model's instructions on a target, ms and mJ on a board),
fit-cost-model (the per-target instruction cost model refitted), report
(Table 1 over all tasks) and tasks (the registered task names). This module only parses arguments and
hands them to the library. User errors (missing data, bad YAML, unknown model) print one message and
exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common import environment
from common.arguments import ALL, GivenOnce, comma_list, old_form
from common.errors import UserError

if __name__ == "__main__":  # before the imports below need the packages: one message, not a traceback
    try:
        environment.require_installed()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

from common import tasks
from common.native_logs import import_tensorflow_quietly, quiet_native_logs
from common.target_cost import COST_FILE, DEFAULT_TARGET, MEASUREMENTS_FILE, NO_TARGET, TARGETS, check_target
from common.weights import SOURCES

DEFAULT_MODELS_DIR = tasks.REPO_ROOT / "trained_models"
# What an interrupted command leaves: downloads, caches and training resume; results are written whole.
INTERRUPTED = {
    "test": "the results folder was left as it was",
    "deploy": "the results folder was left as it was",
    "reproduce": "the results folder was left as it was; run the same command again: finished downloads are kept",
}
MCU_SAMPLES_UNSET = object()  # --mcu-samples not given (its value may be None: all)
# Commands that never import a built-in task module, so never TensorFlow (3-4 s of start-up).
WITHOUT_TENSORFLOW = {"tasks", "cost"}  # cost imports it only for a .keras model
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST)
Parser = argparse.ArgumentParser
Commands = argparse._SubParsersAction  # what add_subparsers returns: one parser per command


def _verify_checksums(args: argparse.Namespace) -> bool:
    """--skip-checksums' choice, said on every run that makes it."""
    if args.skip_checksums:
        print(
            "warning: --skip-checksums: the archives are not checked against the official checksums; results "
            f"are only as good as the archives in {args.mirror or 'the download source'}",
            file=sys.stderr,
        )
    return not args.skip_checksums


def cmd_download(args: argparse.Namespace) -> None:
    task = args.task
    verify = _verify_checksums(args)
    folder = task.download(
        tasks.data_dir(task, args.data_dir), args.mirror, split=args.split, force=args.force, verify_checksums=verify
    )
    print(f"data ready in {folder}")


def cmd_preprocess(args: argparse.Namespace) -> None:
    task = args.task
    if task.preprocess is None:
        print(f"{task.NAME} needs no preprocessing: bash {task.NAME}/test.sh and train.sh read the downloaded data")
        return
    task.preprocess(tasks.data_dir(task, args.data_dir))


def cmd_train(args: argparse.Namespace) -> None:
    from common.training import train_task

    train_task(
        args.task,
        args.models,
        config_file=args.config,
        overrides=args.set,
        data_folder=args.data_dir,
        models_dir=args.models_dir,
        force=args.force,
    )


def cmd_test(args: argparse.Namespace) -> pathlib.Path:
    from common.evaluation import ModelSelection, run_test

    names = () if args.model is None else comma_list(args.model)
    if args.model is not None and not names:
        raise UserError("--model needs at least one model name, e.g. --model base,trecx_ev")
    target = check_target(args.target)
    models = ModelSelection(source=args.models, models_dir=args.models_dir, names=list(names))
    _, results_dir = run_test(args.task, models, args.data_dir, args.results_dir, target=target)
    return results_dir


def _count_or_all(text: str) -> int | None:
    """argparse type: a whole number, or "all" (None)."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or all, got {text!r}") from None


def cmd_deploy(args: argparse.Namespace) -> pathlib.Path:
    from common.deploy.mcu_measure import parse_targets
    from common.deploy.options import DeployFolders, DeployOptions
    from common.deploy.pipeline import run_deploy

    if args.mcu_samples is not MCU_SAMPLES_UNSET and not args.mcu:
        raise UserError(
            "--mcu-samples sets how many test samples run on the emulated cores, so it needs --mcu "
            "TARGETS; add --mcu cortex-m4 (for example), or drop --mcu-samples"
        )
    chosen = {"mcu_samples": args.mcu_samples} if args.mcu_samples is not MCU_SAMPLES_UNSET else {}
    options = DeployOptions(
        rho=args.rho,
        drop=args.drop,
        calibration_samples=args.calibration_samples,
        threads=args.threads,
        kernels=args.kernels,
        mcu=tuple(parse_targets(args.mcu)) if args.mcu is not None else (),
        target=check_target(args.target),
        **chosen,
    )
    _, results_dir = run_deploy(
        args.task,
        args.model,
        source=args.models,
        folders=DeployFolders(
            models=args.models_dir,
            test_data=args.data_dir,
            train_data=args.train_data_dir,
            calibration_data=args.calibration_data,
            results=args.results_dir,
        ),
        options=options,
    )
    print((results_dir / "deploy.md").read_text())
    return results_dir


def cmd_report(args: argparse.Namespace) -> pathlib.Path:
    from common.table1 import write_table1

    print(write_table1(args.results_root))
    return args.results_root / "table1.md"


def cmd_reproduce(args: argparse.Namespace) -> str:
    """Table 1 over the tasks run; returns where their results and it were written."""
    from common.reproduce import reproduce

    target = check_target(args.target)
    verify = _verify_checksums(args)
    print(
        reproduce(
            args.tasks, args.data_root, args.results_root, mirror=args.mirror, verify_checksums=verify, target=target
        )
    )
    folders = ", ".join(str(args.results_root / name) for name in args.tasks or tasks.task_names())
    return f"{folders}; Table 1 in {args.results_root / 'table1.md'}"


def cmd_flops(args: argparse.Namespace) -> None:
    from common.flops import task_tables

    print(task_tables(args.task, args.models, check_target(args.target)))


def cmd_cost(args: argparse.Namespace) -> pathlib.Path | None:
    from common.boards import load_board
    from common.model_cost import cost_json, format_cost, model_cost, write_json

    board = load_board(args.board) if args.board else None
    target = check_target(args.target or (board.target if board else DEFAULT_TARGET))
    if target is None:
        raise UserError(f"--target: cost needs a target, one of {', '.join(TARGETS)}")
    if board and board.target != target:
        raise UserError(
            f"--board {board.name} is priced with {board.target}'s counts, not --target {target}; drop --target "
            f"or give --target {board.target}"
        )
    result = model_cost(args.model, target, measure=args.measure)
    print(format_cost(result, board))
    if args.json:
        write_json(args.json, cost_json(result, board))
        return args.json
    return None


def cmd_fit_cost_model(args: argparse.Namespace) -> None:
    from common.deploy.cost_fit import fit_cost_models

    targets = [check_target(name, "--targets") for name in comma_list(args.targets, every=TARGETS)]
    if not targets:
        raise UserError(f"--targets needs at least one target: some of {', '.join(TARGETS)}, or {ALL}")
    if None in targets:
        raise UserError(f"--targets: {NO_TARGET} is not a target to fit; give some of {', '.join(TARGETS)}, or all")
    content = fit_cost_models(
        targets, args.output, args.measurements, remeasure=not args.from_measurements, fresh=args.fresh
    )
    for target in targets:
        fit = content["targets"][target]["fit"]
        ops = fit["operators"]
        print(
            f"{target}: {ops['count']} measured operators, relative error median {ops['median_pct']:.2f} %, "
            f"worst {ops['max_pct']:.1f} %; whole models: "
            + ", ".join(f"{name} {error:+.2f} %" for name, error in fit["models"].items())
        )
    print(f"cost models written to {args.output}")


def cmd_design_exit(args: argparse.Namespace) -> None:
    from common.design_options import DesignOptions
    from common.exit_design import run_design

    options = DesignOptions(
        model=args.model,
        target=args.target,
        drop=args.drop,
        taps=comma_list(args.taps or ""),
        branches=comma_list(args.branches or ""),
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        force=args.force,
    )
    _, results_dir = run_design(
        args.task,
        options,
        source=args.models,
        models_dir=args.models_dir,
        data_dir=args.data_dir,
        results_dir=args.results_dir,
        output_models_dir=args.output_models_dir,
    )
    print((results_dir / "design.md").read_text())


def cmd_tasks(args: argparse.Namespace) -> None:
    """The task names, one a line, without importing TensorFlow: a built-in task is listed as registered (its
    package is part of this repository, checked by its tests); a task of $TRECX_EXTRA_TASKS is imported
    first (which may load TensorFlow), and one that cannot be is named on stderr with the reason."""
    broken = []
    for name in tasks.task_names():
        try:
            if name not in tasks.TASKS:
                with quiet_native_logs():  # the start-up notes of what the task imports
                    tasks.load_task(name)
            print(name)
        except UserError as err:
            broken.append(str(err))
    if broken:
        raise UserError("\n".join(broken))


def script_task(argv: Sequence[str]) -> str | None:
    """The task a task script runs (it passes COMMAND TASK first, and names itself in TRECX_SCRIPT), for help
    texts that name its folders; None for `python3 -m common.cli` typed by hand."""
    if os.environ.get("TRECX_SCRIPT") and len(argv) > 1 and argv[1] in tasks.task_names():
        return argv[1]
    return None


@dataclass(frozen=True)
class HelpFolders:
    """What the help texts name: the script a task script runs as (TRECX_SCRIPT, shown as the usage's program
    with the task argument hidden; None when typed by hand), the task names, and the default folders, the
    task's own when a script runs a task (else data/TASK stands for them)."""

    script: str | None
    task_names: str
    data: str
    results: str
    test: str

    @classmethod
    def of(cls, task: str | None) -> HelpFolders:
        data = f"data/{task or 'TASK'} in the repository"
        if task:  # the test set's subfolder: TEST_SUBDIR, common/tasks.py
            test = f"{pathlib.PurePosixPath('data', task, tasks.test_subdir(task))} in the repository"
        else:
            test = "; ".join(
                [data] + [f"{name}: data/{name}/{sub}" for name in tasks.TASKS if (sub := tasks.test_subdir(name))]
            )
        return cls(
            script=os.environ.get("TRECX_SCRIPT"),
            task_names=", ".join(tasks.task_names()),
            data=data,
            results=f"results/{task or 'TASK'}",
            test=test,
        )


def _command(commands: Commands, name: str, help_text: str, description: str, prog: str | None = None) -> Parser:
    # allow_abbrev=False everywhere: an option's prefix (a typo) is an error, never another option.
    sub = commands.add_parser(name, help=help_text, description=description, prog=prog, allow_abbrev=False)
    # An unknown option is reported with this command's usage; list_options: its comma-separated lists.
    sub.set_defaults(command_parser=sub, list_options=())
    return sub


def _task_command(
    commands: Commands, folders: HelpFolders, name: str, help_text: str, func: Callable[[argparse.Namespace], Any]
) -> Parser:
    """A command a task script runs: TASK (hidden from a script's usage) and --data-dir."""
    sub = _command(commands, name, help_text, help_text, prog=folders.script)
    sub.add_argument(
        "task", metavar="TASK", help=argparse.SUPPRESS if folders.script else f"one of {folders.task_names}"
    )
    data_help = (
        f"the test set folder (default: {folders.test})"
        if name in ("test", "deploy")
        else f"dataset folder (default: {folders.data})"
    )
    sub.add_argument("--data-dir", type=pathlib.Path, help=data_help)
    sub.set_defaults(func=func)
    return sub


def _weights_source(text: str) -> str:
    """argparse type of --models: the weights' source; a model name given instead is refused naming --model."""
    if text not in SOURCES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a source, pretrained or trained; a model is named with --model, e.g. --model {text}"
        )
    return text


def _add_models_source(sub: Parser) -> None:
    sub.add_argument(
        "--models",
        choices=SOURCES,
        type=_weights_source,
        default="pretrained",
        help="the authors' converted weights, or your own from train (default: pretrained)",
    )
    _add_models_dir(sub, "trained models root, for --models trained (default: %(default)s)")


def _add_models_dir(sub: Parser, help_text: str) -> None:
    sub.add_argument("--models-dir", type=pathlib.Path, default=DEFAULT_MODELS_DIR, help=help_text)


def _add_list(sub: Parser, option: str, help_text: str, **options: str) -> None:
    """An option whose value is one comma-separated list (parsed by common.arguments.comma_list)."""
    sub.add_argument(option, action=GivenOnce, help=help_text, **options)
    sub.set_defaults(list_options=(*sub.get_default("list_options"), option))


def _add_mirror(sub: Parser) -> None:
    sub.add_argument(
        "--mirror",
        metavar="URL_OR_DIR",
        help="a URL or folder holding the archives under their official file "
        "names, used instead of the official sites (checksums still apply)",
    )
    sub.add_argument(
        "--skip-checksums",
        action="store_true",
        help="do not check the archives against the official checksums: for archives you "
        "re-packed yourself in the official formats (default: check)",
    )


def _add_target(sub: Parser, what: str, default: str = DEFAULT_TARGET) -> None:
    sub.add_argument(
        "--target",
        default=default,
        metavar="TARGET",
        help=f"the microcontroller whose executed instructions, predicted by its cost model, {what}: "
        f"{', '.join(TARGETS)} (CMSIS-NN kernels unless :reference), or {NO_TARGET} (default: %(default)s)",
    )


def _add_download(commands: Commands, folders: HelpFolders) -> None:
    sub = _task_command(
        commands,
        folders,
        "download",
        "Download and unpack the task's dataset (checksum-verified, resumable).",
        cmd_download,
    )
    _add_mirror(sub)
    sub.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default="all",
        help="download what testing needs, what training needs, or both (default: %(default)s)",
    )
    sub.add_argument(
        "--force",
        action="store_true",
        help="let unpacking replace existing files whose content differs from the archive's "
        "(default: refuse and list them)",
    )


def _add_preprocess(commands: Commands, folders: HelpFolders) -> None:
    _task_command(
        commands,
        folders,
        "preprocess",
        "Build the task's splits and caches from the downloaded data (keyword spotting, visual wake words).",
        cmd_preprocess,
    )


def _add_train(commands: Commands, folders: HelpFolders) -> None:
    sub = _task_command(
        commands, folders, "train", "Train models from their YAML configs (TASK/configs/NAME.yaml).", cmd_train
    )
    sub.add_argument("models", nargs="*", metavar="NAME", help="models to train (default: all)")
    sub.add_argument(
        "--config",
        type=pathlib.Path,
        help="train from this YAML config (it names its model) instead of TASK/configs/NAME.yaml",
    )
    sub.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set epochs=10 (repeatable: a value may hold commas itself)",
    )
    _add_models_dir(sub, "where trained models go, as MODELS_DIR/TASK/NAME/ (default: %(default)s)")
    sub.add_argument("--force", action="store_true", help="overwrite an already trained model")


def _add_test(commands: Commands, folders: HelpFolders) -> None:
    sub = _task_command(
        commands, folders, "test", "Evaluate every model: traces, benefit curves, Table 1, figures.", cmd_test
    )
    sub.add_argument("--results-dir", type=pathlib.Path, help=f"output folder (default: {folders.results})")
    _add_models_source(sub)
    _add_list(
        sub,
        "--model",
        "the models to evaluate, comma-separated, e.g. base,trecx_ev (default: all; with --models trained, every "
        "model you trained). The trade-off baseline is base, the pretrained one when base is not evaluated",
        metavar="NAME[,NAME...]",
    )
    _add_target(sub, "are reported beside the MFLOPs")


def _add_deploy(commands: Commands, folders: HelpFolders) -> None:
    from common.deploy.options import DeployOptions
    from common.deploy.runtime import KERNELS

    defaults = DeployOptions()
    sub = _task_command(
        commands,
        folders,
        "deploy",
        "Export a T-RecX model to LiteRT float32/int8 and C arrays; run it with early exit "
        "and measure accuracy, exit rate and latency against the base model.",
        cmd_deploy,
    )
    sub.add_argument(
        "--results-dir",
        type=pathlib.Path,
        help="output folder: deploy.json, deploy.md, int8_vs_float.png/pdf, export/ (default: "
        f"{folders.results}/deploy, apart from test.sh's outputs)",
    )
    _add_models_source(sub)
    sub.add_argument(
        "--model",
        default="trecx_ev",
        metavar="NAME",
        help="the T-RecX model to deploy: trecx_ev or trecx_noev (default: %(default)s)",
    )
    sub.add_argument(
        "--rho",
        type=float,
        help="early-exit threshold in [0, 1]; default: chosen on the validation split (given, it needs no "
        "validation data; int8 calibration still reads --calibration-data)",
    )
    sub.add_argument(
        "--drop",
        type=float,
        default=defaults.drop,
        help="accuracy points below the base model that the validation choice of rho may cost (default: %(default)s)",
    )
    sub.add_argument(
        "--train-data-dir",
        type=pathlib.Path,
        help=f"folder holding the training and validation splits (default: {folders.data})",
    )
    sub.add_argument(
        "--calibration-data",
        type=pathlib.Path,
        help="folder whose training split, or a folder laid out as the test set (no labels "
        "needed), gives the int8 representative set (default: the --train-data-dir)",
    )
    sub.add_argument(
        "--calibration-samples",
        type=int,
        default=defaults.calibration_samples,
        help="size of the int8 representative set (default: %(default)s)",
    )
    sub.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="interpreter threads; 1, as on a microcontroller (default: %(default)s)",
    )
    sub.add_argument(
        "--kernels",
        choices=tuple(KERNELS),
        default=defaults.kernels,
        help="LiteRT kernels: xnnpack (LiteRT's default, SIMD), builtin (optimised, no delegate) or "
        "reference (the portable kernels TensorFlow Lite Micro shares; slow, but their relative "
        "op costs are a microcontroller's) (default: %(default)s)",
    )
    _add_list(
        sub,
        "--mcu",
        "also run the int8 models in TensorFlow Lite Micro on emulated Cortex-M cores, "
        "counting executed instructions (needs bash install_mcu_toolchain.sh): comma-separated "
        "CORE or CORE:KERNELS, CORE one of cortex-m4, cortex-m7, cortex-m55, KERNELS cmsis-nn "
        "(default) or reference; all = cortex-m4,cortex-m4:reference,cortex-m7,cortex-m55",
        metavar="TARGET[,TARGET...]",
    )
    sub.add_argument(
        "--mcu-samples",
        type=_count_or_all,
        default=MCU_SAMPLES_UNSET,
        metavar="K",
        help=f"test samples to run on each emulated core, or all; only with --mcu (default: {defaults.mcu_samples})",
    )
    _add_target(sub, "choose rho on the validation split (the cheapest within --drop) and are reported")


def _add_report(commands: Commands) -> None:
    sub = _command(
        commands,
        "report",
        "Table 1 over all tasks from their results (results/table1.md).",
        "Table 1 over all tasks from RESULTS_ROOT/TASK/summary.json, written to RESULTS_ROOT/table1.md.",
    )
    sub.add_argument(
        "--results-root",
        type=pathlib.Path,
        default=tasks.REPO_ROOT / "results",
        help="folder holding TASK/summary.json (default: %(default)s)",
    )
    sub.set_defaults(func=cmd_report)


def _add_reproduce(commands: Commands, folders: HelpFolders) -> None:
    sub = _command(
        commands,
        "reproduce",
        "Download, evaluate every pretrained model and write Table 1.",
        "For each task (default: all): download what its test set needs "
        "into DATA_ROOT/TASK unless the test set is in place, build its test "
        "set, evaluate every pretrained model into RESULTS_ROOT/TASK; then "
        "RESULTS_ROOT/table1.md.",
        prog=folders.script,
    )
    sub.add_argument("tasks", nargs="*", metavar="task", help=f"tasks to run (default: all of {folders.task_names})")
    _add_mirror(sub)
    sub.add_argument(
        "--data-root",
        type=pathlib.Path,
        default=tasks.REPO_ROOT / "data",
        help="datasets go to DATA_ROOT/TASK (default: %(default)s)",
    )
    sub.add_argument(
        "--results-root",
        type=pathlib.Path,
        default=tasks.REPO_ROOT / "results",
        help="results go to RESULTS_ROOT/TASK (default: %(default)s)",
    )
    _add_target(sub, "are reported beside the MFLOPs")
    sub.set_defaults(func=cmd_reproduce)


def _add_flops(commands: Commands, folders: HelpFolders) -> None:
    help_text = "Per-layer FLOPs, MACs and parameters of each exit path."
    sub = _command(commands, "flops", help_text, help_text)
    sub.add_argument("task", help=f"one of {folders.task_names}")
    sub.add_argument("models", nargs="*", metavar="NAME", help="models to count (default: all)")
    _add_target(sub, "are printed for each path too", default=NO_TARGET)
    sub.set_defaults(func=cmd_flops)


def _add_cost(commands: Commands) -> None:
    from common.boards import BOARDS_FILE, boards

    sub = _command(
        commands,
        "cost",
        "Any int8 model's executed instructions on a target, per operator; ESTIMATED ms and mJ on a board.",
        "Predict a .tflite (int8) or .keras model's executed instructions on an emulated Cortex-M, "
        "per operator and in total, from the target's cost model (no toolchain needed), and on a board the "
        "estimated milliseconds and millijoules (docs/target_cost.md).",
    )
    sub.add_argument("model", metavar="MODEL", type=pathlib.Path, help="a .tflite (int8) or .keras model file")
    sub.add_argument(
        "--target",
        metavar="TARGET",
        help=f"one of {', '.join(TARGETS)} (CMSIS-NN kernels unless :reference; default: the board's target, "
        f"else {DEFAULT_TARGET})",
    )
    sub.add_argument(
        "--board",
        metavar="BOARD",
        help=f"one of {', '.join(boards())} ({BOARDS_FILE.name}): ESTIMATED ms and mJ from the instructions",
    )
    sub.add_argument("--json", metavar="FILE", type=pathlib.Path, help="also write the figures to FILE as JSON")
    sub.add_argument(
        "--measure",
        action="store_true",
        help="also run the model on the emulated target and print each count beside its prediction (needs "
        "the MCU toolchain: bash install_mcu_toolchain.sh)",
    )
    sub.set_defaults(func=cmd_cost)


def _add_fit_cost_model(commands: Commands) -> None:
    sub = _command(
        commands,
        "fit-cost-model",
        "Refit the per-target instruction cost model on the emulator (needs the MCU toolchain).",
        "Measure single-operator probes and the tasks' exported T-RecX models on the emulated "
        "targets and fit the per-operator instruction cost model (common/target_cost.py) to them.",
    )
    _add_list(
        sub,
        "--targets",
        "comma-separated targets to refit, or all (default: all = cortex-m4, cortex-m4:reference, "
        "cortex-m7, cortex-m55)",
        default=ALL,
        metavar="TARGET[,TARGET...]",
    )
    sub.add_argument(
        "--output",
        type=pathlib.Path,
        default=COST_FILE,
        help="the cost model file to update (default: %(default)s)",
    )
    sub.add_argument(
        "--from-measurements",
        action="store_true",
        help="refit from the counts kept in --measurements instead of measuring on the emulator (needs no toolchain)",
    )
    sub.add_argument(
        "--measurements",
        type=pathlib.Path,
        default=MEASUREMENTS_FILE,
        help="the emulator's counts, kept between runs: read, checked, and updated when measuring "
        "(default: %(default)s)",
    )
    sub.add_argument(
        "--fresh",
        action="store_true",
        help="measure every probe again (default: only those the kept counts do not hold for a target)",
    )
    sub.set_defaults(func=cmd_fit_cost_model)


def _add_design_exit(commands: Commands, folders: HelpFolders) -> None:
    from common.design_options import DesignOptions

    sub = _task_command(
        commands,
        folders,
        "design-exit",
        "Design a T-RecX model's early exit in a target's instructions: every tap and branch, each branch "
        "trained on the frozen network, against the model's own trained exit on the same validation data; a "
        "new exit is kept only where it saves more instructions within --drop.",
        cmd_design_exit,
    )
    _add_models_source(sub)
    sub.add_argument(
        "--model",
        default=DesignOptions.model,
        metavar="NAME",
        help="the T-RecX model whose early exit to redesign (default: %(default)s)",
    )
    _add_list(
        sub, "--taps", "comma-separated taps to try (default: every tap the backbone allows)", metavar="TAP[,TAP...]"
    )
    _add_list(
        sub,
        "--branches",
        "comma-separated branches to try, of common.exits.BRANCHES (default: all; docs/exit_design.md)",
        metavar="BRANCH[,BRANCH...]",
    )
    sub.add_argument(
        "--drop",
        type=float,
        default=DesignOptions.drop,
        help="accuracy points below the base model the chosen design may cost on validation (default: %(default)s)",
    )
    sub.add_argument(
        "--epochs", type=int, default=DesignOptions.epochs, help="most epochs per branch (default: %(default)s)"
    )
    sub.add_argument(
        "--patience",
        type=int,
        default=DesignOptions.patience,
        help="epochs without a better validation accuracy before a branch stops (default: %(default)s)",
    )
    sub.add_argument(
        "--seed", type=int, default=DesignOptions.seed, help="seed of the branches' training (default: %(default)s)"
    )
    sub.add_argument(
        "--results-dir",
        type=pathlib.Path,
        help="output folder: design.md, .csv, .json, .png/pdf (default: results/TASK/design)",
    )
    sub.add_argument(
        "--output-models-dir",
        type=pathlib.Path,
        default=DEFAULT_MODELS_DIR,
        help="where a new exit that beats the trained one goes, as a trained model (OUT/TASK/MODEL) beside its "
        "base model, for test.sh, deploy.sh and train.sh; nothing is written when the trained exit wins "
        "(default: %(default)s)",
    )
    sub.add_argument("--force", action="store_true", help="replace a trained model there")
    _add_target(sub, "choose the design")


def _add_tasks(commands: Commands) -> None:
    sub = _command(
        commands,
        "tasks",
        "List the registered tasks, one per line.",
        "List the registered tasks (common/tasks.py), one per line.",
    )
    sub.set_defaults(func=cmd_tasks)


def build_parser(task: str | None = None) -> Parser:
    """The command line, one `_add_COMMAND` per command; `task`: the task a task script runs, whose default
    folders the help texts name (without it, data/TASK stands for them)."""
    parser = argparse.ArgumentParser(
        prog="python -m common.cli", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    commands = parser.add_subparsers(dest="command", required=True)
    folders = HelpFolders.of(task)
    _add_download(commands, folders)
    _add_preprocess(commands, folders)
    _add_train(commands, folders)
    _add_test(commands, folders)
    _add_deploy(commands, folders)
    _add_report(commands)
    _add_reproduce(commands, folders)
    _add_flops(commands, folders)
    _add_cost(commands)
    _add_fit_cost_model(commands)
    _add_design_exit(commands, folders)
    _add_tasks(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    start = time.perf_counter()  # reported run times include the TensorFlow import
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = build_parser(script_task(argv)).parse_known_args(argv)
    if unknown:
        message = old_form(argv, unknown, args.list_options)  # an old space-separated list: the new form
        args.command_parser.error(message or f"unrecognized arguments: {' '.join(unknown)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the way
    if args.command not in WITHOUT_TENSORFLOW:
        import_tensorflow_quietly()  # the other commands import task modules, which import Keras
    try:
        if getattr(args, "task", None) is not None:
            args.task = tasks.load_task(args.task)  # resolved once: every command gets the task module
        written = args.func(args)  # where a command wrote its results, said last with the time it took
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {INTERRUPTED.get(args.command, 'run the same command again to resume')}", file=sys.stderr)
        return 130
    except OSError as err:  # a full disk, a read-only or missing folder met while writing
        if err.errno not in WRITE_ERRORS:
            raise
        where = f" {err.filename}" if err.filename else ""
        fix = "free some space" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
        print(
            f"error: cannot write{where}: {err.strerror}; {fix} or choose another output folder, "
            "then run the same command again",
            file=sys.stderr,
        )
        return 2
    if written is not None:
        print(f"results in {written} ({time.perf_counter() - start:.1f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
