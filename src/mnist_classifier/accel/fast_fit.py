"""Fast training on JAX: compiled ``lax.scan`` calls, each over a chunk of an epoch's mini-batches.

Keras's own ``fit`` dispatches every mini-batch from Python and copies it to the
device. Here the data goes to the device once and an epoch is a few compiled calls,
each scanning Keras's own ``train_step`` over a chunk of mini-batches, so the
arithmetic is exactly ``fit``'s: the same loss, regularization, optimizer update,
dropout random stream and metrics. A chunk holds about ``CHUNK_FLOPS`` of work (XLA's
cost estimate), so Ctrl-C still lands within a fraction of a second; convolutional
networks go one mini-batch per call, as XLA runs convolutions slowly inside loops.
Callbacks see what they see under ``fit`` with ``steps_per_execution`` equal to an
epoch: epoch hooks as usual, one batch hook per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import keras
import numpy as np
from mnist_classifier.accel.keras_internals import build_for_fit
from mnist_classifier.system.interrupts import stop_if_interrupted

Arrays = tuple[np.ndarray, np.ndarray]
State = tuple[list[jax.Array], ...]

# Work per compiled call (XLA's estimate), short enough for Ctrl-C to land soon; at least one mini-batch.
CHUNK_FLOPS = 1e10
# Training a mini-batch costs about this many forward passes over it.
TRAIN_FLOPS_PER_FORWARD = 3
# Layers whose steps run one mini-batch per compiled call.
CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def supported(network: keras.Model, data: object) -> bool:
    """Whether ``fast_fit`` can train ``network`` on ``data``: JAX, in-memory arrays, one device."""
    return (
        keras.backend.backend() == "jax"
        and isinstance(data, np.ndarray)
        and keras.distribution.distribution() is None
        and not network.run_eagerly
        and network.jit_compile is not False
    )


def batch_chunks(count: int, batch_size: int, chunk: int, shuffle: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """One epoch's sample indices as ``(indices, valid)`` chunks of ``chunk`` mini-batches.

    Full batches come in ``(chunk, batch_size)`` blocks, the last one padded with rows
    marked invalid; a smaller final batch comes alone as ``(1, rest)``.
    """
    order = (np.random.permutation(count) if shuffle else np.arange(count)).astype(np.int32)
    full = count // batch_size * batch_size
    batches = order[:full].reshape(-1, batch_size)
    chunks = []
    for start in range(0, len(batches), chunk):
        block = batches[start : start + chunk]
        valid = np.arange(chunk) < len(block)
        chunks.append((np.resize(block, (chunk, batch_size)), valid))
    if full < count:
        chunks.append((order[full:].reshape(1, -1), np.ones(1, bool)))
    return chunks


def _compile(step: Callable, transform: Callable, chunk: int) -> Callable:
    """Compile ``step(state, (transform(x), y))`` into one call over the valid rows of ``batches``, taking over ``state``'s buffers.

    A one-batch chunk is a plain call: XLA on the CPU runs convolutions inside a loop
    many times slower than outside one.
    """
    if chunk == 1:
        return jax.jit(
            lambda state, x, y, batches, valid: step(state, (transform(x[batches[0]]), y[batches[0]]))[1],
            donate_argnums=0,
        )

    def run(state: State, x: jax.Array, y: jax.Array, batches: jax.Array, valid: jax.Array) -> State:
        def body(state: State, batch: tuple[jax.Array, jax.Array]) -> tuple[State, None]:
            index, ok = batch
            state = jax.lax.cond(ok, lambda s: step(s, (transform(x[index]), y[index]))[1], lambda s: s, state)
            return state, None

        return jax.lax.scan(body, state, (batches, valid))[0]

    return jax.jit(run, donate_argnums=0)


def forward_flops(network: keras.Model, batch: np.ndarray) -> float:
    """XLA's estimate of the floating-point operations of one inference pass over ``batch``."""
    weights = [v.value for v in network.trainable_variables], [v.value for v in network.non_trainable_variables]
    forward = jax.jit(lambda w, n, x: network.stateless_call(w, n, x)[0])
    cost = forward.lower(*weights, batch).cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))


