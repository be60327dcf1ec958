"""reproduce.sh, the Quick start's main command, end to end through the real script for every registered task.

Twice over the same synthetic data: from an empty data root through a local mirror of archives in the
official formats (download, preparation, evaluation), and with only the test sets in place (nothing may be
fetched: the mirror given then is empty). Both must give the numbers test.sh gives on the same data, and
output fit for a log file. The archives are synthetic, so their checksums cannot be the official ones:
the mirror run passes --skip-checksums, and a run without it must refuse them.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scripts import assert_ok, cli, run, task_scripts

from common.tasks import TASKS, folder_test_sh_reads, load_task, task_names

# What of each built-in task's data is its test layout, under DATA_ROOT/TASK (another task's: the folder
# test.sh reads, DATA_ROOT/TASK/TEST_SUBDIR, whole).
CIFAR_TEST_FILE = "test_batch"
KWS_TEST_FOLDER = "speech_commands_test_set_v0.02"
VWW_TEST_FOLDER = "minival"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A folder of the archives reproduce.sh fetches, under their official names, in the official formats."""
    folder = tmp_path_factory.mktemp("mirror")
    for task in task_names():
        load_task(task).write_synthetic_archives(folder)
    return folder


@pytest.fixture(scope="module")
def from_mirror(tmp_path_factory, mirror):
    root = tmp_path_factory.mktemp("from_mirror")
    proc = run(
        "reproduce.sh",
        "--data-root",
        root / "data",
        "--results-root",
        root / "results",
        "--mirror",
        mirror,
        "--skip-checksums",
        cwd=root,
        log_dir=root / "logs",
    )
    return proc, root


@pytest.fixture(scope="module")
def in_place(tmp_path_factory, from_mirror):
    """Only each task's test layout (copied from what the mirror run unpacked and built), and an empty mirror."""
    _, source = from_mirror
    root = tmp_path_factory.mktemp("in_place")
    data = root / "data"
    cifar = data / "image_classification" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    shutil.copy(source / "data" / "image_classification" / "cifar-10-batches-py" / CIFAR_TEST_FILE, cifar)
    for task, folder in (("keyword_spotting", KWS_TEST_FOLDER), ("visual_wake_words", VWW_TEST_FOLDER)):
        shutil.copytree(source / "data" / task / folder, data / task / folder)
    for task in (task for task in task_names() if task not in TASKS):
        shutil.copytree(
            folder_test_sh_reads(load_task(task), source / "data" / task),
            folder_test_sh_reads(load_task(task), data / task),
        )
    (root / "empty_mirror").mkdir()
    before = sorted(path.relative_to(data) for path in data.rglob("*"))
    proc = run(
        "reproduce.sh",
        "--data-root",
        data,
        "--results-root",
        root / "results",
        "--mirror",
        root / "empty_mirror",
        cwd=root,
        log_dir=root / "logs",
    )
    return proc, root, before


def test_reproduce_from_an_empty_data_root_through_a_mirror(from_mirror, mirror):
    proc, root = from_mirror
    assert_ok(proc)
    assert "--skip-checksums" in proc.stderr and "not checked" in proc.stderr
    fetched = {path.name for path in (root / "data").rglob("*.tar.gz")} | {
        p.name for p in (root / "data").rglob("*.zip")
    }
    # The test split only: no training archive is fetched.
    assert fetched == {
        "cifar-10-python.tar.gz",
        "speech_commands_test_set_v0.02.tar.gz",
        "val2017.zip",
        "annotations_trainval2017.zip",
    }
    assert (root / "data" / "visual_wake_words" / VWW_TEST_FOLDER / "person").is_dir()  # built from COCO
    for task in task_names():
        summary = json.loads((root / "results" / task / "summary.json").read_text())
        assert summary["task"] == task and summary["num_samples"] > 0
        assert (root / "results" / task / "table1.md").is_file()
    table = (root / "results" / "table1.md").read_text()
    # As the README's: one row per quantity, one column per task, in the registry's order.
    assert "| | " + " | ".join(load_task(task).TITLE for task in task_names()) + " |" in table
    assert {line.count("|") for line in table.splitlines() if line.startswith("|")} == {len(task_names()) + 2}
    summaries = [json.loads((root / "results" / task / "summary.json").read_text()) for task in task_names()]
    # How many samples each task was scored on, and from which folder.
    assert "| Test samples | " + " | ".join(f"{s['num_samples']:,}" for s in summaries) + " |" in table
    for task, summary in zip(task_names(), summaries):
        folder = folder_test_sh_reads(load_task(task), root / "data" / task)
        assert summary["inputs"]["folder"] == str(folder)
        assert f"{load_task(task).TITLE}, {summary['num_samples']:,} samples from `{folder}`" in table
    # The default target's predicted instructions, one value per task; one saving where its two agree.
    assert "| Instructions predicted on | " + " | ".join(["cortex-m4"] * len(summaries)) + " |" in table
    base = [f"{s['models']['base']['minstructions']['ef']:.2f}" for s in summaries]
    assert "| Baseline M instructions | " + " | ".join(base) + " |" in table
    for i, drop in enumerate((1, 2, 3)):
        cells = []
        for summary in summaries:
            trecx = summary["models"]["trecx_ev"]
            at_flops = trecx["instruction_reduction_pct_at_flops_tradeoff"][i]
            chosen = trecx["tradeoff_target"][i]["reduction_pct"]
            figures = [f"{v:.1f}" if v is not None else "–" for v in (at_flops, chosen)]
            cells.append(figures[0] if figures[0] == figures[1] else f"{figures[0]} ({figures[1]})")
        assert f"| Instructions saved % at {drop} % drop | " + " | ".join(cells) + " |" in table
    # Printed once, at the end, followed by where it was written and how long the run took.
    assert proc.stdout.count("| Test samples |") == 1
    results = root / "results"
    last = proc.stdout.strip().splitlines()[-1]
    folders = ", ".join(str(results / task) for task in task_names())
    assert re.fullmatch(
        rf"results in {re.escape(folders)}; Table 1 in {re.escape(str(results / 'table1.md'))} "
        r"\(\d+\.\d s in all\)",
        last,
    ), last


