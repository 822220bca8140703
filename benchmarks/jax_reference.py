"""A hand-written JAX epoch of the notebook's MLP: the reference that ``speed.py`` compares with.

One jitted ``lax.scan`` over every mini-batch of an epoch, the data on the device: the
model (784-128-64-10, ReLU, softmax, L2 on every kernel, dropout after the hidden
layers), Adam and categorical cross-entropy written out in plain ``jax.numpy``, with
the epoch's mean loss and accuracy accumulated as Keras reports them.
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


def _loss(params: Params, x: jax.Array, y: jax.Array, key: jax.Array, lambtha: float, keep_prob: float):
    """Cross-entropy plus L2 penalty on one mini-batch, with dropout; returns (loss, (ce, correct))."""
    h = x
    for i, (w, b) in enumerate(params[:-1]):
        h = jax.nn.relu(h @ w + b)
        keep = jax.random.bernoulli(jax.random.fold_in(key, i), keep_prob, h.shape)
        h = jnp.where(keep, h / keep_prob, 0.0)
    w, b = params[-1]
    log_probs = jax.nn.log_softmax(h @ w + b)
    ce = -jnp.mean(jnp.sum(y * log_probs, axis=-1))
    l2 = lambtha * sum(jnp.sum(w * w) for w, _ in params)
    correct = jnp.sum(jnp.argmax(log_probs, -1) == jnp.argmax(y, -1))
    return ce + l2, (ce + l2, correct)


def make_epoch(lambtha: float = 0.01, keep_prob: float = 0.8, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999):
    """A jitted ``epoch(state, x, y, batches) -> (state, (mean loss, accuracy))``."""
    grad = jax.grad(_loss, has_aux=True)

    def step(state, index):
        params, m, v, t, key = state
        key, sub = jax.random.split(key)
        g, (loss, correct) = grad(params, state_x[0][index], state_x[1][index], sub, lambtha, keep_prob)
        t = t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        rate = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree.map(lambda p, m, v: p - rate * m / (jnp.sqrt(v) + 1e-7), params, m, v)
        return (params, m, v, t, key), (loss, correct)

    state_x: list[jax.Array] = []

    @jax.jit
    def epoch(state, x, y, batches):
        state_x[:] = [x, y]
        state, (losses, correct) = jax.lax.scan(step, state, batches)
        return state, (jnp.mean(losses), jnp.sum(correct) / batches.size)

    return epoch


def init_state(params: Params, seed: int = 0):
    """Adam's state around ``params``."""
    zeros = jax.tree.map(jnp.zeros_like, params)
    return params, zeros, jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32), jax.random.key(seed)
