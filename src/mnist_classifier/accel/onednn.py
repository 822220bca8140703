"""oneDNN's convolutions as XLA calls, for CNN training on the CPU.

oneDNN's direct convolutions work in its blocked layout (channels in blocks of 16 or 8,
innermost), in float32, and in bfloat16 natively where the CPU has AVX512_BF16 or AMX.
The plugin ``mnist-classifier-onednn`` (``plugins/onednn`` in the source tree, built
at its install against the system's oneDNN) wraps them as two XLA FFI handlers
(forward; input and kernel gradients), which this module registers and calls.
Where the plugin is not installed or cannot be used, :func:`block` is 0,
:func:`unavailable_reason` says why in one line, and the callers keep XLA's
convolutions. ``MNIST_CLASSIFIER_ONEDNN=0`` turns them off.

Layouts: the FFI calls take and give (N, C/B, H, W, B) activations; :func:`conv2d`
converts from and to Keras's NHWC around them, in the loops that XLA fuses with
the batch normalization, activation and pooling next to each convolution.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from types import ModuleType

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from mnist_classifier.accel.distribute import device_count

PLUGIN = "mnist_classifier_onednn"
Padding = tuple[tuple[int, int], tuple[int, int]]


def block() -> int:
    """The channel block of oneDNN's convolutions here (16 or 8) once they are registered with XLA; 0 if unavailable."""
    return _capabilities()[0]


def unavailable_reason() -> str | None:
    """Why oneDNN's convolutions are not used here, in one line, or None when they are."""
    problem = _setup_problem()
    if problem:
        return problem
    return None if block() else f"oneDNN {_plugin().version()} has no blocked-layout convolutions for this CPU"


def _setup_problem() -> str | None:
    """Why the FFI handlers cannot be had here (turned off, not on the CPU, no usable plugin), or None."""
    if os.environ.get("MNIST_CLASSIFIER_ONEDNN", "1") == "0":
        return "turned off by MNIST_CLASSIFIER_ONEDNN=0"
    if jax.default_backend() != "cpu":
        return f"JAX computes on {jax.default_backend()}, not the CPU"
    plugin = _plugin()
    return plugin if isinstance(plugin, str) else None


@functools.cache
def _capabilities() -> tuple[int, bool]:
    """Register the FFI handlers; the channel block (0: not available) and whether bfloat16 is native."""
    if _setup_problem():
        return 0, False
    plugin = _plugin()
    for name, handler in plugin.registrations().items():
        jax.ffi.register_ffi_target(name, handler, platform="cpu")
    return plugin.block(), plugin.native_bfloat16()


@functools.cache
def _plugin() -> ModuleType | str:
    """The plugin with the compiled handlers; or why it cannot be had."""
    try:
        return importlib.import_module(PLUGIN)
    except ImportError as exc:  # not installed, or its oneDNN removed since it was built
        if isinstance(exc, ModuleNotFoundError) and exc.name == PLUGIN:
            return "the plugin mnist-classifier-onednn is not installed"
        first_line = str(exc).partition("\n")[0]
        return f"cannot load the plugin mnist-classifier-onednn: {first_line}"


def supports(kernel_shape: tuple[int, ...], dtype: jax.typing.DTypeLike) -> bool:
    """Whether :func:`conv2d` computes this convolution with oneDNN.

    Float32, or bfloat16 where the CPU multiplies it natively; whole blocks of
    channels out, and whole blocks or a few (images) in.
    """
    size, bfloat16 = _capabilities()
    if not size or dtype not in (jnp.float32, *([jnp.bfloat16] if bfloat16 else [])):
        return False
    channels, filters = kernel_shape[2:]
    return filters % size == 0 and (channels % size == 0 or channels < size)


