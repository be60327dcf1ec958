"""Custom layers the authors' TF 2.3 graphs need to be reproduced exactly in Keras 3."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="trecx")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose inference path uses TF's fused kernel.

    Keras 3 computes inference BatchNorm unfused, which differs from the authors' TF 2.3 graphs by up
    to ~2.6e-6; the fused kernel reproduces them bit for bit. Training uses Keras' own path.
    Expects NHWC inputs (every BatchNorm in these networks follows a convolution).
    """

    def call(self, inputs: tf.Tensor, training: bool | None = None, mask: tf.Tensor | None = None) -> tf.Tensor:
        if training:
            return super().call(inputs, training=True, mask=mask)
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma,
            self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            is_training=False,
        )
        return outputs


@keras.saving.register_keras_serializable(package="trecx")
class ChannelSlice(keras.layers.Layer):
    """The first `channels` channels of an NHWC tensor (the authors' `x[..., :n]` op layers)."""

    def __init__(self, channels: int, **kwargs: object) -> None:  # name, dtype, trainable: keras.layers.Layer's
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs[..., : self.channels]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], min(self.channels, input_shape[-1]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channels": self.channels}
