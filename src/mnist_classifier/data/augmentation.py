"""Training-time augmentation that imitates how people write and photograph digits.

Keras's own random layers give rotation, zoom, shifts, blur and contrast; two small
layers here add what Keras lacks under JAX: the pen's width (a grey-level dilation
or erosion of the strokes) and an elastic distortion of the handwriting (Simard et
al., 2003; Keras's ``RandomElasticTransform`` does not compile under JAX). Every one
of them is the identity outside training. :func:`inference_model` replaces them all
by ``Identity`` layers, so a shipped model loads with plain
``keras.models.load_model``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import ops

ELASTIC_SIGMA = 4.0  # pixels: the smoothness of the displacement field (Simard et al.)


@dataclass(frozen=True)
class Augmentation:
    """How strongly each random change acts; 0 turns it off.

    ``shift`` (fraction of the size), ``rotation`` (degrees), ``zoom`` (fraction),
    ``pen_width`` (strength of the dilation, up to 1; erosion goes half as far),
    ``elastic`` (standard deviation of the displacement, pixels), ``blur`` (largest
    Gaussian sigma, pixels; applied to half the images), ``contrast`` (fraction).
    """

    shift: float = 0.1
    rotation: float = 10.0
    zoom: float = 0.1
    pen_width: float = 0.0
    elastic: float = 0.0
    blur: float = 0.0
    contrast: float = 0.0


@keras.saving.register_keras_serializable(package="mnist_classifier")
class RandomPenWidth(keras.layers.Layer):
    """Thickens or thins the strokes of ink-on-black images by a random amount per image.

    In training, each image moves towards its 3×3 grey-level dilation by a share
    drawn from ``[0, factor]``, or towards its erosion by a share from
    ``[0, factor / 2]`` (thin strokes would vanish under a full erosion); otherwise
    the identity.
    """

    def __init__(self, factor: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = float(factor)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_jit = True

    def call(self, inputs, training=False):
        if not training or not self.factor:
            return inputs
        batch = ops.shape(inputs)[0]
        share = keras.random.uniform((batch, 1, 1, 1), -self.factor / 2, self.factor, seed=self.generator)
        dilated = ops.max_pool(inputs, 3, 1, padding="same")
        eroded = -ops.max_pool(-inputs, 3, 1, padding="same")
        return inputs + ops.relu(share) * (dilated - inputs) + ops.relu(-share) * (eroded - inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mnist_classifier")
class RandomElastic(keras.layers.Layer):
    """Elastic distortion of images (Simard et al., 2003), a random strength per image.

    A field of random displacements smoothed by a Gaussian of ELASTIC_SIGMA pixels,
    scaled to a standard deviation of up to ``scale`` pixels, moves every pixel;
    values are interpolated linearly, outside the image is black. The identity
    outside training.
    """

    def __init__(self, scale: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_jit = True
        radius = int(2 * ELASTIC_SIGMA)
        taps = [math.exp(-(i * i) / (2 * ELASTIC_SIGMA**2)) for i in range(-radius, radius + 1)]
        # One pass of the normalized taps leaves unit white noise with this deviation: undone per pass.
        gain = math.sqrt(sum(t * t for t in taps)) / sum(taps)
        self._taps = [t / sum(taps) / gain for t in taps]

    def call(self, inputs, training=False):
        if not training or not self.scale:
            return inputs
        batch, height, width, channels = ops.shape(inputs)
        noise = keras.random.normal((batch, height, width, 2), seed=self.generator)
        taps = ops.convert_to_tensor(self._taps, dtype=inputs.dtype)
        kernel_rows = ops.tile(ops.reshape(taps, (-1, 1, 1, 1)), (1, 1, 2, 1))
        kernel_cols = ops.tile(ops.reshape(taps, (1, -1, 1, 1)), (1, 1, 2, 1))
        field = ops.depthwise_conv(ops.depthwise_conv(noise, kernel_rows, padding="same"), kernel_cols, padding="same")
        strength = keras.random.uniform((batch, 1, 1, 1), 0, self.scale, seed=self.generator)
        field = field * strength
        grid_b, grid_y, grid_x, grid_c = ops.meshgrid(
            ops.arange(batch, dtype=inputs.dtype), ops.arange(height, dtype=inputs.dtype),
            ops.arange(width, dtype=inputs.dtype), ops.arange(channels, dtype=inputs.dtype), indexing="ij",
        )  # fmt: skip
        coordinates = [grid_b, grid_y + field[..., :1], grid_x + field[..., 1:], grid_c]
        return ops.image.map_coordinates(inputs, coordinates, order=1, fill_mode="constant")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "seed": self.seed}


RANDOM_LAYERS = (
    keras.layers.RandomRotation, keras.layers.RandomZoom, keras.layers.RandomTranslation,
    keras.layers.RandomGaussianBlur, keras.layers.RandomContrast, RandomPenWidth, RandomElastic,
)  # fmt: skip


def augment(x, augmentation: Augmentation):
    """``x`` (a Keras tensor of 28×28×1 images in [0, 1], ink bright) through the random layers asked for."""
    if augmentation.pen_width:
        x = RandomPenWidth(augmentation.pen_width, name="random_pen_width")(x)
    if augmentation.elastic:
        x = RandomElastic(augmentation.elastic, name="random_elastic")(x)
    if augmentation.rotation:
        x = keras.layers.RandomRotation(augmentation.rotation / 360, fill_mode="constant", name="random_rotation")(x)
    if augmentation.zoom:
        x = keras.layers.RandomZoom(augmentation.zoom, fill_mode="constant", name="random_zoom")(x)
    if augmentation.shift:
        shift = augmentation.shift
        x = keras.layers.RandomTranslation(shift, shift, fill_mode="constant", name="random_translation")(x)
    if augmentation.blur:
        x = keras.layers.RandomGaussianBlur(
            factor=0.5, kernel_size=5, sigma=augmentation.blur, value_range=(0, 1), name="random_blur"
        )(x)
    if augmentation.contrast:
        x = keras.layers.RandomContrast(augmentation.contrast, value_range=(0, 1), name="random_contrast")(x)
    return x


def inference_model(model: keras.Model) -> keras.Model:
    """``model`` with each random augmentation layer replaced by ``Identity``, and its weights.

    The result computes the same outputs at inference and loads with plain Keras
    (no layer of this package left); a model without such layers comes back as it is.
    """
    if not any(isinstance(layer, RANDOM_LAYERS) for layer in model.layers):
        return model

    def replace(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, RANDOM_LAYERS):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    twin = keras.models.clone_model(model, clone_function=replace)
    for layer in model.layers:
        if layer.weights:
            twin.get_layer(layer.name).set_weights(layer.get_weights())
    return twin
