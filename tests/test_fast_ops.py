"""Faster CPU training ops: the same values and gradients as Keras's own, only inside the context, only where they apply."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from keras.src.backend.jax import nn as jax_nn

from mnist_classifier import build_cnn, optimize_model, train_model
from mnist_classifier.accel import fast_ops
from mnist_classifier.accel.fast_ops import fast_training_ops

def _images(shape, seed: int = 0) -> jnp.ndarray:
    """Standard normal float32 values of ``shape``, the same for the same seed."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def _value_and_grads(function, *arrays):
    """``function``'s value, and the gradients of a fixed random projection of it, with respect to each array."""
    value = function(*arrays)
    weights = _images(value.shape, seed=99)
    grads = jax.grad(lambda *a: jnp.sum(function(*a) * weights), argnums=tuple(range(len(arrays))))(*arrays)
    return value, grads


def _assert_close(expected, got):
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def _record_kernel_grads(monkeypatch, kinds=("_kernel_grad", "_patch_kernel_grad")) -> list:
    """Record the padding of every matrix-product kernel gradient (per tap, or of the patches) traced from now on."""
    calls = []
    for name in kinds:
        original = getattr(fast_ops, name)
        monkeypatch.setattr(fast_ops, name, lambda *a, original=original: calls.append(a[-1]) or original(*a))
    return calls


@pytest.mark.parametrize(
    "kernel, padding, strides",
    [((3, 3), "same", 1), ((5, 5), "same", 1), ((2, 4), "same", 1), ((3, 3), "valid", 1), ((3, 3), "same", 2)],
)
@pytest.mark.parametrize("channels", [1, 3, 6])
def test_convolutions_keep_keras_values_and_gradients(kernel, padding, strides, channels, monkeypatch):
    images, kernels = _images((4, 9, 10, channels)), _images((*kernel, channels, 5), seed=1)
    conv = lambda x, w: keras.ops.conv(x, w, strides=strides, padding=padding)  # noqa: E731
    expected = _value_and_grads(conv, images, kernels)
    calls = _record_kernel_grads(monkeypatch)
    with fast_training_ops():
        got = _value_and_grads(conv, images, kernels)
    _assert_close(expected, got)
    assert len(calls) == (strides == 1)  # strided convolutions keep XLA's gradient


def test_only_plain_convolutions_take_the_matrix_product_kernel_gradient(monkeypatch):
    calls = _record_kernel_grads(monkeypatch)
    images, kernels = _images((2, 6, 6, 1)), _images((3, 3, 1, 2), seed=1)
    with fast_training_ops():
        for strides, padding, dilation in ((1, "same", 1), (1, "valid", 1), (2, "same", 1), (1, "same", 2)):
            conv = lambda w: keras.ops.conv(images, w, strides, padding, dilation_rate=dilation)  # noqa: E731
            jax.grad(lambda w: jnp.sum(conv(w)))(kernels)
        with pytest.raises(ValueError, match="empty output"):  # Keras's own check of a kernel larger than the image
            keras.ops.conv(images, _images((7, 7, 1, 2)), padding="valid")
    assert calls == [((1, 1), (1, 1)), ((0, 0), (0, 0))]


@pytest.mark.parametrize("size, pool, strides", [(8, 2, 2), (7, 2, 2), (9, 3, 3), (8, 2, 1)])
def test_max_pooling_keeps_keras_values_and_gradients(size, pool, strides):
    images = _images((3, size, size, 4))
    max_pool = lambda x: keras.ops.max_pool(x, pool, strides)  # noqa: E731
    expected = _value_and_grads(max_pool, images)
    with fast_training_ops():
        got = _value_and_grads(max_pool, images)
        windowed = "reduce_window_max" in str(jax.make_jaxpr(max_pool)(images))
    _assert_close(expected, got)
    assert windowed == (pool != strides)  # windows that tile the input are pooled by reshape


def test_moments_take_one_pass_only_with_the_batch_split_over_devices(monkeypatch):
    features = _images((64, 5, 5, 8)) * 3 + 10
    expected = keras.ops.moments(features, axes=(0, 1, 2))
    with fast_training_ops():
        one_device = keras.ops.moments(features, axes=(0, 1, 2))
        monkeypatch.setattr(fast_ops, "device_count", lambda: 8)
        mean, variance = keras.ops.moments(features, axes=(0, 1, 2))
    np.testing.assert_array_equal(one_device, expected)
    assert not np.array_equal(variance, expected[1])  # computed the other way: rounding differs
    np.testing.assert_allclose(mean, expected[0], rtol=1e-5)
    np.testing.assert_allclose(variance, expected[1], rtol=1e-4)
    assert float(jnp.min(variance)) >= 0


