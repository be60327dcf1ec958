"""The per-target instruction cost model (common/target_cost.py, common/deploy/cost_fit.py) and the
decisions made in it: benefit curves and trade-off points in instructions, rho chosen in the target's
cost, and early exit refused or warned about where it costs more than the base model.

The checks against the emulator need the MCU toolchain (bash install_mcu_toolchain.sh; CI builds the
Cortex-M4 with CMSIS-NN) and are skipped without it; everything else runs on the cost model alone.
"""

import json
import re

import numpy as np
import pytest
from scripts import assert_clean_failure, assert_killed, assert_ok, cli, kill_at, left_beside

from common import sweep, target_cost, tasks
from common.deploy import cost_fit, mcu, mcu_build, pipeline
from common.deploy.profile import predicted_instructions
from common.deploy.results import RhoChoice
from common.errors import UserError
from common.models import build_model
from common.target_cost import EarlyExitCost, Operator, load_cost_model

needs_toolchain = pytest.mark.skipif(
    bool(mcu_build.missing_prerequisites()), reason="the MCU toolchain is not installed (bash install_mcu_toolchain.sh)"
)
MODEL_TOLERANCE = {"cortex-m4": 0.03, "cortex-m4:reference": 0.05, "cortex-m7": 0.05, "cortex-m55": 0.05}
OPERATOR_TOLERANCE = 0.10
# Shapes none of the three networks has and the fit's probes do not hold (checked below).
UNSEEN = [
    Operator("CONV_2D", (10, 10, 24), (10, 10, 40), (3, 3), (1, 1), "same"),
    Operator("CONV_2D", (14, 14, 20), (14, 14, 36), (1, 1), (1, 1), "valid"),
    Operator("DEPTHWISE_CONV_2D", (20, 20, 40), (10, 10, 40), (3, 3), (2, 2), "same"),
    Operator("FULLY_CONNECTED", (300,), (7,)),
    Operator("AVERAGE_POOL_2D", (10, 10, 48), (2, 2, 48), (5, 5), (5, 5)),
]


def quiet(*_):
    pass


# ---------------------------------------------------------------------------------------------
# The operators of a model, without converting it


@pytest.mark.parametrize("target", target_cost.TARGETS)
def test_every_exit_path_of_every_model_has_a_predicted_cost_that_grows(target):
    cost = load_cost_model(target)
    for name in tasks.task_names():
        task = tasks.load_task(name)
        for variant in task.MODELS:
            paths = target_cost.path_instructions(build_model(task, variant).model, cost)
            assert all(p > 0 for p in paths) and paths == sorted(paths), (name, variant, paths)


def test_unknown_operators_and_targets_are_named():
    with pytest.raises(ValueError, match="no cost model form for operator GATHER"):
        target_cost.features(Operator("GATHER", (4,), (4,)))
    with pytest.raises(Exception, match="valid targets: cortex-m4, cortex-m4:reference, cortex-m7, cortex-m55"):
        target_cost.check_target("cortex-m3")
    assert target_cost.check_target("none") is None


def test_padding_taps_outside_the_input_are_not_counted():
    # 3x3 "same" on 4x4: corners see 4 taps, edges 6, the inside 9 -> 4*4 + 8*6 + 4*9 = 100 per channel.
    op = Operator("DEPTHWISE_CONV_2D", (4, 4, 2), (4, 4, 2), (3, 3), (1, 1), "same")
    assert op.taps_inside() == 100 and op.macs == 4 * 4 * 2 * 9
    assert Operator("DEPTHWISE_CONV_2D", (4, 4, 2), (2, 2, 2), (3, 3), (1, 1), "valid").taps_inside() == 4 * 9


# ---------------------------------------------------------------------------------------------
# The fitted file is what the fit command writes


def test_the_cost_file_is_the_fit_of_the_kept_measurements(tmp_path):
    """Refitting from common/target_cost_measurements.json (no emulator) writes the committed
    coefficients, and every target's fit describes every operator variant the tasks' models use."""
    out = tmp_path / "costs.json"
    content = cost_fit.fit_cost_models(path=out, remeasure=False, log=quiet)
    committed = json.loads(target_cost.COST_FILE.read_text())
    used = {op.variant for op in cost_fit.task_operators()}
    for target in target_cost.TARGETS:
        fitted = content["targets"][target]
        expected = committed["targets"][target]["coefficients"]
        assert fitted["coefficients"].keys() == expected.keys(), target
        for variant, coefficients in expected.items():  # pytest.approx takes no nested dicts from pytest 9.1 on
            # relative to the variant's largest coefficient: a least-squares zero comes out as +-1e-11
            tolerance = 1e-9 * max(abs(c) for c in coefficients)
            assert fitted["coefficients"][variant] == pytest.approx(coefficients, rel=1e-9, abs=tolerance), (
                target,
                variant,
            )
        assert fitted["between"] == pytest.approx(committed["targets"][target]["between"], rel=1e-9)
        assert used <= set(fitted["coefficients"]), target


