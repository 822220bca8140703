"""Keras's private internals: used only on the releases they were written for, undone after, and off with one log line."""

import logging

import keras
import numpy as np
import pytest
from keras.src.backend.jax import nn as jax_nn
from keras.src.backend.jax import random as jax_random

from mnist_classifier import accel, build_model, optimize_model, train_model
from mnist_classifier.accel import keras_internals
from mnist_classifier.accel.fast_ops import fast_training_ops
from mnist_classifier.accel.keras_internals import flat_random_draws
from mnist_classifier.config import Config, ModelConfig, TrainingConfig


@pytest.mark.parametrize("draw", ["uniform", "normal", "truncated_normal"])
def test_flat_random_draws_give_the_same_values_and_are_undone(draw):
    original = getattr(jax_random, draw)
    shaped = original((64, 10), seed=keras.random.SeedGenerator(3))
    with flat_random_draws():
        assert getattr(jax_random, draw) is not original
        flat = getattr(jax_random, draw)((64, 10), seed=keras.random.SeedGenerator(3))
    assert getattr(jax_random, draw) is original
    assert flat.shape == (64, 10)
    np.testing.assert_array_equal(np.asarray(flat), np.asarray(shaped))


@pytest.fixture
def unknown_keras(monkeypatch):
    """A Keras release keras_internals does not know (and the check made anew before and after)."""
    monkeypatch.setattr(keras_internals, "KNOWN_RELEASES", ((2, 0),))
    keras_internals.usable.cache_clear()
    yield
    keras_internals.usable.cache_clear()


def test_this_keras_is_a_known_release():
    assert keras_internals.usable()


def test_on_an_unknown_keras_training_takes_model_fit_and_keras_own_ops_saying_so_once(
    unknown_keras, small_mnist, monkeypatch, caplog
):
    calls = []
    monkeypatch.setattr("mnist_classifier.accel.fast_fit.fast_fit", lambda *a, **k: calls.append("fast"))
    ops, draws = (jax_nn.conv, jax_nn.max_pool, jax_nn.moments), jax_random.uniform
    with caplog.at_level(logging.WARNING, logger=keras_internals.__name__):
        with fast_training_ops(), flat_random_draws():
            assert (jax_nn.conv, jax_nn.max_pool, jax_nn.moments) == ops and jax_random.uniform is draws
        keras.utils.set_random_seed(0)
        model = build_model(784, [16, 10], ["relu", "softmax"], 0.0, None)
        optimize_model(model, 0.001, 0.9, 0.999)
        history = train_model(model, *small_mnist["train"], 256, 2, verbose=False)
    assert calls == [] and len(history.history["loss"]) == 2
    assert [record.getMessage() for record in caplog.records] == [
        f"Keras {keras.__version__} is not a release mnist_classifier's speed-ups know (2.0): "
        "training with model.fit and Keras's own operations"
    ]
    cnn = Config(model=ModelConfig(layers=(16, 10), activations=("relu", "softmax"), architecture="cnn"))
    assert accel.convolutions_note(cnn) is None


def test_the_engine_door_says_whose_convolutions_only_for_a_cnn_on_the_auto_engine():
    mlp, cnn = Config(), Config(model=ModelConfig(layers=(16, 10), activations=("relu", "softmax"), architecture="cnn"))
    assert accel.convolutions_note(mlp) is None
    assert accel.convolutions_note(Config(model=cnn.model, training=TrainingConfig(engine="keras"))) is None
    assert accel.convolutions_note(cnn)  # whose they are here: test_onednn
