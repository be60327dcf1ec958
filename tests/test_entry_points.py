"""Every command a user types, run through the real script to a successful end.

Each task's scripts run in the order a user runs them (download.sh from a mirror of archives in the
official formats, preprocess.sh, train.sh, test.sh on the trained model, deploy.sh), on tiny synthetic
data; the install scripts and the remaining `python3 -m common.cli` commands too. `RUN_BY` lists, for each
entry point, the tests that run it: a script or command added without a test fails
`test_every_entry_point_has_a_test`, so an argument mismatch between a script and the library (as once
broke reproduce.sh) cannot land unnoticed.
"""

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from scripts import assert_ok, cli, run, task_scripts

from common import exit_design, exits
from common.cli import build_parser
from common.models import early_exit_taps
from common.tasks import TASKS, folder_test_sh_reads, load_task, task_names

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


# Entry point -> the tests ("module::function") that run it through the real script or command line.
TASK_SCRIPTS = ["test_entry_points.py::test_task_scripts_in_the_order_a_user_runs_them"]
RUN_BY = {
    "reproduce.sh": [
        "test_reproduce.py::test_reproduce_from_an_empty_data_root_through_a_mirror",
        "test_reproduce.py::test_reproduce_with_the_test_sets_in_place_fetches_nothing",
    ],
    "install_mcu_toolchain.sh": [
        "test_entry_points.py::test_install_mcu_toolchain_help_and_a_wrong_option",
        "test_mcu.py::test_install_mcu_toolchain_again_changes_nothing",
    ],
    "install_conda_packages.sh": ["test_entry_points.py::test_install_conda_packages_with_a_stand_in_conda"],
    **{str(script): TASK_SCRIPTS for task in TASKS for script in task_scripts(task)},
    "cli download": TASK_SCRIPTS,
    "cli preprocess": TASK_SCRIPTS,
    "cli train": TASK_SCRIPTS,
    "cli test": TASK_SCRIPTS,
    "cli deploy": TASK_SCRIPTS,
    "cli reproduce": ["test_reproduce.py::test_reproduce_from_an_empty_data_root_through_a_mirror"],
    "cli report": ["test_reproduce.py::test_report_reprints_table1"],
    "cli flops": ["test_entry_points.py::test_flops_prints_every_exit_path"],
    "cli tasks": [
        "test_entry_points.py::test_tasks_lists_the_names_without_importing_tensorflow",
        "test_tasks.py::test_the_fourth_task_is_listed_and_needs_no_preprocessing",
    ],
    "cli design-exit": [
        "test_exit_design.py::test_the_design_round_trips_through_test_deploy_and_train",
        *TASK_SCRIPTS,
    ],
    "cli cost": ["test_cost_command.py::test_keras_and_tflite_are_priced_the_same_and_rows_sum_to_the_total"],
    "cli fit-cost-model": ["test_entry_points.py::test_fit_cost_model_refits_from_the_kept_measurements"],
}


def entry_points():
    """The scripts at the top level and in the task folders, and the commands of `python3 -m common.cli`."""
    scripts = [path.relative_to(REPO_ROOT).as_posix() for path in sorted(REPO_ROOT.glob("*.sh"))]
    scripts += [str(path) for task in TASKS for path in task_scripts(task)]
    commands = next(action for action in build_parser()._actions if action.dest == "command").choices
    return scripts + [f"cli {command}" for command in commands]


def test_every_entry_point_has_a_test():
    assert sorted(RUN_BY) == sorted(entry_points())
    for entry, tests in RUN_BY.items():
        for test in tests:
            module, function = test.split("::")
            source = (TESTS / module).read_text()
            assert f"def {function}(" in source, f"{entry}: {test} does not exist"


ONE_SHORT_EPOCH = ["--set", "epochs=1", "--set", "batch_size=8"]