def test_damaged_cost_files_are_one_message_naming_the_file(tmp_path):
    committed = json.loads(target_cost.COST_FILE.read_text())
    broken = tmp_path / "truncated.json"
    broken.write_text(target_cost.COST_FILE.read_text()[:500])
    with pytest.raises(UserError, match=f"cannot read the cost models {broken}"):
        load_cost_model("cortex-m4", broken)
    short = tmp_path / "short.json"
    committed["targets"]["cortex-m4"]["coefficients"]["ADD"] = [1.0]  # ADD has two terms
    short.write_text(json.dumps(committed))
    with pytest.raises(UserError, match="the cortex-m4 coefficients do not fit the model's form"):
        load_cost_model("cortex-m4", short)
    other_form = tmp_path / "other_form.json"
    committed["form"]["ADD"] = ["outputs"]
    other_form.write_text(json.dumps(committed))
    with pytest.raises(UserError, match="fitted for another form"):
        load_cost_model("cortex-m4", other_form)
    # The fit's own files: a damaged output or kept-counts file is named, nothing is written.
    with pytest.raises(UserError, match=f"the cost models {broken} cannot be read .*give another --output"):
        cost_fit.fit_cost_models(["cortex-m4"], path=broken, remeasure=False, log=quiet)
    kept = tmp_path / "kept.json"
    kept.write_text('{"cortex-m4": [{"name": "p000"}]}')
    out = tmp_path / "out.json"
    with pytest.raises(UserError, match=f"the kept counts {kept} are damaged"):
        cost_fit.fit_cost_models(["cortex-m4"], path=out, measurements=kept, remeasure=False, log=quiet)
    kept.write_text("[1, 2]")
    with pytest.raises(UserError, match=r"cannot be read \(a JSON list, not an object\); restore them with git"):
        cost_fit.fit_cost_models(["cortex-m4"], path=out, measurements=kept, remeasure=False, log=quiet)
    assert not out.exists()


def test_unseen_shapes_are_not_among_the_fits_probes():
    measured = cost_fit._from_json(json.loads(cost_fit.MEASUREMENTS_FILE.read_text())["cortex-m4"])
    seen = {op for m in measured for op in m.ops}
    assert not seen & set(UNSEEN)


# ---------------------------------------------------------------------------------------------
# Curves, trade-off points and rho in instructions (hand-computed cases)


def three_exit_curve():
    """Four thresholds of a three-exit model; costs per path: MFLOPs [1, 4, 10], instructions [5, 6, 10]."""
    return sweep.Curve(
        rho=np.array([0.25, 0.5, 0.75, 1.0]),
        accuracy=np.array([89.0, 89.5, 89.6, 90.0]),
        mflops=np.zeros(4),  # replaced below
        exit_fraction=np.array([[0.6, 0.0, 0.4], [0.0, 0.7, 0.3], [0.3, 0.3, 0.4], [0.0, 0.0, 1.0]]),
    )


def test_benefit_curve_and_tradeoff_points_in_instructions():
    curve = three_exit_curve()
    instructions = sweep.mean_cost(curve, [5.0, 6.0, 10.0])
    # 0.6*5 + 0.4*10 = 7; 0.7*6 + 0.3*10 = 7.2; 0.3*5 + 0.3*6 + 0.4*10 = 7.3; 10
    np.testing.assert_allclose(instructions, [7.0, 7.2, 7.3, 10.0])
    points = sweep.tradeoff_points(curve, 90.0, 10.0, drops=(0.4, 1), cost=instructions, unit="minstructions")
    assert points[0] == {"drop": 0.4, "accuracy": 89.6, "minstructions": 7.3, "reduction_pct": 27.0, "rho": 0.75}
    assert points[1]["rho"] == 0.25 and points[1]["reduction_pct"] == pytest.approx(30.0)


def test_rho_is_chosen_in_the_targets_cost_where_flops_would_choose_another():
    curve = three_exit_curve()
    flops = sweep.mean_cost(curve, [1.0, 4.0, 10.0])  # 4.6, 5.8, 5.5, 10: rho 0.25 cheapest, then 0.75
    instructions = sweep.mean_cost(curve, [5.0, 6.0, 10.0])  # 7.0, 7.2, 7.3, 10
    curve = sweep.Curve(curve.rho, curve.accuracy, flops, curve.exit_fraction)
    in_flops = sweep.choose_rho(curve, 90.0, 10.0, drop=0.5)  # rho 0.25 is 1 point below: out
    in_instructions = sweep.choose_rho(curve, 90.0, 10.0, drop=0.5, cost=instructions, unit="instructions")
    assert in_flops.rho == 0.75 and in_instructions.rho == 0.5  # 5.5 < 5.8 MFLOPs, 7.2 < 7.3 instr.
    assert in_instructions.cost == pytest.approx(7.2) and in_instructions.met


