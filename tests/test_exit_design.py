"""Early exits designed in a target's cost (common/exit_design.py, `design-exit`): every candidate builds
and exports for every task, training a branch changes no frozen weight, the choice follows the stated
rule, and a saved design round-trips through test.sh, deploy.sh and train.sh."""

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from scripts import assert_clean_failure, assert_ok, cli, run

from common import exit_design, exits, files, target_cost
from common import weights as weights_module
from common.config import EarlyExit
from common.deploy import export
from common.deploy.profile import tflite_operators
from common.design_options import DesignOptions
from common.errors import UserError
from common.models import build_model, early_exit_taps, tap_layers
from common.tasks import load_task, task_names
from common.weights import load_nets
from image_classification.synthetic import write_cifar

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("task", task_names())
def test_every_candidate_builds_splits_and_exports_to_int8_with_the_operators_costed(task):
    """Every branch builds on every tap; every tap (with the cheapest branch) and every branch (at the paper's
    tap) build into networks that split into two stages that compute the model; each branch's int8 stages
    hold exactly the TFLite operators the cost model counts for its paths (the paper's branch:
    test_task_protocol.py; deploy.sh on a designed exit of every task: test_entry_points.py)."""
    module = load_task(task)
    paper_tap = module.ARCHITECTURE.trecx["tap"]
    designs = {EarlyExit(paper_tap, branch) for branch in exits.BRANCHES}
    designs |= {EarlyExit(tap, "pooled_dense") for tap in early_exit_taps(module.ARCHITECTURE)}
    every = exit_design.candidates(module)
    assert len(every) == len(early_exit_taps(module.ARCHITECTURE)) * len(exits.BRANCHES)
    layers = tap_layers(module.ARCHITECTURE)
    reference = build_model(task, "trecx_ev")
    for design in every:  # every branch on every tap builds (design-exit trains each on its own)
        tap_shape = reference.model.get_layer(layers[design.tap]).output.shape[1:]
        branch = exit_design.branch_model(module, design, tap_shape)
        assert branch.output.shape[1:] == (module.ARCHITECTURE.num_classes,), design
    x, _ = module.synthetic_inputs(16, seed=1)
    for design in sorted(designs, key=lambda d: (d.tap, d.branch)):
        net = build_model(task, "trecx_ev", design)
        assert net.exits == ("ee", "ef") and net.tap == layers[design.tap] == net.model.get_layer(net.tap).name
        stage1, stage2 = export.split_stages(net)
        ee, ef = (np.asarray(out) for out in net.model(x, training=False))
        stage1_ee, tap = (np.asarray(out) for out in stage1(x, training=False))
        np.testing.assert_allclose(stage1_ee, ee, atol=1e-5)
        np.testing.assert_allclose(np.asarray(stage2(tap, training=False)), ef, atol=1e-5)
        if design.tap == paper_tap and design.branch != "paper":  # int8 conversion is the slow part
            stage1_ops = tflite_operators(export.to_tflite(stage1, x))
            stage2_ops = tflite_operators(export.to_tflite(stage2, tap))
            ee_path, ef_path = target_cost.keras_operators(net.model)
            assert Counter(ee_path) == Counter(stage1_ops), design
            assert Counter(ef_path) == Counter(stage1_ops + stage2_ops), design


def test_designs_outside_the_family_are_refused_with_the_valid_ones():
    module = load_task("image_classification")
    with pytest.raises(UserError, match="valid taps: stack1, stack2"):
        build_model(module, "trecx_ev", EarlyExit("stack3", "paper"))
    with pytest.raises(UserError, match="valid branches: paper, pool_conv, depthwise_pool, pooled_dense"):
        build_model(module, "trecx_ev", EarlyExit("stack1", "wide"))
    with pytest.raises(UserError, match="for trecx_ev or trecx_noev, not sdn"):
        build_model(module, "sdn", EarlyExit("stack1", "paper"))
    with pytest.raises(UserError, match="--branches: unknown 'wide'"):
        exit_design.candidates(module, branches=["wide"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"epochs": 0}, "--epochs and --patience must be at least 1 and --drop at least 0, got 0, 4 and 1.0"),
        ({"patience": 0}, "got 30, 0 and 1.0"),
        ({"drop": -1.0}, "got 30, 4 and -1.0"),
        ({"target": "none"}, "--target: design-exit chooses in a target's instructions, not none"),
        ({"target": "m4"}, "--target: unknown target 'm4'"),
    ],
)
def test_design_options_out_of_range_are_refused_naming_the_option(options, message):
    with pytest.raises(UserError, match=re.escape(message)):
        DesignOptions(**options)


