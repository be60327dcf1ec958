"""The task registry and its protocol: a throw-away fourth task, written into a temporary folder through
the protocol documented in common/tasks.py, trains and is evaluated end to end by `python3 -m common.cli`;
and importing the library changes neither the environment nor matplotlib's backend."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scripts

from common.errors import UserError
from common.tasks import EXTRA_TASKS_VARIABLE, TASKS, load_task, task_names

REPO_ROOT = Path(__file__).resolve().parent.parent
TOY = "toy_task"
N_TRAIN, N_TEST = 64, 40

TOY_TASK = '''
"""A toy task: 8x8 grey images, bright (1) or dark (0), on a two-block CNN."""
import pathlib
import shutil

import numpy as np
import tensorflow as tf

from common import backbones
from common.models import Architecture

NAME = "toy_task"
TITLE = "Toy CNN (bright or dark)"


def tiny_backbone(inputs, names):
    block1 = backbones.bn_relu(backbones.conv(inputs, names, 8, 3), names)
    block2 = backbones.bn_relu(backbones.conv(block1, names, 16, 3, strides=2), names)
    return {"block1": block1, "block2": block2}


ARCHITECTURE = Architecture(
    backbone=tiny_backbone, input_shape=(8, 8, 1), num_classes=2, final_pool=(4, 4),
    trecx=dict(tap="block1", pointwise_filters=8, dw_kernel=2, dw_strides=2, pool=4),
    early_view=dict(channels=8, dw_kernel=2, dw_strides=2),
)
MODELS = ARCHITECTURE.variants()
PRETRAINED_DIR = pathlib.Path(__file__).parent / "pretrained"  # the models the toy fixture trains, published
DATA_LAYOUT = "train.npz and test.npz (x, y)"
FIGURES = {"FigToy": ("Toy: early view", {"with early view": "trecx_ev", "without": "trecx_noev"}, False)}


def download(data_dir, mirror=None, split="all", force=False, verify_checksums=True):
    """The toy's "archives" are train.npz and test.npz; with a mirror folder, copied from it."""
    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.npz", "test.npz"):
        if mirror and not (data_dir / name).exists():
            shutil.copyfile(pathlib.Path(mirror) / name, data_dir / name)
    return data_dir


def load_test(data_dir):
    with np.load(f"{data_dir}/test.npz") as test:
        return test["x"], test["y"], np.arange(len(test["y"]))


TEST_SET_SIZE = 40


def synthetic_inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return (rng.uniform(0, 0.8, (n, 8, 8, 1)) + 0.2 * y[:, None, None, None]).astype(np.float32), y


def write_synthetic_test_set(folder, n, seed=0):
    x, y = synthetic_inputs(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "test.npz", x=x, y=y)
    return folder


def write_synthetic_archives(folder):
    x, y = synthetic_inputs(64, seed=1)
    write_synthetic_test_set(folder, 40)
    np.savez(folder / "train.npz", x=x, y=y)
    return folder


def training_data(config, data_dir):
    x, y = training_set(data_dir)
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=config.seed).batch(config.batch_size), None


def training_set(data_dir):
    with np.load(f"{data_dir}/train.npz") as train:
        return train["x"][:-16], train["y"][:-16]


def validation_set(data_dir):
    with np.load(f"{data_dir}/train.npz") as train:
        return train["x"][-16:], train["y"][-16:]