def test_break_even_exit_rate_and_expected_cost():
    cost = EarlyExitCost("cortex-m4", stage1=60.0, stage2=50.0, base=100.0)
    assert cost.break_even_exit_rate == pytest.approx(0.2)  # 60 + 0.8 * 50 = 100
    assert cost.expected(0.5) == pytest.approx(85.0) and cost.saving_pct(0.5) == pytest.approx(15.0)
    assert cost.saving_pct(0.1) < 0 < cost.saving_pct(0.3)


def test_an_exit_that_saves_nothing_on_the_target_is_not_deployed():
    cost = EarlyExitCost("cortex-m55", stage1=80.0, stage2=50.0, base=100.0)  # saves above 60 % exits
    lines = []
    chosen = RhoChoice(60, 90.0, 89.0, 1.0, 89.5, rho=0.9, met=True, saves=False)  # no rho within the drop saves
    summary = pipeline.target_summary(cost, 0.3, chosen, log=lines.append)
    assert summary.deploy == "base model" and not summary.saves
    assert summary.break_even_exit_rate == pytest.approx(0.6)
    assert "deploy the base model" in summary.message and any("NOTE: no rho within 1" in line for line in lines)


def test_validation_refuses_an_exit_that_costs_more_than_the_base_model_at_every_rho():
    """Through the deployment's own choice on real exported models: with a stage 1 dearer than the base
    model no rho saves anything, so the base model is what to deploy; the numbers are still there."""
    from test_deploy import export_task

    from common import flops

    exported = export_task("keyword_spotting")
    validation = (exported["x"][:60], exported["labels"][:60])
    path_mflops = flops.path_mflops(exported["net"].model)
    base_mflops = flops.path_mflops(exported["base"].model)[0]
    dear = EarlyExitCost("cortex-m4", stage1=8e6, stage2=3e6, base=7.5e6)
    rho, details = pipeline.validation_rho(
        exported["models"]["float32"], validation, path_mflops, base_mflops, 100.0, target=dear
    )
    assert not details.saves and details.instruction_reduction_pct < 0 and details.rho == rho
    assert details.chosen_in == "instructions on cortex-m4" and details.flops_choice is not None
    summary = pipeline.target_summary(dear, details.exit_rate, details, log=quiet)
    assert summary.deploy == "base model" and "deploy the base model" in summary.message


