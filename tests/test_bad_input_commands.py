"""Bad input met by the commands around the pipeline, through the real scripts: extra tasks that cannot be
imported, `report` over damaged or misplaced results, options that would do nothing or that are only a
prefix of another, and install_mcu_toolchain.sh's own arguments. Each ends in one message naming the
problem and the fix, exit 2, no traceback, files untouched. (The MCU build cache: tests/test_mcu.py.) `report`'s
variants of one check run its main() in this process, one of each through `python3 -m common.cli`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from scripts import REPO_ROOT, assert_clean_failure, assert_ok, cli, cli_in_process, damage, run, task_scripts

from common.tasks import EXTRA_TASKS_VARIABLE, TASKS, folder_test_sh_reads, load_task

# ------------------------------------------------------------------------------------------------
# Extra tasks


@pytest.fixture
def extra_tasks(tmp_path: Path) -> Path:
    """Packages in tmp_path (the working directory, so importable): without a task module, with a syntax
    error in it, and with a task module that imports something not installed."""
    (tmp_path / "no_task_module").mkdir()
    (tmp_path / "no_task_module" / "__init__.py").write_text("")
    (tmp_path / "broken_syntax").mkdir()
    (tmp_path / "broken_syntax" / "__init__.py").write_text("")
    (tmp_path / "broken_syntax" / "task.py").write_text("NAME = 'broken_syntax'\ndef download(:\n")
    (tmp_path / "missing_import").mkdir()
    (tmp_path / "missing_import" / "__init__.py").write_text("")
    (tmp_path / "missing_import" / "task.py").write_text("import a_package_nobody_installed\n")
    return tmp_path


@pytest.mark.parametrize(
    "package, named",
    [
        ("not_installed_anywhere", ["task package not_installed_anywhere", "is not installed", "PYTHONPATH"]),
        ("no_task_module", ["task package no_task_module", "has no task module (no_task_module/task.py)"]),
        ("broken_syntax", ["has a syntax error", "broken_syntax/task.py, line 2"]),
        ("missing_import", ["missing_import.task", "needs a_package_nobody_installed"]),
    ],
)
def test_tasks_names_an_extra_task_that_cannot_be_imported(extra_tasks: Path, package: str, named: str) -> None:
    proc = cli("tasks", cwd=extra_tasks, env={EXTRA_TASKS_VARIABLE: package})
    assert_clean_failure(proc, *named, EXTRA_TASKS_VARIABLE)
    assert proc.stdout.split() == ["image_classification", "keyword_spotting", "visual_wake_words"]
    assert package not in proc.stdout  # never listed as if it were fine


def test_report_over_results_of_a_task_whose_package_is_gone(tmp_path: Path) -> None:
    (tmp_path / "results" / "gone_task").mkdir(parents=True)
    (tmp_path / "results" / "gone_task" / "summary.json").write_text(json.dumps({"task": "gone_task"}))
    proc = cli("report", "--results-root", tmp_path / "results", cwd=tmp_path, env={EXTRA_TASKS_VARIABLE: "gone_task"})
    assert_clean_failure(proc, "task package gone_task", "is not installed")


# ------------------------------------------------------------------------------------------------
# report over damaged results


def good_summary(task: str = "image_classification") -> dict:
    tradeoff = [
        {"drop": d, "accuracy": 86.0, "mflops": 20.0 - d, "reduction_pct": 20.0 + d, "rho": 0.8} for d in (1, 2, 3)
    ]
    return {
        "task": task,
        "num_samples": 10,
        "inputs": {"found": 10, "scored": 10, "skipped": []},
        "source": "pretrained",
        "baseline": {"model": "base", "source": "pretrained"},
        "models": {
            "base": {
                "exits": ["ef"],
                "accuracy": {"ef": 87.0},
                "mflops": {"ef": 25.27},
                "params": 78666,
                "tradeoff": tradeoff,
            },
            "trecx_ev": {
                "exits": ["ee", "ef"],
                "accuracy": {"ee": 73.0, "ef": 87.4},
                "mflops": {"ee": 11.66, "ef": 26.46},
                "params": 89780,
                "tradeoff": tradeoff,
            },
        },
    }


DAMAGES = [
    (("models", "base", "params"), KeyError, "models.base.params is missing"),  # through the command line
    (("models",), KeyError, "models is missing"),
    (("models", "base", "accuracy", "ef"), "87", "models.base.accuracy.ef is str, expected a number"),
    (("models", "trecx_ev", "tradeoff"), [], "models.trecx_ev.tradeoff is empty"),
    (("models", "trecx_ev", "tradeoff"), {"drop": 1}, "models.trecx_ev.tradeoff is dict, expected a list"),
    (("inputs", "skipped"), [{"id": 3}], "inputs.skipped.0.id is int, expected a string"),
]


@pytest.mark.parametrize("path, value, named", DAMAGES)
def test_report_refuses_a_damaged_summary_naming_file_and_key(
    tmp_path: Path, path: tuple[str, ...], value: object, named: str
) -> None:
    summary_file = tmp_path / "results" / "image_classification" / "summary.json"
    summary_file.parent.mkdir(parents=True)
    summary_file.write_text(json.dumps(damage(good_summary(), path, value)))
    before = summary_file.read_bytes()
    # The first through `python3 -m common.cli`, the other damages through the same main() in this process.
    report = cli if named == DAMAGES[0][2] else cli_in_process
    proc = report("report", "--results-root", tmp_path / "results", cwd=tmp_path)
    assert_clean_failure(proc, f"{summary_file} is damaged: {named}", "bash image_classification/test.sh again")
    assert summary_file.read_bytes() == before and not (tmp_path / "results" / "table1.md").exists()


def test_report_refuses_a_summary_in_another_tasks_folder(tmp_path: Path) -> None:
    summary_file = tmp_path / "results" / "image_classification" / "summary.json"
    summary_file.parent.mkdir(parents=True)
    summary_file.write_text(json.dumps(good_summary("keyword_spotting")))
    proc = cli_in_process("report", "--results-root", tmp_path / "results", cwd=tmp_path)
    assert_clean_failure(proc, f"{summary_file} holds results of task 'keyword_spotting', not of image_classification")
    assert not (tmp_path / "results" / "table1.md").exists()


def test_report_over_a_good_summary_writes_table1(tmp_path: Path) -> None:
    """The checks above refuse damage, not a summary as test.sh writes it."""
    summary_file = tmp_path / "results" / "image_classification" / "summary.json"
    summary_file.parent.mkdir(parents=True)
    summary_file.write_text(json.dumps(good_summary()))
    proc = cli_in_process("report", "--results-root", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ResNet-8 (CIFAR-10)" in (tmp_path / "results" / "table1.md").read_text()


# ------------------------------------------------------------------------------------------------
# Options that would do nothing, and prefixes


def test_mcu_samples_without_mcu_is_refused(tmp_path: Path) -> None:
    proc = run("image_classification/deploy.sh", "--rho", "0.5", "--mcu-samples", "5", cwd=tmp_path)
    assert_clean_failure(proc, "--mcu-samples", "needs --mcu")


@pytest.mark.parametrize(
    "command, args, prefix",
    [
        ("reproduce.sh", ["--data", "somewhere"], "--data"),
        ("image_classification/test.sh", ["--results", "out"], "--results"),
        ("image_classification/deploy.sh", ["--calibration", "x", "--rho", "0.5"], "--calibration"),
        ("keyword_spotting/download.sh", ["--mirr", "x"], "--mirr"),
    ],
)
def test_an_option_prefix_is_an_error_not_another_option(
    tmp_path: Path, command: str, args: list[str], prefix: str
) -> None:
    proc = run(command, *args, cwd=tmp_path)
    # refused by the script's own usage, which names the script the user ran
    assert proc.returncode == 2, proc.stderr
    assert f"bash {command}: error: unrecognized arguments: {prefix}" in proc.stderr, proc.stderr
    assert not (tmp_path / "somewhere").exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------
# Messages


def test_a_message_suggesting_a_script_says_bash_as_the_user_types_it() -> None:
    """No "run TASK/NAME.sh" in the sources: every suggestion reads "run bash TASK/NAME.sh" (the scripts are
    not executable, and bash is how every other message and the README name them)."""
    pattern = re.compile(r"\b(?:run|then|or) (?!bash )[\w{}.]+/\w+\.sh\b")
    sources = [path for folder in ("common", *TASKS) for path in sorted((REPO_ROOT / folder).rglob("*.py"))]
    assert len(sources) > 20
    found = [
        f"{path.relative_to(REPO_ROOT)}: {match}" for path in sources for match in pattern.findall(path.read_text())
    ]
    assert found == []
    assert pattern.search('f"run keyword_spotting/download.sh --data-dir {data_dir}"')  # what it once missed


TestSetCase = tuple[str, list, list[str]]  # the script, its arguments, what its message names


def vww_minival_missing(tmp: Path) -> TestSetCase:
    data = tmp / "data" / "visual_wake_words"
    steps = (
        f"--data-dir {data / 'minival'} not found; run bash visual_wake_words/download.sh --split test --data-dir "
        f"{data}, then bash visual_wake_words/preprocess.sh --data-dir {data}, which builds it"
    )
    return "visual_wake_words/test.sh", ["--data-dir", data / "minival"], [steps]


def vww_default_missing(tmp: Path) -> TestSetCase:
    """test.sh with no --data-dir, on a checkout without data/ (skipped where the test set is in place)."""
    folder = REPO_ROOT / "data" / "visual_wake_words" / "minival"
    if folder.exists():
        pytest.skip(f"{folder} exists: the default test set is in place")
    steps = (
        f"the default test set folder {folder} not found; run bash visual_wake_words/download.sh --split test, "
        "then bash visual_wake_words/preprocess.sh, which builds it"
    )
    return "visual_wake_words/deploy.sh", ["--rho", "0.5"], [steps]


def kws_one_level_too_deep(tmp: Path) -> TestSetCase:
    folder = tmp / "speech_commands_test_set_v0.02"
    (folder / "yes").mkdir(parents=True)
    return "keyword_spotting/test.sh", ["--data-dir", folder], [f"pass the folder holding it: --data-dir {tmp}"]


def kws_label_folders_in_the_data_folder(tmp: Path) -> TestSetCase:
    (tmp / "mine" / "yes").mkdir(parents=True)
    moved = tmp / "mine" / "speech_commands_test_set_v0.02"
    return "keyword_spotting/test.sh", ["--data-dir", tmp / "mine"], ["holds the label folders (yes/...)", str(moved)]


def kws_missing(tmp: Path) -> TestSetCase:
    folder = tmp / "nowhere"
    steps = f"run bash keyword_spotting/download.sh --split test --data-dir {folder}"
    return "keyword_spotting/test.sh", ["--data-dir", folder], [f"--data-dir {folder} not found; {steps}"]


@pytest.mark.parametrize(
    "case",
    [
        vww_minival_missing,
        vww_default_missing,
        kws_one_level_too_deep,
        kws_label_folders_in_the_data_folder,
        kws_missing,
    ],
)
def test_a_test_set_folder_not_found_names_the_steps_that_make_it(
    tmp_path: Path, case: Callable[[Path], TestSetCase]
) -> None:
    script, args, named = case(tmp_path)
    proc = run(script, *args, "--results-dir", tmp_path / "out", cwd=tmp_path)
    assert_clean_failure(proc, *named)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", TASKS)
def test_help_names_the_tasks_own_default_folders(tmp_path: Path, task: str) -> None:
    """No script's help prints data/TASK: each names the task's folder, and test.sh and deploy.sh the test set
    folder they read (data/visual_wake_words/minival for visual wake words)."""
    test_folder = folder_test_sh_reads(load_task(task), f"data/{task}").as_posix()
    for script in task_scripts(task):
        proc = run(script, "--help", cwd=tmp_path)
        assert_ok(proc)
        text = " ".join(proc.stdout.split())
        assert "data/TASK" not in text
        if script.stem in ("test", "deploy"):
            assert f"the test set folder (default: {test_folder} in the repository)" in text
        if script.stem != "test":
            assert f"(default: data/{task} in the repository)" in text
    assert test_folder.endswith("/minival") == (task == "visual_wake_words")


# ------------------------------------------------------------------------------------------------
# install_mcu_toolchain.sh's own arguments (a truncated tarball: tests/test_mcu.py, which has the tools)


def test_install_mcu_toolchain_home_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a folder")
    proc = run("install_mcu_toolchain.sh", "--home", tmp_path / "home", cwd=tmp_path)
    assert_clean_failure(proc, f"the build home {tmp_path / 'home'} is a file, not a folder")
    assert proc.stderr.count("\n") == 1 and (tmp_path / "home").read_text() == "not a folder"


def test_install_mcu_toolchain_sources_that_do_not_exist(tmp_path: Path) -> None:
    proc = run("install_mcu_toolchain.sh", "--sources", tmp_path / "nowhere", "--home", tmp_path / "home", cwd=tmp_path)
    assert_clean_failure(proc, f"--sources {tmp_path / 'nowhere'}: no such folder")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "home").exists()


def test_report_takes_a_trade_off_point_that_no_rho_reaches(tmp_path: Path) -> None:
    """null MFLOPs at a trade-off point (no rho is that accurate) is a result, not damage."""
    summary = good_summary()
    summary["models"]["trecx_ev"]["tradeoff"][0].update(mflops=None, reduction_pct=None, rho=None)
    summary_file = tmp_path / "results" / "image_classification" / "summary.json"
    summary_file.parent.mkdir(parents=True)
    summary_file.write_text(json.dumps(summary))
    proc = cli_in_process("report", "--results-root", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
