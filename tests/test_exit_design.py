"""Early exits designed in a target's cost (common/exit_design.py, `design-exit`): every candidate builds
and exports for every task, training a branch changes no frozen weight, the choice follows the stated
rule against the model's own trained exit (a new exit is written only where it saves more), the report
says what data the design and the backbone were trained on, and a saved design round-trips through
test.sh, deploy.sh and train.sh."""

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from scripts import assert_clean_failure, assert_ok, cli, run

from common import exit_design, exits, files, provenance, sweep, target_cost
from common import weights as weights_module
from common.config import EarlyExit
from common.deploy import export
from common.deploy.profile import tflite_operators
from common.design_options import DesignOptions
from common.errors import UserError
from common.models import build_model, early_exit_taps, tap_layers
from common.tasks import load_task, task_names
from common.weights import load_nets
from image_classification import data as cifar_data
from image_classification.synthetic import synthetic_batch, write_cifar, write_image_folders


@pytest.mark.parametrize("task", task_names())
def test_every_candidate_builds_splits_and_exports_to_int8_with_the_operators_costed(task):
    """Every branch builds on every tap; every tap (with the cheapest branch) and every branch (at the paper's
    tap) build into networks that split into two stages that compute the model; each branch's int8 stages
    hold exactly the TFLite operators the cost model counts for its paths (the paper's branch:
    test_task_protocol.py; deploy.sh on a designed exit of every task: test_entry_points.py)."""
    module = load_task(task)
    paper_tap = module.ARCHITECTURE.trecx.tap
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


def _candidate(tap, branch, saving, accuracy, met=True, trained=False):
    choice = sweep.ChosenRho(1, accuracy, 1.0, saving, 0.5, met, "minstructions")
    return exit_design.Candidate(
        EarlyExit(tap, branch), 80.0, (1.0, 2.0), (1.0, 2.0), choice, 3, False, (), (), trained=trained
    )


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


def test_a_new_exit_is_kept_only_where_it_saves_more_than_the_trained_one():
    """The trained exit wins ties and when no new exit saves as much; a new exit wins by the difference in
    percentage points, or outright when the trained exit has no rho within the drop; nothing saving, None."""
    trained = _candidate("a", "paper", 20.0, 85.0, trained=True)
    better, equal, worse = (_candidate("b", "pool_conv", saving, 84.0) for saving in (27.5, 20.0, 12.0))
    chosen, verdict, margin = exit_design.decide([trained, worse, better])
    assert chosen is better and margin == pytest.approx(7.5)
    assert verdict.startswith("a new exit won by 7.5 percentage points of instructions saved: b/pool_conv saves 27.5 %")
    chosen, verdict, margin = exit_design.decide([trained, equal, worse])
    assert chosen is trained and margin == 0.0 and "as much as the best new exit" in verdict
    chosen, verdict, margin = exit_design.decide([trained, worse])
    assert chosen is trained and margin == pytest.approx(-8.0)
    assert verdict.startswith(
        "the trained exit won: the trained exit a/paper (the model's own, unchanged) saves 20.0 %"
    )
    assert "8.0 percentage points more than the best new exit, b/pool_conv (12.0 %)" in verdict
    unmet = _candidate("a", "paper", 30.0, 70.0, met=False, trained=True)
    chosen, verdict, margin = exit_design.decide([unmet, worse])
    assert chosen is worse and margin is None and "a/paper (the model's own, unchanged) has no rho within" in verdict
    chosen, verdict, _ = exit_design.decide([unmet, _candidate("b", "pool_conv", -2.0, 84.0)])
    assert chosen is None and "keep the base model" in verdict