def test_a_given_rho_below_the_break_even_exit_rate_is_warned_about():
    cost = EarlyExitCost("cortex-m4", stage1=80.0, stage2=50.0, base=100.0)
    lines = []
    summary = pipeline.target_summary(cost, 0.5, None, log=lines.append)  # rho given: details None
    assert summary.deploy == "early exit" and summary.instruction_saving_pct == pytest.approx(-5.0)
    assert any("WARNING" in line and "above an exit rate of 0.600" in line for line in lines)
    lines.clear()
    assert pipeline.target_summary(cost, 0.7, None, log=lines.append).saves
    assert not any("WARNING" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# Against the emulator (the Cortex-M4 with CMSIS-NN in CI)


@needs_toolchain
def test_predicted_counts_of_an_exported_trecx_model_are_within_the_accuracy(tmp_path):
    """Keyword spotting's exported stage 1, stage 2 and base model: each total within 3 % of the
    emulator's count on the M4 with CMSIS-NN, each operator within 10 %."""
    from test_deploy import export_task

    from common.deploy import export

    exported = export_task("keyword_spotting")
    export.write_export(tmp_path, "keyword_spotting", "trecx_ev", {"int8": exported["models"]["int8"]}, log=quiet)
    models = [(m, mcu.DEFAULT_ARENA_BYTES) for m in mcu.exported_models(tmp_path, "trecx_ev")]
    cost = load_cost_model("cortex-m4")
    for measured in cost_fit.measure(models, "cortex-m4", "cmsis-nn", log=quiet):
        model = next(m for m, _ in models if m.stem == measured.name)
        total, per_op = predicted_instructions(model.tflite.read_bytes(), cost)
        assert total == pytest.approx(measured.instructions, rel=MODEL_TOLERANCE["cortex-m4"]), measured.name
        for op, predicted, count in zip(measured.ops, per_op, measured.op_instructions):
            assert predicted == pytest.approx(count, rel=OPERATOR_TOLERANCE), (measured.name, op)


@needs_toolchain
def test_operators_of_shapes_the_fit_did_not_see_are_predicted_within_10_percent(tmp_path):
    probes = cost_fit.probe_models(UNSEEN, tmp_path, log=quiet)
    cost = load_cost_model("cortex-m4")
    for op, measured in zip(UNSEEN, cost_fit.measure(probes, "cortex-m4", "cmsis-nn", log=quiet)):
        (probe_op,) = measured.ops
        assert probe_op == op
        assert cost.operator(op) == pytest.approx(measured.op_instructions[0], rel=OPERATOR_TOLERANCE), op


# ---------------------------------------------------------------------------------------------
# The kept counts are checked before a fit; the cost file is replaced whole


def kept_counts(tmp_path, change):
    """The kept counts, changed by `change(content)`, as a file in `tmp_path`."""
    content = json.loads(cost_fit.MEASUREMENTS_FILE.read_text())
    change(content)
    path = tmp_path / "kept.json"
    path.write_text(json.dumps(content))
    return path


def negate_every_count(content):
    for entries in content.values():
        for entry in entries:
            entry["instructions"] = -entry["instructions"]
            for op in entry["ops"]:
                op[-1] = -op[-1]


def test_fit_cost_model_refuses_negated_counts_and_an_output_folder(tmp_path):
    """Through the real command: every count negated is refused naming the file, the entry and the key, and
    nothing is written; --output an existing folder is one message."""
    kept = kept_counts(tmp_path, negate_every_count)
    out = tmp_path / "costs.json"
    proc = cli("fit-cost-model", "--from-measurements", "--measurements", kept, "--output", out, cwd=tmp_path)
    assert_clean_failure(proc, f"the kept counts {kept} are damaged: cortex-m4 entry 0 (p000): instructions is -")
    assert "expected a finite, positive number" in proc.stderr and not out.exists()
    folder = tmp_path / "costs_dir"
    folder.mkdir()
    proc = cli("fit-cost-model", "--from-measurements", "--output", folder, cwd=tmp_path)
    assert_clean_failure(proc, f"--output {folder} is a folder; give the cost model file to write")
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["costs_dir", "kept.json"]


def _set(target, entry, key, value, op=0):
    """A change of the kept counts: `key` (an entry's or, with an OPERATOR_KEYS name, its operator `op`'s)."""

    def change(content):
        if key in cost_fit.OPERATOR_KEYS:
            content[target][entry]["ops"][op][cost_fit.OPERATOR_KEYS.index(key)] = value
        else:
            content[target][entry][key] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (
            _set("cortex-m7", 3, "count", float("nan")),
            "cortex-m7 entry 3 (p003), ops[0]: count is nan, expected a finite",
        ),
        (_set("cortex-m4", 5, "count", 0), "entry 5 (p005), ops[0]: count is 0, expected a finite, positive number"),
        (_set("cortex-m4", 1, "instructions", "12"), "entry 1 (p001): instructions is '12', expected a finite"),
        (_set("cortex-m4", 2, "kind", "GATHER"), "kind is 'GATHER', not an operator the cost model has a form for"),
        (_set("cortex-m4", 0, "input_shape", [32, 32]), "input_shape is [32, 32], expected 3 positive whole numbers"),
        (_set("cortex-m4", 0, "kernel", [3, 0]), "ops[0]: kernel is [3, 0], expected 2 positive whole numbers"),
        (_set("cortex-m4", 0, "padding", "full"), "padding is 'full', expected same or valid"),
        (_set("cortex-m4", 0, "output_shape", [30, 30, 16]), "gives [32, 32]"),
        (_set("cortex-m4", 0, "ops", []), "entry 0 (p000): ops is [], expected a list of measured operators"),
        (_set("cortex-m4", 0, "extra", 1), "the entry holds ['extra', 'instructions', 'name', 'ops']"),
    ],
)
def test_kept_counts_that_make_no_sense_are_named_by_entry_and_key(tmp_path, change, message):
    kept = kept_counts(tmp_path, change)
    out = tmp_path / "out.json"
    with pytest.raises(UserError, match=f"the kept counts {kept} are damaged: .*{re.escape(message)}"):
        cost_fit.fit_cost_models(target_cost.TARGETS, path=out, measurements=kept, remeasure=False, log=quiet)
    assert not out.exists()


def test_fit_cost_model_killed_while_writing_leaves_the_earlier_file(tmp_path):
    """Killed with the new cost models written but not yet in place (its one file): the earlier file byte
    for byte; the next run replaces it and leaves nothing beside it."""
    out = tmp_path / "costs.json"
    out.write_text('{"note": "the earlier cost models"}\n')
    args = ["fit-cost-model", "--from-measurements", "--targets", "cortex-m4", "--output", out]
    assert_killed(cli(*args, cwd=tmp_path, env=kill_at("file:1")))
    assert out.read_text() == '{"note": "the earlier cost models"}\n' and len(left_beside(out)) == 1
    assert_ok(cli(*args, cwd=tmp_path))
    assert list(json.loads(out.read_text())["targets"]) == ["cortex-m4"] and left_beside(out) == []
