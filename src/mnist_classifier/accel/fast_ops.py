"""Faster training of convolutional networks under JAX on the CPU: the same model, the same forward values.

While Keras traces a training step inside ``fast_training_ops()``, three operations of
its JAX backend are replaced (through ``keras_internals``):

- ``conv``: the images' convolution (at most 4 channels in) is one matrix product of its
  patches, forward and kernel gradient. Other plain 2-D convolutions (channels last,
  unit strides and dilation) run on oneDNN's convolutions where ``onednn`` computes them
  (the ``mnist-classifier-onednn`` plugin), except in float32 with the batch split over
  devices, where XLA's are as fast; elsewhere on one device, XLA's convolution with its
  kernel gradient as one matrix product per kernel tap (XLA computes it as a convolution
  whose window is the whole image); with the batch split over devices, XLA's own.
- ``max_pool``: windows that tile the input are pooled by reshape, whose gradient is a
  plain comparison in one pass (XLA's is a windowed arg-max over index arrays).
- ``moments``: in float32 with the batch split over devices, one pass over x and x², as
  Keras's TensorFlow backend computes synchronized moments: one barrier across the
  devices per layer instead of two.

The model is unchanged (standard ``Conv2D``, ``MaxPooling2D`` and ``BatchNormalization``
layers, saved as such), and so is every forward value but the split batch's variance
(rounding); gradients differ from XLA's in summation order, and, at exact ties inside a
pooling window, by giving the gradient to every tied input instead of one (after a ReLU
the ties are zeros, which the ReLU passes no gradient). What each
choice gains, and where it was measured: benchmarks/README.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import keras
from jax import lax

from mnist_classifier.accel import onednn
from mnist_classifier.accel.distribute import device_count
from mnist_classifier.accel.keras_internals import jax_ops_replaced
from mnist_classifier.accel.onednn import Padding


@contextlib.contextmanager
def fast_training_ops() -> Iterator[None]:
    """Within: training steps traced for JAX on the CPU use the faster kernel gradients, pooling and moments."""
    if keras.backend.backend() != "jax" or jax.default_backend() != "cpu":
        yield
        return
    with jax_ops_replaced({"conv": _conv, "max_pool": _max_pool, "moments": _moments}):
        yield


def _split() -> bool:
    """Whether the batch is split over several devices."""
    return device_count() > 1


def _conv(original: Callable) -> Callable:
    """Keras's JAX ``conv``: plain 2-D ones on oneDNN where faster, else with matrix-product kernel gradients."""

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        padding_pairs = _plain_conv_padding(inputs, kernel, strides, padding, data_format, dilation_rate)
        if padding_pairs is None:
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        kernel = keras.ops.convert_to_tensor(kernel)
        if _onednn_takes(kernel.shape, kernel.dtype):
            return onednn.conv2d(keras.ops.convert_to_tensor(inputs, dtype=kernel.dtype), kernel, padding_pairs)
        if _split():
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        conv2d = _patch_conv2d if kernel.shape[2] <= PATCH_CHANNELS else _conv2d
        return conv2d(keras.ops.convert_to_tensor(inputs, dtype=kernel.dtype), kernel, padding_pairs)

    return conv


# The most channels of an image (grey 1, colour 3) whose convolution oneDNN computes from NCHW.
IMAGE_CHANNELS = 3


def _onednn_takes(kernel_shape: tuple[int, ...], dtype: jax.typing.DTypeLike) -> bool:
    """Whether oneDNN computes a plain convolution: where it can and has compiled code for it.

    Not float32 split over devices (XLA's is as fast), nor inputs that are not whole
    blocks of channels, except an image's few channels (up to :data:`IMAGE_CHANNELS`)
    on CPUs with blocks of 16 (AVX-512). For other such NCHW inputs oneDNN has no
    compiled kernel gradient and falls back to its reference code (``ref:any``),
    hundreds of times slower than XLA (see benchmarks/README.md): on AVX2, 3.3-3.6 s
    for the 1→16 layer at 256 images, the whole rest of the step 0.3 s; on AVX-512,
    0.6-1.3 s for 4 or 8 channels in at 128 images, where XLA takes 5-15 ms.
    """
    if not onednn.supports(kernel_shape, dtype) or (_split() and dtype == jnp.float32):
        return False
    channels, size = kernel_shape[2], onednn.block()
    return channels % size == 0 or (size == 16 and channels <= IMAGE_CHANNELS)


