"""Early exits designed in a target's cost: `python3 -m common.cli design-exit TASK`.

For a trained T-RecX network, every candidate early exit (each backbone tap an exit may attach to, times
each branch of `common.exits.BRANCHES`) gets its branch trained alone on the frozen network: the tap's
features of the training split are computed once and cached, and the branch learns from them with early
stopping on the validation split, so nothing else of the network can change. Each candidate is then
costed in the target's instructions (common.target_cost), at the cheapest rho within `drop` accuracy
points of the base model on validation (as deploy.sh chooses rho), beside the network's own trained early
exit, unchanged, costed the same way on the same data. A new exit is kept only where it saves more than
the trained one; otherwise the network stays as it is and nothing is written. The final exit, early view
included, stays as trained. The report says what data the branches were trained and chosen on and what
the backbone was trained on (common.provenance), flagging a difference of source or format.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from common import exits, flops, provenance, sweep, target_cost
from common.config import EarlyExit
from common.design_options import DesignOptions
from common.errors import UserError
from common.models import DESIGNABLE_VARIANTS, ExitModel, build_model, early_exit_taps, tap_layers
from common.predict import predict_exits
from common.provenance import DataOrigin
from common.tasks import Task

BATCH_SIZE = 128


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One early exit trained on the frozen network, measured on the validation split.

    accuracy: the early exit's standalone accuracy (%); path_minstructions / path_mflops: stage 1 (tap and
    branch) and stage 1 + stage 2; choice: the cheapest rho in instructions (M) within the drop
    (`common.sweep.choose_rho`); epochs: those the branch trained before early stopping (0 for the trained
    exit); paper: the architecture's own exit; trained: the network's own trained early exit, unchanged (not
    a new branch).
    """

    early_exit: EarlyExit
    accuracy: float
    path_minstructions: tuple[float, float]
    path_mflops: tuple[float, float]
    choice: sweep.ChosenRho
    epochs: int
    paper: bool
    curve_accuracy: tuple[float, ...]
    curve_minstructions: tuple[float, ...]
    trained: bool = False

    @property
    def name(self) -> str:
        return f"{self.early_exit.tap}/{self.early_exit.branch}"

    @property
    def label(self) -> str:
        """The name, with "trained (the model's own)" for the trained exit."""
        return self.name + (", trained (the model's own)" if self.trained else "")

    @property
    def saving(self) -> float | None:
        """The instruction saving (%) at the chosen rho, None when no rho is within the drop."""
        return self.choice.reduction_pct if self.choice.met else None


@dataclasses.dataclass(frozen=True)
class Design:
    """All candidates of a run (the trained exit first), the base model's validation accuracy and cost, and
    the chosen candidate: a new exit only where it saves more than the trained one, else the trained exit
    (the network kept as it is), None when neither saves instructions within the drop.

    verdict: which won and by how much, in words; new_over_trained_pp: the best new exit's saving minus the
    trained exit's, in percentage points of the base model's instructions (None when either has no rho
    within the drop); data: what the branches were trained and chosen on; backbone_data: what the network
    was trained on; data_notes: where the two differ in source or format; output: the folder the new
    design is written to (None: nothing written); samples: the training and validation samples.
    """

    task: str
    model: str
    target: str
    drop: float
    base_accuracy: float
    base_minstructions: float
    base_mflops: float
    candidates: list[Candidate]
    chosen: Candidate | None
    verdict: str = ""
    new_over_trained_pp: float | None = None
    data: DataOrigin = provenance.UNKNOWN
    backbone_data: DataOrigin = provenance.UNKNOWN
    data_notes: tuple[str, ...] = ()
    output: str | None = None
    samples: tuple[int, int] = (0, 0)  # training, validation

    @property
    def new_design(self) -> bool:
        """Whether a new exit won (and is written)."""
        return self.chosen is not None and not self.chosen.trained


