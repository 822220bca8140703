"""Data-parallel training: two simulated CPU devices in a child process, and two processes joined as hosts."""

import json
import socket
import subprocess
import sys

import pytest

from mnist_classifier import ConfigError
from mnist_classifier.config import TrainingConfig
from tests.test_cli import SMALL, TINY, assert_one_line_error, cli

TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
PROBE = """
import json
import mnist_classifier, keras, numpy as np
from mnist_classifier.config import TrainingConfig
from mnist_classifier.distribute import distributed
from mnist_classifier.models import build_model
from mnist_classifier.training import optimize_model, train_model

seen = []


class Probe(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        seen.append(sorted(d.id for d in self.model.trainable_variables[0].value.sharding.device_set))


x = np.random.default_rng(0).random((256, 784), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[np.arange(256) % 10]
with distributed(TrainingConfig(batch_size=64, distribute="data-parallel")) as devices:
    net = build_model(784, (32, 10), ("relu", "softmax"), 0.0, None)
    optimize_model(net, 0.001, 0.9, 0.999)
    train_model(net, x, y, 64, 1, callbacks=[Probe()], verbose=False)
    layout = keras.distribution.distribution().get_data_layout((64, 784))
print(json.dumps({"devices": devices, "variable_devices": seen[-1], "batch_axes": list(layout.axes)}))
"""


def test_unknown_distribution_is_a_config_error():
    with pytest.raises(ConfigError, match="training.distribute='model-parallel'.*none, data-parallel"):
        TrainingConfig(distribute="model-parallel")


def test_training_is_sharded_over_two_devices(monkeypatch):
    for name, value in TWO_DEVICES.items():
        monkeypatch.setenv(name, value)
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["devices"] == 2
    assert seen["variable_devices"] == [0, 1]  # weights replicated on both devices
    assert seen["batch_axes"] == ["batch", None]  # each batch split along the devices' batch axis


def test_data_parallel_run_matches_one_device(mnist_dir, tmp_path):
    common = ["train", "--data", mnist_dir, "--epochs", "2", "--no-report", *SMALL, *TINY]
    cli(*common, "--out", tmp_path / "one")
    cli(*common, "--distribute", "data-parallel", "--out", tmp_path / "two", env=TWO_DEVICES)
    one, two = (json.loads(next((tmp_path / name).glob("*/metrics.json")).read_text()) for name in ("one", "two"))
    assert (one["devices"], one["distribute"]) == (1, "none")
    assert (two["devices"], two["distribute"]) == (2, "data-parallel")
    assert min(one["test_accuracy"], two["test_accuracy"]) > 0.7, (one["test_accuracy"], two["test_accuracy"])
    assert abs(one["test_accuracy"] - two["test_accuracy"]) < 0.02


def test_batch_that_does_not_split_is_a_one_line_error(mnist_dir, tmp_path):
    result = cli(
        "train", "--data", mnist_dir, "--distribute", "data-parallel", *SMALL, "--set", "training.batch_size=33",
        "--out", tmp_path, env=TWO_DEVICES, check=False,
    )  # fmt: skip
    assert_one_line_error(result, "training.batch_size=33", "2 devices", "multiple of 2")
    assert not list(tmp_path.iterdir())
