"""The task registry and its protocol (common/tasks.py): the registration check of a task module, the toy
fourth task (tests/toy_task, registered by tests/conftest.py as a user registers one; the tests parametrised
over the registry check it as they check the three) and its pretrained models; and importing the library
changes neither the environment nor matplotlib's backend."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import scripts

from common.errors import UserError
from common.tasks import EXTRA_TASKS_VARIABLE, TASKS, Task, load_task, task_names

REPO_ROOT = Path(__file__).resolve().parent.parent
TOY = "toy_task"


def test_the_fourth_task_is_listed_and_needs_no_preprocessing(tmp_path):
    listed = scripts.cli("tasks", cwd=tmp_path)
    assert listed.stdout.split() == [*TASKS, TOY] == list(task_names())
    proc = scripts.cli("preprocess", TOY, cwd=tmp_path)
    assert (
        proc.returncode == 0
        and proc.stdout.strip()
        == f"{TOY} needs no preprocessing: bash {TOY}/test.sh and train.sh read the downloaded data"
    )


def test_the_fourth_tasks_pretrained_models_are_what_its_documented_command_writes(tmp_path):
    """`python3 -m toy_task.pretrain OUT` (seeded training on the toy's synthetic archives) writes the committed
    tests/toy_task/pretrained/MODEL.npz again: the same variables, equal up to float rounding."""
    proc = subprocess.run(
        [sys.executable, "-m", "toy_task.pretrain", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    scripts.assert_ok(proc)
    task = load_task(TOY)
    committed = sorted(Path(task.PRETRAINED_DIR).glob("*.npz"))
    assert [path.stem for path in committed] == sorted(task.MODELS)
    for path in committed:
        with np.load(path) as want, np.load(tmp_path / path.name) as got:
            assert sorted(want.files) == sorted(got.files), path.name
            for key in want.files:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-3, atol=1e-4, err_msg=f"{path.name}: {key}")


def a_task_module(**parts):
    """A module named bad_task.task holding the toy task's parts, with `parts` replacing (or, as
    `DELETE`, removing) some."""
    module = types.ModuleType("bad_task.task")
    module.__file__ = load_task(TOY).module.__file__
    vars(module).update({name: value for name, value in vars(load_task(TOY).module).items() if name[0] != "_"})
    for name, value in parts.items():
        if value is DELETE:
            delattr(module, name)
        else:
            setattr(module, name, value)
    return module


DELETE = object()


def test_the_toys_parts_register_and_an_optional_part_left_out_reads_as_none():
    task = Task.from_module(a_task_module(validation_set=DELETE, FIGURES=DELETE))
    assert task.NAME == TOY and task.MODELS == ("base", "trecx_ev", "trecx_noev")
    assert task.validation_set is None and task.FIGURES == {} and task.preprocess is None
    assert task.folder == REPO_ROOT / "tests" / TOY


@pytest.mark.parametrize(
    "part, value, expected",
    [
        ("ARCHITECTURE", "resnet8", "ARCHITECTURE is str, expected a common.architecture.Architecture"),
        ("MODELS", ["base"], "MODELS is list, expected a tuple of str"),
        ("download", "download.sh", "download is str, expected a function"),
        ("FIGURES", [("FigToy",)], "FIGURES is list, expected a dict"),
        ("TEST_SET_SIZE", 0, "TEST_SET_SIZE is int, expected a positive int"),
        ("PRETRAINED_TRAINING_DATA", "CIFAR-10", "PRETRAINED_TRAINING_DATA is str, expected a common.provenance"),
        ("training_set", np.zeros(3), "training_set is ndarray, expected a function"),
    ],
)
def test_a_part_of_the_wrong_kind_is_one_error_naming_the_module_and_the_part(part, value, expected):
    with pytest.raises(UserError, match=f"^task module bad_task.task: {expected}") as raised:
        Task.from_module(a_task_module(**{part: value}))
    assert "see common/tasks.py" in str(raised.value)


def test_a_missing_required_part_is_one_error_naming_the_module_and_the_part():
    with pytest.raises(UserError, match="^task module bad_task.task lacks load_test; see common/tasks.py"):
        Task.from_module(a_task_module(load_test=DELETE))


def test_deploy_without_rho_of_a_task_without_validation_set_says_to_pass_rho(tmp_path):
    from common.deploy.options import DeployFolders
    from common.deploy.pipeline import run_deploy

    task = dataclasses.replace(load_task(TOY), validation_set=None)
    with pytest.raises(UserError, match="^task toy_task defines no validation_set to choose rho on; pass --rho R$"):
        run_deploy(task, "trecx_ev", folders=DeployFolders(results=tmp_path / "deploy"))
    assert not (tmp_path / "deploy").exists()  # refused before any work


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
    # Checked when it registers: a part of the wrong kind, by name.
    (tmp_path / "half_task" / "task.py").write_text(
        (REPO_ROOT / "tests" / TOY / "task.py").read_text().replace('NAME = "toy_task"', "NAME = 3")
    )
    monkeypatch.delitem(sys.modules, "half_task.task")
    with pytest.raises(UserError, match="^task module half_task.task: NAME is int, expected a str"):
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