def candidates(task: Task, taps: Sequence[str] = (), branches: Sequence[str] = ()) -> list[EarlyExit]:
    """Every (tap, branch) of the task, or of the taps and branches named; UserError naming the valid ones."""
    valid_taps = early_exit_taps(task.ARCHITECTURE)
    for option, named, valid in (("--taps", taps, valid_taps), ("--branches", branches, tuple(exits.BRANCHES))):
        unknown = [name for name in named if name not in valid]
        if unknown:
            raise UserError(f"{option}: unknown {unknown[0]!r} for {task.NAME}; valid: {', '.join(valid)}")
    return [EarlyExit(tap, branch) for tap in taps or valid_taps for branch in branches or exits.BRANCHES]


def missing_splits(task: Task) -> list[str]:
    """The optional task functions design-exit trains and chooses on that the task does not define."""
    splits = {"training_set": task.training_set, "validation_set": task.validation_set}
    return [name for name, split in splits.items() if split is None]


def paper_exit(task: Task) -> EarlyExit:
    """The architecture's own early exit, as a design."""
    return EarlyExit(task.ARCHITECTURE.trecx.tap, "paper")


def tap_features(net: ExitModel, tap_layer: str, inputs: np.ndarray) -> np.ndarray:
    """The output of `tap_layer` of `net` for `inputs` (inference mode)."""
    extractor = keras.Model(net.model.input, net.model.get_layer(tap_layer).output)
    return np.asarray(extractor.predict(inputs, batch_size=256, verbose=0))


def branch_model(task: Task, design: EarlyExit, tap_shape: tuple[int, ...]) -> keras.Model:
    """The branch of `design` alone: the tap's features in, the early exit's softmax out."""
    arch = task.ARCHITECTURE
    features = keras.Input(tap_shape, name="tap_features")
    return keras.Model(features, exits.BRANCHES[design.branch](features, arch.num_classes, arch.trecx))


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


def assemble(task: Task, variant: str, design: EarlyExit, source: ExitModel, branch: keras.Model) -> ExitModel:
    """`variant` of the task with `design`'s early exit: the branch's weights from `branch`, every other
    layer's from `source` (the network the branch was trained on)."""
    net = build_model(task, variant, design)
    trained = {layer.name: layer for layer in source.model.layers}
    trained.update({layer.name: layer for layer in branch.layers})  # the new branch wins over the old exit
    for layer in net.model.layers:
        if layer.weights:
            layer.set_weights(trained[layer.name].get_weights())
    return net


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: identity equality, no elementwise ==
class Yardstick:
    """What every candidate is measured against on the validation split: the frozen network's final
    softmax (N, C), the labels (N,), the target's cost model, the base model's accuracy (%) and
    instructions (M), and the accuracy points below it that rho may cost."""

    final_softmax: np.ndarray
    labels: np.ndarray
    cost: target_cost.CostModel
    base_accuracy: float
    base_minstructions: float
    drop: float


def evaluate(
    net: ExitModel, early_softmax: np.ndarray, yardstick: Yardstick
) -> tuple[float, tuple, tuple, sweep.ChosenRho, sweep.Curve, np.ndarray]:
    """(standalone accuracy, path instructions (M), path MFLOPs, the choice in instructions, curve, its
    mean instructions per rho) of an early-exit model from its validation early-exit softmax."""
    minstructions = tuple(value / 1e6 for value in target_cost.path_instructions(net.model, yardstick.cost))
    mflops = tuple(flops.path_mflops(net.model))
    curve = sweep.benefit_curve([early_softmax, yardstick.final_softmax], yardstick.labels, mflops, net.rule)
    mean = sweep.mean_cost(curve, minstructions)
    choice = sweep.choose_rho(
        curve, yardstick.base_accuracy, yardstick.base_minstructions, yardstick.drop, cost=mean, unit="minstructions"
    )
    return sweep.standalone_accuracy(early_softmax, yardstick.labels), minstructions, mflops, choice, curve, mean


