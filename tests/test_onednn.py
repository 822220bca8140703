"""The core's use of oneDNN's convolutions: found in the plugin, else XLA's with one reason line; CNNs train alike.

The convolutions' own values and gradients are the plugin's tests (plugins/onednn/tests).
"""

import sys

import jax.numpy as jnp
import keras
import numpy as np
import pytest

from mnist_classifier import optimize_model, train_model
from mnist_classifier.accel import fast_ops, onednn
from mnist_classifier.accel.fast_ops import convolutions_note
from mnist_classifier.models import build_cnn
from tests.test_cli import cli

needs_plugin = pytest.mark.skipif(
    onednn.unavailable_reason() is not None, reason=f"needs oneDNN's convolutions: {onednn.unavailable_reason()}"
)
BROKEN_PLUGIN = 'raise ImportError("libdnnl.so.2: cannot open shared object file: No such file or directory")\n'
BROKEN_REASON = (
    "cannot load the plugin mnist-classifier-onednn: libdnnl.so.2: cannot open shared object file: No such file or "
    "directory"
)


@pytest.fixture
def broken_plugin(tmp_path):
    """A folder whose mnist_classifier_onednn fails to import as one whose oneDNN has gone would."""
    package = tmp_path / "hidden" / "mnist_classifier_onednn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(BROKEN_PLUGIN)
    return package.parent


@pytest.fixture
def plugin_looked_up_again():
    """The plugin imported afresh in the test (and again afterwards, as it was)."""
    onednn._plugin.cache_clear()
    yield
    onednn._plugin.cache_clear()


@pytest.mark.parametrize("case, reason", [
    ("turned off", "turned off by MNIST_CLASSIFIER_ONEDNN=0"),
    ("not installed", "the plugin mnist-classifier-onednn is not installed"),
    ("cannot be loaded", BROKEN_REASON),
])  # fmt: skip
def test_without_the_plugin_the_reason_is_one_line(case, reason, broken_plugin, plugin_looked_up_again, monkeypatch):
    if case == "turned off":
        monkeypatch.setenv("MNIST_CLASSIFIER_ONEDNN", "0")
    elif case == "not installed":
        monkeypatch.setitem(sys.modules, onednn.PLUGIN, None)
    else:
        monkeypatch.delitem(sys.modules, onednn.PLUGIN, raising=False)
        monkeypatch.syspath_prepend(str(broken_plugin))
    assert onednn.unavailable_reason() == reason
    assert convolutions_note("float32") == f"XLA's ({reason})"


@pytest.mark.parametrize("kernel_shape, dtype", [
    ((3, 3, 1, 10), jnp.float32),   # outputs not a whole number of blocks
    ((3, 3, 20, 32), jnp.float32),  # inputs neither images nor whole blocks
    ((3, 3, 32, 32), jnp.float16),
])  # fmt: skip
def test_other_convolutions_stay_with_xla(kernel_shape, dtype):
    assert not onednn.supports(kernel_shape, dtype)


SMALL_CNN = {"data.train_limit": 512, "data.validation_size": 128, "data.test_limit": 128, "model.filters": "[16, 32]",
             "model.convs_per_block": 1}  # fmt: skip


def train_small_cnn(mnist_dir, out, env=None):
    """``mnist-classifier train`` of a small cnn for one epoch: the completed process."""
    settings = [item for key, value in SMALL_CNN.items() for item in ("--set", f"{key}={value}")]
    return cli("train", "--data", mnist_dir, "--preset", "cnn", "--epochs", 1, *settings, "--no-report", "--out", out,
               env=env)  # fmt: skip


def test_without_the_plugin_a_cnn_trains_on_xlas_convolutions_and_says_why_in_one_line(
    mnist_dir, tmp_path, broken_plugin
):
    result = train_small_cnn(mnist_dir, tmp_path / "run", env={"PYTHONPATH": str(broken_plugin)})
    assert [line for line in result.stdout.splitlines() if "mnist-classifier-onednn" in line] == [
        f"convolutions: XLA's ({BROKEN_REASON})"
    ]
    assert "test accuracy" in result.stdout and "Traceback" not in result.stderr


@needs_plugin
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


@needs_plugin
def test_the_training_log_says_whose_convolutions_run(monkeypatch):
    size = onednn.block()
    assert convolutions_note("float32") == f"oneDNN's, wherever channels come in blocks of {size}"
    monkeypatch.setattr(fast_ops, "_split", lambda: True)
    assert convolutions_note("float32") == "XLA's (in float32 with the batch split, as fast as oneDNN's)"
    native = onednn.supports((3, 3, size, size), jnp.bfloat16)
    assert convolutions_note("mixed_bfloat16") == (
        f"oneDNN's, wherever channels come in blocks of {size}" if native
        else "XLA's (oneDNN would convert bfloat16 on this CPU, as XLA does)"
    )  # fmt: skip


@needs_plugin
def test_train_says_so_and_trains_a_cnn_on_onednn(mnist_dir, tmp_path):
    result = train_small_cnn(mnist_dir, tmp_path)
    assert f"convolutions: oneDNN's, wherever channels come in blocks of {onednn.block()}" in result.stdout
    assert "test accuracy" in result.stdout
