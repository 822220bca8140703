"""A hand-written JAX epoch of the notebook's MLP: the reference that ``speed.py`` compares with.

One jitted ``lax.scan`` over every mini-batch of an epoch, the data on the device: the
model (784-128-64-10, ReLU, softmax, L2 on every kernel, dropout after the hidden
layers), Adam and categorical cross-entropy written out in plain ``jax.numpy``, with
the epoch's mean loss and accuracy accumulated as Keras reports them; and one
jitted pass for the validation loss and accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Params = list[tuple[jax.Array, jax.Array]]


def init_params(sizes: tuple[int, ...], seed: int = 0) -> Params:
    """Glorot-uniform kernels and zero biases, as Keras's Dense starts."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6 / (fan_in + fan_out))
        kernel = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        params.append((jnp.asarray(kernel), jnp.zeros(fan_out, jnp.float32)))
    return params


def init_state(params: Params, seed: int = 0) -> tuple:
    """Adam's state around ``params``: (params, m, v, step, random key)."""
    zeros = jax.tree.map(jnp.zeros_like, params)
    return params, zeros, zeros, jnp.zeros((), jnp.float32), jax.random.key(seed)


def _objective(params: Params, x, y, lambtha: float, keep_prob: float, key=None) -> tuple:
    """Cross-entropy plus the L2 penalty; dropout when ``key`` is given. Returns (loss, correct)."""
    h = x
    for i, (w, b) in enumerate(params[:-1]):
        h = jax.nn.relu(h @ w + b)
        if key is not None:
            keep = jax.random.bernoulli(jax.random.fold_in(key, i), keep_prob, h.shape)
            h = jnp.where(keep, h / keep_prob, 0.0)
    w, b = params[-1]
    log_probs = jax.nn.log_softmax(h @ w + b)
    loss = -jnp.mean(jnp.sum(y * log_probs, axis=-1)) + lambtha * sum(jnp.sum(w * w) for w, _ in params)
    return loss, jnp.sum(jnp.argmax(log_probs, -1) == jnp.argmax(y, -1))


def make_epoch(lambtha: float = 0.01, keep_prob: float = 0.8, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999):
    """A jitted ``epoch(state, x, y, batches) -> (state, (mean loss, accuracy))``."""
    loss_and_grad = jax.value_and_grad(_objective, has_aux=True)

    @jax.jit
    def epoch(state, x, y, batches):
        def step(state, index):
            params, m, v, t, key = state
            key, sub = jax.random.split(key)
            (loss, correct), g = loss_and_grad(params, x[index], y[index], lambtha, keep_prob, sub)
            t = t + 1
            m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
            v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
            rate = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
            params = jax.tree.map(lambda p, m, v: p - rate * m / (jnp.sqrt(v) + 1e-7), params, m, v)
            return (params, m, v, t, key), (loss, correct)

        state, (losses, correct) = jax.lax.scan(step, state, batches)
        return state, (jnp.mean(losses), jnp.sum(correct) / batches.size)

    return epoch


def make_evaluate(lambtha: float = 0.01):
    """A jitted ``evaluate(params, x, y) -> (loss, accuracy)`` in one pass, no dropout."""

    @jax.jit
    def evaluate(params, x, y):
        loss, correct = _objective(params, x, y, lambtha, 1.0)
        return loss, correct / len(x)

    return evaluate