def best(candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate with the largest expected instruction saving among those within the drop that save
    anything (ties: the higher validation accuracy at the chosen rho, then the first listed)."""
    saving = [c for c in candidates if c.choice.met and c.choice.reduction_pct > 0]
    if not saving:
        return None
    return max(saving, key=lambda c: (c.choice.reduction_pct, c.choice.accuracy))


def decide(candidates: Sequence[Candidate]) -> tuple[Candidate | None, str, float | None]:
    """(the chosen candidate, the verdict in words, the best new exit's saving minus the trained exit's in
    percentage points) of a run's candidates, the trained exit among them: the best new exit (`best`) only
    where it saves more than the trained exit (a tie keeps the trained one), else the trained exit where it
    saves anything, else None."""
    [trained] = [c for c in candidates if c.trained]
    new = [c for c in candidates if not c.trained]
    within = [c for c in new if c.saving is not None]
    runner = max(within, key=lambda c: (c.saving, c.choice.accuracy)) if within else None
    margin = runner.saving - trained.saving if runner is not None and trained.saving is not None else None
    own = f"the trained exit {trained.name} (the model's own, unchanged)"
    own_result = f"saves {trained.saving:.1f} %" if trained.saving is not None else "has no rho within the drop"
    winner = best(new)
    if winner is not None and (trained.saving is None or winner.saving > trained.saving):
        by = f" by {margin:.1f} percentage points of instructions saved" if margin is not None else ""
        verdict = f"a new exit won{by}: {winner.name} saves {winner.saving:.1f} %; {own} {own_result}"
        return winner, verdict, margin
    if trained.saving is not None and trained.saving > 0:
        if runner is None:
            against = "; no new exit has a rho within the drop"
        else:
            by = "as much as" if margin == 0 else f"{-margin:.1f} percentage points more than"
            against = f", {by} the best new exit, {runner.name} ({runner.saving:.1f} %)"
        return trained, f"the trained exit won: {own} {own_result}{against}; the model stays as it is", margin
    verdict = f"no exit saves instructions within the drop: {own} {own_result}, and no new exit saves any"
    return None, verdict + "; keep the base model", margin


def trained_candidate(
    own_exit: EarlyExit, paper: EarlyExit, net: ExitModel, early_softmax: np.ndarray, yardstick: Yardstick
) -> Candidate:
    """The network's own trained early exit, unchanged, as a candidate: costed and chosen on the same
    validation softmaxes and the same rule as every new branch."""
    accuracy, minstructions, mflops, choice, curve, mean = evaluate(net, early_softmax, yardstick)
    return Candidate(
        own_exit,
        accuracy,
        minstructions,
        mflops,
        choice,
        0,
        own_exit == paper,
        tuple(float(a) for a in curve.accuracy),
        tuple(float(m) for m in mean),
        trained=True,
    )


def _saved(choice: sweep.ChosenRho) -> str:
    if not choice.met:
        return "no rho within the drop"
    return f"saves {choice.reduction_pct:.1f} % at rho {choice.rho:.2f}"


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: identity equality, no elementwise ==
class DesignData:
    """The splits a design trains and chooses on, (inputs, labels) each; origin: what they are;
    backbone_origin: what the frozen network was trained on."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    origin: DataOrigin = provenance.UNKNOWN
    backbone_origin: DataOrigin = provenance.UNKNOWN


def design_exits(
    task: Task,
    frozen: ExitModel,
    base: ExitModel,
    splits: DesignData,
    options: DesignOptions,
    *,
    own_exit: EarlyExit | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Design, dict[str, ExitModel]]:
    """Train and cost every design of `options` (its taps and branches; default all candidates) on the
    `frozen` network (variant `options.model`), beside its own trained early exit (`own_exit`, default the
    paper's); returns the Design and {new candidate name: its assembled network}."""
    variant, target, drop = options.model, options.target, options.drop
    designs = candidates(task, options.taps, options.branches)
    train, data, backbone_data = splits.train, splits.origin, splits.backbone_origin
    cost = target_cost.load_cost_model(target)
    val_inputs, val_labels = splits.validation
    frozen_softmax = predict_exits(frozen, val_inputs)
    final_softmax = frozen_softmax["ef"]
    base_accuracy = sweep.standalone_accuracy(predict_exits(base, val_inputs)["ef"], val_labels)
    base_minstructions = target_cost.path_instructions(base.model, cost)[0] / 1e6
    base_mflops = flops.path_mflops(base.model)[0]
    log(
        f"{task.NAME}: the trained early exit and {len(designs)} new ones on the frozen {variant}; base model "
        f"{base_accuracy:.2f} % on {len(val_labels)} validation samples, {base_minstructions:.3f} M "
        f"instructions on {target}"
    )
    yardstick = Yardstick(final_softmax, val_labels, cost, base_accuracy, base_minstructions, drop)
    trained = trained_candidate(own_exit or paper_exit(task), paper_exit(task), frozen, frozen_softmax["ee"], yardstick)
    log(
        f"  {trained.label}: early exit {trained.accuracy:6.2f} %, stage 1 {trained.path_minstructions[0]:.3f} M, "
        f"both {trained.path_minstructions[1]:.3f} M instructions; {_saved(trained.choice)}"
    )
    results, nets = [trained], {}
    layers = tap_layers(task.ARCHITECTURE)
    for tap in dict.fromkeys(design.tap for design in designs):
        layer = layers[tap]
        train_features, val_features = tap_features(frozen, layer, train[0]), tap_features(frozen, layer, val_inputs)
        for design in (d for d in designs if d.tap == tap):
            branch = branch_model(task, design, train_features.shape[1:])
            ran = train_branch(
                branch,
                (train_features, train[1]),
                (val_features, val_labels),
                epochs=options.epochs,
                patience=options.patience,
                seed=options.seed,
            )
            net = assemble(task, variant, design, frozen, branch)
            early_softmax = np.asarray(branch.predict(val_features, batch_size=256, verbose=0))
            accuracy, minstructions, mflops, choice, curve, mean = evaluate(net, early_softmax, yardstick)
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
            log(
                f"  {candidate.name:<24} early exit {accuracy:6.2f} %, stage 1 {minstructions[0]:.3f} M, both "
                f"{minstructions[1]:.3f} M instructions; {_saved(choice)} ({ran} epochs)"
            )
    chosen, verdict, margin = decide(results)
    design = Design(
        task.NAME,
        variant,
        target,
        drop,
        base_accuracy,
        base_minstructions,
        base_mflops,
        results,
        chosen,
        verdict,
        margin,
        data,
        backbone_data,
        tuple(provenance.differences(data, backbone_data)),
        samples=(len(train[1]), len(val_labels)),
    )
    return design, nets


def write_design_model(
    task: Task,
    net: ExitModel,
    candidate: Candidate,
    base_weights: str | os.PathLike,
    models_dir: str | os.PathLike,
    options: DesignOptions,
    data: DataOrigin = provenance.UNKNOWN,
    backbone_data: DataOrigin = provenance.UNKNOWN,
) -> pathlib.Path:
    """The chosen network as a trained model, MODELS_DIR/TASK/VARIANT/{weights.npz, config.yaml,
    training_data.json} (the task's config for VARIANT with `early_exit` set, which train.sh retrains from
    scratch; what the backbone and the new branch were trained on), beside the base model it was designed
    against (MODELS_DIR/TASK/base, written when absent): what test.sh and deploy.sh read with --models
    trained. Refuses to replace a trained model without `options.force`; VARIANT is `options.model`."""
    from common import config as config_lib
    from common.files import staged_folder, write_bytes, write_text
    from common.tasks import config_path
    from common.weights import save_weights, trained_path, writable_trained_path

    variant = options.model
    target = writable_trained_path(task, variant, models_dir, options.force)
    config = config_lib.load_config(config_path(task, variant))
    transfer = config.weight_transfer_epochs if candidate.early_exit.branch == "paper" else 0
    config = dataclasses.replace(config, early_exit=candidate.early_exit, weight_transfer_epochs=transfer)
    with staged_folder(target.parent) as staging:  # config and weights replace a model's together, or not at all
        write_text(staging / "config.yaml", config_lib.to_yaml(config))
        write_text(staging / provenance.FILE, provenance.trained_record(backbone_data, data))
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
        "trained": candidate.trained,
        "early_exit_accuracy_pct": candidate.accuracy,
        "stage1_minstructions": candidate.path_minstructions[0],
        "both_stages_minstructions": candidate.path_minstructions[1],
        "stage1_mflops": candidate.path_mflops[0],
        "both_stages_mflops": candidate.path_mflops[1],
        "rho": choice.rho if choice.met else None,
        "accuracy_at_rho_pct": choice.accuracy if choice.met else None,
        "minstructions_at_rho": choice.cost if choice.met else None,
        "instruction_saving_pct": choice.reduction_pct if choice.met else None,
        "epochs": candidate.epochs,
    }


