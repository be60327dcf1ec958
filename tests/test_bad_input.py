"""Bad input and faults on the evaluation side, through the real scripts: every case ends with one message
naming the problem and the fix and a non-zero exit, or succeeds saying what it did; files that were there
before are byte-identical after. (Data and training cases: test_bad_input_data.py and
test_bad_input_training.py.)"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from scripts import assert_clean_failure, assert_killed, kill_at, left_beside, snapshot, tmpfs

from common import config as config_lib
from common import files
from common.tasks import config_path, load_task
from common.weights import load_weights, pretrained_path, save_weights
from image_classification.synthetic import write_cifar

REPO_ROOT = Path(__file__).resolve().parent.parent
TASK = "image_classification"


def run(script: str, *args: object, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    return subprocess.run(
        ["bash", str(REPO_ROOT / TASK / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fake_trained(models_dir: Path, name: str) -> None:
    """A trained model as train.sh leaves it (config.yaml, weights.npz), with the pretrained weights."""
    from common.models import build_model

    run_dir = models_dir / TASK / name
    config = config_lib.load_config(config_path(load_task(TASK), name))
    files.write_text(run_dir / "config.yaml", yaml.safe_dump(config_lib.to_dict(config), sort_keys=False))
    net = build_model(TASK, name)
    load_weights(net.model, pretrained_path(load_task(TASK), name))
    save_weights(net.model, run_dir / "weights.npz")


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root / "data", n_test=40, n_train_per_batch=2, seed=3)
    return root


@pytest.fixture(scope="module")
def first_results(cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test.sh's results on the module's CIFAR-10 (every pretrained model): the earlier results that the tests
    below copy into place, one run for all of them."""
    root = tmp_path_factory.mktemp("first_results")
    proc = run("test.sh", "--data-dir", cifar / "data", "--results-dir", root / "out", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "out"


@pytest.mark.parametrize("script", ["test.sh", "deploy.sh"])
def test_results_dir_that_is_a_file(cifar: Path, tmp_path: Path, script: str) -> None:
    user_file = tmp_path / "results"
    user_file.write_text("my notes\n")
    proc = (
        run(script, "--data-dir", cifar / "data", "--results-dir", user_file, "--rho", "0.5", cwd=tmp_path)
        if script == "deploy.sh"
        else run(script, "--data-dir", cifar / "data", "--results-dir", user_file, cwd=tmp_path)
    )
    assert_clean_failure(proc, user_file, "is a file")
    assert user_file.read_text() == "my notes\n"


def test_results_dir_that_cannot_be_written(cifar: Path, tmp_path: Path) -> None:
    proc = run("test.sh", "--data-dir", cifar / "data", "--results-dir", "/proc/trecx_results", cwd=tmp_path)
    assert_clean_failure(proc, "--results-dir /proc/trecx_results", "cannot write in /proc")


def test_models_dir_that_is_a_file_for_trained_models(cifar: Path, tmp_path: Path) -> None:
    user_file = tmp_path / "models"
    user_file.write_text("not a folder\n")
    proc = run("test.sh", "--data-dir", cifar / "data", "--models", "trained", "--models-dir", user_file, cwd=tmp_path)
    assert_clean_failure(proc, "no trained", user_file)
    assert user_file.read_text() == "not a folder\n"


def test_truncated_trained_weights(cifar: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    fake_trained(models, "base")
    weights = models / TASK / "base" / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:5000])
    before = snapshot(models)
    proc = run(
        "test.sh",
        "--data-dir",
        cifar / "data",
        "--models",
        "trained",
        "--model",
        "base",
        "--models-dir",
        models,
        "--results-dir",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert_clean_failure(proc, weights, "cannot read weights file")
    assert snapshot(models) == before and not (tmp_path / "out").exists()


def test_truncated_summary_given_to_report(tmp_path: Path) -> None:
    summary = tmp_path / "results" / TASK / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text('{"task": "image_classification", "models": {"base": {"acc')
    proc = subprocess.run(
        [sys.executable, "-m", "common.cli", "report", "--results-root", tmp_path / "results"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_clean_failure(proc, summary, "damaged", "test.sh")
    assert summary.read_text().endswith('"acc')


@pytest.fixture(scope="module")
def trained_subset(cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """test.sh --models trained with only trecx_ev trained, then --model trecx_ev,base with both trained."""
    root = tmp_path_factory.mktemp("subset")
    models = root / "models"
    fake_trained(models, "trecx_ev")
    only_ev = run(
        "test.sh",
        "--data-dir",
        cifar / "data",
        "--models",
        "trained",
        "--models-dir",
        models,
        "--results-dir",
        root / "only_ev",
        cwd=root,
    )
    fake_trained(models, "base")
    named = run(
        "test.sh",
        "--data-dir",
        cifar / "data",
        "--models",
        "trained",
        "--model",
        "trecx_ev,base",
        "--models-dir",
        models,
        "--results-dir",
        root / "named",
        cwd=root,
    )
    return root, only_ev, named


def test_trained_models_that_exist_are_evaluated_against_the_pretrained_base(trained_subset: tuple) -> None:
    root, proc, _ = trained_subset
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not evaluated: base, trecx_noev, sdn, branchynet" in proc.stdout
    summary = json.loads((root / "only_ev" / "summary.json").read_text())
    assert list(summary["models"]) == ["base", "trecx_ev"]
    assert summary["source"] == "trained" and summary["baseline"] == {"model": "base", "source": "pretrained"}
    assert "trade-off baseline: the pretrained base model" in (root / "only_ev" / "table1.md").read_text()
    assert sorted(p.name for p in (root / "only_ev" / "traces").iterdir()) == ["base.npz", "trecx_ev.npz"]


def test_named_trained_models_with_a_trained_base(trained_subset: tuple) -> None:
    root, _, proc = trained_subset
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((root / "named" / "summary.json").read_text())
    assert list(summary["models"]) == ["trecx_ev", "base"]
    assert summary["baseline"] == {"model": "base", "source": "trained"}
    assert "trade-off baseline: the trained base model" in (root / "named" / "table1.md").read_text()


def test_named_trained_model_that_is_missing(cifar: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    fake_trained(models, "trecx_ev")
    proc = run(
        "test.sh",
        "--data-dir",
        cifar / "data",
        "--models",
        "trained",
        "--model",
        "trecx_ev,sdn",
        "--models-dir",
        models,
        cwd=tmp_path,
    )
    assert_clean_failure(proc, "no trained sdn model(s)", "train.sh sdn")


def test_a_new_run_replaces_the_earlier_results_as_a_whole(
    cifar: Path, tmp_path: Path, trained_subset: tuple, first_results: Path
) -> None:
    root, _, _ = trained_subset
    out = tmp_path / "out"
    shutil.copytree(first_results, out)
    (out / "my_notes.txt").write_text("kept")
    first_figure = (out / "Fig4a.png").read_bytes()
    second = run(
        "test.sh",
        "--data-dir",
        cifar / "data",
        "--models",
        "trained",
        "--model",
        "trecx_ev",
        "--models-dir",
        root / "models",
        "--results-dir",
        out,
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    # Only this run's traces, curves and figures remain beside the user's own file.
    assert sorted(p.name for p in (out / "traces").iterdir()) == ["base.npz", "trecx_ev.npz"]
    assert sorted(p.name for p in out.glob("benefit_curve_*.csv")) == [
        "benefit_curve_base.csv",
        "benefit_curve_trecx_ev.csv",
    ]
    assert (out / "Fig4a.png").read_bytes() != first_figure  # redrawn: now without trecx_noev
    assert (out / "my_notes.txt").read_text() == "kept"


def test_an_interrupted_run_leaves_the_earlier_results_as_they_were(
    cifar: Path, tmp_path: Path, first_results: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_results, out)
    before = snapshot(out)
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    proc = subprocess.Popen(
        ["bash", str(REPO_ROOT / TASK / "test.sh"), "--data-dir", str(cifar / "data"), "--results-dir", str(out)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT as a user's Ctrl-C finds it: a suite started in the background (`cmd &`) inherits it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in proc.stdout:  # interrupt while the models run, after some traces are written
        if line.startswith("trecx_noev: predicting"):  # at once: on an idle machine the rest takes < 0.5 s
            proc.send_signal(signal.SIGINT)
            break
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted; the results folder was left as it was" in stderr and "Traceback" not in stderr
    assert snapshot(out) == before
    assert not list(tmp_path.glob(".out.*.partial"))  # no half-written folder left beside it


def test_a_full_disk_while_writing_results_leaves_them_as_they_were(
    cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from common import cli

    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "traces/base.npz")

    monkeypatch.setattr(np, "savez", full_disk)
    status = cli.main(["test", TASK, "--data-dir", str(cifar / "data"), "--results-dir", str(out)])
    assert status == 2
    assert "No space left on device" in capsys.readouterr().err
    assert snapshot(out) == {Path("summary.json"): b"{}"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs."""
    with tmpfs(tmp_path / "disk", "4m") as mount_point:
        yield mount_point


def test_test_sh_on_a_full_disk_leaves_the_earlier_results_as_they_were(
    cifar: Path, tmp_path: Path, small_disk: Path, first_results: Path
) -> None:
    out = small_disk / "results"
    shutil.copytree(first_results, out)
    before = snapshot(out)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(bytes(free - 20_000))  # room for the output check, not for the results
    proc = run("test.sh", "--data-dir", cifar / "data", "--results-dir", out, cwd=tmp_path)
    assert_clean_failure(proc, "No space left on device")
    assert snapshot(out) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "results"]  # no half-written folder beside it


# ---------------------------------------------------------------------------------------------
# Outputs of several files replaced as a whole (common.files.staged_folder), killed at every point

WRITER = """
import sys
from pathlib import Path
from common import files
folder, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with files.staged_folder(folder, ["out_*.txt", "traces/*.txt"]) as staging:
    for i in range(count):
        files.write_text(staging / f"out_{i}.txt", tag)
    files.write_text(staging / "traces" / "t.txt", tag)
"""


def write_outputs(folder: Path, tag: str, count: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WRITER, str(folder), tag, str(count)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("point", ["file:1", "file:3", "file:4", "before-swap:1", "mid-swap:1", "after-swap:1"])
def test_outputs_killed_at_any_point_are_wholly_the_earlier_ones_or_wholly_the_new(tmp_path: Path, point: str) -> None:
    """Three outputs and a trace replace an earlier run's four outputs and trace; the user's files beside them
    (a note, a folder of their own, an empty folder) stay. Killed anywhere, the folder holds wholly the
    earlier outputs, or (killed after the swap) wholly the new ones; a kill between the two renames leaves
    the earlier folder aside, which the next reader (`recover`) or run puts back; the next run completes and
    leaves nothing beside the folder."""
    out = tmp_path / "out"
    assert write_outputs(out, "earlier", 4).returncode == 0
    (out / "notes.txt").write_text("mine")
    (out / "deploy").mkdir()
    (out / "deploy" / "deploy.json").write_text("{}")
    (out / "empty").mkdir()
    earlier = snapshot(out)
    assert len(earlier) == 7
    new = {**{k: v for k, v in earlier.items() if not k.name.startswith("out_")}, Path("traces/t.txt"): b"new"}
    new.update({Path(f"out_{i}.txt"): b"new" for i in range(3)})

    assert_killed(write_outputs(out, "new", 3, kill_at(point)))
    if point == "mid-swap:1":
        assert not out.exists() and len(left_beside(out)) == 2  # the earlier outputs aside, the new staged
        files.recover(out)  # what the next reader or run does first
    assert snapshot(out) == (new if point == "after-swap:1" else earlier)
    assert (out / "empty").is_dir()
    assert write_outputs(out, "new", 3).returncode == 0
    assert snapshot(out) == new and (out / "empty").is_dir()
    assert left_beside(out) == []
    assert (out / "deploy" / "deploy.json").stat().st_nlink == 1  # linked across, the earlier folder deleted


def test_test_sh_killed_while_writing_leaves_the_earlier_results_whole(cifar: Path, tmp_path: Path) -> None:
    """test.sh of base and trecx_noev over base and trecx_ev's results (a note and deploy.sh's outputs beside
    them), killed at a figure (summary.json already staged), and between its two renames: each time the
    earlier results byte for byte (put back by `report`, their next reader, after the last); the next run
    replaces them whole, keeping the note and deploy.sh's outputs, and leaves nothing beside them. (A file
    written outside the staging folder would be in the results moved aside at the second kill; every kill
    point of the staging machinery: the writer test above.)"""
    from scripts import cli

    out = tmp_path / "results" / TASK
    first = ["--data-dir", cifar / "data", "--results-dir", out, "--model", "base,trecx_ev"]
    assert run("test.sh", *first, cwd=tmp_path).returncode == 0
    (out / "notes.txt").write_text("mine")
    (out / "deploy").mkdir()
    (out / "deploy" / "deploy.json").write_text("{}")
    earlier = snapshot(out)
    again = ["--data-dir", cifar / "data", "--results-dir", out, "--model", "base,trecx_noev"]
    for point in ("file:9", "mid-swap:1"):
        env = {**os.environ, "PYTHON": sys.executable, **kill_at(point)}
        argv = ["bash", str(REPO_ROOT / TASK / "test.sh"), *map(str, again)]
        assert_killed(subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300))
        if point == "mid-swap:1":
            assert not out.exists()
            assert cli("report", "--results-root", tmp_path / "results", cwd=tmp_path).returncode == 0
        assert snapshot(out) == earlier, point
    second = run("test.sh", *again, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p.name for p in (out / "traces").iterdir()) == ["base.npz", "trecx_noev.npz"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "deploy" / "deploy.json").read_text() == "{}"
    assert left_beside(out) == []
