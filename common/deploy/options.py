"""deploy.sh's options, with their defaults, and the folders it reads and writes: frozen objects that the
command line builds and the deployment reads (a light module: the command line imports it before
TensorFlow; tests/test_deploy_options.py checks that it imports nothing heavy)."""

from __future__ import annotations

import dataclasses
import os

from common.deploy.runtime import Runtime
from common.errors import UserError
from common.target_cost import DEFAULT_TARGET, check_target
from common.tasks import CALIBRATION_SAMPLES

DEFAULT_DROP = 1.0  # accuracy points below the base model that rho may cost (on the validation split)
DEFAULT_MCU_SAMPLES = 50  # the first test samples that --mcu runs on each emulated core (--mcu-samples)


@dataclasses.dataclass(frozen=True)
class DeployOptions:
    """How deploy.sh deploys, with its defaults (the command line takes them from here).

    rho: the early-exit threshold in [0, 1], or None to choose it on the validation split within `drop`
    accuracy points of the base model there; calibration_samples: size of the int8 representative set;
    threads, kernels: how the LiteRT interpreters run (`runtime`); mcu: (core, kernels) targets to run the
    int8 export on (`mcu_measure.parse_targets` reads --mcu's text), on the first `mcu_samples` test
    samples (None: all); target: the microcontroller whose predicted instructions (common.target_cost)
    choose rho and are reported, or None for MFLOPs as the paper.
    Values out of range raise UserError naming the option.
    """

    rho: float | None = None
    drop: float = DEFAULT_DROP
    calibration_samples: int = CALIBRATION_SAMPLES
    threads: int = Runtime.threads
    kernels: str = Runtime.kernels
    mcu: tuple[tuple[str, str], ...] = ()
    mcu_samples: int | None = DEFAULT_MCU_SAMPLES
    target: str | None = DEFAULT_TARGET

    def __post_init__(self) -> None:
        if self.rho is not None and not 0.0 <= self.rho <= 1.0:
            raise UserError(f"--rho must lie in [0, 1], got {self.rho}")
        if self.calibration_samples < 1 or self.threads < 1 or self.drop < 0:
            raise UserError(
                "--calibration-samples and --threads must be at least 1 and --drop at least 0, got "
                f"{self.calibration_samples}, {self.threads} and {self.drop}"
            )
        Runtime(self.threads, self.kernels)  # refuses an unknown kernel set
        object.__setattr__(self, "target", check_target(self.target))  # "none" is None
        if self.mcu_samples is not None and self.mcu_samples < 1:
            raise UserError(f"--mcu-samples must be at least 1 (or all), got {self.mcu_samples}")

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.threads, self.kernels)


@dataclasses.dataclass(frozen=True)
class DeployFolders:
    """Where deploy.sh reads and writes; None takes the default.

    models: where trained models are read (MODELS/TASK/MODEL); test_data: the test set (default: the
    task's); train_data: the training and validation splits (default data/TASK); calibration_data: whose
    training split, or test-layout files, give the int8 calibration inputs (default: train_data); results:
    the results folder (default results/TASK/deploy).
    """

    models: str | os.PathLike | None = None
    test_data: str | os.PathLike | None = None
    train_data: str | os.PathLike | None = None
    calibration_data: str | os.PathLike | None = None
    results: str | os.PathLike | None = None