def test_reproduce_with_the_test_sets_in_place_fetches_nothing(in_place):
    proc, root, before = in_place
    assert_ok(proc)
    data = root / "data"
    after = sorted(path.relative_to(data) for path in data.rglob("*"))
    assert after == before  # nothing fetched, unpacked or rebuilt (the mirror is empty: a fetch would fail)
    output = proc.stdout + proc.stderr
    assert "CIFAR-10 (test files) already present" in output
    assert f"{KWS_TEST_FOLDER} already present" in output
    assert "minival" in output and "already present" in output and "used as it is" in output
    assert (root / "results" / "table1.md").is_file()


@pytest.mark.parametrize("task", task_names())
def test_reproduce_gives_test_sh_numbers(task, from_mirror, in_place, tmp_path):
    _, mirror_root = from_mirror
    proc, root, _ = in_place
    assert_ok(proc)
    [script] = [path for path in task_scripts(task) if path.name == "test.sh"]
    tested = run(
        script,
        "--data-dir",
        folder_test_sh_reads(load_task(task), root / "data" / task),
        "--results-dir",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert_ok(tested)
    expected = json.loads((tmp_path / "out" / "summary.json").read_text())
    table = (tmp_path / "out" / "table1.md").read_text()
    for results, data in (
        (root / "results" / task, root / "data"),
        (mirror_root / "results" / task, mirror_root / "data"),
    ):
        # The same numbers; each names the folder it read.
        folder = str(folder_test_sh_reads(load_task(task), data / task))
        summary = json.loads((results / "summary.json").read_text())
        assert summary["inputs"].pop("folder") == folder
        assert summary == {**expected, "inputs": {k: v for k, v in expected["inputs"].items() if k != "folder"}}
        assert (results / "table1.md").read_text() == table.replace(expected["inputs"]["folder"], folder)
        for trace in (tmp_path / "out" / "traces").glob("*.npz"):
            with np.load(trace) as want, np.load(results / "traces" / trace.name) as got:
                assert sorted(want.files) == sorted(got.files)
                for key in want.files:
                    np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("run_name", ["from_mirror", "in_place"])
def test_reproduce_output_reads_well_in_a_log_file(run_name, request):
    proc = request.getfixturevalue(run_name)[0]
    assert_ok(proc)
    output = proc.stdout + proc.stderr
    assert "\r" not in output  # progress bars write whole lines off a terminal
    assert "retracing" not in output and "Traceback" not in output
    assert output.count("Reading test clips") == 1  # a short loop gets its final line only


def test_report_reprints_table1(in_place):
    proc, root, _ = in_place
    assert_ok(proc)
    report = cli("report", "--results-root", root / "results", cwd=root)
    assert_ok(report)
    table, said = report.stdout.strip().rsplit("\n", 1)
    assert table.strip() == (root / "results" / "table1.md").read_text().strip()
    assert re.fullmatch(rf"results in {re.escape(str(root / 'results' / 'table1.md'))} \(\d+\.\d s in all\)", said)


def test_reproduce_refuses_unofficial_archives_without_skip_checksums(mirror, tmp_path):
    proc = run(
        "reproduce.sh",
        "image_classification",
        "--data-root",
        tmp_path / "data",
        "--results-root",
        tmp_path / "results",
        "--mirror",
        mirror,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "md5" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_reproduce_help_names_the_script(tmp_path):
    proc = run("reproduce.sh", "--help", cwd=tmp_path)
    assert_ok(proc)
    assert proc.stdout.startswith("usage: bash reproduce.sh")
    for option in ("--data-root", "--results-root", "--mirror", "--skip-checksums"):
        assert option in proc.stdout


def test_reproduce_killed_while_writing_leaves_the_earlier_results_whole(in_place, tmp_path):
    """reproduce.sh image_classification --target none over the three tasks' results (a note and deploy.sh's
    outputs among them), killed at a trace, with its task's results and Table 1 staged, and between its
    two renames: each time the earlier results byte for byte (put back by `report` after the last); the
    next run replaces that task's results and Table 1, keeping everything else."""
    from scripts import assert_killed, kill_at, left_beside, snapshot

    _, root, _ = in_place
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    (results / "notes.txt").write_text("mine")
    (results / "image_classification" / "deploy").mkdir()
    (results / "image_classification" / "deploy" / "deploy.json").write_text("{}")
    earlier = snapshot(results)
    args = ["image_classification", "--data-root", root / "data", "--results-root", results, "--target", "none"]
    args += ["--mirror", root / "empty_mirror"]
    for point in ("file:2", "before-swap:2", "mid-swap:1"):
        assert_killed(run("reproduce.sh", *args, cwd=tmp_path, env=kill_at(point)))
        if point == "mid-swap:1":
            assert not results.exists()
            assert_ok(cli("report", "--results-root", results, cwd=tmp_path))
        assert snapshot(results) == earlier, point
    assert_ok(run("reproduce.sh", *args, cwd=tmp_path))
    now = snapshot(results)
    changed = {name for name in earlier if now.get(name) != earlier[name]}
    assert Path("table1.md") in changed and Path("image_classification/summary.json") in changed
    assert all(name.parts[0] in ("table1.md", "image_classification") for name in changed)
    assert now[Path("notes.txt")] == b"mine" and now[Path("image_classification/deploy/deploy.json")] == b"{}"
    assert left_beside(results) == []