def conv2d(inputs: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """A 2-D convolution, NHWC inputs and HWIO kernel, unit strides: oneDNN's, between layout conversions."""
    return _from_blocked(_blocked_conv(_to_blocked(inputs), kernel, padding))


def _to_blocked(x: jax.Array) -> jax.Array:
    """NHWC as (N, C/B, H, W, B); as NCHW if C is not a whole number of blocks."""
    n, height, width, channels = x.shape
    size = block()
    if channels % size:
        return x.transpose(0, 3, 1, 2)
    return x.reshape(n, height, width, channels // size, size).transpose(0, 3, 1, 2, 4)


def _from_blocked(x: jax.Array) -> jax.Array:
    """(N, C/B, H, W, B) as NHWC."""
    n, blocks, height, width, size = x.shape
    return x.transpose(0, 2, 3, 1, 4).reshape(n, height, width, blocks * size)


def _attributes(padding: Padding) -> dict[str, np.int64]:
    """The FFI calls' attributes: the channel block, the padding and the threads per call."""
    (top, bottom), (left, right) = padding
    return {"block": np.int64(block()), "top": np.int64(top), "left": np.int64(left),
            "bottom": np.int64(bottom), "right": np.int64(right), "threads": np.int64(_threads())}  # fmt: skip


def _threads() -> int:
    """oneDNN threads per call: this host's cores shared among its devices that the batch is split over."""
    return max(1, len(os.sched_getaffinity(0)) * jax.process_count() // device_count())


def _output_shape(src: jax.Array, kernel: jax.Array, padding: Padding) -> tuple[int, ...]:
    """The blocked shape of the convolution's output."""
    rows, columns, _, filters = kernel.shape
    n = src.shape[0]
    height, width = src.shape[2:4]
    (top, bottom), (left, right) = padding
    size = block()
    return (n, filters // size, height + top + bottom - rows + 1, width + left + right - columns + 1, size)


def _per_device(call: Callable, batched: tuple[bool, ...], results_batched: tuple[bool, ...]) -> Callable:
    """``call`` on each device's share of the batch when Keras splits it over devices (XLA cannot split FFI calls).

    An unbatched result (a kernel gradient) is summed over the devices.
    """
    current = keras.distribution.distribution()
    if current is None or current.device_mesh.devices.size == 1:
        return call
    axis = current.batch_dim_name
    spec = {True: P(axis), False: P()}

    def share(*args):
        results = call(*args)
        return tuple(r if b else lax.psum(r, axis) for r, b in zip(results, results_batched))

    return jax.shard_map(share, mesh=current.device_mesh.backend_mesh, in_specs=tuple(spec[b] for b in batched),
                         out_specs=tuple(spec[b] for b in results_batched), check_vma=False)  # fmt: skip


def _onednn_conv(src: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """The forward FFI call."""

    def call(src, kernel):
        out = jax.ShapeDtypeStruct(_output_shape(src, kernel, padding), src.dtype)
        return (jax.ffi.ffi_call("OnednnConv", out)(src, kernel, **_attributes(padding)),)

    return _per_device(call, (True, False), (True,))(src, kernel)[0]


_blocked_conv = jax.custom_vjp(_onednn_conv, nondiff_argnums=(2,))


def _blocked_conv_forward(src: jax.Array, kernel: jax.Array, padding: Padding) -> tuple[jax.Array, tuple]:
    """The convolution, keeping its operands for the gradient."""
    return _onednn_conv(src, kernel, padding), (src, kernel)


def _blocked_conv_backward(
    padding: Padding, saved: tuple[jax.Array, jax.Array], grad: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Input and kernel gradients in one FFI call; an NCHW input's (the images') from XLA, if anything needs it."""
    src, kernel = saved

    def call(src, kernel, grad):
        results = (jax.ShapeDtypeStruct(src.shape if src.ndim == 5 else (len(src), 1), src.dtype),
                   jax.ShapeDtypeStruct(kernel.shape, jnp.float32))  # summed over devices before any rounding
        return jax.ffi.ffi_call("OnednnConvGrad", results)(src, kernel, grad, **_attributes(padding))

    src_grad, kernel_grad = _per_device(call, (True, False, True), (True, False))(src, kernel, grad)
    kernel_grad = kernel_grad.astype(kernel.dtype)
    if src.ndim == 4:
        layouts = ("NCHW", "HWIO", "NHWC")
        _, vjp = jax.vjp(lambda x: lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=layouts), src)
        src_grad = vjp(_from_blocked(grad))[0]
    return src_grad, kernel_grad


_blocked_conv.defvjp(_blocked_conv_forward, _blocked_conv_backward)
