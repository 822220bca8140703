"""Build the networks: the notebook's MLP (Dense + L2 + dropout)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mnist_classifier.config import ModelConfig, check_keep_prob, check_layers
from mnist_classifier.errors import ConfigError

IMAGE_SIZE = 28


def build_model(
    nx: int,
    layers: Sequence[int],
    activations: Sequence[str],
    lambtha: float,
    keep_prob: float | None,
    *,
    input_keep_prob: float | None = None,
) -> keras.Model:
    """Build the notebook's fully connected network.

    Args:
        nx: number of input features (784 for flattened 28×28 images).
        layers: width of each Dense layer, the last one being the output.
        activations: activation of each layer (e.g. relu, relu, softmax).
        lambtha: L2 regularization factor of every kernel.
        keep_prob: probability of keeping a unit; ``Dropout(1 - keep_prob)`` follows
            every layer but the last. ``None`` or 1 means no dropout.
        input_keep_prob: the same for the input pixels (not in the notebook; a
            light input dropout, e.g. 0.8, is what lets a plain MLP pass 98.5%).

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        ValueError: mismatched lengths, non-positive widths, unknown activations,
            keep_prob outside (0, 1].
    """
    if isinstance(nx, bool) or not isinstance(nx, int) or nx <= 0:
        raise ConfigError(f"nx={nx!r}: expected a positive integer")
    check_layers(layers, activations, lambtha, keep_prob)
    check_keep_prob("input_keep_prob", input_keep_prob)
    inputs = keras.Input(shape=(nx,), name="pixels")
    x = inputs
    if input_keep_prob is not None and input_keep_prob < 1:
        x = keras.layers.Dropout(1 - input_keep_prob, name="input_dropout")(x)
    for index, (width, activation) in enumerate(zip(layers, activations)):
        x = keras.layers.Dense(
            width,
            activation=activation,
            kernel_regularizer=keras.regularizers.L2(lambtha),
            name=f"dense_{index}",
        )(x)
        if index < len(layers) - 1 and keep_prob is not None and keep_prob < 1:
            x = keras.layers.Dropout(1 - keep_prob, name=f"dropout_{index}")(x)
    return keras.Model(inputs, x, name="mlp")


def build_from_config(config: ModelConfig) -> keras.Model:
    """The network a model config describes, for 28×28 images."""
    return build_model(
        IMAGE_SIZE * IMAGE_SIZE,
        config.layers,
        config.activations,
        config.lambtha,
        config.keep_prob,
        input_keep_prob=config.input_keep_prob,
    )