COLUMNS = (
    "tap",
    "branch",
    "paper",
    "trained",
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


def outcome(design: Design) -> str:
    """What the run kept and wrote, in one sentence after the verdict."""
    if design.output is not None:
        return f"The new design is written to {design.output}."
    return "No model is written: nothing in the models folder was replaced."


def design_markdown(design: Design) -> str:
    """The data, the candidates as a Markdown table (best saving first; the trained exit, the paper's exit and
    the chosen one marked) and the verdict: which won, by how much, what was written."""

    def num(value: float | None, decimals: int = 2) -> str:
        return "–" if value is None else f"{value:.{decimals}f}"

    training, validation = design.samples
    lines = [
        f"# Early-exit design: {design.task} {design.model} on {design.target}",
        "",
        f"Data: the new branches were trained on {training} samples and every exit was chosen on {validation} "
        f"validation samples of {design.data.describe()}. The backbone ({design.model}, frozen) was trained on "
        f"{design.backbone_data.describe()}.",
        "",
        *[f"**Data differ**: {note}." for note in design.data_notes],
        *([""] if design.data_notes else []),
        f"Validation: base model {design.base_accuracy:.2f} %, {design.base_minstructions:.3f} M instructions, "
        f"{design.base_mflops:.2f} MFLOPs. Each candidate at the cheapest rho in instructions within "
        f"{design.drop:g} accuracy points of the base model; the trained exit is the model's own, unchanged.",
        "",
        "| Exit | Tap | Branch | Early exit acc. % | Stage 1 M instr. | Both stages M instr. | rho | Acc. at rho % "
        "| M instr. per sample | Instr. saved % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(design.candidates, key=lambda c: -(c.choice.reduction_pct if c.choice.met else -1e9))
    for candidate in order:
        row = _row(candidate)
        kind = ("trained (the model's own)" if candidate.trained else "new") + (
            " **chosen**" if candidate is design.chosen else ""
        )
        branch = row["branch"] + (" (the paper's exit)" if candidate.paper else "")
        lines.append(
            f"| {kind} | {row['tap']} | {branch} | "
            f"{num(row['early_exit_accuracy_pct'])} | {num(row['stage1_minstructions'], 3)} | "
            f"{num(row['both_stages_minstructions'], 3)} | {num(row['rho'])} | {num(row['accuracy_at_rho_pct'])} | "
            f"{num(row['minstructions_at_rho'], 3)} | {num(row['instruction_saving_pct'], 1)} |"
        )
    lines += ["", f"Result: {design.verdict}. {outcome(design)}"]
    return "\n".join(lines) + "\n"


def design_figure(design: Design, out_stem: pathlib.Path) -> list[pathlib.Path]:
    """Validation accuracy against mean instructions per sample, one benefit curve per candidate (the trained
    exit in black, new branches of the paper's design dashed, the chosen one thick), the base model a star;
    PNG and PDF."""
    from matplotlib.figure import Figure

    from common.plots import save_figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for candidate in design.candidates:
        style = {"color": "black", "lw": 2.0, "zorder": 3} if candidate.trained else {"lw": 1.0, "alpha": 0.7}
        if candidate.paper and not candidate.trained:
            style["ls"] = "--"
        if candidate is design.chosen:
            style = {**style, "lw": 3.0, "zorder": 4}
        label = (
            candidate.label
            + (" (paper)" if candidate.paper else "")
            + (" chosen" if candidate is design.chosen else "")
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


def design_json(design: Design) -> dict[str, Any]:
    """design.json's record of `design`: its fields in order, each candidate's choice as
    `ChosenRho.to_json()` (the cost under "minstructions")."""
    record = dataclasses.asdict(design)
    for candidate, written in zip(design.candidates, record["candidates"]):
        written["choice"] = candidate.choice.to_json()
    if design.chosen is not None:
        record["chosen"]["choice"] = design.chosen.choice.to_json()
    return record


def write_report(design: Design, results_dir: pathlib.Path) -> pathlib.Path:
    """design.md, design.csv, design.json and design.png/pdf in `results_dir`, replacing an earlier run's
    as a whole (common.files.staged_folder); returns design.md."""
    from common.files import staged_folder, write_text
    from common.report import write_json, write_rows_csv

    with staged_folder(results_dir, REPORT) as staging:
        write_rows_csv(staging / "design.csv", [_row(c) for c in design.candidates], COLUMNS)
        write_json(staging / "design.json", design_json(design))
        design_figure(design, staging / "design")
        write_text(staging / "design.md", design_markdown(design))
    return results_dir / "design.md"


def run_design(
    task: Task,
    options: DesignOptions,
    *,
    source: str = "pretrained",
    models_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    output_models_dir: str | os.PathLike,
) -> tuple[Design, pathlib.Path]:
    """What `design-exit` does: design `options.model`'s early exit on the task's training and validation
    splits in `data_dir` against the model's own trained exit, write the report into `results_dir` (default
    results/TASK/design) and, only where a new exit wins, that network as a trained model into
    `output_models_dir` (where the trained exit wins, nothing is written there). Returns the Design and the
    report folder."""
    from common import tasks
    from common.config import load_config
    from common.files import check_output_folder
    from common.weights import load_nets, trained_path, weights_paths, writable_trained_path

    variant = options.model
    if variant not in DESIGNABLE_VARIANTS:
        raise UserError(
            f"--model: design-exit designs the early exit of {' or '.join(DESIGNABLE_VARIANTS)}, not {variant}"
        )
    missing = missing_splits(task)
    if missing:
        raise UserError(f"task {task.NAME} defines no {missing[0]}, which design-exit trains and chooses on")
    candidates(task, options.taps, options.branches)  # an unknown tap or branch fails before any work
    target = writable_trained_path(task, variant, output_models_dir, options.force)  # before the run, not after
    results_dir = pathlib.Path(results_dir) if results_dir else tasks.results_dir(task) / "design"
    check_output_folder(results_dir, "--results-dir", whole=True)
    data_dir = tasks.data_dir(task, data_dir)
    nets = load_nets(task, source, models_dir, ("base", variant))
    if source == "trained":
        folder = trained_path(task, variant, models_dir).parent
        own_exit = load_config(folder / "config.yaml").early_exit or paper_exit(task)
        backbone_data = provenance.read_trained(folder, "backbone")
    else:
        own_exit, backbone_data = paper_exit(task), provenance.pretrained_origin(task)
    train, validation = task.training_set(data_dir), task.validation_set(data_dir)
    data = provenance.data_origin(task, data_dir)
    print(f"training split {len(train[1])} samples, validation split {len(validation[1])} samples, from {data_dir}")
    print(f"design data: {data.describe()}; the backbone was trained on {backbone_data.describe()}")
    splits = DesignData(train, validation, data, backbone_data)
    design, assembled = design_exits(task, nets[variant], nets["base"], splits, options, own_exit=own_exit)
    for note in design.data_notes:
        print(f"data differ: {note}")
    if design.new_design:
        design = dataclasses.replace(design, output=str(target.parent))
    write_report(design, results_dir)
    if design.new_design:
        base_weights = weights_paths(task, source, models_dir, ("base",))["base"]
        chosen_net = assembled[design.chosen.name]
        write_design_model(
            task, chosen_net, design.chosen, base_weights, output_models_dir, options, data, backbone_data
        )
    print(f"{design.verdict}. {outcome(design)}")
    return design, results_dir
