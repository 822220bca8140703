"""The plugin's convolutions as the core calls them: XLA's values and gradients, split over devices, on AVX2 too."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mnist_classifier.accel import onednn

plugin = pytest.importorskip("mnist_classifier_onednn", reason="the plugin mnist-classifier-onednn is not installed")


def xla_conv(x, kernel, padding):
    """The reference: XLA's convolution, NHWC and HWIO, accumulating in float32."""
    layouts = ("NHWC", "HWIO", "NHWC")
    return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=layouts,
                                    preferred_element_type=jnp.float32)  # fmt: skip


def relative_error(got, want) -> float:
    """Largest difference, relative to the largest reference value."""
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_it_gives_two_handlers_and_what_its_onednn_does_here():
    handlers = plugin.registrations()
    assert sorted(handlers) == ["OnednnConv", "OnednnConvGrad"]
    assert all(type(handler).__name__ == "PyCapsule" for handler in handlers.values())
    assert plugin.version().split(".")[0] in ("2", "3")
    assert plugin.block() in (8, 16) and isinstance(plugin.native_bfloat16(), bool)


def test_the_core_finds_and_registers_it():
    # make test builds it against libdnnl-dev (Debian) and installs it.
    assert onednn.unavailable_reason() is None
    assert onednn.block() == plugin.block()


CASES = {  # images, channels in, channels out, kernel, padding
    "first layer": ((3, 28, 28, 1), 32, 3, ((1, 1), (1, 1))),
    "blocked": ((3, 14, 14, 32), 64, 3, ((1, 1), (1, 1))),
    "valid 5x5": ((2, 12, 10, 16), 16, 5, ((0, 0), (0, 0))),
    "uneven padding": ((2, 8, 8, 32), 16, 2, ((0, 1), (0, 1))),
}


def skip_unless_native(dtype) -> None:
    """Skip a bfloat16 case where oneDNN would convert it (no AVX512_BF16 or AMX), as XLA does."""
    if dtype == jnp.bfloat16 and not plugin.native_bfloat16():
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


SPLIT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["KERAS_BACKEND"] = "jax"
    import jax, jax.numpy as jnp, keras
    from jax import lax
    from mnist_classifier.accel import onednn
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
    import mnist_classifier_onednn as plugin
    from jax import lax
    from mnist_classifier.accel import onednn
    x, kernel, padding = jnp.ones((2, 8, 8, 16)), jnp.linspace(-1, 1, 3 * 3 * 16 * 24).reshape(3, 3, 16, 24), ((1, 1),) * 2
    assert onednn.supports(kernel.shape, kernel.dtype)
    got = jax.jit(onednn.conv2d, static_argnums=2)(x, kernel, padding)
    want = lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    print(onednn.block(), plugin.native_bfloat16(), float(jnp.abs(got - want).max() / jnp.abs(want).max()))
""")


def test_without_avx512_it_uses_blocks_of_8_and_leaves_bfloat16_to_xla():
    environment = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run([sys.executable, "-c", AVX2], capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    block, bfloat16, error = result.stdout.split()
    assert (block, bfloat16) == ("8", "False") and float(error) < 1e-5
