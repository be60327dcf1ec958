"""What the pipeline needs of the Python it runs in, checked before any work (standard library only, so
that it runs where nothing else is installed).

The packages are the installed project's own requirements (pyproject.toml, read back through
importlib.metadata), so the list has one home. A missing one is one message naming the interpreter and
the command that installs them, instead of a ModuleNotFoundError traceback halfway through a run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pathlib
import re
import sys

from common.errors import UserError

DISTRIBUTION = "trecx"
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
INSTALL_COMMAND = "python3 -m pip install -r requirements.txt"
# TFLM's make runs Python generators of its own (tools/generate_cc_arrays.py) that import these.
TFLM_GENERATOR_MODULES = {"numpy": "numpy", "PIL": "pillow"}


def _install_fix() -> str:
    return (
        f"install them with `{INSTALL_COMMAND}` from {REPO_ROOT}, in the virtual environment you made for the "
        "project and with it activated (README, Quick start), then run the same command again"
    )


def missing_requirements() -> list[str]:
    """The project's runtime requirements not installed for this interpreter; ["the project itself"] when
    the project is not installed at all."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return [f"the project itself ({DISTRIBUTION})"]
    missing = []
    for requirement in requirements:
        if "extra ==" in requirement:  # the test tools: not needed to run the pipeline
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def require_installed() -> None:
    """UserError naming the interpreter, what it lacks and the command that installs it."""
    missing = missing_requirements()
    if missing:
        raise UserError(f"the Python at {sys.executable} lacks {', '.join(missing)}; {_install_fix()}")


def require_modules(modules: dict[str, str], purpose: str) -> None:
    """UserError unless every module of `modules` (import name -> package name) can be imported."""
    missing = [package for module, package in modules.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(f"{purpose} needs {', '.join(missing)}, which {sys.executable} lacks; {_install_fix()}")


def main() -> int:
    """`python3 -m common.environment`: exit 0 when the pipeline's packages are installed, else one message
    and exit 2 (what install_mcu_toolchain.sh checks before it installs anything)."""
    try:
        require_installed()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
