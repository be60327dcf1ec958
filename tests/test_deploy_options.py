"""The light options modules (what the command line imports before any work) import nothing heavy:
no TensorFlow, Keras, LiteRT or matplotlib, and none of the microcontroller stack. Each is imported in a
fresh interpreter, so no other test's imports can hide or fake one."""

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

LIGHT = ("common.deploy.options", "common.design_options")
HEAVY_PACKAGES = ("tensorflow", "keras", "ai_edge_litert", "matplotlib")
MCU_STACK = ("common.deploy.mcu", "common.deploy.mcu_build", "common.deploy.mcu_measure", "common.deploy.cost_fit")


def imported_after(module: str) -> list[str]:
    """Every module in sys.modules after a fresh interpreter imports `module`."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", LIGHT)
def test_light_options_module_imports_nothing_heavy(module):
    imported = imported_after(module)
    assert module in imported  # the check saw the import it is about
    heavy = [name for name in imported if name.split(".")[0] in HEAVY_PACKAGES or name in MCU_STACK]
    assert heavy == [], f"{module} imports {heavy}"
