"""design-exit's options, with their defaults: one frozen object that the command line builds and
common/exit_design.py reads (a light module: the command line imports it before TensorFlow)."""

from __future__ import annotations

import dataclasses

from common.deploy.options import DEFAULT_DROP
from common.errors import UserError
from common.target_cost import DEFAULT_TARGET, NO_TARGET, check_target


@dataclasses.dataclass(frozen=True)
class DesignOptions:
    """How design-exit designs a T-RecX model's early exit.

    model: the T-RecX model whose early exit is redesigned; target: the microcontroller whose predicted
    instructions choose the design; drop: accuracy points below the base model the design may cost on
    validation (as deploy.sh chooses rho); taps, branches: the candidates to try (empty: all); epochs,
    patience, seed: each branch's training (at most `epochs`, stopping after `patience` without a better
    validation accuracy); force: replace a trained model where the design is written.
    Values out of range raise UserError naming the option.
    """

    model: str = "trecx_ev"
    target: str | None = DEFAULT_TARGET
    drop: float = DEFAULT_DROP
    taps: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()
    epochs: int = 30
    patience: int = 4
    seed: int = 0
    force: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.patience < 1 or self.drop < 0:
            raise UserError(
                f"--epochs and --patience must be at least 1 and --drop at least 0, got {self.epochs}, "
                f"{self.patience} and {self.drop}"
            )
        target = check_target(self.target)
        if target is None:
            raise UserError(f"--target: design-exit chooses in a target's instructions, not {NO_TARGET}")
        object.__setattr__(self, "target", target)
