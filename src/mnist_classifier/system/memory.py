"""What a network costs in memory to train, counted from its settings before anything is built.

No Keras here: a config is checked (:func:`check_memory`) before the slow imports
and long before a network too large for the machine could exhaust its memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mnist_classifier.config import ModelConfig
from mnist_classifier.errors import ConfigError
from mnist_classifier.data.formats import IMAGE_SIZE

# Training holds each parameter four times (weight, gradient, Adam's two moments) and each
# activation of a batch twice (its value and its gradient), each as 4 bytes.
_COPIES_PER_PARAMETER, _COPIES_PER_ACTIVATION, _BYTES = 4, 2, 4


def model_size(config: ModelConfig) -> tuple[int, int]:
    """How many parameters the network a model config describes has, and how many activations one input makes.

    Counted from the config, without building anything (augmentation and dropout,
    which hold no weights and only copy their inputs, are left out).

    Example:
        >>> model_size(ModelConfig(layers=(10,), activations=("softmax",)))
        (7850, 794)
    """
    if config.architecture == "cnn":
        return cnn_size(config.layers, config.filters, config.convs_per_block, config.kernel_size, config.batch_norm)
    return mlp_size(IMAGE_SIZE * IMAGE_SIZE, config.layers)


def check_memory(config: ModelConfig, batch_size: int) -> None:
    """Refuse a model config whose network cannot train on batches of ``batch_size`` in the memory available.

    Counted before anything is built (:func:`model_size`, :func:`check_fits`); the
    ConfigError names the layers, the batch size and what they need.
    """
    what = f"model.layers={list(config.layers)}"
    if config.architecture == "cnn":
        what += f", model.filters={list(config.filters)}, model.kernel_size={config.kernel_size}"
    check_fits(model_size(config), batch_size, what)


def check_fits(size: tuple[int, int], batch_size: int, what: str) -> None:
    """Refuse (parameters, activations per input) that cannot train on batches of ``batch_size`` in memory.

    Training needs each parameter four times (weight, gradient, Adam's two moments)
    and each activation of a batch twice, in 4 bytes each; more than
    :func:`available_memory` raises a ConfigError naming ``what``, the batch size
    and both amounts.
    """
    parameters, activations = size
    needed = _BYTES * (_COPIES_PER_PARAMETER * parameters + _COPIES_PER_ACTIVATION * batch_size * activations)
    available = available_memory()
    if needed > available:
        raise ConfigError(
            f"{what} with batch size {batch_size:,}: {parameters:,} parameters and {activations:,} activations "
            f"per image need about {_amount(needed)} to train, more than the {_amount(available)} "
            "of memory available: expected fewer or narrower layers, or a smaller batch"
        )


def _amount(size: int) -> str:
    """Bytes in words: ``12.3 GiB``, or ``35 MiB`` under a GiB."""
    return f"{size / 2**30:,.1f} GiB" if size >= 2**30 else f"{size / 2**20:,.0f} MiB"


def available_memory() -> int:
    """Bytes of memory available to a new allocation: Linux's MemAvailable, else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def mlp_size(nx: int, layers: Sequence[int]) -> tuple[int, int]:
    """Parameters and activations per input (the ``nx`` inputs included) of :func:`build_model`'s network."""
    parameters, activations = _dense_size(nx, layers)
    return parameters, nx + activations


def _dense_size(inputs: int, layers: Sequence[int]) -> tuple[int, int]:
    """Parameters (kernels and biases) and activations of a stack of Dense layers fed ``inputs`` values."""
    parameters = activations = 0
    for width in layers:
        parameters += (inputs + 1) * width
        activations += width
        inputs = width
    return parameters, activations


def cnn_size(
    layers: Sequence[int], filters: Sequence[int], convs_per_block: int, kernel_size: int, batch_norm: bool
) -> tuple[int, int]:
    """Parameters and activations per image of :func:`build_cnn`'s network (convolution, batch norm, ReLU, pooling, head)."""
    side, channels, parameters, activations = IMAGE_SIZE, 1, 0, IMAGE_SIZE * IMAGE_SIZE
    for width in filters:
        for _ in range(convs_per_block):
            parameters += kernel_size * kernel_size * channels * width + (4 * width if batch_norm else width)
            activations += side * side * width * (3 if batch_norm else 2)  # convolution, [batch norm,] ReLU
            channels = width
        side //= 2
        activations += side * side * width  # pooling
    head_parameters, head_activations = _dense_size(side * side * channels, layers)
    return parameters + head_parameters, activations + head_activations
