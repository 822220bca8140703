"""Build the networks: the notebook's MLP (Dense + L2 + dropout) and a CNN with that MLP as its head."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
import numpy as np

from mnist_classifier.accel.keras_internals import flat_random_draws
from mnist_classifier.data.augmentation import RANDOM_LAYERS, Augmentation, augment
from mnist_classifier.config import ModelConfig, check_conv_blocks, check_keep_prob, check_layers
from mnist_classifier.data.formats import IMAGE_SIZE
from mnist_classifier.errors import ConfigError
from mnist_classifier.system.memory import check_fits, cnn_size, mlp_size


@flat_random_draws()
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
            keep_prob outside (0, 1], or a network too large for the memory
            available (:func:`~mnist_classifier.memory.check_fits`).
    """
    if isinstance(nx, bool) or not isinstance(nx, int) or nx <= 0:
        raise ConfigError(f"nx={nx!r}: expected a positive integer")
    check_layers(layers, activations, lambtha, keep_prob)
    check_keep_prob("input_keep_prob", input_keep_prob)
    check_fits(mlp_size(nx, layers), 1, f"layers={list(layers)}")
    inputs = keras.Input(shape=(nx,), name="pixels")
    x = _dropout(inputs, input_keep_prob, "input_dropout")
    return keras.Model(inputs, _dense_stack(x, layers, activations, lambtha, keep_prob), name="mlp")