'''

TOY_CONFIG = """\
task: toy_task
model: {model}
epochs: 30
batch_size: 8
learning_rate: {{schedule: constant, initial: 1.0e-2}}
loss_weights: {{{weights}}}
weight_transfer_epochs: {transfer}
seed: 0
"""


def write_toy_task(root):
    """The toy task package under `root`, with a config per model and a synthetic data set."""
    package = root / TOY
    (package / "configs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(TOY_TASK)
    for script in (REPO_ROOT / "image_classification").glob("*.sh"):  # as docs/adding_a_task.md says
        (package / script.name).write_text(script.read_text().replace("image_classification", TOY))
    for model, weights, transfer in (
        ("base", "ef: 1.0", 0),
        ("trecx_ev", "ee: 0.5, ef: 1.0", 1),
        ("trecx_noev", "ee: 0.5, ef: 1.0", 0),
    ):
        (package / "configs" / f"{model}.yaml").write_text(
            TOY_CONFIG.format(model=model, weights=weights, transfer=transfer)
        )
    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        y = rng.integers(0, 2, n)
        x = (rng.uniform(0, 0.8, (n, 8, 8, 1)) + 0.2 * y[:, None, None, None]).astype(np.float32)
        np.savez(data / f"{split}.npz", x=x, y=y)
    return data


def cli(root, *args):
    """`python3 -m common.cli ARGS` in `root` (where the toy package is importable), the toy task registered."""
    return scripts.cli(*args, cwd=root, env={EXTRA_TASKS_VARIABLE: TOY}, timeout=600)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("fourth_task")
    data = write_toy_task(root)
    models, results = root / "trained", root / "results"
    train = cli(root, "train", TOY, "--data-dir", data, "--models-dir", models)
    test = cli(
        root, "test", TOY, "--models", "trained", "--models-dir", models, "--data-dir", data, "--results-dir", results
    )
    published = root / TOY / "pretrained"  # the toy's PRETRAINED_DIR: what the checks of pretrained models read
    published.mkdir()
    for weights in sorted(models.glob(f"{TOY}/*/weights.npz")):
        shutil.copyfile(weights, published / f"{weights.parent.name}.npz")
    return {"root": root, "train": train, "test": test, "results": results}


def test_a_fourth_task_trains_and_is_evaluated_end_to_end(toy):
    for step in ("train", "test"):
        proc = toy[step]
        assert proc.returncode == 0, f"{step}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
    summary = json.loads((toy["results"] / "summary.json").read_text())
    assert summary["task"] == TOY and summary["num_samples"] == N_TEST
    assert list(summary["models"]) == ["base", "trecx_ev", "trecx_noev"]
    trecx = summary["models"]["trecx_ev"]
    assert trecx["exits"] == ["ee", "ef"] and 0 < trecx["mflops"]["ee"] < trecx["mflops"]["ef"]
    # Accuracies are the traces' own, and the figure the task asked for was drawn.
    with np.load(toy["results"] / "traces" / "trecx_ev.npz") as trace:
        for exit_name in ("ee", "ef"):
            expected = 100.0 * np.mean(trace[exit_name].argmax(1) == trace["labels"])
            assert trecx["accuracy"][exit_name] == pytest.approx(expected)
    assert (toy["results"] / "FigToy.png").read_bytes()[:4] == b"\x89PNG"
    assert "Toy CNN (bright or dark)" in (toy["results"] / "table1.md").read_text()


def test_the_fourth_task_is_listed_and_needs_no_preprocessing(toy):
    listed = cli(toy["root"], "tasks")
    assert listed.stdout.split() == [*TASKS, TOY]
    proc = cli(toy["root"], "preprocess", TOY)
    assert (
        proc.returncode == 0
        and proc.stdout.strip()
        == f"{TOY} needs no preprocessing: bash {TOY}/test.sh and train.sh read the downloaded data"
    )


def pytest_with_the_fourth_task(toy, *modules):
    """(`python3 -m pytest -k toy_task` on tests/MODULES with the toy task registered, nothing edited outside
    its folder: the checks they make of every registered task, made of the fourth; the check functions
    there)."""
    env = {
        **os.environ,
        EXTRA_TASKS_VARIABLE: TOY,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(toy["root"]), os.environ.get("PYTHONPATH")])),
    }
    paths = [str(REPO_ROOT / "tests" / module) for module in modules]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *paths, "-k", TOY],
        cwd=toy["root"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_fourth_task_gets_the_protocol_checks_of_the_three(toy):
    """tests/test_task_protocol.py: every check it makes of the three tasks passes for the fourth."""
    summary = pytest_with_the_fourth_task(toy, "test_task_protocol.py")
    checks = [line for line in open(REPO_ROOT / "tests" / "test_task_protocol.py") if line.startswith("def test_")]
    assert re.match(rf"{len(checks)} passed\b", summary) and "skipped" not in summary, summary


def test_the_fourth_task_gets_the_script_and_network_checks_of_the_three(toy):
    """Its scripts (copied from image_classification's, as a user adding a task does) run in a user's order
    on its synthetic archives, through train, test, deploy and an early exit designed and deployed
    (tests/test_entry_points.py); its three networks build with softmax exits, the early-view kernel shaped
    as the early exit's (tests/test_models.py): 1 + 3 + 1 checks."""
    summary = pytest_with_the_fourth_task(toy, "test_entry_points.py", "test_models.py")
    assert re.match(r"5 passed\b", summary) and "skipped" not in summary, summary


def test_the_fourth_task_gets_the_deployment_design_and_reproduce_checks_of_the_three(toy):
    """Its trained models, published as its pretrained ones, through tests/test_deploy.py (the two stages
    reproduce the model; the float32 and int8 LiteRT exports against Keras and each other, the base model's
    too; the early-exit runner in both precisions; single-operator models in both),
    tests/test_exit_design.py (every candidate exit builds, splits and exports with the operators the cost
    model counts) and tests/test_reproduce.py (reproduce.sh, from an empty data root through a mirror and
    with the test set in place, gives test.sh's numbers): 10 + 1 + 1 checks."""
    summary = pytest_with_the_fourth_task(toy, "test_deploy.py", "test_exit_design.py", "test_reproduce.py")
    assert re.match(r"12 passed\b", summary) and "skipped" not in summary, summary


def test_registry_refuses_unknown_tasks_and_incomplete_task_modules(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown task 'nope'; valid tasks: image_classification"):
        load_task("nope")
    (tmp_path / "half_task").mkdir()
    (tmp_path / "half_task" / "__init__.py").write_text("")
    (tmp_path / "half_task" / "task.py").write_text('NAME = "half_task"\n')
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setenv(EXTRA_TASKS_VARIABLE, "half_task")
    assert task_names()[-1] == "half_task"
    with pytest.raises(UserError, match="half_task.task lacks TITLE, ARCHITECTURE, MODELS"):
        load_task("half_task")


def test_preprocess_of_a_task_without_preprocessing_says_so_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "common.cli", "preprocess", "image_classification"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "image_classification needs no preprocessing: bash "
        "image_classification/test.sh and train.sh read the downloaded data"
    ]


IMPORT_EVERY_MODULE = textwrap.dedent("""
    import importlib, os, pkgutil, sys
    import matplotlib
    # Third-party packages set their own variables when imported (TensorFlow, h5py): import them first,
    # so that what is measured is what our modules do.
    import h5py, keras, numpy, PIL.Image, scipy.signal, tensorflow, yaml
    import ai_edge_litert.interpreter
    import common
    before_env, before_backend = dict(os.environ), matplotlib.rcParams._get("backend")
    for module in pkgutil.walk_packages(common.__path__, "common."):
        importlib.import_module(module.name)
    changed = sorted(k for k in set(before_env) | set(os.environ) if before_env.get(k) != os.environ.get(k))
    print("changed", changed, "backend", matplotlib.rcParams._get("backend") == before_backend)
""")


def test_importing_the_library_changes_neither_environment_nor_matplotlib_backend():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE], env=env, cwd="/", capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == "changed [] backend True"
