"""Training-time augmentation for real pictures: pen width, elastic distortion, and shipping without it."""

import keras
import numpy as np
import pytest

from mnist_classifier.data.augmentation import Augmentation, RandomElastic, RandomPenWidth, inference_model
from mnist_classifier.models import build_cnn


@pytest.fixture(scope="module")
def digits(mnist_dir):
    from mnist_classifier import load_dataset

    (x_train, _), _ = load_dataset("mnist", mnist_dir)
    return x_train[:32, ..., None].astype(np.float32) / 255


def test_pen_width_thickens_or_thins_strokes_in_training_only(digits):
    layer = RandomPenWidth(1.0, seed=0)
    out = keras.ops.convert_to_numpy(layer(digits, training=True))
    ink_before, ink_after = digits.sum(axis=(1, 2, 3)), out.sum(axis=(1, 2, 3))
    assert (ink_after > ink_before * 1.05).any() and (ink_after < ink_before * 0.95).any()
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(digits, training=False)), digits)


def test_elastic_distortion_moves_ink_but_keeps_its_amount(digits):
    layer = RandomElastic(2.0, seed=0)
    out = keras.ops.convert_to_numpy(layer(digits, training=True))
    assert np.abs(out - digits).mean() > 0.01
    assert out.sum() == pytest.approx(digits.sum(), rel=0.1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(digits, training=False)), digits)


def test_a_model_with_every_augmentation_ships_as_plain_keras_with_the_same_outputs(digits, tmp_path):
    augmentation = Augmentation(0.1, 12.0, 0.1, pen_width=0.6, elastic=1.2, blur=0.8, contrast=0.2)
    model = build_cnn(filters=(4,), augmentation=augmentation)
    model.save(tmp_path / "with_layers.keras")
    assert keras.models.load_model(tmp_path / "with_layers.keras").get_layer("random_pen_width")  # ours are registered
    shipped = inference_model(model)
    assert not any("random" in type(layer).__name__.lower() for layer in shipped.layers)
    shipped.save(tmp_path / "shipped.keras")
    config = (tmp_path / "shipped.keras").read_bytes()
    assert b"mnist_classifier" not in config  # nothing of this package left to import
    np.testing.assert_allclose(shipped.predict(digits, verbose=0), model.predict(digits, verbose=0), atol=1e-6)
