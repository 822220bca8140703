"""What a network costs to train, counted from its config, and configs the machine cannot hold refused before building."""

import subprocess
import sys

import pytest

from mnist_classifier import ConfigError, build_model
from mnist_classifier.system import memory
from mnist_classifier.config import apply_overrides
from mnist_classifier.system.memory import check_memory, model_size
from mnist_classifier.models import build_cnn, build_from_config
from mnist_classifier.presets import PRESETS


@pytest.mark.parametrize("preset", ["notebook", "mlp", "cnn"])
def test_parameters_are_counted_as_keras_builds_them(preset):
    config = PRESETS[preset].model
    assert model_size(config)[0] == build_from_config(config).count_params()


def test_the_presets_fit_and_a_smaller_memory_refuses_them(monkeypatch):
    for config in PRESETS.values():
        check_memory(config.model, config.training.batch_size)
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)
    with pytest.raises(ConfigError, match=r"^model.layers=\[512, 512, 10\] with batch size 128: 669,706 parameters .* 12 MiB to train, more than the 1 MiB of memory available"):
        check_memory(PRESETS["mlp"].model, 128)


@pytest.mark.parametrize(
    ("overrides", "batch_size", "message"),
    [
        ({"model.layers": [10**12, 10], "model.activations": ["relu", "softmax"]}, 32, r"model.layers=\[1000000000000, 10\]"),
        ({"model.architecture": "cnn", "model.filters": [10**9], "model.layers": [10], "model.activations": ["softmax"]},
         32, r"model.filters=\[1000000000\]"),
        ({}, 2**63 - 1, "batch size 9,223,372,036,854,775,807"),
    ],
    ids=["layers", "filters", "batch_size"],
)  # fmt: skip
def test_what_the_machine_cannot_hold_is_one_config_error(overrides, batch_size, message):
    config = apply_overrides(PRESETS["mlp"], overrides).model
    with pytest.raises(ConfigError, match=message + ".*GiB of memory available"):
        check_memory(config, batch_size)


def test_the_builders_refuse_before_allocating_anything():
    with pytest.raises(ConfigError, match=r"layers=\[1000000000000, 10\] with batch size 1: .* GiB"):
        build_model(784, [10**12, 10], ["relu", "softmax"], 0.0, None)
    with pytest.raises(ConfigError, match=r"filters=\[1000000000\], kernel_size=3"):
        build_cnn([10], ["softmax"], filters=[10**9])


RELEASE = """
import sys, threading
from mnist_classifier.system import malloc

def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024

malloc.tune()
kept = []
def burst():  # 200 MB in 64 KB pieces (under the mmap threshold) on a thread's arena, a small one kept after each MB
    pieces = []
    for i in range(3200):
        pieces.append(bytearray(65536))
        if i % 16 == 15:
            kept.append(bytearray(1024))
    del pieces
thread = threading.Thread(target=burst)
thread.start(); thread.join()
held = rss_mb()
malloc.release()
print(held, rss_mb())
"""


def test_release_gives_a_threads_freed_memory_back_to_the_system():
    # a checkpoint's write on the saver's thread left its arena at its peak, epoch after epoch, until released
    result = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    held, released = map(int, result.stdout.split())
    assert held - released > 150, f"{held} MB held, {released} MB after release"
