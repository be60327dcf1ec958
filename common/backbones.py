"""The MLPerf Tiny backbones, built with the authors' layer names so their weights map one to one.

Each builder takes the input tensor and a `LayerNames` and returns the named feature maps where exits
can be attached ("taps"); the exit heads, including the final one, live in `common.exits`.
"""

from __future__ import annotations

import collections

import keras

from common.layers import BatchNorm


class LayerNames:
    """Keras 2 style automatic names (`conv2d`, `conv2d_1`, ...), counted per layer kind.

    The authors' saved models were named this way, so building layers in the same order gives the
    same names. Head layers that the authors named explicitly pass their names directly.
    """

    def __init__(self) -> None:
        self._counts = collections.Counter()

    def __call__(self, kind: str) -> str:
        index = self._counts[kind]
        self._counts[kind] += 1
        return kind if index == 0 else f"{kind}_{index}"


def conv(
    x: keras.KerasTensor,
    names: LayerNames,
    filters: int,
    kernel: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    initializer: str = "he_normal",
) -> keras.KerasTensor:
    """Conv2D, 'same' padding, with bias and L2 1e-4, as in the MLPerf reference models."""
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        kernel_initializer=initializer,
        kernel_regularizer=keras.regularizers.L2(1e-4),
        name=names("conv2d"),
    )(x)


def depthwise(x: keras.KerasTensor, names: LayerNames, strides: int | tuple[int, int] = 1) -> keras.KerasTensor:
    """DepthwiseConv2D 3x3, 'same' padding, with bias, no L2 and the default
    initializer: the reference code passed both to DepthwiseConv2D, whose Keras 2 version ignored them."""
    return keras.layers.DepthwiseConv2D(3, strides, padding="same", name=names("depthwise_conv2d"))(x)


def bn_relu(x: keras.KerasTensor, names: LayerNames, relu: bool = True) -> keras.KerasTensor:
    x = BatchNorm(name=names("batch_normalization"))(x)
    return keras.layers.Activation("relu", name=names("activation"))(x) if relu else x


def resnet8(inputs: keras.KerasTensor, names: LayerNames) -> dict[str, keras.KerasTensor]:
    """ResNet-8 ("resnet_v1_eembc", 16/32/64 filters). Input 32x32x3 in [0, 255].

    Taps: `stack1` 32x32x16, `stack2` 16x16x32, `stack3` 8x8x64 (the ReLU after each residual add).
    """
    x = bn_relu(conv(inputs, names, 16, 3), names)
    taps = {}
    for stack, filters in enumerate((16, 32, 64), start=1):
        strides = 1 if stack == 1 else 2
        y = bn_relu(conv(x, names, filters, 3, strides), names)
        y = conv(y, names, filters, 3)
        # The first stack adds its input as is; later stacks project it with a strided 1x1 conv
        # (created before the second BatchNorm, which fixes the authors' layer numbering).
        shortcut = x if stack == 1 else conv(x, names, filters, 1, strides)
        y = bn_relu(y, names, relu=False)
        x = keras.layers.Add(name=names("add"))([shortcut, y])
        x = keras.layers.Activation("relu", name=names("activation"))(x)
        taps[f"stack{stack}"] = x
    return taps


def ds_cnn(inputs: keras.KerasTensor, names: LayerNames) -> dict[str, keras.KerasTensor]:
    """DS-CNN (MLPerf "ds_cnn", 64 channels). Input 49x10x1 MFCCs.

    Taps: `ds1` .. `ds4`, the output of each depthwise-separable block (25x5x64), and `features`,
    the last block after the head's dropout.
    """
    x = conv(inputs, names, 64, (10, 4), strides=2, initializer="glorot_uniform")
    x = keras.layers.Dropout(0.2, name=names("dropout"))(bn_relu(x, names))
    taps = {}
    for block in range(1, 5):
        x = bn_relu(depthwise(x, names), names)
        x = bn_relu(conv(x, names, 64, 1, initializer="glorot_uniform"), names)
        taps[f"ds{block}"] = x
    taps["features"] = keras.layers.Dropout(0.4, name=names("dropout"))(x)
    return taps


# MobileNetV1 with width 0.25: (stride, output channels) of its 13 depthwise-separable blocks.
MOBILENET_BLOCKS = ((1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128), *((1, 128),) * 5, (2, 256), (1, 256))


def mobilenet_v1(inputs: keras.KerasTensor, names: LayerNames) -> dict[str, keras.KerasTensor]:
    """MobileNetV1, width 0.25 (MLPerf "mobilenet_v1" for visual wake words). Input 96x96x3 in [0, 1].

    Taps: `ds1` .. `ds13`, the output of each depthwise-separable block (`ds3` is 24x24x32, `ds13`
    3x3x256).
    """
    x = bn_relu(conv(inputs, names, 8, 3, strides=2), names)
    taps = {}
    for block, (strides, filters) in enumerate(MOBILENET_BLOCKS, start=1):
        x = bn_relu(depthwise(x, names, strides), names)
        x = bn_relu(conv(x, names, filters, 1), names)
        taps[f"ds{block}"] = x
    return taps
