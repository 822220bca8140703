"""Every use of Keras's private internals, in one place, each only on a Keras release it was written for.

Three speed-ups reach under Keras's public API, because no public extension point
keeps the model what it is (standard layers, saved as such) while changing how it
is computed:

- :func:`jax_ops_replaced` swaps functions of Keras's JAX backend (``conv``,
  ``max_pool``, ``moments`` in ``keras.src.backend.jax.nn``) while a training step
  is traced (``fast_ops``);
- :func:`flat_random_draws` swaps its random draws (``keras.src.backend.jax.random``)
  while weights are initialized;
- :func:`build_for_fit` builds a network for training as ``Model.fit`` does, for
  ``fast_fit``, which then runs Keras's own ``train_step``.

Keras moves its internals between releases without notice. On a release not in
:data:`KNOWN_RELEASES` none of this is used: :func:`usable` says so in one log
line, and training runs on plain ``model.fit`` with Keras's own operations.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
from collections.abc import Callable, Iterator

import keras
import numpy as np

# (major, minor) releases of Keras whose internals the functions below were written and tested against.
KNOWN_RELEASES = ((3, 15),)
_RANDOM_DRAWS = ("uniform", "normal", "truncated_normal")
_log = logging.getLogger(__name__)


@functools.cache
def usable() -> bool:
    """Whether the installed Keras is a release this module knows; logs once, the first time it is not."""
    found = re.match(r"(\d+)\.(\d+)", keras.__version__)
    if found and (int(found[1]), int(found[2])) in KNOWN_RELEASES:
        return True
    known = ", ".join(f"{major}.{minor}" for major, minor in KNOWN_RELEASES)
    _log.warning(
        "Keras %s is not a release mnist_classifier's speed-ups know (%s): training with model.fit and Keras's own operations",
        keras.__version__,
        known,
    )
    return False


@contextlib.contextmanager
def jax_ops_replaced(replacements: dict[str, Callable[[Callable], Callable]]) -> Iterator[None]:
    """Within: each named function of Keras's JAX backend ops replaced by ``make(original)``; put back on the way out.

    The swap is process-wide: every operation Keras traces meanwhile, in any thread,
    takes the replacements. Nothing changes on a Keras release this module does not know.
    """
    if not usable():
        yield
        return
    from keras.src.backend.jax import nn as jax_nn

    originals = {name: getattr(jax_nn, name) for name in replacements}
    try:
        for name, make in replacements.items():
            setattr(jax_nn, name, make(originals[name]))
        yield
    finally:
        for name, function in originals.items():
            setattr(jax_nn, name, function)


@contextlib.contextmanager
def flat_random_draws() -> Iterator[None]:
    """Within: under JAX, initial weights are drawn as flat vectors reshaped: the same values, compiled faster.

    JAX's counter-based random bits depend only on each element's position in
    row-major order, so a flat draw reshaped equals the shaped draw; XLA on the CPU
    compiles the flat one much faster for kernels whose last axis is small (every
    output layer here). Nothing changes off JAX or on a Keras release this module
    does not know.
    """
    if keras.backend.backend() != "jax" or not usable():
        yield
        return
    from keras.src.backend.jax import random as jax_random

    originals = {name: getattr(jax_random, name) for name in _RANDOM_DRAWS}
    try:
        for name, draw in originals.items():
            setattr(jax_random, name, _flat(draw))
        yield
    finally:
        for name, draw in originals.items():
            setattr(jax_random, name, draw)


def _flat(draw: Callable) -> Callable:
    """``draw`` over the flattened shape, reshaped to the shape asked for."""

    @functools.wraps(draw)
    def flat_draw(shape, *args, **kwargs):
        return draw((math.prod(shape),), *args, **kwargs).reshape(tuple(shape))

    return flat_draw


def build_for_fit(network: keras.Model, data_batch: tuple, shuffle: bool, count: int) -> None:
    """Build ``network``'s layers, compiled loss and metrics for training on batches like ``data_batch``, as ``fit`` does.

    Raises Keras's own error for a network that is not compiled. Where ``fit`` would
    build, it first draws one order of the ``count`` samples (with ``shuffle``):
    that draw is made here too, so numpy's random stream goes on as under ``fit``.
    """
    network._assert_compile_called("fit")
    if shuffle and not _built(network):
        np.random.permutation(count)
    network._symbolic_build(data_batch=data_batch)


def _built(network: keras.Model) -> bool:
    """Whether ``fit`` would skip building: layers, compiled metrics and loss all built."""
    parts = [*network._flatten_layers(), network._compile_metrics, network._compile_loss]
    return all(part is None or part.built for part in parts)