def user_session(task, tmp):
    """The task's scripts in a user's order on a mirror of its archives (the task's own synthetic ones): the
    base and T-RecX models trained for an epoch, then tested and deployed; where the task has training and
    validation sets, an early exit designed on the trained models and deployed too. [(step, process)],
    stopping at the first that fails."""
    data, models, results, designs = tmp / "data", tmp / "models", tmp / "results", tmp / "designs"
    module = load_task(task)
    mirror = module.write_synthetic_archives(tmp / "mirror")
    test_dir = folder_test_sh_reads(module, data)
    scripts = {path.stem: path for path in task_scripts(task)}
    steps = [("download", [scripts["download"], "--data-dir", data, "--mirror", mirror, "--skip-checksums"])]
    if "preprocess" in scripts:
        steps.append(("preprocess", [scripts["preprocess"], "--data-dir", data]))
    trained = ["--models-dir", models, "--models", "trained"]
    rho_and_calibration = ["--rho", "0.5", "--calibration-data", data, "--calibration-samples", "8"]
    steps += [
        ("train", [scripts["train"], "base", "trecx_ev", "--data-dir", data, "--models-dir", models, *ONE_SHORT_EPOCH]),
        (
            "test",
            [
                scripts["test"],
                "--data-dir",
                test_dir,
                "--results-dir",
                results / "test",
                *trained,
                "--model",
                "base,trecx_ev",
            ],
        ),
        (
            "deploy",
            [
                scripts["deploy"],
                "--data-dir",
                test_dir,
                "--results-dir",
                results / "deploy",
                *trained,
                *rho_and_calibration,
            ],
        ),
    ]
    if designs_exits(module):
        design = [*design_candidate(module), *DESIGN_QUICKLY, "--results-dir", results / "design"]
        steps += [
            (
                "design-exit",
                ["cli", "design-exit", task, *trained, "--data-dir", data, *design, "--output-models-dir", designs],
            ),
            (
                "deploy design",
                [
                    scripts["deploy"],
                    "--data-dir",
                    test_dir,
                    "--results-dir",
                    results / "deploy_design",
                    "--models-dir",
                    designs,
                    "--models",
                    "trained",
                    *rho_and_calibration,
                ],
            ),
        ]
    done = []
    for step, (command, *args) in steps:
        done.append((step, cli(*args, cwd=tmp) if command == "cli" else run(command, *args, cwd=tmp)))
        if done[-1][1].returncode != 0:
            break
    return done


DESIGN_QUICKLY = ["--epochs", "1", "--drop", "100", "--target", "cortex-m4"]


def designs_exits(module):
    """Whether design-exit can design the task's exits: it defines the optional training and validation sets."""
    return not exit_design.missing_splits(module)


def design_candidate(module):
    """design-exit's --taps and --branches for one candidate that is not the paper's exit: the first tap, a
    branch other than the paper's, a different one for each task. Its stage 1 costs fewer instructions than
    the trained exit's (the paper's branch at the paper's tap, never before the first), so with every rho
    within the drop it saves more and design-exit writes it."""
    taps = early_exit_taps(module.ARCHITECTURE)
    others = [branch for branch in exits.BRANCHES if branch != "paper"]
    branch = others[task_names().index(module.NAME) % len(others)]
    return ["--taps", taps[0], "--branches", branch]


@pytest.fixture(scope="module")
def sessions(request, tmp_path_factory):
    """{task: (steps run, its folder)}: the session of every registered task selected (-k), two at a time."""
    names = [
        item.callspec.params["task"]
        for item in request.session.items
        if item.originalname == "test_task_scripts_in_the_order_a_user_runs_them"
    ]
    folders = {task: tmp_path_factory.mktemp(task) for task in names}
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(names, pool.map(lambda task: user_session(task, folders[task]), names)))
    return {task: (runs[task], folders[task]) for task in names}


@pytest.mark.parametrize("task", task_names())
def test_task_scripts_in_the_order_a_user_runs_them(task, sessions):
    steps, tmp = sessions[task]
    for _, proc in steps:
        assert_ok(proc)
    expected = ["download", "train", "test", "deploy"]
    if any(path.stem == "preprocess" for path in task_scripts(task)):
        expected.insert(1, "preprocess")
    if designs_exits(load_task(task)):
        expected += ["design-exit", "deploy design"]
    assert [step for step, _ in steps] == expected
    assert all((tmp / "models" / task / model / "weights.npz").is_file() for model in ("base", "trecx_ev"))
    summary = json.loads((tmp / "results" / "test" / "summary.json").read_text())
    assert summary["source"] == "trained" and list(summary["models"]) == ["base", "trecx_ev"]
    assert summary["num_samples"] > 0
    report = json.loads((tmp / "results" / "deploy" / "deploy.json").read_text())
    assert report["rho"] == 0.5 and report["model"] == "trecx_ev"
    assert (tmp / "results" / "deploy" / "deploy.md").is_file()
    if designs_exits(load_task(task)):  # deploy.sh on the designed exit: its stages are the design's
        design = json.loads((tmp / "results" / "design" / "design.json").read_text())
        trained, candidate = design["candidates"]
        assert trained["trained"] and design["chosen"] == candidate and candidate["paper"] is False
        assert design["new_over_trained_pp"] > 0 and design["verdict"].startswith("a new exit won by")
        record = json.loads((tmp / "models" / task / "trecx_ev" / "training_data.json").read_text())
        assert design["backbone_data"] == record["backbone"]  # train.sh's record, read by design-exit
        in_domain = load_task(task).training_data_origin is not None  # else unknown, and flagged
        assert design["data"]["source"] == record["backbone"]["source"] and (design["data_notes"] == []) == in_domain
        report = json.loads((tmp / "results" / "deploy_design" / "deploy.json").read_text())
        assert report["path_mflops"]["ee"] == pytest.approx(candidate["path_mflops"][0], abs=1e-6)
        assert report["path_mflops"]["ef"] == pytest.approx(candidate["path_mflops"][1], abs=1e-6)


