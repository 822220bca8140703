"""Data-parallel training over all local devices (GPUs or CPU cores) and, through ``jax.distributed``, several hosts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import keras

from mnist_classifier.config import TrainingConfig
from mnist_classifier.errors import ConfigError


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


def split_cpu(devices: int | None = None) -> bool:
    """Make JAX show the CPU as ``devices`` devices (default: one per core) so data parallelism uses every core.

    Only possible before JAX starts its backends; returns whether it took effect.
    A GPU machine is unaffected: its GPUs stay the devices that training uses.
    """
    import jax

    count = devices or len(os.sched_getaffinity(0))
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends already running: the devices stay as they are
        return False
    return True


def join_cluster(cluster: Cluster) -> None:
    """Connect this process to the other hosts of a multi-host job (blocks until all have joined)."""
    import jax

    if keras.backend.backend() != "jax":
        raise ConfigError(f"multi-host training needs the JAX backend, not {keras.backend.backend()}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)


@contextlib.contextmanager
def distributed(training: TrainingConfig) -> Iterator[int]:
    """Within: training as ``training.distribute`` says. Yields the number of devices the batch is split over."""
    if training.distribute == "none":
        yield 1
        return
    split_cpu()
    devices = keras.distribution.list_devices()
    if training.batch_size % len(devices):
        raise ConfigError(
            f"training.batch_size={training.batch_size} does not split over {len(devices)} devices: "
            f"expected a multiple of {len(devices)}"
        )
    with keras.distribution.DataParallel(devices=devices).scope():
        yield len(devices)



def device_count() -> int:
    """How many devices each batch is split over now: 1 outside ``distributed``."""
    current = keras.distribution.distribution()
    return 1 if current is None else int(current.device_mesh.devices.size)
