"""Early exits designed in a target's cost: `python3 -m common.cli design-exit TASK`.

For a trained T-RecX network, every candidate early exit (each backbone tap an exit may attach to, times
each branch of `common.exits.BRANCHES`) gets its branch trained alone on the frozen network: the tap's
features of the training split are computed once and cached, and the branch learns from them with early
stopping on the validation split, so nothing else of the network can change. Each candidate is then
costed in the target's instructions (common.target_cost) and the design kept is the one with the largest
expected instruction saving on validation, at the cheapest rho within `drop` accuracy points of the base
model (as deploy.sh chooses rho). The final exit, early view included, stays as trained.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import types
from collections.abc import Callable, Sequence

import keras
import numpy as np

from common import exits, flops, sweep, target_cost
from common.config import EarlyExit
from common.design_options import DesignOptions
from common.errors import UserError
from common.evaluation import predict_exits
from common.models import DESIGNABLE_VARIANTS, ExitModel, build_model, early_exit_taps, tap_layers

BATCH_SIZE = 128
SPLITS = ("training_set", "validation_set")  # the optional task functions design-exit trains and chooses on


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One early exit trained on the frozen network, measured on the validation split.

    accuracy: the early exit's standalone accuracy (%); path_minstructions / path_mflops: stage 1 (tap and
    branch) and stage 1 + stage 2; choice: the cheapest rho in instructions within the drop
    (`common.deploy.pipeline.choose_rho`: rho, accuracy, minstructions, reduction_pct, met); epochs: those
    the branch trained before early stopping; paper: the architecture's own exit.
    """

    early_exit: EarlyExit
    accuracy: float
    path_minstructions: tuple[float, float]
    path_mflops: tuple[float, float]
    choice: dict
    epochs: int
    paper: bool
    curve_accuracy: tuple[float, ...]
    curve_minstructions: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"{self.early_exit.tap}/{self.early_exit.branch}"


@dataclasses.dataclass(frozen=True)
class Design:
    """All candidates of a run, the base model's validation accuracy and cost, and the chosen candidate
    (None when none saves instructions within the drop)."""

    task: str
    model: str
    target: str
    drop: float
    base_accuracy: float
    base_minstructions: float
    base_mflops: float
    candidates: list[Candidate]
    chosen: Candidate | None


def candidates(task: types.ModuleType, taps: Sequence[str] = (), branches: Sequence[str] = ()) -> list[EarlyExit]:
    """Every (tap, branch) of the task, or of the taps and branches named; UserError naming the valid ones."""
    valid_taps = early_exit_taps(task.ARCHITECTURE)
    for option, named, valid in (("--taps", taps, valid_taps), ("--branches", branches, tuple(exits.BRANCHES))):
        unknown = [name for name in named if name not in valid]
        if unknown:
            raise UserError(f"{option}: unknown {unknown[0]!r} for {task.NAME}; valid: {', '.join(valid)}")
    return [EarlyExit(tap, branch) for tap in taps or valid_taps for branch in branches or exits.BRANCHES]


def paper_exit(task: types.ModuleType) -> EarlyExit:
    """The architecture's own early exit, as a design."""
    return EarlyExit(task.ARCHITECTURE.trecx["tap"], "paper")


def tap_features(net: ExitModel, tap_layer: str, inputs: np.ndarray) -> np.ndarray:
    """The output of `tap_layer` of `net` for `inputs` (inference mode)."""
    extractor = keras.Model(net.model.input, net.model.get_layer(tap_layer).output)
    return np.asarray(extractor.predict(inputs, batch_size=256, verbose=0))


def branch_model(task: types.ModuleType, design: EarlyExit, tap_shape: tuple[int, ...]) -> keras.Model:
    """The branch of `design` alone: the tap's features in, the early exit's softmax out."""
    arch = task.ARCHITECTURE
    features = keras.Input(tap_shape, name="tap_features")
    return keras.Model(features, exits.BRANCHES[design.branch](features, arch.num_classes, arch.early_exit_arguments()))


def train_branch(
    branch: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int = DesignOptions.epochs,
    patience: int = DesignOptions.patience,
    seed: int = 0,
) -> int:
    """Train `branch` on (features, labels) with Adam, keeping the weights of the epoch with the best
    validation accuracy (stopping after `patience` epochs without a better one); returns the epochs run."""
    keras.utils.set_random_seed(seed)
    branch.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True
    )
    history = branch.fit(
        *train, batch_size=BATCH_SIZE, epochs=epochs, validation_data=validation, callbacks=[stop], verbose=0
    )
    return len(history.history["loss"])


