"""build_model: the notebook's architecture and its argument checks."""

import keras
import pytest

from mnist_classifier import ConfigError, build_model
from mnist_classifier.config import ModelConfig
from mnist_classifier.models import build_from_config


def _layers(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_builds_the_notebooks_network():
    model = build_model(784, [128, 64, 10], ["relu", "relu", "softmax"], 0.01, 0.8)
    dense = _layers(model, keras.layers.Dense)
    assert model.input_shape == (None, 784) and model.output_shape == (None, 10)
    assert [layer.units for layer in dense] == [128, 64, 10]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "softmax"]
    assert all(layer.kernel_regularizer.l2 == pytest.approx(0.01) for layer in dense)
    assert model.count_params() == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


def test_dropout_follows_every_layer_but_the_last():
    model = build_model(784, [32, 16, 10], ["relu", "relu", "softmax"], 0.0, 0.75)
    dropouts = _layers(model, keras.layers.Dropout)
    assert [d.rate for d in dropouts] == [pytest.approx(0.25)] * 2
    assert isinstance(model.layers[-1], keras.layers.Dense)


@pytest.mark.parametrize("keep_prob", [None, 1, 1.0])
def test_keep_prob_none_or_one_means_no_dropout(keep_prob):
    model = build_model(784, [32, 10], ["relu", "softmax"], 0.0, keep_prob)
    assert _layers(model, keras.layers.Dropout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((784, [32, 10], ["relu"], 0.01, 0.8), "2 layers but 1 activations"),
        ((784, [32, 0], ["relu", "softmax"], 0.01, 0.8), "layer width 0"),
        ((784, [32, -3], ["relu", "softmax"], 0.01, 0.8), "layer width -3"),
        ((784, [32, 10], ["relu", "sofmax"], 0.01, 0.8), "unknown activation 'sofmax'"),
        ((784, [32, 10], ["relu", "softmax"], 0.01, 0.0), "keep_prob=0.0"),
        ((784, [32, 10], ["relu", "softmax"], 0.01, 1.5), "keep_prob=1.5"),
        ((784, [32, 10], ["relu", "softmax"], -1.0, 0.8), "lambtha=-1.0"),
        ((0, [32, 10], ["relu", "softmax"], 0.01, 0.8), "nx=0"),
        ((784, [], [], 0.01, 0.8), "layers is empty"),
    ],
)
def test_bad_arguments_raise_a_clear_value_error(args, message):
    with pytest.raises(ValueError, match=message) as raised:
        build_model(*args)
    assert isinstance(raised.value, ConfigError)


def test_build_from_config_takes_flat_images():
    model = build_from_config(ModelConfig((16, 10), ("relu", "softmax"), 0.0, 1.0))
    assert model.input_shape == (None, 784) and model.output_shape == (None, 10)


def test_input_dropout_is_optional_and_checked():
    model = build_model(784, [32, 10], ["relu", "softmax"], 0.0, None, input_keep_prob=0.8)
    dropouts = _layers(model, keras.layers.Dropout)
    assert [d.rate for d in dropouts] == [pytest.approx(0.2)] and model.layers[1] is dropouts[0]
    with pytest.raises(ValueError, match="input_keep_prob=0"):
        build_model(784, [32, 10], ["relu", "softmax"], 0.0, None, input_keep_prob=0)