def test_design_exit_refuses_a_bad_option_before_any_work(tmp_path):
    proc = cli("design-exit", "image_classification", "--epochs", "0", "--data-dir", tmp_path / "nowhere", cwd=tmp_path)
    assert_clean_failure(proc, "--epochs and --patience must be at least 1")
    assert not any(tmp_path.iterdir())


def _candidate(tap, branch, saving, accuracy, met=True):
    choice = {"rho": 0.5, "accuracy": accuracy, "minstructions": 1.0, "reduction_pct": saving, "met": met}
    return exit_design.Candidate(EarlyExit(tap, branch), 80.0, (1.0, 2.0), (1.0, 2.0), choice, 3, False, (), ())


def test_the_chosen_design_saves_most_within_the_drop():
    """Largest saving among those within the drop; a bigger saving that misses the drop loses; ties go to
    the more accurate; nothing saving means no design."""
    candidates = [
        _candidate("a", "paper", 12.0, 85.0),
        _candidate("b", "pooled_dense", 30.0, 70.0, met=False),  # cheap, but not within the drop
        _candidate("c", "pool_conv", 18.5, 84.0),
        _candidate("d", "depthwise_pool", 18.5, 84.5),
        _candidate("e", "paper", -3.0, 86.0),
    ]
    assert exit_design.best(candidates).name == "d/depthwise_pool"
    assert exit_design.best(candidates[:2] + candidates[4:]).name == "a/paper"
    assert exit_design.best([candidates[1], candidates[4]]) is None


def test_an_interrupted_write_leaves_the_earlier_model_as_it_was(tmp_path, monkeypatch):
    """write_design_model with --force, interrupted while saving the weights: the model it was replacing
    keeps its config and weights, no half-written folder is left, and no base model is written."""
    task = load_task("image_classification")
    net = build_model(task, "trecx_ev", EarlyExit("stack2", "pooled_dense"))
    folder = tmp_path / "models" / task.NAME / "trecx_ev"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("the earlier config")
    (folder / "weights.npz").write_bytes(b"the earlier weights")

    def interrupted(model, path):
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(weights_module, "save_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        exit_design.write_design_model(
            task, net, _candidate("stack2", "pooled_dense", 10.0, 80.0), "unused", "trecx_ev", tmp_path / "models", True
        )
    assert (folder / "config.yaml").read_text() == "the earlier config"
    assert (folder / "weights.npz").read_bytes() == b"the earlier weights"
    assert sorted(path.name for path in folder.parent.iterdir()) == ["trecx_ev"]


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    """design-exit on synthetic CIFAR-10 (200 training images, 20 held apart for validation), two taps
    and two branches, each trained two epochs on the frozen pretrained trecx_ev."""
    root = tmp_path_factory.mktemp("design")
    write_cifar(root / "data", n_test=40, n_train_per_batch=44)
    args = ["--data-dir", root / "data", "--results-dir", root / "results", "--output-models-dir", root / "models"]
    proc = cli(
        "design-exit",
        "image_classification",
        *args,
        "--branches",
        "paper,pooled_dense",
        "--epochs",
        "2",
        "--drop",
        "100",
        cwd=root,
        timeout=900,
    )
    return root, proc