def assemble(
    task: types.ModuleType, variant: str, design: EarlyExit, source: ExitModel, branch: keras.Model
) -> ExitModel:
    """`variant` of the task with `design`'s early exit: the branch's weights from `branch`, every other
    layer's from `source` (the network the branch was trained on)."""
    net = build_model(task, variant, design)
    trained = {layer.name: layer for layer in source.model.layers}
    trained.update({layer.name: layer for layer in branch.layers})  # the new branch wins over the old exit
    for layer in net.model.layers:
        if layer.weights:
            layer.set_weights(trained[layer.name].get_weights())
    return net


def evaluate(
    net: ExitModel,
    early_softmax: np.ndarray,
    final_softmax: np.ndarray,
    labels: np.ndarray,
    cost: target_cost.CostModel,
    base_accuracy: float,
    base_minstructions: float,
    drop: float,
) -> tuple[float, tuple, tuple, dict, sweep.Curve, np.ndarray]:
    """(standalone accuracy, path instructions (M), path MFLOPs, the choice in instructions, curve, its
    mean instructions per rho) of an early-exit model from its validation softmaxes."""
    from common.deploy.pipeline import choose_rho

    minstructions = tuple(value / 1e6 for value in target_cost.path_instructions(net.model, cost))
    mflops = tuple(flops.path_mflops(net.model))
    curve = sweep.benefit_curve([early_softmax, final_softmax], labels, mflops, net.rule)
    mean = sweep.mean_cost(curve, minstructions)
    choice = choose_rho(curve, base_accuracy, base_minstructions, drop, cost=mean, unit="minstructions")
    return sweep.standalone_accuracy(early_softmax, labels), minstructions, mflops, choice, curve, mean


