"""Exit heads attached to a backbone's named feature maps.

T-RecX early exit (`trecx_exit`), the final exit with or without early-view assistance (`final_exit`),
and the prior methods' exits (`sdn_exit`, `branchynet_exit`). Layer names follow the authors' models.
`BRANCHES` is the family of early-exit branches `design-exit` chooses from (common/exit_design.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import keras

from common.layers import ChannelSlice

if TYPE_CHECKING:
    from common.backbones import LayerNames


def classifier(x: keras.KerasTensor, num_classes: int, name: str, separate_softmax: bool = False) -> keras.KerasTensor:
    """Dense softmax classifier. With `separate_softmax` the Dense outputs logits (named `dense`)
    and a Softmax layer takes `name`, as in the authors' KWS and VWW early exits."""
    if not separate_softmax:
        return keras.layers.Dense(num_classes, activation="softmax", name=name)(x)
    x = keras.layers.Dense(num_classes, kernel_initializer="he_normal", name="dense")(x)
    return keras.layers.Softmax(name=name)(x)


Pair = int | tuple[int, int]  # a kernel, stride or pool size: square, or (height, width)


@dataclasses.dataclass(frozen=True)
class TrecxExit:
    """Where a task's T-RecX early exit attaches and its shape, with the authors' layer names.

    `tap`: the backbone tap it reads. Then, in order: a slice of the tap's first `slice_channels` channels
    (None: all), a 1x1 convolution to `pointwise_filters` channels (None: none) named `pointwise_name`, a
    depthwise convolution (`dw_kernel`, `dw_strides`) + ReLU, an average pool `pool` named `pool_name`, a
    flatten named `flatten_name` and the softmax classifier (`separate_softmax`: a Dense for logits, then a
    Softmax layer, as in the authors' KWS and VWW exits).
    """

    tap: str
    dw_kernel: Pair
    dw_strides: Pair
    pool: Pair
    pointwise_filters: int | None = None
    slice_channels: int | None = None
    separate_softmax: bool = False
    pointwise_name: str = "pointwise_conv_ee_1"
    pool_name: str = "average_pooling_2d_1"
    flatten_name: str = "flatten_1"


