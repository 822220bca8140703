"""oneDNN's convolutions as XLA FFI calls: XLA's values and gradients, in training and split over devices; fallbacks."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from jax import lax

from mnist_classifier import onednn, optimize_model, train_model
from mnist_classifier.models import build_cnn

NATIVE_BFLOAT16 = pytest.mark.skipif(
    not onednn._capabilities()[1], reason="oneDNN computes bfloat16 natively only with AVX512_BF16 or AMX"
)


def xla_conv(x, kernel, padding):
    """The reference: XLA's convolution, NHWC and HWIO, accumulating in float32."""
    layouts = ("NHWC", "HWIO", "NHWC")
    return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=layouts,
                                    preferred_element_type=jnp.float32)  # fmt: skip


def relative_error(got, want) -> float:
    """Largest difference, relative to the largest reference value."""
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_onednn_is_built_and_registered_here():
    # make test installs libdnnl-dev and g++ (Debian); without them CNNs train on XLA's convolutions.
    assert onednn.unavailable_reason() is None
    assert onednn.block() in (8, 16)


CASES = {  # images, channels in, channels out, kernel, padding
    "first layer": ((3, 28, 28, 1), 32, 3, ((1, 1), (1, 1))),
    "blocked": ((3, 14, 14, 32), 64, 3, ((1, 1), (1, 1))),
    "valid 5x5": ((2, 12, 10, 16), 16, 5, ((0, 0), (0, 0))),
    "uneven padding": ((2, 8, 8, 32), 16, 2, ((0, 1), (0, 1))),
}


@pytest.mark.parametrize("dtype, tolerance", [
    (jnp.float32, 1e-5), pytest.param(jnp.bfloat16, 2e-2, marks=NATIVE_BFLOAT16),
])  # fmt: skip
@pytest.mark.parametrize("case", CASES)
def test_values_and_gradients_are_xlas(case, dtype, tolerance):
    shape, filters, size, padding = CASES[case]
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], shape).astype(dtype)
    kernel = (0.2 * jax.random.normal(keys[1], (size, size, shape[-1], filters))).astype(dtype)
    assert onednn.supports(kernel.shape, kernel.dtype)
    out = jax.jit(onednn.conv2d, static_argnums=2)(x, kernel, padding)
    want = xla_conv(x, kernel, padding)
    assert out.shape == want.shape and out.dtype == dtype
    assert relative_error(out, want) < tolerance
    cotangent = jax.random.normal(keys[2], want.shape)

    def gradients(conv):
        loss = lambda x, k: jnp.sum(conv(x, k, padding).astype(jnp.float32) * cotangent)  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)

    for got, expected in zip(gradients(onednn.conv2d), gradients(xla_conv)):
        assert got.dtype == dtype and relative_error(got, expected) < tolerance


@pytest.mark.parametrize("kernel_shape, dtype", [
    ((3, 3, 1, 10), jnp.float32),   # outputs not a whole number of blocks
    ((3, 3, 20, 32), jnp.float32),  # inputs neither images nor whole blocks
    ((3, 3, 32, 32), jnp.float16),
])  # fmt: skip
def test_other_convolutions_stay_with_xla(kernel_shape, dtype):
    assert not onednn.supports(kernel_shape, dtype)


def test_a_cnn_trains_alike_on_onednn_and_on_xla(small_mnist, monkeypatch):
    x, y = small_mnist["train"]
    images = x[:512].reshape(-1, 28, 28, 1)
    calls = []
    supports, conv2d = onednn.supports, onednn.conv2d
    monkeypatch.setattr(onednn, "conv2d", lambda *args: calls.append(args[1].shape) or conv2d(*args))

    def trained(on_onednn: bool) -> tuple[list[np.ndarray], float]:
        monkeypatch.setattr(onednn, "supports", supports if on_onednn else lambda *_: False)
        keras.utils.set_random_seed(0)
        network = build_cnn(filters=(16, 32))
        optimize_model(network, 0.003, 0.9, 0.999)
        history = train_model(network, images, y[:512], 64, 2, verbose=False)
        return network.get_weights(), history.history["loss"][-1]

    xla_weights, xla_loss = trained(False)
    assert not calls
    onednn_weights, onednn_loss = trained(True)
    assert {(3, 3, 1, 16), (3, 3, 16, 32)} <= set(calls)
    assert abs(onednn_loss - xla_loss) < 1e-3
    for a, b in zip(onednn_weights, xla_weights):
        np.testing.assert_allclose(a, b, atol=2e-3)


SPLIT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["KERAS_BACKEND"] = "jax"
    import jax, jax.numpy as jnp, keras, numpy as np
    from jax import lax
    from mnist_classifier import onednn
    padding = ((1, 1), (1, 1))
    x = jax.random.normal(jax.random.key(0), (8, 14, 14, 16))
    kernel = 0.2 * jax.random.normal(jax.random.key(1), (3, 3, 16, 32))
    def loss(conv, x, kernel):
        return jnp.sum(jnp.sin(conv(x, kernel, padding)))
    def xla(x, kernel, padding):
        return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    want = jax.grad(loss, argnums=(1, 2))(xla, x, kernel)
    with keras.distribution.DataParallel(devices=keras.distribution.list_devices()).scope():
        sharded = jax.device_put(x, jax.sharding.NamedSharding(
            keras.distribution.distribution().device_mesh.backend_mesh, jax.sharding.PartitionSpec("batch")))
        got = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)(onednn.conv2d, sharded, kernel)
        text = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0).lower(onednn.conv2d, sharded, kernel).as_text()
    assert len(jax.devices()) == 2 and "OnednnConvGrad" in text
    print(max(float(jnp.abs(a - b).max() / jnp.abs(b).max()) for a, b in zip(got, want)))
""")


def test_split_over_devices_each_computes_its_share_and_kernel_gradients_are_summed():
    result = subprocess.run([sys.executable, "-c", SPLIT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) < 1e-5


@pytest.mark.parametrize("environment, reason", [
    ({"MNIST_CLASSIFIER_ONEDNN": "0"}, "turned off by MNIST_CLASSIFIER_ONEDNN=0"),
    ({"CXX": "no-such-compiler"}, "no C++ compiler (no-such-compiler) to build onednn_convs.cc"),
    ({"CXX": "false"}, "cannot build onednn_convs.cc (is libdnnl-dev installed?)"),
])  # fmt: skip
def test_without_onednn_the_reason_is_one_line_and_nothing_is_half_built(environment, reason, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    onednn._library.cache_clear()
    try:
        said = onednn.unavailable_reason()
    finally:
        onednn._library.cache_clear()  # later tests load the session's library again
    assert said.startswith(reason) and "\n" not in said
    assert not list(tmp_path.rglob("*.so"))
