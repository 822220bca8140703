"""Everything that exists only for speed: training gives the same results without any of it.

Training asks for its engine once, :func:`engine`; the rest of the package never
reaches further in. Behind the door:

- ``fast_fit``: whole epochs as a few compiled scans of Keras's own ``train_step``;
- ``fast_ops``: faster convolution gradients, pooling and moments on the CPU;
- ``onednn``: oneDNN's convolutions as XLA calls, where they can be had;
- ``distribute``: each batch split over the local devices and over hosts;
- ``compilation``: the persistent XLA compilation cache;
- ``keras_internals``: the one module that touches Keras's private API, only on the
  Keras releases it knows.

Importing this package imports neither Keras nor JAX.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np

    from mnist_classifier.config import Config, TrainingConfig

Fit = Callable[..., "keras.callbacks.History"]


def engine(training: TrainingConfig) -> Fit:
    """The function that trains a compiled network as ``training`` says (batch size, epochs, shuffling).

    With ``training.engine == "auto"`` on a Keras release ``keras_internals`` knows:
    whole-epoch compiled scans (``fast_fit``) where they apply (JAX, arrays in
    memory, one device), else ``model.fit``, either way with the faster CPU
    operations of ``fast_ops``. Otherwise (``"keras"``, or another Keras release):
    ``model.fit`` with Keras's own operations. The same arithmetic either way.

    The function returned is called as ``fit(network, x, y, validation_data=None, *,
    callbacks=(), initial_epoch=0, input_transform=None, verbose=False)`` and returns
    Keras's ``History``. ``input_transform`` (Keras ops) turns stored inputs into model
    inputs: inside the compiled step under ``fast_fit``, once up front under ``fit``.
    Each process of a multi-host job feeds its share of every batch.

    Example:
        >>> fit = engine(TrainingConfig(batch_size=128, epochs=3))
        >>> history = fit(network, x_train, y_train, (x_val, y_val))
    """
    from mnist_classifier.accel import keras_internals

    fast = training.engine == "auto" and keras_internals.usable()
    return functools.partial(_fit, training, fast)


def convolutions_note(config: Config) -> str | None:
    """For the training log: whose convolutions a CNN of ``config`` trains with; None where there is nothing to say."""
    from mnist_classifier.accel import keras_internals

    if config.model.architecture != "cnn" or config.training.engine != "auto" or not keras_internals.usable():
        return None
    from mnist_classifier.accel.fast_ops import convolutions_note as note

    return note(config.model.precision)


def _fit(
    training: TrainingConfig,
    fast: bool,
    network: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    initial_epoch: int = 0,
    input_transform: Callable | None = None,
    verbose: bool = False,
) -> keras.callbacks.History:
    """Train on ``fast_fit`` or ``model.fit`` (see :func:`engine`)."""
    from mnist_classifier.accel.distribute import host_batch

    settings = dict(
        batch_size=host_batch(training.batch_size),
        epochs=training.epochs,
        callbacks=list(callbacks),
        verbose=verbose,
        shuffle=training.shuffle,
        initial_epoch=initial_epoch,
    )
    network.train_function = None  # fit traces its step anew, with the operations this engine uses
    if not fast:
        return _keras_fit(network, x, y, validation_data, input_transform, settings)
    from mnist_classifier.accel.fast_fit import fast_fit, supported
    from mnist_classifier.accel.fast_ops import fast_training_ops

    with fast_training_ops():
        if supported(network, x):
            return fast_fit(network, x, y, validation_data=validation_data, input_transform=input_transform, **settings)
        return _keras_fit(network, x, y, validation_data, input_transform, settings)


def _keras_fit(network, x, y, validation_data, input_transform, settings) -> keras.callbacks.History:
    """Keras's own ``fit``, on inputs transformed up front."""
    if input_transform is not None:
        import keras

        x = keras.ops.convert_to_numpy(input_transform(x))
        if validation_data is not None:
            validation_data = (keras.ops.convert_to_numpy(input_transform(validation_data[0])), validation_data[1])
    return network.fit(x, y, validation_data=validation_data, **settings)
