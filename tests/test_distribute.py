"""Data-parallel training: two simulated CPU devices in a child process, and two processes joined as hosts."""

import json
import os
import socket
import subprocess
import sys

import pytest

from mnist_classifier import ConfigError
from mnist_classifier.config import TrainingConfig
from mnist_classifier.accel import distribute
from mnist_classifier.accel.distribute import CPU_SHARE, CPU_SHARE_AVX512, CPU_SHARE_BFLOAT16, cpu_devices, cpu_share
from tests.test_cli import SMALL, TINY, assert_one_line_error, cli, cli_path, run_main

TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
PROBE = """
import json
import mnist_classifier, keras, numpy as np
from mnist_classifier.config import TrainingConfig
from mnist_classifier.accel.distribute import distributed, host_share
from mnist_classifier.models import build_model
from mnist_classifier.training import optimize_model, train_model

seen = []


class Probe(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        seen.append(sorted(d.id for d in self.model.trainable_variables[0].value.sharding.device_set))


x = np.random.default_rng(0).random((257, 784), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[np.arange(257) % 10]
with distributed(TrainingConfig(batch_size=64, distribute="data-parallel")) as devices:
    net = build_model(784, (32, 10), ("relu", "softmax"), 0.0, None)
    optimize_model(net, 0.001, 0.9, 0.999)
    x, y = host_share(x, y)  # the last batch of 257 would hold one image: not two devices' worth
    train_model(net, x, y, 64, 1, callbacks=[Probe()], verbose=False)
    layout = keras.distribution.distribution().get_data_layout((64, 784))
print(json.dumps({"devices": devices, "variable_devices": seen[-1], "batch_axes": list(layout.axes), "samples": len(y)}))
"""


@pytest.mark.parametrize(
    "batch_size, cores, share, devices",
    [
        (128, 2, 16, 8), (32, 2, 16, 2), (64, 2, 16, 4), (128, 16, 16, 16), (100, 2, 16, 5), (33, 2, 16, 1),
        (256, 4, 16, 16), (128, 2, 32, 4), (32, 2, 32, 2), (128, 16, 32, 16),
    ],
)  # fmt: skip
def test_the_cpu_is_split_into_shares_of_about_share_images_at_least_one_per_core(batch_size, cores, share, devices):
    assert cpu_devices(batch_size, cores, share) == devices


@pytest.mark.parametrize(
    "flags, precision, share",
    [
        ("fpu sse2 avx2 fma", "float32", CPU_SHARE),
        ("fpu avx2 avx512f avx512dq avx512bw", "float32", CPU_SHARE_AVX512),
        ("fpu avx2 avx512f avx512dq avx512bw", "mixed_bfloat16", CPU_SHARE_AVX512),  # bfloat16 by conversion
        ("fpu avx2 avx512f avx512dq avx512bw avx512_bf16", "mixed_bfloat16", CPU_SHARE_BFLOAT16),
        ("fpu avx2 avx512f avx512dq avx512bw avx512_bf16", "float32", CPU_SHARE_AVX512),
        (None, "float32", CPU_SHARE),
    ],
)
def test_the_share_depends_on_the_cpu_and_the_precision(tmp_path, monkeypatch, flags, precision, share):
    cpuinfo = tmp_path / "cpuinfo"  # None: no such file, as off Linux
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(distribute, "CPUINFO", cpuinfo)
    assert cpu_share.__wrapped__(precision) == share


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
    assert seen["samples"] == 256  # a whole number for each device, the last batch too


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_hosts(*args):
    """Run the command as processes 0 and 1 of a two-host job on this machine; returns both."""
    flags = ["--distribute", "data-parallel", "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    exe = cli_path()
    hosts = [
        subprocess.Popen([exe, *map(str, args), *flags, "--process-id", str(index)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(2)
    ]  # fmt: skip
    results = [(host.wait(timeout=300), *host.communicate()) for host in hosts]
    for code, _, stderr in results:
        assert code == 0, stderr
    return results


def test_data_parallel_runs_match_one_device(mnist_dir, tmp_path, monkeypatch, capsys):
    common = ["train", "--data", mnist_dir, "--epochs", "2", "--no-report", *SMALL, *TINY]
    assert run_main(monkeypatch, capsys, *common, "--out", tmp_path / "one")[0] == 0  # one device: no process of its own
    cli(*common, "--distribute", "data-parallel", "--out", tmp_path / "devices")  # the CPU split by the tool
    hosts = two_hosts(*common, "--out", tmp_path / "hosts")
    assert "process 0 records the run" in hosts[1][1]
    runs = {name: list((tmp_path / name).iterdir()) for name in ("one", "devices", "hosts")}
    assert all(len(found) == 1 for found in runs.values()), runs  # process 1 records nothing
    metrics = {name: json.loads((found[0] / "metrics.json").read_text()) for name, found in runs.items()}
    split = cpu_devices(32, len(os.sched_getaffinity(0)), cpu_share())  # SMALL's batch of 32
    assert [(m["distribute"], m["devices"]) for m in metrics.values()] == [
        ("none", 1), ("data-parallel", split), ("data-parallel", 2)
    ]  # fmt: skip
    accuracy = [m["test_accuracy"] for m in metrics.values()]
    assert min(accuracy) > 0.7 and max(accuracy) - min(accuracy) < 0.02, accuracy


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "127.0.0.1:1"], "needs --coordinator, --num-processes and --process-id; got only --coordinator"),
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0"], "go with --distribute data-parallel"),
        (["--distribute", "data-parallel", "--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "'nohost': expected HOST:PORT"),
        (["--distribute", "data-parallel", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id 2: expected 0 to 1"),
    ],
)  # fmt: skip
def test_bad_multi_host_flags_are_one_line_errors(tmp_path, flags, message):
    assert_one_line_error(cli("train", "--out", tmp_path, *flags, check=False), message)
    assert not list(tmp_path.iterdir())


def test_batch_that_does_not_split_is_a_one_line_error(mnist_dir, tmp_path):
    result = cli(
        "train", "--data", mnist_dir, "--distribute", "data-parallel", *SMALL, "--set", "training.batch_size=33",
        "--out", tmp_path, env=TWO_DEVICES, check=False,
    )  # fmt: skip
    assert_one_line_error(result, "training.batch_size=33", "2 devices", "multiple of 2")
    assert not list(tmp_path.iterdir())
