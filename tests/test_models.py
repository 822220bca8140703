"""build_model: the notebook's architecture and its argument checks."""

import dataclasses

import keras
import pytest

import numpy as np

from mnist_classifier import ConfigError, build_model
from mnist_classifier.config import ModelConfig
from mnist_classifier.models import Augmentation, build_cnn, build_from_config


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


def test_cnn_has_the_configured_blocks_and_the_mlp_head():
    model = build_cnn((64, 10), ("relu", "softmax"), 1e-4, 0.5, filters=(8, 16), convs_per_block=2, conv_keep_prob=0.75)
    convs = _layers(model, keras.layers.Conv2D)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert [c.filters for c in convs] == [8, 8, 16, 16]
    assert len(_layers(model, keras.layers.BatchNormalization)) == 4
    assert len(_layers(model, keras.layers.MaxPooling2D)) == 2
    assert [round(d.rate, 2) for d in _layers(model, keras.layers.Dropout)] == [0.25, 0.25, 0.5]
    assert [d.units for d in _layers(model, keras.layers.Dense)] == [64, 10]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": ()}, "non-empty list of positive integers"),
        ({"filters": (8, 0)}, "non-empty list of positive integers"),
        ({"filters": (8, 8, 8, 8, 8)}, "at most 4 blocks"),
        ({"kernel_size": 2}, "kernel_size=2: expected a positive odd integer"),
        ({"convs_per_block": 0}, "convs_per_block=0"),
        ({"conv_keep_prob": 0.0}, "conv_keep_prob=0.0"),
    ],
)
def test_bad_cnn_arguments_raise_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_cnn(**kwargs)


def _digits():
    from tests.conftest import MNIST_DIR

    from mnist_classifier import load_dataset

    (_, _), (x_test, _) = load_dataset("mnist", MNIST_DIR)
    return (x_test[:32, :, :, None] / 255.0).astype("float32")


def test_augmentation_acts_in_training_only():
    keras.utils.set_random_seed(0)
    settings = {"filters": (8,), "keep_prob": None, "batch_norm": False}
    plain = build_cnn(**settings)
    augmented = build_cnn(**settings, augmentation=Augmentation(shift=0.2, rotation=20, zoom=0.2))
    for layer in plain.layers:
        augmented.get_layer(layer.name).set_weights(layer.get_weights())
    x = _digits()
    np.testing.assert_array_equal(augmented.predict(x, verbose=0), plain.predict(x, verbose=0))
    trained = keras.ops.convert_to_numpy(augmented(x, training=True))
    assert not np.allclose(trained, plain.predict(x, verbose=0))


def test_build_from_config_builds_a_cnn():
    config = ModelConfig((16, 10), ("relu", "softmax"), 0.0, 1.0, architecture="cnn", filters=(4, 8), augment=True)
    model = build_from_config(config)
    assert model.name == "cnn" and model.input_shape == (None, 28, 28, 1)
    assert {"random_rotation", "random_zoom", "random_translation"} <= {layer.name for layer in model.layers}


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_mixed_bfloat16_computes_in_bfloat16_with_float32_weights_and_output(architecture):
    config = ModelConfig((16, 10), ("relu", "softmax"), 0.0, 0.5, architecture=architecture, filters=(4,))
    model = build_from_config(dataclasses.replace(config, precision="mixed_bfloat16"))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    hidden, output = _layers(model, keras.layers.Dense)
    assert hidden.compute_dtype == "bfloat16" and hidden.variable_dtype == "float32"
    assert output.compute_dtype == "float32"
    assert all(layer.compute_dtype == "bfloat16" for layer in _layers(model, keras.layers.Conv2D))
    x = np.random.default_rng(0).random((4, *model.input_shape[1:]), dtype=np.float32)
    assert keras.ops.convert_to_numpy(model(x)).dtype == np.float32
    assert build_from_config(config).get_layer("dense_0").compute_dtype == "float32"


def test_augmented_cnn_is_jit_compiled_under_jax_also_after_loading(tmp_path):
    from mnist_classifier import load_model, optimize_model, save_model

    model = build_cnn(filters=(4,), augmentation=Augmentation())
    optimize_model(model, 0.001, 0.9, 0.999)
    assert model.jit_compile is True  # Keras alone would fall back to op-by-op execution
    save_model(model, tmp_path / "m.keras")
    assert load_model(tmp_path / "m.keras").jit_compile is True


@pytest.mark.parametrize("builder", [build_model, build_cnn])
def test_builders_initialize_as_plain_keras_would(builder):
    args = (784, (16, 10), ("relu", "softmax"), 0.0, 0.5) if builder is build_model else ()
    keras.utils.set_random_seed(7)
    ours = builder(*args)
    keras.utils.set_random_seed(7)
    plain = builder.__wrapped__(*args)
    for a, b in zip(ours.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