def test_flops_prints_every_exit_path(tmp_path):
    proc = cli("flops", "image_classification", "trecx_ev", cwd=tmp_path)
    assert_ok(proc)
    assert "trecx_ev, path to exit ee: 11.660 MFLOPs" in proc.stdout
    assert "trecx_ev, path to exit ef: 26.459 MFLOPs" in proc.stdout


def test_tasks_lists_the_names_without_importing_tensorflow(tmp_path):
    """`tasks` answers in a fraction of a second: -X importtime names every module the command imports."""
    proc = cli("tasks", cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert_ok(proc)
    assert proc.stdout.split() == list(task_names())
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "common.tasks" in imported  # the import times were recorded
    assert not {"tensorflow", "keras"} & imported


def test_fit_cost_model_refits_from_the_kept_measurements(tmp_path):
    """The refit without the emulator (the emulator's side, probes and counts, is tested in
    test_target_cost.py), and a wrong target named with the valid ones."""
    out = tmp_path / "costs.json"
    proc = cli(
        "fit-cost-model", "--from-measurements", "--targets", "cortex-m4,cortex-m55", "--output", out, cwd=tmp_path
    )
    assert_ok(proc)
    assert "cortex-m4: " in proc.stdout and "measured operators, relative error median" in proc.stdout
    assert set(json.loads(out.read_text())["targets"]) == {"cortex-m4", "cortex-m55"}
    wrong = cli("fit-cost-model", "--from-measurements", "--targets", "cortex-m3", "--output", out, cwd=tmp_path)
    assert wrong.returncode == 2 and "--targets: unknown target 'cortex-m3'; valid targets: cortex-m4" in wrong.stderr
    wrong = cli("fit-cost-model", "--from-measurements", "--targets", "none", "--output", out, cwd=tmp_path)
    assert wrong.returncode == 2 and "--targets: none is not a target to fit" in wrong.stderr
    wrong = cli("test", "image_classification", "--target", "m4", cwd=tmp_path)
    assert wrong.returncode == 2 and "--target: unknown target 'm4'" in wrong.stderr and "or none" in wrong.stderr


def test_install_mcu_toolchain_help_and_a_wrong_option(tmp_path):
    helped = run("install_mcu_toolchain.sh", "--help", cwd=tmp_path)
    assert_ok(helped)
    assert helped.stdout.startswith("Usage: bash install_mcu_toolchain.sh") and "--build CORE:KERNELS" in helped.stdout
    wrong = run("install_mcu_toolchain.sh", "--biuld", "cortex-m4:cmsis-nn", cwd=tmp_path)
    assert wrong.returncode != 0 and "unknown argument: --biuld" in wrong.stderr


def test_install_conda_packages_with_a_stand_in_conda(tmp_path):
    """The script's commands, recorded by a `conda` that only logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    conda = bin_dir / "conda"
    conda.write_text(
        f'#!/usr/bin/env bash\necho "$PWD: $*" >> {tmp_path / "calls.log"}\n'
        '[[ "$*" == *" -c "* ]] && echo 2.20.1 || true\n'
    )  # the installed TensorFlow's version
    conda.chmod(conda.stat().st_mode | stat.S_IXUSR)
    path = f"{bin_dir}:{os.environ['PATH']}"
    assert_ok(run("install_conda_packages.sh", "mine", "--gpu", cwd=tmp_path, env={"PATH": path}))
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0].endswith("create -y -n mine python=3.11 pip")
    assert calls[1] == f"{REPO_ROOT}: run -n mine python -m pip install -r requirements.txt"
    assert "run -n mine python -c" in calls[2] and "tensorflow" in calls[2]
    assert calls[3].endswith("run -n mine python -m pip install tensorflow[and-cuda]==2.20.1")
    helped = run("install_conda_packages.sh", "--help", cwd=tmp_path)
    assert_ok(helped)
    assert "Usage: bash install_conda_packages.sh" in helped.stdout
    missing = run("install_conda_packages.sh", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode == 2 and "conda not found" in missing.stderr