def convolutions_note(precision: str) -> str | None:
    """For the training log: whose convolutions a CNN trains with (oneDNN's, or XLA's and why); None off JAX's CPU."""
    if keras.backend.backend() != "jax" or jax.default_backend() != "cpu":
        return None
    reason = onednn.unavailable_reason()
    if reason:
        return f"XLA's ({reason})"
    size, dtype = onednn.block(), jnp.bfloat16 if precision == "mixed_bfloat16" else jnp.float32
    if _onednn_takes((3, 3, size, size), dtype):
        return f"oneDNN's, wherever channels come in blocks of {size}"
    if dtype == jnp.float32:
        return "XLA's (in float32 with the batch split, as fast as oneDNN's)"
    return "XLA's (oneDNN would convert bfloat16 on this CPU, as XLA does)"


def _plain_conv_padding(inputs, kernel, strides, padding, data_format, dilation_rate) -> Padding | None:
    """The (height, width) padding of a channels-last 2-D convolution with unit strides and dilation; else None."""
    plain = (
        len(inputs.shape) == 4
        and _channels_last(data_format)
        and _pair(strides) == _pair(dilation_rate) == (1, 1)
        and padding in ("same", "valid")
        and inputs.shape[-1] == kernel.shape[2]
    )
    if not plain:
        return None
    if padding == "valid":  # a kernel larger than the image: Keras's own error
        return ((0, 0), (0, 0)) if _fits(kernel.shape[:2], inputs) else None
    return tuple(((size - 1) // 2, size - 1 - (size - 1) // 2) for size in kernel.shape[:2])


def _pair(value) -> tuple[int, ...]:
    """An int or a sequence of ints as a tuple."""
    return (value, value) if isinstance(value, int) else tuple(value)


def _fits(window: tuple[int, ...], inputs) -> bool:
    """Whether a (height, width) window fits inside the images of channels-last ``inputs``."""
    return all(k <= n for k, n in zip(window, inputs.shape[1:3]))


def _channels_last(data_format: str | None) -> bool:
    """Whether a Keras ``data_format`` argument (None: the configured default) means channels last."""
    return (data_format or keras.config.image_data_format()) == "channels_last"


def _xla_conv2d(inputs: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """XLA's 2-D convolution (NHWC inputs, HWIO kernel), with XLA's gradients."""
    return lax.conv_general_dilated(inputs, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


_conv2d = jax.custom_vjp(_xla_conv2d, nondiff_argnums=(2,))


def _conv2d_forward(inputs: jax.Array, kernel: jax.Array, padding: Padding):
    """The convolution, keeping its operands for the gradient."""
    return _conv2d(inputs, kernel, padding), (inputs, kernel)


def _conv2d_backward(padding: Padding, saved: tuple[jax.Array, jax.Array], outputs_grad: jax.Array):
    """XLA's input gradient; the kernel gradient as one matrix product per kernel tap."""
    inputs, kernel = saved
    _, inputs_vjp = jax.vjp(lambda x: _xla_conv2d(x, kernel, padding), inputs)
    return inputs_vjp(outputs_grad)[0], _kernel_grad(inputs, outputs_grad, kernel.shape, padding)


def _kernel_grad(inputs: jax.Array, outputs_grad: jax.Array, shape: tuple[int, ...], padding: Padding) -> jax.Array:
    """d(loss)/d(kernel): for each tap, the shifted inputs times the output gradient, summed over images and positions."""
    rows, columns, channels, filters = shape
    _, height, width, _ = outputs_grad.shape
    padded = jnp.pad(inputs, ((0, 0), *padding, (0, 0)))
    grad = outputs_grad.reshape(-1, filters)
    taps = [
        padded[:, i : i + height, j : j + width, :].reshape(-1, channels).T @ grad
        for i in range(rows)
        for j in range(columns)
    ]
    return jnp.stack(taps).reshape(shape)


_conv2d.defvjp(_conv2d_forward, _conv2d_backward)

# Inputs with at most this many channels (the images) are convolved as one matrix product of their patches.
PATCH_CHANNELS = 4


def _patches(inputs: jax.Array, shape: tuple[int, ...], padding: Padding) -> jax.Array:
    """(N, H', W', rows·columns·channels): each output position's input window, in the kernel's HWIO order."""
    rows, columns, _, _ = shape
    padded = jnp.pad(inputs, ((0, 0), *padding, (0, 0)))
    height, width = padded.shape[1] - rows + 1, padded.shape[2] - columns + 1
    taps = [padded[:, i : i + height, j : j + width, :] for i in range(rows) for j in range(columns)]
    return jnp.concatenate(taps, axis=-1)


def _patch_conv(inputs: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """The convolution as patches times the kernel: for few channels in, XLA's convolution runs the first
    layer at a fraction of the CPU's speed (K = 9 for a 3×3 kernel on one channel)."""
    return _patches(inputs, kernel.shape, padding) @ kernel.reshape(-1, kernel.shape[-1])


_patch_conv2d = jax.custom_vjp(_patch_conv, nondiff_argnums=(2,))


def _patch_conv2d_forward(inputs: jax.Array, kernel: jax.Array, padding: Padding):
    """The convolution, keeping its operands for the gradient."""
    return _patch_conv(inputs, kernel, padding), (inputs, kernel)


def _patch_conv2d_backward(padding: Padding, saved: tuple[jax.Array, jax.Array], outputs_grad: jax.Array):
    """XLA's input gradient (not computed where nothing needs it: the images'), and the patches' kernel gradient."""
    inputs, kernel = saved
    _, inputs_vjp = jax.vjp(lambda x: _xla_conv2d(x, kernel, padding), inputs)
    return inputs_vjp(outputs_grad)[0], _patch_kernel_grad(inputs, outputs_grad, kernel.shape, padding)


def _patch_kernel_grad(inputs: jax.Array, outputs_grad: jax.Array, shape: tuple[int, ...], padding: Padding) -> jax.Array:
    """d(loss)/d(kernel) as one matrix product: the patches times the output gradient, over all images and positions."""
    patches = _patches(inputs, shape, padding)
    return (patches.reshape(-1, patches.shape[-1]).T @ outputs_grad.reshape(-1, shape[-1])).reshape(shape)


_patch_conv2d.defvjp(_patch_conv2d_forward, _patch_conv2d_backward)


def _max_pool(original: Callable) -> Callable:
    """Keras's JAX ``max_pool``, by reshape for channels-last 2-D windows that tile the input."""

    def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
        size = _pair(pool_size)
        tiled = (
            len(inputs.shape) == 4
            and len(size) == 2
            and (strides is None or _pair(strides) == size)
            and padding == "valid"
            and _channels_last(data_format)
            and _fits(size, inputs)
        )
        if not tiled:
            return original(inputs, pool_size, strides, padding, data_format)
        return _tiled_max_pool(jnp.asarray(inputs), size)

    return max_pool


def _windows(inputs: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Channels-last ``inputs`` as (N, rows, size[0], columns, size[1], C) windows, cropped to whole ones."""
    _, height, width, channels = inputs.shape
    rows, columns = height // size[0], width // size[1]
    cropped = inputs[:, : rows * size[0], : columns * size[1], :]
    return cropped.reshape(-1, rows, size[0], columns, size[1], channels)


def _tiled_pool(inputs: jax.Array, size: tuple[int, int]) -> jax.Array:
    """The maximum of each window."""
    return _windows(inputs, size).max(axis=(2, 4))


_tiled_max_pool = jax.custom_vjp(_tiled_pool, nondiff_argnums=(1,))


def _tiled_pool_forward(inputs: jax.Array, size: tuple[int, int]):
    """The pooled maxima, kept with the inputs for the gradient."""
    pooled = _tiled_pool(inputs, size)
    return pooled, (inputs, pooled)


def _tiled_pool_backward(size: tuple[int, int], saved: tuple[jax.Array, jax.Array], grad: jax.Array):
    """Each window's gradient to the inputs equal to its maximum, in one pass (JAX's own also counts the
    ties, a second reduction that takes as long as the rest of the gradient)."""
    inputs, pooled = saved
    windows = _windows(inputs, size)
    hit = windows == pooled[:, :, None, :, None, :]
    spread = jnp.where(hit, grad[:, :, None, :, None, :], jnp.zeros((), grad.dtype))
    n, rows, _, columns, _, channels = windows.shape
    spread = spread.reshape(n, rows * size[0], columns * size[1], channels)
    cropped = ((0, 0), (0, inputs.shape[1] - spread.shape[1]), (0, inputs.shape[2] - spread.shape[2]), (0, 0))
    return (jnp.pad(spread, cropped),)


_tiled_max_pool.defvjp(_tiled_pool_forward, _tiled_pool_backward)


def _moments(original: Callable) -> Callable:
    """Keras's JAX ``moments``; for float32 with the batch split over devices, in one pass over x and x².

    Like Keras's synchronized moments on TensorFlow, this loses precision where a
    feature's mean is thousands of times its spread; batch normalization after a
    convolution of scaled pixels is far from that.
    """

    def moments(x, axes, keepdims=False, synchronized=False):
        if synchronized or x.dtype != jnp.float32 or not _split():
            return original(x, axes, keepdims, synchronized)
        mean = jnp.mean(x, axes, keepdims=keepdims)
        return mean, jnp.maximum(jnp.mean(jnp.square(x), axes, keepdims=keepdims) - jnp.square(mean), 0.0)

    return moments