def test_design_exit_reports_every_candidate_and_writes_the_chosen_model(designed):
    root, proc = designed
    assert_ok(proc)
    design = json.loads((root / "results" / "design.json").read_text())
    names = [(c["early_exit"]["tap"], c["early_exit"]["branch"]) for c in design["candidates"]]
    assert names == [("stack1", "paper"), ("stack1", "pooled_dense"), ("stack2", "paper"), ("stack2", "pooled_dense")]
    assert [c["paper"] for c in design["candidates"]] == [True, False, False, False]
    chosen = design["chosen"]
    assert chosen["choice"]["reduction_pct"] == max(c["choice"]["reduction_pct"] for c in design["candidates"])
    for candidate in design["candidates"]:  # stage 1 costs less than both stages, which cost more than the base
        stage1, both = candidate["path_minstructions"]
        assert 0 < stage1 < design["base_minstructions"] < both
    table = (root / "results" / "design.md").read_text()
    assert table.count("| stack") == 4 and "(paper)" in table and "**chosen**" in table
    assert (root / "results" / "design.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "results" / "design.csv").read_text().startswith("tap,branch,paper,early_exit_accuracy_pct")
    config = yaml.safe_load((root / "models" / "image_classification" / "trecx_ev" / "config.yaml").read_text())
    assert config["early_exit"] == chosen["early_exit"] and config["model"] == "trecx_ev"
    assert (root / "models" / "image_classification" / "base" / "weights.npz").is_file()
    again = cli(
        "design-exit",
        "image_classification",
        "--data-dir",
        root / "data",
        "--output-models-dir",
        root / "models",
        cwd=root,
    )
    assert_clean_failure(again, "already holds a trained trecx_ev", "--force")


def test_training_a_branch_leaves_every_frozen_weight_unchanged(designed):
    """The written network: every layer outside the new branch bit for bit the pretrained trecx_ev's."""
    root, _ = designed
    task = load_task("image_classification")
    designed_net = load_nets(task, "trained", root / "models", ("trecx_ev",))["trecx_ev"]
    pretrained = load_nets(task, "pretrained", None, ("trecx_ev",))["trecx_ev"]
    chosen = json.loads((root / "results" / "design.json").read_text())["chosen"]["early_exit"]
    tap_shape = designed_net.model.get_layer(designed_net.tap).output.shape[1:]
    branch = exit_design.branch_model(task, EarlyExit(**chosen), tap_shape)
    branch_layers = {layer.name for layer in branch.layers if layer.weights}
    frozen = [layer for layer in designed_net.model.layers if layer.weights and layer.name not in branch_layers]
    source = {layer.name: layer for layer in pretrained.model.layers}
    assert len(frozen) >= 18  # ResNet-8's convolutions and batch norms, the final exit, the early view
    for layer in frozen:
        for mine, theirs in zip(layer.get_weights(), source[layer.name].get_weights(), strict=True):
            assert mine.tobytes() == theirs.tobytes(), layer.name


def test_the_design_round_trips_through_test_deploy_and_train(designed, tmp_path):
    root, _ = designed
    models = root / "models"
    trained = ["--models-dir", models, "--models", "trained"]
    tested = run(
        "image_classification/test.sh",
        "--data-dir",
        root / "data",
        "--results-dir",
        tmp_path / "t",
        *trained,
        "trecx_ev",
        cwd=root,
    )
    assert_ok(tested)
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["models"]["trecx_ev"]["exits"] == ["ee", "ef"]
    deployed = run(
        "image_classification/deploy.sh",
        "--data-dir",
        root / "data",
        *trained,
        "--rho",
        "0.6",
        "--calibration-data",
        root / "data",
        "--calibration-samples",
        "8",
        "--results-dir",
        tmp_path / "d",
        cwd=root,
    )
    assert_ok(deployed)
    report = json.loads((tmp_path / "d" / "deploy.json").read_text())
    chosen = json.loads((root / "results" / "design.json").read_text())["chosen"]
    assert report["path_mflops"]["ee"] == pytest.approx(chosen["path_mflops"][0], abs=1e-6)
    retrained = run(
        "image_classification/train.sh",
        "--config",
        models / "image_classification" / "trecx_ev" / "config.yaml",
        "--data-dir",
        root / "data",
        "--models-dir",
        tmp_path / "m",
        "--set",
        "epochs=1",
        cwd=root,
    )
    assert_ok(retrained)
    config = yaml.safe_load((tmp_path / "m" / "image_classification" / "trecx_ev" / "config.yaml").read_text())
    assert config["early_exit"] == chosen["early_exit"]


def test_the_shipped_cortex_m4_design_is_the_pretrained_network_with_a_new_branch():
    """pretrained/designs/cortex-m4: loads as trained models; outside its early-exit branch every weight is
    the pretrained trecx_ev's, its base model the pretrained base file."""
    task = load_task("image_classification")
    shipped = REPO_ROOT / "pretrained" / "designs" / "cortex-m4"
    nets = load_nets(task, "trained", shipped, ("base", "trecx_ev"))
    config = yaml.safe_load((shipped / task.NAME / "trecx_ev" / "config.yaml").read_text())
    design = EarlyExit(**config["early_exit"])
    assert nets["trecx_ev"].tap == build_model(task, "trecx_ev", design).tap
    pretrained = load_nets(task, "pretrained", None, ("trecx_ev",))["trecx_ev"]
    tap_shape = nets["trecx_ev"].model.get_layer(nets["trecx_ev"].tap).output.shape[1:]
    branch = {layer.name for layer in exit_design.branch_model(task, design, tap_shape).layers if layer.weights}
    source = {layer.name: layer for layer in pretrained.model.layers}
    changed = []
    for layer in nets["trecx_ev"].model.layers:
        same = all(a.tobytes() == b.tobytes() for a, b in zip(layer.get_weights(), source[layer.name].get_weights()))
        if layer.name in branch:
            changed += [] if same else [layer.name]
        else:
            assert same, layer.name
    assert changed  # the branch was retrained
    assert (shipped / task.NAME / "base" / "weights.npz").read_bytes() == (
        REPO_ROOT / "pretrained" / task.NAME / "base.npz"
    ).read_bytes()


def test_design_exit_killed_while_writing_leaves_each_output_whole(tmp_path):
    """design-exit --force with another branch over an earlier design, killed at the report's design.json,
    between the report's two renames, then at the model's weights (the report replaced by then): the report
    wholly the earlier one, then wholly the new one, the model wholly the earlier one each time; the next run
    completes and leaves nothing beside them."""
    from scripts import assert_killed, kill_at, left_beside, snapshot

    write_cifar(tmp_path / "data", n_test=10, n_train_per_batch=20)
    report, model = tmp_path / "results", tmp_path / "models" / "image_classification" / "trecx_ev"
    args = ["--data-dir", tmp_path / "data", "--results-dir", report, "--output-models-dir", tmp_path / "models"]
    args += ["--taps", "stack1", "--epochs", "1", "--drop", "100"]
    assert_ok(cli("design-exit", "image_classification", *args, "--branches", "paper", cwd=tmp_path, timeout=900))
    earlier_report, earlier_model = snapshot(report), snapshot(model)
    args += ["--branches", "pooled_dense", "--force"]
    for point in ("file:2", "mid-swap:1", "file:7"):
        killed = cli("design-exit", "image_classification", *args, cwd=tmp_path, env=kill_at(point), timeout=900)
        assert_killed(killed)
        if point == "mid-swap:1":
            assert not report.exists() and len(left_beside(report)) == 2
            files.recover(report)  # what the next run does first
        if point == "file:7":  # the report replaced whole: each of its files the new run's
            new = snapshot(report)
            assert sorted(new) == sorted(earlier_report) and all(new[name] != earlier_report[name] for name in new)
            assert b"pooled_dense" in new[Path("design.md")] and b"pooled_dense" in new[Path("design.csv")]
        else:
            assert snapshot(report) == earlier_report, point
        assert snapshot(model) == earlier_model, point
    assert_ok(cli("design-exit", "image_classification", *args, cwd=tmp_path, timeout=900))
    assert "pooled_dense" in (model / "config.yaml").read_text()
    assert left_beside(report) == [] and left_beside(model) == []
