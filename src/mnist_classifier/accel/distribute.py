"""Data-parallel training over all local devices (GPUs or CPU cores) and, through ``jax.distributed``, several hosts."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax
import keras
import numpy as np

from mnist_classifier.config import TrainingConfig
from mnist_classifier.errors import ConfigError

# Images per CPU device that the convolutions handle best (see cpu_devices): XLA's without and with
# AVX-512, and oneDNN's in mixed bfloat16 where the CPU multiplies it natively (AVX512_BF16).
CPU_SHARE, CPU_SHARE_AVX512, CPU_SHARE_BFLOAT16 = 16, 32, 16
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Cluster:
    """Where this process sits in a multi-host job: ``jax.distributed``'s coordinator, process count and id."""

    coordinator: str
    num_processes: int
    process_id: int

    def __post_init__(self) -> None:
        host, _, port = self.coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--coordinator {self.coordinator!r}: expected HOST:PORT of process 0")
        if self.num_processes < 1:
            raise ConfigError(f"--num-processes {self.num_processes}: expected at least 1")
        if not 0 <= self.process_id < self.num_processes:
            raise ConfigError(f"--process-id {self.process_id}: expected 0 to {self.num_processes - 1}")


def cpu_devices(batch_size: int, cores: int, share: int) -> int:
    """How many JAX devices to split the CPU into for ``batch_size``: each core busy, each share about ``share`` images.

    XLA's CPU convolutions run much faster on small batches, down to a share that
    depends on the CPU and the precision (:func:`cpu_share`). The count divides the batch.
    """
    target = max(cores, batch_size // share)
    return max(count for count in range(1, min(target, batch_size) + 1) if batch_size % count == 0)


@functools.cache
def cpu_share(precision: str = "float32") -> int:
    """Images per CPU device for this CPU (as ``CPUINFO`` lists its features) and the model's ``precision``."""
    try:
        flags = CPUINFO.read_text()
    except OSError:  # not Linux
        return CPU_SHARE
    if precision == "mixed_bfloat16" and re.search(r"\bavx512_bf16\b", flags):
        return CPU_SHARE_BFLOAT16
    return CPU_SHARE_AVX512 if re.search(r"\bavx512f\b", flags) else CPU_SHARE


def split_cpu(devices: int) -> bool:
    """Make JAX show the CPU as ``devices`` devices, unless XLA_FLAGS already sets their number.

    Only possible before JAX starts its backends; returns whether it took effect.
    A GPU machine is unaffected: its GPUs stay the devices that training uses.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    try:
        jax.config.update("jax_num_cpu_devices", devices)
    except RuntimeError:  # backends already running: the devices stay as they are
        return False
    return True


def join_cluster(cluster: Cluster) -> None:
    """Connect this process to the other hosts of a multi-host job (blocks until all have joined)."""
    if keras.backend.backend() != "jax":
        raise ConfigError(f"multi-host training needs the JAX backend, not {keras.backend.backend()}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)


@contextlib.contextmanager
def distributed(training: TrainingConfig, precision: str = "float32") -> Iterator[int]:
    """Within: training as ``training.distribute`` says. Yields the number of devices the batch is split over."""
    if training.distribute == "none":
        yield 1
        return
    split_cpu(cpu_devices(training.batch_size, len(os.sched_getaffinity(0)), cpu_share(precision)))
    devices = keras.distribution.list_devices()
    if training.batch_size % len(devices):
        raise ConfigError(
            f"training.batch_size={training.batch_size} does not split over {len(devices)} devices: "
            f"expected a multiple of {len(devices)}"
        )
    # Each process feeds its own share of the arrays (host_share), so Keras need not shard a dataset.
    with keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False).scope():
        yield len(devices)


def device_count() -> int:
    """How many devices each batch is split over now: 1 outside ``distributed``."""
    current = keras.distribution.distribution()
    return 1 if current is None else int(current.device_mesh.devices.size)


def host_share(inputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """This process's equal share of the samples (all of them on a single host), a whole number for each device.

    Each process feeds its part of every global batch; equal shares keep the
    processes in step. The batch is split evenly over the devices, the last
    (short) one too: the fewer than one a device left over at the end are left out.
    """
    hosts = jax.process_count()
    whole = hosts * max(1, device_count() // hosts)
    usable = len(labels) // whole * whole
    share = slice(jax.process_index(), usable, hosts)
    return inputs[share], labels[share]


def host_batch(batch_size: int) -> int:
    """The part of each global batch that this process feeds."""
    return batch_size // jax.process_count()


@contextlib.contextmanager
def on_this_host(network: keras.Model) -> Iterator[keras.Model]:
    """``network`` itself on a single host; in a multi-host job, a copy on this host alone, used without distribution.

    The copy predicts on this process's own arrays, which the shared model cannot.
    """
    if jax.process_count() == 1:
        yield network
        return
    weights = network.get_weights()
    shared = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        copy = keras.models.clone_model(network)
        copy.set_weights(weights)
        yield copy
    finally:
        keras.distribution.set_distribution(shared)