def trecx_exit(
    tap: keras.KerasTensor, num_classes: int, spec: TrecxExit
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The T-RecX early exit (no BatchNorm) that `spec` describes, on the tap's output `tap`: [channel slice]
    [1x1 conv] -> depthwise conv + ReLU -> average pool -> flatten -> softmax classifier `ee_out`.

    Returns the exit's softmax and the depthwise conv's output (which the EE-fmaps ablation reuses).
    """
    x = tap
    if spec.slice_channels is not None:
        x = ChannelSlice(spec.slice_channels, name="ee_slice")(x)
    if spec.pointwise_filters is not None:
        x = keras.layers.Conv2D(
            spec.pointwise_filters,
            1,
            padding="same",
            kernel_initializer="he_normal",
            kernel_regularizer=keras.regularizers.L2(1e-4),
            name=spec.pointwise_name,
        )(x)
    features = keras.layers.DepthwiseConv2D(
        spec.dw_kernel, spec.dw_strides, padding="same", activation="relu", name="depth_conv_ee_1"
    )(x)
    x = keras.layers.AveragePooling2D(spec.pool, name=spec.pool_name)(features)
    x = keras.layers.Flatten(name=spec.flatten_name)(x)
    return classifier(x, num_classes, "ee_out", spec.separate_softmax), features


def early_view(
    features: keras.KerasTensor,
    *,
    channels: int,
    dw_kernel: int | tuple[int, int],
    dw_strides: int | tuple[int, int],
    pool: int | tuple[int, int] | None = None,
    keep_channels: int | None = None,
) -> keras.KerasTensor:
    """Early-view assistance: a depthwise conv over the first `channels` channels of the last
    feature map, optionally pooled and cut to `keep_channels`, flattened. Its kernel has the early
    exit's shape so the early exit's kernel can be transferred to it during training."""
    x = ChannelSlice(channels, name="ev_slice")(features)
    x = keras.layers.DepthwiseConv2D(
        dw_kernel, dw_strides, padding="same", activation="relu", name="depth_conv_eefinal_out"
    )(x)
    if pool is not None:
        x = keras.layers.AveragePooling2D(pool, name="ev_pool")(x)
    if keep_channels is not None:
        x = ChannelSlice(keep_channels, name="ev_keep")(x)
    return keras.layers.Flatten(name="flatten_y_depthconv_eefinal")(x)


def eefmaps_concat(ee_features: keras.KerasTensor, *, pool: int | tuple[int, int]) -> keras.KerasTensor:
    """The EE-fmaps ablation (Fig. 6): the early exit's depthwise output, average pooled and
    flattened, for the final exit to concatenate; it adds no weights."""
    x = keras.layers.AveragePooling2D(pool, name="average_pooling2d_2")(ee_features)
    return keras.layers.Flatten(name="flatten_1")(x)


def final_exit(
    features: keras.KerasTensor,
    num_classes: int,
    *,
    pool: int | tuple[int, int],
    name: str = "ef_out",
    pool_name: str = "average_pooling_2d",
    flatten_name: str = "flatten_x_pooled",
    extra: keras.KerasTensor | None = None,
) -> keras.KerasTensor:
    """The backbone's head: average pool -> flatten [-> concatenate `extra` after it] -> softmax."""
    x = keras.layers.AveragePooling2D(pool, name=pool_name)(features)
    x = keras.layers.Flatten(name=flatten_name)(x)
    if extra is not None:
        x = keras.layers.Concatenate(name="concatenate")([x, extra])
    return classifier(x, num_classes, name)


def sdn_exit(
    tap: keras.KerasTensor, num_classes: int, *, pool: int | tuple[int, int], name: str, names: LayerNames
) -> keras.KerasTensor:
    """SDN exit: average pool -> flatten -> softmax, no convolution."""
    x = keras.layers.AveragePooling2D(pool, name=names("average_pooling2d"))(tap)
    x = keras.layers.Flatten(name=names("flatten"))(x)
    return classifier(x, num_classes, name)


def branchynet_exit(
    tap: keras.KerasTensor,
    num_classes: int,
    *,
    filters: int,
    kernel: int | tuple[int, int],
    pool: int | tuple[int, int],
    name: str,
    names: LayerNames,
) -> keras.KerasTensor:
    """BranchyNet exit: linear conv (no BatchNorm) -> average pool -> flatten -> softmax."""
    x = keras.layers.Conv2D(
        filters,
        kernel,
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(1e-4),
        name=names("conv2d"),
    )(tap)
    return sdn_exit(x, num_classes, pool=pool, name=name, names=names)


# The early-exit branches a design chooses from, each built on any tap (H, W, C): name -> builder
# (tap, num_classes, the architecture's `TrecxExit`) -> softmax `ee_out`.
def _paper_branch(tap: keras.KerasTensor, num_classes: int, trecx: TrecxExit) -> keras.KerasTensor:
    """The paper's branch, as the architecture defines it at its own tap; at a tap whose depthwise output is
    smaller than the branch's pool, the pool covers the whole map instead."""
    strides = _pair(trecx.dw_strides)
    depthwise_out = [math.ceil(size / stride) for size, stride in zip(tap.shape[1:3], strides)]  # "same" padding
    pool = _pair(trecx.pool)
    if any(p > size for p, size in zip(pool, depthwise_out)):
        trecx = dataclasses.replace(trecx, pool=tuple(min(p, size) for p, size in zip(pool, depthwise_out)))
    return trecx_exit(tap, num_classes, trecx)[0]


def _pair(value: Pair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _pooled(x: keras.KerasTensor, cells: int, name: str) -> keras.KerasTensor:
    """`x` average pooled to about `cells` x `cells` positions, flattened."""
    height, width = x.shape[1:3]
    pool = (max(1, height // cells), max(1, width // cells))
    return keras.layers.Flatten(name=f"{name}_flatten")(keras.layers.AveragePooling2D(pool, name=f"{name}_pool")(x))


def _pool_conv_branch(tap: keras.KerasTensor, num_classes: int, trecx: TrecxExit) -> keras.KerasTensor:
    """Pool first (2x2, or the whole map where it is smaller), then a 1x1 convolution to 32 channels with
    ReLU, pooled to one position."""
    x = keras.layers.AveragePooling2D(tuple(min(2, size) for size in tap.shape[1:3]), name="ee_pool_in")(tap)
    x = keras.layers.Conv2D(32, 1, activation="relu", kernel_initializer="he_normal", name="ee_conv")(x)
    return classifier(_pooled(x, 1, "ee"), num_classes, "ee_out")


def _depthwise_pool_branch(tap: keras.KerasTensor, num_classes: int, trecx: TrecxExit) -> keras.KerasTensor:
    """A 3x3 depthwise convolution with stride 2 and ReLU over the tap's channels, pooled to 2 x 2."""
    x = keras.layers.DepthwiseConv2D(3, 2, padding="same", activation="relu", name="ee_depthwise")(tap)
    return classifier(_pooled(x, 2, "ee"), num_classes, "ee_out")


def _pooled_dense_branch(tap: keras.KerasTensor, num_classes: int, trecx: TrecxExit) -> keras.KerasTensor:
    """The tap pooled to one position per channel, then the classifier: no convolution."""
    return classifier(_pooled(tap, 1, "ee"), num_classes, "ee_out")


BRANCHES = {
    "paper": _paper_branch,
    "pool_conv": _pool_conv_branch,
    "depthwise_pool": _depthwise_pool_branch,
    "pooled_dense": _pooled_dense_branch,
}