def best(candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate with the largest expected instruction saving among those within the drop that save
    anything (ties: the higher validation accuracy at the chosen rho, then the first listed)."""
    saving = [c for c in candidates if c.choice["met"] and c.choice["reduction_pct"] > 0]
    if not saving:
        return None
    return max(saving, key=lambda c: (c.choice["reduction_pct"], c.choice["accuracy"]))


def design_exits(
    task: types.ModuleType,
    source: ExitModel,
    base: ExitModel,
    variant: str,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    target: str,
    drop: float = DesignOptions.drop,
    designs: Sequence[EarlyExit] = (),
    epochs: int = DesignOptions.epochs,
    patience: int = DesignOptions.patience,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> tuple[Design, dict[str, ExitModel]]:
    """Train and cost every design (default: all candidates) on the frozen `source`; returns the Design
    and {candidate name: its assembled network}."""
    designs = list(designs) or candidates(task)
    cost = target_cost.load_cost_model(target)
    val_inputs, val_labels = validation
    final_softmax = predict_exits(source, val_inputs)["ef"]
    base_accuracy = sweep.standalone_accuracy(predict_exits(base, val_inputs)["ef"], val_labels)
    base_minstructions = target_cost.path_instructions(base.model, cost)[0] / 1e6
    base_mflops = flops.path_mflops(base.model)[0]
    log(
        f"{task.NAME}: {len(designs)} candidate early exits on the frozen {variant}; base model "
        f"{base_accuracy:.2f} % on {len(val_labels)} validation samples, {base_minstructions:.3f} M "
        f"instructions on {target}"
    )
    results, nets = [], {}
    layers = tap_layers(task.ARCHITECTURE)
    for tap in dict.fromkeys(design.tap for design in designs):
        layer = layers[tap]
        train_features, val_features = tap_features(source, layer, train[0]), tap_features(source, layer, val_inputs)
        for design in (d for d in designs if d.tap == tap):
            branch = branch_model(task, design, train_features.shape[1:])
            ran = train_branch(
                branch,
                (train_features, train[1]),
                (val_features, val_labels),
                epochs=epochs,
                patience=patience,
                seed=seed,
            )
            net = assemble(task, variant, design, source, branch)
            early_softmax = np.asarray(branch.predict(val_features, batch_size=256, verbose=0))
            accuracy, minstructions, mflops, choice, curve, mean = evaluate(
                net, early_softmax, final_softmax, val_labels, cost, base_accuracy, base_minstructions, drop
            )
            candidate = Candidate(
                design,
                accuracy,
                minstructions,
                mflops,
                choice,
                ran,
                design == paper_exit(task),
                tuple(float(a) for a in curve.accuracy),
                tuple(float(m) for m in mean),
            )
            results.append(candidate)
            nets[candidate.name] = net
            saved = (
                f"saves {choice['reduction_pct']:.1f} % at rho {choice['rho']:.2f}"
                if choice["met"]
                else "no rho within the drop"
            )
            log(
                f"  {candidate.name:<24} early exit {accuracy:6.2f} %, stage 1 {minstructions[0]:.3f} M, both "
                f"{minstructions[1]:.3f} M instructions; {saved} ({ran} epochs)"
            )
    design = Design(
        task.NAME, variant, target, drop, base_accuracy, base_minstructions, base_mflops, results, best(results)
    )
    return design, nets


def write_design_model(
    task: types.ModuleType,
    net: ExitModel,
    candidate: Candidate,
    base_weights: str | os.PathLike,
    variant: str,
    models_dir: str | os.PathLike,
    force: bool = False,
) -> pathlib.Path:
    """The chosen network as a trained model, MODELS_DIR/TASK/VARIANT/{weights.npz, config.yaml} (the
    task's config for VARIANT with `early_exit` set, which train.sh retrains from scratch), beside the base
    model it was designed against (MODELS_DIR/TASK/base, written when absent): what test.sh and deploy.sh
    read with --models trained. Refuses to replace a trained model without `force`."""
    from common import config as config_lib
    from common.files import staged_folder, write_bytes, write_text
    from common.tasks import config_path
    from common.weights import save_weights, trained_path, writable_trained_path

    target = writable_trained_path(task, variant, models_dir, force)
    config = config_lib.load_config(config_path(task, variant))
    transfer = config.weight_transfer_epochs if candidate.early_exit.branch == "paper" else 0
    config = dataclasses.replace(config, early_exit=candidate.early_exit, weight_transfer_epochs=transfer)
    with staged_folder(target.parent) as staging:  # config and weights replace a model's together, or not at all
        write_text(staging / "config.yaml", config_lib.to_yaml(config))
        save_weights(net.model, staging / target.name)
    base = trained_path(task, "base", models_dir)
    if not base.exists():
        with staged_folder(base.parent) as staging:
            write_text(staging / "config.yaml", config_lib.to_yaml(config_lib.load_config(config_path(task, "base"))))
            write_bytes(staging / base.name, pathlib.Path(base_weights).read_bytes())
    return target.parent


def _row(candidate: Candidate) -> dict:
    choice = candidate.choice
    return {
        "tap": candidate.early_exit.tap,
        "branch": candidate.early_exit.branch,
        "paper": candidate.paper,
        "early_exit_accuracy_pct": candidate.accuracy,
        "stage1_minstructions": candidate.path_minstructions[0],
        "both_stages_minstructions": candidate.path_minstructions[1],
        "stage1_mflops": candidate.path_mflops[0],
        "both_stages_mflops": candidate.path_mflops[1],
        "rho": choice["rho"] if choice["met"] else None,
        "accuracy_at_rho_pct": choice["accuracy"] if choice["met"] else None,
        "minstructions_at_rho": choice["minstructions"] if choice["met"] else None,
        "instruction_saving_pct": choice["reduction_pct"] if choice["met"] else None,
        "epochs": candidate.epochs,
    }


COLUMNS = (
    "tap",
    "branch",
    "paper",
    "early_exit_accuracy_pct",
    "stage1_minstructions",
    "both_stages_minstructions",
    "stage1_mflops",
    "both_stages_mflops",
    "rho",
    "accuracy_at_rho_pct",
    "minstructions_at_rho",
    "instruction_saving_pct",
    "epochs",
)


def design_markdown(design: Design) -> str:
    """The candidates as a Markdown table, best saving first, the paper's exit and the chosen one marked."""

    def num(value, decimals=2):
        return "–" if value is None else f"{value:.{decimals}f}"

    lines = [
        f"# Early-exit design: {design.task} {design.model} on {design.target}",
        "",
        f"Validation: base model {design.base_accuracy:.2f} %, {design.base_minstructions:.3f} M instructions, "
        f"{design.base_mflops:.2f} MFLOPs. Each candidate at the cheapest rho in instructions within "
        f"{design.drop:g} accuracy points of the base model.",
        "",
        "| Tap | Branch | Early exit acc. % | Stage 1 M instr. | Both stages M instr. | rho | Acc. at rho % "
        "| M instr. per sample | Instr. saved % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(design.candidates, key=lambda c: -(c.choice["reduction_pct"] if c.choice["met"] else -1e9))
    for candidate in order:
        row = _row(candidate)
        marks = (" (paper)" if candidate.paper else "") + (" **chosen**" if candidate is design.chosen else "")
        lines.append(
            f"| {row['tap']} | {row['branch']}{marks} | {num(row['early_exit_accuracy_pct'])} | "
            f"{num(row['stage1_minstructions'], 3)} | {num(row['both_stages_minstructions'], 3)} | {num(row['rho'])} | "
            f"{num(row['accuracy_at_rho_pct'])} | {num(row['minstructions_at_rho'], 3)} | "
            f"{num(row['instruction_saving_pct'], 1)} |"
        )
    lines.append("")
    if design.chosen is None:
        lines.append("No candidate saves instructions within the drop: keep the base model.")
    else:
        lines.append(
            f"Chosen: {design.chosen.name}, saving {design.chosen.choice['reduction_pct']:.1f} % of the instructions."
        )
    return "\n".join(lines) + "\n"


def design_figure(design: Design, out_stem: pathlib.Path) -> list[pathlib.Path]:
    """Validation accuracy against mean instructions per sample, one benefit curve per candidate (the
    paper's exit in black, the chosen one thick), the base model a star; PNG and PDF."""
    from matplotlib.figure import Figure

    from common.plots import save_figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for candidate in design.candidates:
        style = {"color": "black", "lw": 2.0, "zorder": 3} if candidate.paper else {"lw": 1.0, "alpha": 0.7}
        if candidate is design.chosen:
            style = {**style, "lw": 3.0, "zorder": 4}
        label = (
            candidate.name + (" (paper)" if candidate.paper else "") + (" chosen" if candidate is design.chosen else "")
        )
        ax.plot(candidate.curve_minstructions, candidate.curve_accuracy, label=label, **style)
    ax.plot(
        [design.base_minstructions], [design.base_accuracy], "*", ms=12, color="tab:red", label="base model", zorder=5
    )
    ax.axhline(design.base_accuracy - design.drop, color="grey", ls=":", lw=1)
    ax.set_xlabel(f"mean M instructions per sample on {design.target} (predicted)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{design.task}: candidate early exits on the frozen {design.model}")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, out_stem)


REPORT = ("design.md", "design.csv", "design.json", "design.png", "design.pdf")


def write_report(design: Design, results_dir: pathlib.Path) -> pathlib.Path:
    """design.md, design.csv, design.json and design.png/pdf in `results_dir`, replacing an earlier run's
    as a whole (common.files.staged_folder); returns design.md."""
    from common.files import staged_folder, write_text
    from common.report import write_json, write_rows_csv

    with staged_folder(results_dir, REPORT) as staging:
        write_rows_csv(staging / "design.csv", [_row(c) for c in design.candidates], COLUMNS)
        write_json(staging / "design.json", dataclasses.asdict(design))
        design_figure(design, staging / "design")
        write_text(staging / "design.md", design_markdown(design))
    return results_dir / "design.md"


def run_design(
    task: types.ModuleType,
    options: DesignOptions,
    *,
    source: str = "pretrained",
    models_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    output_models_dir: str | os.PathLike,
) -> tuple[Design, pathlib.Path]:
    """What `design-exit` does: design `options.model`'s early exit on the task's training and validation
    splits in `data_dir`, write the report into `results_dir` (default results/TASK/design) and the chosen
    network as a trained model into `output_models_dir`. Returns the Design and the report folder."""
    from common import tasks
    from common.files import check_output_folder
    from common.weights import load_nets, weights_paths, writable_trained_path

    variant = options.model
    if variant not in DESIGNABLE_VARIANTS:
        raise UserError(
            f"--model: design-exit designs the early exit of {' or '.join(DESIGNABLE_VARIANTS)}, not {variant}"
        )
    for name in SPLITS:
        if not hasattr(task, name):
            raise UserError(f"task {task.NAME} defines no {name}, which design-exit trains and chooses on")
    designs = candidates(task, options.taps, options.branches)
    writable_trained_path(task, variant, output_models_dir, options.force)  # before the run, not after it
    results_dir = pathlib.Path(results_dir) if results_dir else tasks.results_dir(task) / "design"
    check_output_folder(results_dir, "--results-dir", whole=True)
    data_dir = tasks.data_dir(task, data_dir)
    nets = load_nets(task, source, models_dir, ("base", variant))
    train, validation = task.training_set(data_dir), task.validation_set(data_dir)
    print(f"training split {len(train[1])} samples, validation split {len(validation[1])} samples, from {data_dir}")
    design, assembled = design_exits(
        task,
        nets[variant],
        nets["base"],
        variant,
        train,
        validation,
        target=options.target,
        drop=options.drop,
        designs=designs,
        epochs=options.epochs,
        patience=options.patience,
        seed=options.seed,
    )
    write_report(design, results_dir)
    if design.chosen is not None:
        base_weights = weights_paths(task, source, models_dir, ("base",))["base"]
        folder = write_design_model(
            task, assembled[design.chosen.name], design.chosen, base_weights, variant, output_models_dir, options.force
        )
        print(f"the chosen design {design.chosen.name} written to {folder}")
    return design, results_dir