class _Epochs:
    """The network's train and test steps compiled as scans, with the data on the device."""

    def __init__(
        self, network: keras.Model, data: Arrays, validation_data: Arrays | None, batch_size: int, transform: Callable
    ) -> None:
        self.network = network
        self.batch_size = batch_size
        self.chunk = 1 if _convolutional(network) else _chunk(network, transform(data[0][:batch_size]), len(data[0]))
        # device_put uses 64-byte-aligned host arrays (as preprocessing makes them) without a copy.
        self.data = tuple(jax.device_put(a) for a in data)
        self.validation_data = validation_data and tuple(jax.device_put(a) for a in validation_data)
        self.train_scan = _compile(network.train_step, transform, self.chunk)
        self.test_scan = _compile(network.test_step, transform, self.chunk)

    def train(self, shuffle: bool) -> dict[str, float]:
        """One epoch over the training data; returns the epoch's training metrics."""
        net = self.network
        net.reset_metrics()
        groups = (net.trainable_variables, net.non_trainable_variables, net.optimizer.variables, net.metrics_variables)
        self._run(self.train_scan, groups, self.data, shuffle)
        return _results(net)

    def evaluate(self) -> dict[str, float]:
        """Loss and metrics on the validation data."""
        net = self.network
        net.reset_metrics()
        groups = (net.trainable_variables, net.non_trainable_variables, net.metrics_variables)
        self._run(self.test_scan, groups, self.validation_data, shuffle=False)
        return _results(net)

    def _run(self, scan: Callable, groups: Sequence[list[keras.Variable]], data: tuple[jax.Array, ...], shuffle: bool) -> None:
        """Run ``scan`` over every chunk of ``data``, then write the state back into ``groups``.

        Each call takes over the previous state's buffers (donated: one copy of the
        weights and optimizer state in memory, not two). Every chunk is waited for,
        so a Ctrl-C lands between chunks, and the state reached is written back then too.
        """
        state = tuple([v.value for v in group] for group in groups)
        try:
            for batches, valid in batch_chunks(len(data[0]), self.batch_size, self.chunk, shuffle):
                state = jax.block_until_ready(scan(state, *data, batches, valid))
                stop_if_interrupted()
        finally:
            _assign(groups, state)


def _chunk(network: keras.Model, batch: jax.Array, count: int) -> int:
    """Mini-batches per compiled call: about ``CHUNK_FLOPS`` of training, at least one, at most an epoch."""
    step_flops = TRAIN_FLOPS_PER_FORWARD * forward_flops(network, batch)
    return int(np.clip(CHUNK_FLOPS // max(step_flops, 1.0), 1, -(-count // len(batch))))


def _convolutional(network: keras.Model) -> bool:
    """Whether any layer, in nested models too, convolves (such steps are not run inside compiled loops)."""
    return any(
        isinstance(layer, CONVOLUTIONS) or isinstance(layer, keras.Model) and _convolutional(layer)
        for layer in network.layers
    )


def _assign(groups: Sequence[list[keras.Variable]], values: Sequence[list[jax.Array]]) -> None:
    """Write a scan's resulting state back into the model's variables."""
    for variables, new in zip(groups, values):
        for variable, value in zip(variables, new):
            variable.assign(value)


def _results(network: keras.Model) -> dict[str, float]:
    """The network's metric values as plain floats."""
    return {name: float(value) for name, value in network.get_metrics_result().items()}


def fast_fit(
    network: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    epochs: int,
    validation_data: Arrays | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | bool = 0,
    shuffle: bool = True,
    initial_epoch: int = 0,
    input_transform: Callable | None = None,
) -> keras.callbacks.History:
    """Train like ``network.fit`` with these arguments, in compiled scans over chunks of each epoch.

    ``input_transform`` (Keras ops) turns each gathered batch of ``x`` and of the
    validation inputs into model inputs inside the compiled step, so ``x`` may stay
    compact (e.g. uint8 images).
    """
    transform = input_transform or (lambda batch: batch)
    build_for_fit(network, (transform(x[:batch_size]), y[:batch_size]), shuffle, len(x))
    epoch_runner = _Epochs(network, (x, y), validation_data, batch_size, transform)
    steps = -(-len(x) // batch_size)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=bool(verbose), verbose=int(verbose),
        epochs=epochs, steps=steps, model=network,
    )  # fmt: skip
    network.stop_training = False
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        callback_list.on_train_batch_begin(0)
        logs = epoch_runner.train(shuffle)
        callback_list.on_train_batch_end(steps - 1, logs)
        if validation_data is not None:
            logs |= {f"val_{name}": value for name, value in epoch_runner.evaluate().items()}
        callback_list.on_epoch_end(epoch, logs)
        if network.stop_training:
            break
    network.optimizer.finalize_variable_values(network.trainable_weights)
    callback_list.on_train_end(logs)
    return network.history
