"""A task's network as data: the backbone and where each kind of exit attaches (`Architecture`).

Kept apart from `common.models`, which builds the Keras networks from it, so that the task registry
(`common.tasks`) can check a task's ARCHITECTURE without importing Keras or the model builder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

    from common import exits
    from common.backbones import LayerNames

VARIANTS = ("base", "trecx_ev", "trecx_noev", "eefmaps_concat", "sdn", "branchynet")
OPTIONAL_VARIANTS = ("eefmaps_concat", "sdn", "branchynet")  # only where the architecture defines them


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Where and how the exits of each variant attach to one backbone.

    `backbone` is a builder (inputs, LayerNames) -> {tap name: feature map}, the last one the final feature map
    (common/backbones.py has the MLPerf Tiny ones). `trecx` is the T-RecX early exit (`exits.TrecxExit`: its
    tap and shape), `early_view` holds the `exits.early_view` keyword arguments, `eefmaps_concat` the
    `exits.eefmaps_concat` ones; `sdn` lists (tap, pool) per exit; `branchynet` (tap, filters, kernel, pool).
    `final_pool` is the final exit's pool in the early-exit models, `base_final_pool` the shipped base model's
    where it differs (None: the same), and `final_names` the names of the final exit's pool and flatten layers in
    the T-RecX models.
    """

    backbone: Callable[[keras.KerasTensor, LayerNames], dict[str, keras.KerasTensor]]
    input_shape: tuple[int, ...]
    num_classes: int
    final_pool: exits.Pair
    trecx: exits.TrecxExit
    early_view: dict[str, Any]
    base_final_pool: exits.Pair | None = None
    final_names: tuple[str, str] = ("average_pooling_2d", "flatten_x_pooled")
    eefmaps_concat: dict[str, Any] = dataclasses.field(default_factory=dict)
    sdn: tuple[tuple[str, exits.Pair], ...] = ()
    branchynet: tuple[tuple[str, int, exits.Pair, exits.Pair], ...] = ()

    def variants(self) -> tuple[str, ...]:
        optional = {"eefmaps_concat": self.eefmaps_concat, "sdn": self.sdn, "branchynet": self.branchynet}
        return tuple(v for v in VARIANTS if v not in OPTIONAL_VARIANTS or optional[v])
