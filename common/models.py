"""Early-exit networks: (task, variant) -> Keras model with named exits.

One definition per network: each task's `ARCHITECTURE` (an `Architecture`, in TASK/task.py) says where
each kind of exit attaches to its backbone and with which shapes; `build_model` assembles any variant
from it. Variants:

- `base`: the backbone with its own head (one exit, `ef`).
- `trecx_noev`, `trecx_ev`: T-RecX early exit `ee` plus the final exit `ef`, the latter with
  early-view assistance for `trecx_ev`. Exit rule: leave at `ee` when max softmax > rho.
- `eefmaps_concat` (keyword spotting, the paper's Fig. 6 ablation): like `trecx_ev`, but the final
  exit concatenates the pooled early-exit feature maps instead of an early-view convolution.
- `sdn`, `branchynet`: the prior methods' exits `ee1`, `ee2`, ... plus `ef`. Exit rule: cascade,
  leave at the first exit whose max softmax >= rho.
"""

from __future__ import annotations

import dataclasses

import keras

from common import exits
from common.architecture import Architecture
from common.backbones import LayerNames
from common.config import EarlyExit
from common.errors import UserError
from common.tasks import Task, load_task

DESIGNABLE_VARIANTS = ("trecx_ev", "trecx_noev")  # those whose early exit a design (`EarlyExit`) may replace


@dataclasses.dataclass(frozen=True)
class ExitModel:
    """A built network: `model` maps an input batch to one softmax per exit, in `exits` order.

    `tap` names the layer whose output the T-RecX early exit reads (None for other variants): the
    point where a deployed model splits into two stages.
    """

    model: keras.Model
    exits: tuple
    rule: str  # "strict" (T-RecX) or "cascade" (SDN, BranchyNet); see common.sweep
    tap: str | None = None


def tap_layers(arch: Architecture) -> dict[str, str]:
    """{tap: the layer whose output it is} for the backbone taps an early exit may attach to: every one but
    the final feature map. The layer names are those of every network `build_model` builds."""
    taps = arch.backbone(keras.Input(arch.input_shape), LayerNames())
    return {tap: tensor._keras_history[0].name for tap, tensor in list(taps.items())[:-1]}


def early_exit_taps(arch: Architecture) -> tuple[str, ...]:
    """The backbone taps an early exit may attach to: every one but the final feature map."""
    return tuple(tap_layers(arch))


def build_model(task: str | Task, variant: str, early_exit: EarlyExit | None = None) -> ExitModel:
    """Build `variant` of the task's network (a task name or `Task`) with the authors' layer names
    (untrained). `early_exit`: a T-RecX model's early exit at another tap or with another branch
    (common.exits.BRANCHES) than the architecture's."""
    task = load_task(task)
    arch = task.ARCHITECTURE
    if variant not in arch.variants():
        raise UserError(f"unknown model {variant!r} for {task.NAME}; valid models: {', '.join(arch.variants())}")
    if early_exit is not None:
        _check_early_exit(task, variant, early_exit)
    names = LayerNames()
    inputs = keras.Input(arch.input_shape, name="input_1")
    taps = arch.backbone(inputs, names)
    features = taps[list(taps)[-1]]
    classes = arch.num_classes

    split_at = None  # the layer a T-RecX model splits at for deployment
    if variant == "base":
        outputs = [
            exits.final_exit(
                features,
                classes,
                pool=arch.base_final_pool or arch.final_pool,
                name="dense",
                pool_name="average_pooling2d",
                flatten_name="flatten",
            )
        ]
        exit_names, rule = ("ef",), "strict"
    elif variant in ("trecx_ev", "trecx_noev", "eefmaps_concat"):
        if early_exit is None:
            tap_tensor = taps[arch.trecx.tap]
            ee, ee_features = exits.trecx_exit(tap_tensor, classes, arch.trecx)
        else:
            tap_tensor = taps[early_exit.tap]
            ee = exits.BRANCHES[early_exit.branch](tap_tensor, classes, arch.trecx)
        split_at = tap_tensor._keras_history[0].name
        extra = None
        if variant == "trecx_ev":
            extra = exits.early_view(features, **arch.early_view)
        elif variant == "eefmaps_concat":
            extra = exits.eefmaps_concat(ee_features, **arch.eefmaps_concat)
        pool_name, flatten_name = arch.final_names
        outputs = [
            ee,
            exits.final_exit(
                features, classes, pool=arch.final_pool, extra=extra, pool_name=pool_name, flatten_name=flatten_name
            ),
        ]
        exit_names, rule = ("ee", "ef"), "strict"
    else:
        outputs = []
        for i, spec in enumerate(arch.sdn if variant == "sdn" else arch.branchynet, start=1):
            if variant == "sdn":
                tap_name, pool = spec
                outputs.append(exits.sdn_exit(taps[tap_name], classes, pool=pool, name=f"ee_{i}", names=names))
            else:
                tap_name, filters, kernel, pool = spec
                outputs.append(
                    exits.branchynet_exit(
                        taps[tap_name], classes, filters=filters, kernel=kernel, pool=pool, name=f"ee_{i}", names=names
                    )
                )
        outputs.append(
            exits.final_exit(
                features,
                classes,
                pool=arch.final_pool,
                pool_name=names("average_pooling2d"),
                flatten_name=names("flatten"),
            )
        )
        exit_names, rule = tuple(f"ee{i}" for i in range(1, len(outputs))) + ("ef",), "cascade"

    model = keras.Model(inputs, outputs, name=f"{task.NAME}_{variant}")
    return ExitModel(model, exit_names, rule, split_at)


def _check_early_exit(task: Task, variant: str, early_exit: EarlyExit) -> None:
    """UserError unless `early_exit` can be built for `variant` of `task`."""
    if variant not in DESIGNABLE_VARIANTS:
        raise UserError(f"early_exit: an early-exit design is for {' or '.join(DESIGNABLE_VARIANTS)}, not {variant}")
    taps = early_exit_taps(task.ARCHITECTURE)
    if early_exit.tap not in taps:
        raise UserError(
            f"early_exit.tap: unknown tap {early_exit.tap!r} for {task.NAME}; valid taps: {', '.join(taps)}"
        )
    if early_exit.branch not in exits.BRANCHES:
        raise UserError(
            f"early_exit.branch: unknown branch {early_exit.branch!r}; valid branches: {', '.join(exits.BRANCHES)}"
        )
