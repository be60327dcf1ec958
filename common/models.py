"""Registry of early-exit networks: (architecture, variant) -> Keras model with named exits.

One definition per network: an `Architecture` says where each kind of exit attaches to the backbone
and with which shapes; `build_model` assembles any variant from it. Variants:

- `base`: the backbone with its own head (one exit, `ef`).
- `trecx_noev`, `trecx_ev`: T-RecX early exit `ee` plus the final exit `ef`, the latter with
  early-view assistance for `trecx_ev`. Exit rule: leave at `ee` when max softmax > rho.
- `sdn`, `branchynet`: the prior methods' exits `ee1`, `ee2`, ... plus `ef`. Exit rule: cascade,
  leave at the first exit whose max softmax >= rho.
"""
import dataclasses

import keras

from common import exits
from common.backbones import BACKBONES, LayerNames
from common.errors import UserError

VARIANTS = ("base", "trecx_ev", "trecx_noev", "sdn", "branchynet")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Where and how the exits of each variant attach to one backbone.

    `trecx` holds the tap name plus `exits.trecx_exit` keyword arguments, `early_view` the
    `exits.early_view` ones; `sdn` lists (tap, pool) per exit; `branchynet` (tap, filters, kernel, pool).
    """
    backbone: str
    input_shape: tuple
    num_classes: int
    final_pool: tuple
    trecx: dict
    early_view: dict
    sdn: tuple = ()
    branchynet: tuple = ()

    def variants(self):
        return tuple(v for v in VARIANTS if v not in ("sdn", "branchynet") or getattr(self, v))


ARCHITECTURES = {
    "image_classification": Architecture(
        backbone="resnet8", input_shape=(32, 32, 3), num_classes=10, final_pool=(8, 8),
        trecx=dict(tap="stack1", pointwise_filters=32, dw_kernel=2, dw_strides=2, pool=4),
        early_view=dict(channels=32, dw_kernel=2, dw_strides=2),
        sdn=(("stack1", 4), ("stack2", 4)),
        branchynet=(("stack1", 16, 3, 4), ("stack2", 16, 3, 4)),
    ),
}


@dataclasses.dataclass(frozen=True)
class ExitModel:
    """A built network: `model` maps an input batch to one softmax per exit, in `exits` order."""
    model: keras.Model
    exits: tuple
    rule: str  # "strict" (T-RecX) or "cascade" (SDN, BranchyNet); see common.sweep


def architecture(task):
    if task not in ARCHITECTURES:
        raise UserError(f"unknown task {task!r}; valid tasks: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[task]


def build_model(task, variant):
    """Build `variant` of the task's network with the authors' layer names (untrained)."""
    arch = architecture(task)
    if variant not in arch.variants():
        raise UserError(f"unknown model {variant!r} for {task}; valid models: {', '.join(arch.variants())}")
    names = LayerNames()
    inputs = keras.Input(arch.input_shape, name="input_1")
    taps = BACKBONES[arch.backbone](inputs, names)
    features = taps[list(taps)[-1]]
    classes = arch.num_classes

    if variant == "base":
        outputs = [exits.final_exit(features, classes, pool=arch.final_pool, name="dense",
                                    pool_name="average_pooling2d", flatten_name="flatten")]
        exit_names, rule = ("ef",), "strict"
    elif variant in ("trecx_ev", "trecx_noev"):
        head = dict(arch.trecx)
        ee = exits.trecx_exit(taps[head.pop("tap")], classes, **head)
        extra = exits.early_view(features, **arch.early_view) if variant == "trecx_ev" else None
        outputs = [ee, exits.final_exit(features, classes, pool=arch.final_pool, extra=extra)]
        exit_names, rule = ("ee", "ef"), "strict"
    else:
        outputs = []
        for i, spec in enumerate(getattr(arch, variant), start=1):
            if variant == "sdn":
                tap, pool = spec
                outputs.append(exits.sdn_exit(taps[tap], classes, pool=pool, name=f"ee_{i}", names=names))
            else:
                tap, filters, kernel, pool = spec
                outputs.append(exits.branchynet_exit(taps[tap], classes, filters=filters, kernel=kernel,
                                                     pool=pool, name=f"ee_{i}", names=names))
        outputs.append(exits.final_exit(features, classes, pool=arch.final_pool,
                                        pool_name=names("average_pooling2d"), flatten_name=names("flatten")))
        exit_names, rule = tuple(f"ee{i}" for i in range(1, len(outputs))) + ("ef",), "cascade"

    model = keras.Model(inputs, outputs, name=f"{task}_{variant}")
    return ExitModel(model, exit_names, rule)
