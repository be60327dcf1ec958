"""What the scripts need of the machine is checked before any work, and named with the command that
provides it: the Python packages (in a Python that lacks them), TFLM's generators' NumPy and Pillow, and a
failed build that does not send the user to delete a tree that is intact."""

import importlib.metadata
import subprocess
import sys
import venv

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from common import environment
from common.deploy import mcu_build
from common.errors import UserError
from tests.scripts import REPO_ROOT, assert_clean_failure


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A new virtual environment with nothing installed: a user's Python outside the project's."""
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.create(folder, with_pip=False)
    return folder / "bin" / "python3"


def test_the_committed_requirements_are_installed_here():
    assert environment.missing_requirements() == []


@pytest.mark.parametrize(
    "command",
    [
        ["bash", "image_classification/test.sh"],
        ["bash", "reproduce.sh"],
        ["bash", "keyword_spotting/deploy.sh", "--rho", "0.8"],
    ],
)
def test_a_script_run_outside_the_environment_names_the_install_command(bare_python, tmp_path, command):
    """Run from another folder with a Python that has none of the packages: one message, exit 2, no
    traceback, naming the interpreter and the install command; nothing written."""
    script = REPO_ROOT / command[1]
    proc = subprocess.run(
        [command[0], str(script), *command[2:]],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(bare_python), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean_failure(proc, str(bare_python), environment.INSTALL_COMMAND)
    assert "ModuleNotFoundError" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_toolchain_build_checks_the_python_packages_before_any_work(bare_python, tmp_path):
    """`install_mcu_toolchain.sh --build` with a `python3` lacking the packages stops before it installs or
    lays out anything (TFLM's make would fail halfway, in its own generators)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python3").write_text(f'#!/bin/sh\nexec "{bare_python}" "$@"\n')
    (shim / "python3").chmod(0o755)
    home = tmp_path / "mcu-home"
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "install_mcu_toolchain.sh"), "--home", str(home), "--build", "cortex-m4:cmsis-nn"],
        cwd=tmp_path,
        env={"PATH": f"{shim}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean_failure(proc, environment.INSTALL_COMMAND)
    assert not home.exists()
    assert "installing" not in proc.stdout


def test_tflm_generators_get_this_python_and_a_missing_package_is_named(tmp_path, monkeypatch):
    env = mcu_build._generator_python(tmp_path)
    printed = subprocess.run(
        ["python3", "-c", "import sys, numpy, PIL; print(sys.executable)"], env=env, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == sys.executable
    monkeypatch.setattr(environment, "TFLM_GENERATOR_MODULES", {"no_such_module_here": "no-such-package"})
    with pytest.raises(UserError, match=r"no-such-package.*python3 -m pip install -r requirements.txt"):
        mcu_build._generator_python(tmp_path)


def test_a_failed_build_step_names_its_log_and_no_deletion(tmp_path):
    with pytest.raises(UserError) as failed:
        mcu_build._run(["sh", "-c", "echo the compiler said no; exit 3"], tmp_path / "build.log", what="a step")
    message = str(failed.value)
    assert "a step failed (exit 3)" in message and "the compiler said no" in message
    assert "delete" not in message.lower()


def _locked():
    """requirements.lock as {name: (version, python)}."""
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith("#"):
            continue
        pin, python = line.split(" ; ")
        name, version = pin.split("==")
        assert python.startswith('python_version == "'), line
        pins[canonicalize_name(name)] = (version, python.split('"')[1])
    return pins


def test_the_lock_pins_every_requirement_within_its_range_and_is_what_is_installed():
    """requirements.txt installs through the lock; every requirement of pyproject.toml (test tools too) is
    pinned to a version its range allows; on the lock's Python, those versions are the installed ones."""
    assert "-c requirements.lock" in (REPO_ROOT / "requirements.txt").read_text().splitlines()
    pins = _locked()
    pythons = {python for _, python in pins.values()}
    assert len(pythons) == 1, pythons
    for text in importlib.metadata.requires(environment.DISTRIBUTION):
        requirement = Requirement(text.split(";")[0])
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock; run bash .ci/lock"
        assert requirement.specifier.contains(pins[name][0]), (name, pins[name][0], str(requirement.specifier))
        if f"{sys.version_info[0]}.{sys.version_info[1]}" in pythons:
            installed = importlib.metadata.version(requirement.name)
            assert installed == pins[name][0], f"{name} {installed} installed, {pins[name][0]} locked"