def test_keras_own_ops_come_back_after_the_context_even_on_error():
    originals = jax_nn.conv, jax_nn.max_pool, jax_nn.moments
    with pytest.raises(RuntimeError), fast_training_ops():
        assert jax_nn.conv is not originals[0]
        raise RuntimeError("stop")
    assert (jax_nn.conv, jax_nn.max_pool, jax_nn.moments) == originals


def test_train_model_traces_a_cnn_with_them(small_mnist, monkeypatch):
    monkeypatch.setattr(fast_ops, "_onednn_takes", lambda *args: False)  # these kernel gradients, not oneDNN's (test_onednn)
    calls = _record_kernel_grads(monkeypatch)
    keras.utils.set_random_seed(0)
    model = build_cnn((16, 10), ("relu", "softmax"), 0.0, None, filters=(4, 8))
    optimize_model(model, 0.003, 0.9, 0.999)
    x, y = small_mnist["train"]
    history = train_model(model, x[:512].reshape(-1, 28, 28, 1), y[:512], 64, 2, verbose=False)
    assert len(calls) == 2  # one kernel gradient per convolution, traced once
    assert history.history["loss"][1] < history.history["loss"][0]


def test_each_train_model_call_builds_fit_step_anew_with_its_engines_ops(small_mnist, monkeypatch):
    calls = _record_kernel_grads(monkeypatch)
    x, y = small_mnist["train"]
    x, y = x[:256].reshape(-1, 28, 28, 1), y[:256]
    with keras.distribution.DataParallel(devices=keras.distribution.list_devices()[:1]).scope():  # Keras's fit path
        keras.utils.set_random_seed(0)
        model = build_cnn((16, 10), ("relu", "softmax"), 0.0, None, filters=(4,))
        optimize_model(model, 0.003, 0.9, 0.999)
        train_model(model, x, y, 64, 1, verbose=False, engine="keras")
        assert calls == []
        plain_step = model.train_function
        train_model(model, x, y, 64, 1, verbose=False)
    assert calls and model.train_function is not plain_step  # not the step traced with Keras's own ops


@pytest.mark.parametrize("block, channels, on_onednn", [
    (8, 1, False), (8, 8, True), (16, 1, True), (16, 3, True), (16, 4, False), (16, 8, False), (16, 32, True),
])  # fmt: skip
def test_onednn_takes_whole_blocks_and_only_an_images_few_channels_on_avx512(block, channels, on_onednn, monkeypatch):
    # elsewhere oneDNN's kernel gradient of an NCHW input is its reference code, hundreds of times slower than XLA's
    monkeypatch.setattr(fast_ops.onednn, "block", lambda: block)
    monkeypatch.setattr(fast_ops.onednn, "supports", lambda shape, dtype: True)
    monkeypatch.setattr(fast_ops, "_split", lambda: False)
    assert fast_ops._onednn_takes((3, 3, channels, 32), jnp.float32) is on_onednn


@pytest.mark.parametrize("channels, kind", [(1, "_patch_kernel_grad"), (4, "_patch_kernel_grad"), (5, "_kernel_grad")])
def test_few_channels_convolve_as_one_product_of_patches(channels, kind, monkeypatch):
    monkeypatch.setattr(fast_ops, "_onednn_takes", lambda *args: False)
    calls = _record_kernel_grads(monkeypatch, (kind,))
    images, kernels = _images((2, 6, 6, channels)), _images((3, 3, channels, 8), seed=1)
    with fast_training_ops():
        jax.grad(lambda w: jnp.sum(keras.ops.conv(images, w, padding="same")))(kernels)
    assert calls == [((1, 1), (1, 1))]


def test_max_pooling_after_relu_keeps_keras_gradients_where_zeros_tie():
    images = _images((3, 8, 8, 4)) - 0.5  # most windows hold several zeros after the ReLU, some only zeros
    relu_pool = lambda x: keras.ops.max_pool(keras.ops.relu(x), 2, 2)  # noqa: E731
    expected = _value_and_grads(relu_pool, images)
    with fast_training_ops():
        got = _value_and_grads(relu_pool, images)
    _assert_close(expected, got)
