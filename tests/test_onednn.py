"""oneDNN's convolutions as XLA FFI calls: XLA's values and gradients, in training and split over devices; fallbacks."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from jax import lax

from mnist_classifier import fast_ops, onednn, optimize_model, train_model
from mnist_classifier.fast_ops import convolutions_note
from mnist_classifier.models import build_cnn
from tests.test_cli import cli

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


def skip_unless_native(dtype) -> None:
    """Skip a bfloat16 case where oneDNN would convert it (no AVX512_BF16 or AMX), as XLA does."""
    if dtype == jnp.bfloat16 and not onednn._capabilities()[1]:
        pytest.skip("oneDNN computes bfloat16 natively only with AVX512_BF16 or AMX")


@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("case", CASES)
def test_values_and_gradients_are_xlas(case, dtype, tolerance):
    skip_unless_native(dtype)
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
    images_too = onednn.block() == 16  # with blocks of 8 (AVX2) the images' convolution stays with XLA (fast_ops)
    assert set(calls) == {(3, 3, 16, 32), *([(3, 3, 1, 16)] if images_too else [])}
    assert abs(onednn_loss - xla_loss) < 1e-3
    for a, b in zip(onednn_weights, xla_weights):
        np.testing.assert_allclose(a, b, atol=2e-3)


SPLIT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["KERAS_BACKEND"] = "jax"
    import jax, jax.numpy as jnp, keras
    from jax import lax
    from mnist_classifier import onednn
    dtype, channels = jnp.dtype(sys.argv[1]), int(sys.argv[2])
    padding = ((1, 1), (1, 1))
    x = jax.random.normal(jax.random.key(0), (8, 14, 14, channels)).astype(dtype)
    kernel = (0.2 * jax.random.normal(jax.random.key(1), (3, 3, channels, 32))).astype(dtype)
    def loss(conv, x, kernel):
        return jnp.sum(jnp.sin(conv(x, kernel, padding).astype(jnp.float32)))
    def xla(x, kernel, padding):
        return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        preferred_element_type=jnp.float32)
    want = jax.grad(loss, argnums=(1, 2))(xla, x, kernel)
    grads = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)
    with keras.distribution.DataParallel(devices=keras.distribution.list_devices()).scope():
        mesh = keras.distribution.distribution().device_mesh.backend_mesh
        sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch")))
        got = grads(onednn.conv2d, sharded, kernel)
        text = grads.lower(onednn.conv2d, sharded, kernel).as_text()
        threads = onednn._threads()
    assert len(jax.devices()) == 2 and "OnednnConvGrad" in text and threads == 1
    errors = [jnp.abs(a.astype(jnp.float32) - b).max() / jnp.abs(b).max() for a, b in zip(got, want)]
    print(max(float(e) for e in errors))
""")


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 2e-2)])
@pytest.mark.parametrize("channels", [1, 16])
def test_split_over_devices_each_computes_its_share_and_kernel_gradients_are_summed(channels, dtype, tolerance):
    skip_unless_native(jnp.dtype(dtype))
    run = [sys.executable, "-c", SPLIT, dtype, str(channels)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) < tolerance


AVX2 = textwrap.dedent("""
    import jax, jax.numpy as jnp
    import mnist_classifier
    from mnist_classifier import onednn
    from tests.test_onednn import relative_error, xla_conv
    x, kernel, padding = jnp.ones((2, 8, 8, 16)), jnp.linspace(-1, 1, 3 * 3 * 16 * 24).reshape(3, 3, 16, 24), ((1, 1),) * 2
    assert onednn.supports(kernel.shape, kernel.dtype)
    print(*onednn._capabilities(), relative_error(jax.jit(onednn.conv2d, static_argnums=2)(x, kernel, padding),
                                                 xla_conv(x, kernel, padding)))
""")


def test_without_avx512_it_uses_blocks_of_8_and_leaves_bfloat16_to_xla():
    environment = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run([sys.executable, "-c", AVX2], capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    block, bfloat16, error = result.stdout.split()
    assert (block, bfloat16) == ("8", "False") and float(error) < 1e-5


HALF_BUILDING_COMPILER = """#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -o ] && echo partial > "$2"; shift; done
echo "onednn_convs.cc:8:10: fatal error: oneapi/dnnl/dnnl.hpp: No such file or directory" >&2
exit 1
"""


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty package cache, with the library looked up again there (and again afterwards in the session's)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    onednn._library.cache_clear()
    yield tmp_path
    onednn._library.cache_clear()


@pytest.mark.parametrize("environment, reason", [
    ({"MNIST_CLASSIFIER_ONEDNN": "0"}, "turned off by MNIST_CLASSIFIER_ONEDNN=0"),
    ({"CXX": "no-such-compiler"}, "no C++ compiler (no-such-compiler) to build onednn_convs.cc"),
    ({"CXX": "HALF"}, "cannot build onednn_convs.cc (is libdnnl-dev installed?): onednn_convs.cc:8:10: fatal error: "
                      "oneapi/dnnl/dnnl.hpp: No such file or directory"),
])  # fmt: skip
def test_without_onednn_the_reason_is_one_line_and_nothing_is_half_built(environment, reason, fresh_cache, monkeypatch):
    for name, value in environment.items():
        if value == "HALF":
            (script := fresh_cache / "half-cc").write_text(HALF_BUILDING_COMPILER)
            script.chmod(0o755)
            value = str(script)
        monkeypatch.setenv(name, value)
    assert onednn.unavailable_reason() == reason
    assert not list(fresh_cache.rglob("*.so")) and not list(fresh_cache.rglob("partial*"))


def test_a_damaged_cached_library_is_built_again(fresh_cache):
    damaged = onednn._library_path()
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"")
    (damaged.parent / "onednn_convs-0123456789abcdef.so").write_bytes(b"an older build")
    assert onednn.unavailable_reason() is None
    assert [path.name for path in damaged.parent.iterdir()] == [damaged.name] and damaged.stat().st_size > 10_000


def test_the_training_log_says_whose_convolutions_run(monkeypatch):
    size = onednn.block()
    assert convolutions_note("float32") == f"oneDNN's, wherever channels come in blocks of {size}"
    monkeypatch.setattr(fast_ops, "_split", lambda: True)
    assert convolutions_note("float32") == "XLA's (in float32 with the batch split, as fast as oneDNN's)"
    native = onednn._capabilities()[1]
    assert convolutions_note("mixed_bfloat16") == (
        f"oneDNN's, wherever channels come in blocks of {size}" if native
        else "XLA's (oneDNN would convert bfloat16 on this CPU, as XLA does)"
    )  # fmt: skip
    monkeypatch.setenv("MNIST_CLASSIFIER_ONEDNN", "0")
    assert convolutions_note("float32") == "XLA's (turned off by MNIST_CLASSIFIER_ONEDNN=0)"


def test_train_says_so_and_trains_a_cnn_on_onednn(mnist_dir, tmp_path):
    small = {"data.train_limit": 512, "data.validation_size": 128, "data.test_limit": 128, "model.filters": "[16, 32]",
             "model.convs_per_block": 1}  # fmt: skip
    settings = [item for key, value in small.items() for item in ("--set", f"{key}={value}")]
    result = cli("train", "--data", mnist_dir, "--preset", "cnn", "--epochs", 1, *settings, "--no-report", "--out", tmp_path)
    assert f"convolutions: oneDNN's, wherever channels come in blocks of {onednn.block()}" in result.stdout
    assert "test accuracy" in result.stdout