@flat_random_draws()
def build_cnn(
    layers: Sequence[int] = (128, 10),
    activations: Sequence[str] = ("relu", "softmax"),
    lambtha: float = 0.0,
    keep_prob: float | None = 0.5,
    *,
    filters: Sequence[int] = (32, 64, 128),
    convs_per_block: int = 1,
    kernel_size: int = 3,
    batch_norm: bool = True,
    conv_keep_prob: float | None = None,
    augmentation: Augmentation | None = None,
) -> keras.Model:
    """Build a convolutional network for 28×28×1 images.

    Each entry of ``filters`` is a block of ``convs_per_block`` convolutions
    (``kernel_size``, same padding, batch normalization, ReLU) closed by 2×2
    max-pooling and ``Dropout(1 - conv_keep_prob)``. The head is the notebook's MLP
    (``layers``, ``activations``, L2 ``lambtha``, ``keep_prob``). ``augmentation``
    puts random image layers first (:mod:`mnist_classifier.data.augmentation`: pen width,
    elastic distortion, rotation, zoom, translation, blur, contrast): they act
    during training only, and are the identity at inference.

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        ValueError: any bad argument, named with what was expected, or a network
            too large for the memory available (:func:`~mnist_classifier.memory.check_fits`).
    """
    check_layers(layers, activations, lambtha, keep_prob)
    check_conv_blocks(filters, convs_per_block, kernel_size, conv_keep_prob)
    size = cnn_size(layers, filters, convs_per_block, kernel_size, batch_norm)
    check_fits(size, 1, f"filters={list(filters)}, kernel_size={kernel_size}, layers={list(layers)}")
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    x = inputs if augmentation is None else augment(inputs, augmentation)
    regularizer = keras.regularizers.L2(lambtha)
    for block, width in enumerate(filters):
        for conv in range(convs_per_block):
            name = f"conv_{block}_{conv}"
            x = keras.layers.Conv2D(
                width, kernel_size, padding="same", use_bias=not batch_norm,
                kernel_regularizer=regularizer, name=name,
            )(x)  # fmt: skip
            if batch_norm:
                x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
            x = keras.layers.ReLU(name=f"{name}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"pool_{block}")(x)
        x = _dropout(x, conv_keep_prob, f"block_dropout_{block}")
    x = keras.layers.Flatten(name="flatten")(x)
    model = keras.Model(inputs, _dense_stack(x, layers, activations, lambtha, keep_prob), name="cnn")
    return allow_jit(model)


def allow_jit(model: keras.Model) -> keras.Model:
    """Let JAX compile a model holding Keras's random image layers.

    Keras marks RandomRotation, RandomZoom, RandomTranslation and its other random
    image layers as not jit-compatible (true of TensorFlow's XLA), and then runs the whole JAX model
    op by op, several times slower. Under JAX they trace and compile correctly, so there the
    flag is lifted, and the model set back to jit compilation.
    """
    if keras.backend.backend() != "jax":
        return model
    random_layers = [layer for layer in model.layers if isinstance(layer, RANDOM_LAYERS)]
    for layer in random_layers:
        layer.supports_jit = True
    if random_layers:  # also a model loaded without compiling: else predict runs op by op
        model.jit_compile = True
    return model


def input_shape(config: ModelConfig) -> tuple[int, ...]:
    """The shape of one input of the network a model config describes: flat pixels, or a 28×28×1 image."""
    return (IMAGE_SIZE, IMAGE_SIZE, 1) if config.architecture == "cnn" else (IMAGE_SIZE * IMAGE_SIZE,)


def build_from_config(config: ModelConfig) -> keras.Model:
    """The network a model config describes, for 28×28 images, computing in its ``precision``."""
    with dtype_policy(config.precision):
        return _build(config)


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Within: new layers take the Keras dtype policy ``name`` (float32, mixed_bfloat16)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def as_float32(model: keras.Model) -> keras.Model:
    """``model`` computing in float32 throughout, with its weights: ``model`` itself if it already does."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    twin = keras.models.clone_model(
        model, clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})
    )
    twin.set_weights(model.get_weights())
    return twin


def network_summary(model: keras.Model) -> dict:
    """What Keras's ``model.summary()`` shows, as data: each layer's name, type, output shape and parameters.

    Returns ``{"layers": [{"name", "type", "output_shape", "params"}, ...], "total",
    "trainable", "non_trainable"}``; an output shape is a list with None for the
    batch axis.

    Example:
        >>> network_summary(build_model(784, [256, 10], ["relu", "softmax"], 0.0, 1.0))["total"]
        203530
    """
    layers = [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": list(layer.output.shape),
            "params": int(layer.count_params()),
        }
        for layer in model.layers
    ]
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    total = sum(int(np.prod(weight.shape)) for weight in model.weights)
    return {"layers": layers, "total": total, "trainable": trainable, "non_trainable": total - trainable}


def _build(config: ModelConfig) -> keras.Model:
    """The network a model config describes, under the dtype policy in force."""
    if config.architecture == "cnn":
        augmentation = None
        if config.augment:
            augmentation = Augmentation(
                config.shift, config.rotation, config.zoom, config.pen_width, config.elastic, config.blur, config.contrast
            )
        return build_cnn(
            config.layers, config.activations, config.lambtha, config.keep_prob,
            filters=config.filters, convs_per_block=config.convs_per_block,
            kernel_size=config.kernel_size, batch_norm=config.batch_norm,
            conv_keep_prob=config.conv_keep_prob, augmentation=augmentation,
        )  # fmt: skip
    return build_model(
        IMAGE_SIZE * IMAGE_SIZE,
        config.layers,
        config.activations,
        config.lambtha,
        config.keep_prob,
        input_keep_prob=config.input_keep_prob,
    )


def _dense_stack(x, layers: Sequence[int], activations: Sequence[str], lambtha: float, keep_prob: float | None):
    """Dense layers with L2, each but the last followed by ``Dropout(1 - keep_prob)``.

    The last computes in float32 whatever the dtype policy, as Keras advises for the
    output of a mixed-precision model (the softmax and the loss keep their precision).
    """
    last = len(layers) - 1
    for index, (width, activation) in enumerate(zip(layers, activations)):
        x = keras.layers.Dense(
            width,
            activation=activation,
            kernel_regularizer=keras.regularizers.L2(lambtha),
            name=f"dense_{index}",
            dtype="float32" if index == last else None,
        )(x)
        if index < last:
            x = _dropout(x, keep_prob, f"dropout_{index}")
    return x


def _dropout(x, keep_prob: float | None, name: str):
    """``Dropout(1 - keep_prob)``, or nothing when keep_prob is None or 1."""
    if keep_prob is None or keep_prob >= 1:
        return x
    return keras.layers.Dropout(1 - keep_prob, name=name)(x)


def copy_weights(source: keras.Model, target: keras.Model, what: str = "source model", share: float = 1.0) -> None:
    """Give every layer of ``target`` that has weights those of ``source``'s layer of the same name.

    With ``share`` under 1, each weight becomes ``share`` of ``source``'s plus the
    rest of its own (a weight-space average of two models of one architecture).
    Layers without weights (dropout, random augmentation) may differ between the two.
    Raises ConfigError, naming ``what``, when a layer is missing from ``source`` or
    its weights have other shapes: the two are not the same architecture.
    """
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise ConfigError(f"{what}: has no layer {layer.name!r}; expected a model of the same architecture") from None
        shapes = [w.shape for w in weights]
        if shapes != [tuple(w.shape) for w in layer.weights]:
            raise ConfigError(
                f"{what}: layer {layer.name!r} has weights of shapes {shapes}, expected "
                f"{[tuple(w.shape) for w in layer.weights]} (another architecture)"
            )
        if share != 1.0:
            weights = [share * w + (1 - share) * own for w, own in zip(weights, layer.get_weights())]
        layer.set_weights(weights)