def test_a_difference_of_source_or_format_is_flagged():
    official = cifar_data.OFFICIAL_TRAINING_DATA
    assert provenance.differences(provenance.DataOrigin(official.source, official.format, "elsewhere"), official) == []
    jpeg = provenance.DataOrigin("CIFAR-10 as image folders", provenance.image_format([".JPG", ".jpeg"]))
    [note] = provenance.differences(jpeg, official)
    assert "they differ in source and format" in note and "adapting to JPEG compression" in note
    png = provenance.DataOrigin(official.source, provenance.image_format([".png"]))
    [note] = provenance.differences(png, official)
    assert "they differ in format," in note and "adapting to the difference" in note
    [note] = provenance.differences(official, provenance.UNKNOWN)
    assert note.startswith("what the backbone was trained on is unknown")


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
            task,
            net,
            _candidate("stack2", "pooled_dense", 10.0, 80.0),
            "unused",
            tmp_path / "models",
            DesignOptions(model="trecx_ev", force=True),
        )
    assert (folder / "config.yaml").read_text() == "the earlier config"
    assert (folder / "weights.npz").read_bytes() == b"the earlier weights"
    assert sorted(path.name for path in folder.parent.iterdir()) == ["trecx_ev"]


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    """design-exit on synthetic CIFAR-10 in the official batches (198 training images, 22 held apart for
    validation), two taps and two branches, each trained two epochs on the frozen pretrained trecx_ev. With
    every rho within a drop of 100 points, each exit saves what its stage 1 spares: stack1/pooled_dense
    (14.49 M instructions) beats the trained stack1/paper exit (17.15 M)."""
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
    names = [(c["early_exit"]["tap"], c["early_exit"]["branch"], c["trained"]) for c in design["candidates"]]
    assert names == [
        ("stack1", "paper", True),  # the model's own exit, unchanged
        ("stack1", "paper", False),
        ("stack1", "pooled_dense", False),
        ("stack2", "paper", False),
        ("stack2", "pooled_dense", False),
    ]
    assert [c["paper"] for c in design["candidates"]] == [True, True, False, False, False]
    assert [c["epochs"] for c in design["candidates"]][0] == 0
    trained, chosen = design["candidates"][0], design["chosen"]
    assert chosen["early_exit"] == {"tap": "stack1", "branch": "pooled_dense"} and not chosen["trained"]
    saving = chosen["choice"]["reduction_pct"]
    assert saving == max(c["choice"]["reduction_pct"] for c in design["candidates"])
    assert design["new_over_trained_pp"] == pytest.approx(saving - trained["choice"]["reduction_pct"])
    assert design["new_over_trained_pp"] > 5  # 51.3 against 42.4 % of the base model's instructions
    won = f"a new exit won by {design['new_over_trained_pp']:.1f} percentage points of instructions saved"
    assert design["verdict"].startswith(won) and won in proc.stdout
    assert design["output"] == str(root / "models" / "image_classification" / "trecx_ev")
    for candidate in design["candidates"]:  # stage 1 costs less than both stages, which cost more than the base
        stage1, both = candidate["path_minstructions"]
        assert 0 < stage1 < design["base_minstructions"] < both
    official = cifar_data.OFFICIAL_TRAINING_DATA  # the design data are in the backbone's domain: no flag
    assert design["data"] == {
        "source": official.source,
        "format": official.format,
        "folder": str(root / "data" / "cifar-10-batches-py"),
    }
    assert design["backbone_data"] == {"source": official.source, "format": official.format, "folder": ""}
    assert design["data_notes"] == [] and design["samples"] == [198, 22]
    table = (root / "results" / "design.md").read_text()
    assert table.count("| stack") == 5 and "(the paper's exit)" in table and "| new **chosen** | stack1 |" in table
    assert "| trained (the model's own) | stack1 | paper (the paper's exit) |" in table
    assert f"Result: {won}" in table and "The new design is written to" in table and "Data differ" not in table
    assert "trained on 198 samples and every exit was chosen on 22 validation samples of CIFAR-10 in" in table
    assert (root / "results" / "design.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "results" / "design.csv").read_text().startswith("tap,branch,paper,trained,early_exit_accuracy_pct")
    model = root / "models" / "image_classification"
    config = yaml.safe_load((model / "trecx_ev" / "config.yaml").read_text())
    assert config["early_exit"] == chosen["early_exit"] and config["model"] == "trecx_ev"
    record = json.loads((model / "trecx_ev" / "training_data.json").read_text())
    assert record == {"backbone": design["backbone_data"], "early_exit": design["data"]}
    assert (model / "base" / "weights.npz").is_file()
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


def test_the_trained_exit_wins_and_nothing_is_written_and_jpeg_data_are_flagged(tmp_path):
    """design-exit on JPEG image folders, one new candidate at stack2 (22.73 M instructions in stage 1) against
    the trained exit at stack1 (17.15 M): the trained exit wins, the report says by how much, and the trained
    model already in the output folder is left as it was, --force notwithstanding; the report and the output
    flag JPEG data against a backbone trained on the official lossless batches."""
    batch = synthetic_batch(np.random.default_rng(0), 220)
    images = np.ascontiguousarray(batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    write_image_folders(tmp_path / "jpeg", "train", images, np.asarray(batch[b"labels"]), suffix=".jpg")
    earlier = tmp_path / "models" / "image_classification" / "trecx_ev"
    earlier.mkdir(parents=True)
    (earlier / "config.yaml").write_text("the earlier config")
    (earlier / "weights.npz").write_bytes(b"the earlier weights")
    proc = cli(
        "design-exit",
        "image_classification",
        *("--data-dir", tmp_path / "jpeg", "--results-dir", tmp_path / "results"),
        *("--output-models-dir", tmp_path / "models", "--force"),
        *("--taps", "stack2", "--branches", "pooled_dense", "--epochs", "1", "--drop", "100"),
        cwd=tmp_path,
        timeout=600,
    )
    assert_ok(proc)
    design = json.loads((tmp_path / "results" / "design.json").read_text())
    trained, new = design["candidates"]
    assert trained["trained"] and design["chosen"] == trained and design["output"] is None
    margin = new["choice"]["reduction_pct"] - trained["choice"]["reduction_pct"]
    assert design["new_over_trained_pp"] == pytest.approx(margin) and margin < -15  # 23.6 against 42.4 %
    verdict = (
        f"the trained exit won: the trained exit stack1/paper (the model's own, unchanged) saves "
        f"{trained['choice']['reduction_pct']:.1f} %, {-margin:.1f} percentage points more than the best new exit"
    )
    table = (tmp_path / "results" / "design.md").read_text()
    assert design["verdict"].startswith(verdict) and verdict in table and verdict in proc.stdout
    assert "No model is written: nothing in the models folder was replaced." in table
    assert sorted(path.name for path in (tmp_path / "models").rglob("*")) == [
        "config.yaml",
        "image_classification",
        "trecx_ev",
        "weights.npz",
    ]
    assert (earlier / "config.yaml").read_text() == "the earlier config"
    assert (earlier / "weights.npz").read_bytes() == b"the earlier weights"
    assert design["data"]["format"] == "JPEG images (lossy)" and design["data"]["folder"] == str(
        tmp_path / "jpeg" / "train"
    )
    [note] = design["data_notes"]
    assert "the design data are CIFAR-10 as image folders" in note and "JPEG images (lossy)" in note
    assert "trained on CIFAR-10 in the official python batches" in note and "adapting to JPEG compression" in note
    assert f"**Data differ**: {note}." in table and f"data differ: {note}" in proc.stdout


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
        "--model",
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


def test_design_exit_killed_while_writing_leaves_each_output_whole(tmp_path):
    """design-exit --force with another branch over an earlier design, killed between the report's two renames
    (a report file written outside its staging folder would be in the earlier report moved aside; every kill
    point of the staging machinery: tests/test_bad_input.py's writer test), then at the model's weights (the
    report replaced by then): the report wholly the earlier one, then wholly the new one, the model wholly the
    earlier one each time; the next run completes and leaves nothing beside them."""
    from scripts import assert_killed, kill_at, left_beside, snapshot

    write_cifar(tmp_path / "data", n_test=10, n_train_per_batch=20)
    report, model = tmp_path / "results", tmp_path / "models" / "image_classification" / "trecx_ev"
    args = ["--data-dir", tmp_path / "data", "--results-dir", report, "--output-models-dir", tmp_path / "models"]
    args += ["--taps", "stack1", "--epochs", "1", "--drop", "100"]
    # both branches cheaper than the trained exit's at its tap, so each run writes its model (--drop 100)
    assert_ok(
        cli("design-exit", "image_classification", *args, "--branches", "depthwise_pool", cwd=tmp_path, timeout=900)
    )
    earlier_report, earlier_model = snapshot(report), snapshot(model)
    args += ["--branches", "pooled_dense", "--force"]
    for point in ("mid-swap:1", "file:7"):
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
