"""Normalization, reshaping, one-hot labels and the stratified validation split."""

import numpy as np
import pytest

import mnist_classifier  # noqa: F401  (selects the Keras backend before keras is imported)
import keras  # noqa: E402
from mnist_classifier.data.formats import IDX_FILES, read_idx  # noqa: E402
from mnist_classifier.errors import ConfigError  # noqa: E402
from mnist_classifier.data.preprocessing import (  # noqa: E402
    batch_normalizer,
    Normalization,
    normalize,
    one_hot,
    preprocess,
    validation_split,
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    x = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    x[0, 0, 0], x[0, 0, 1] = 0, 255
    return x


@pytest.fixture(scope="module")
def real_train_images(mnist_dir) -> np.ndarray:
    return read_idx(mnist_dir / f"{IDX_FILES['x_train']}.gz")


@pytest.fixture(scope="module")
def real_train_labels(mnist_dir) -> np.ndarray:
    return read_idx(mnist_dir / f"{IDX_FILES['y_train']}.gz")


# --- normalize --------------------------------------------------------------------------


def test_scale_divides_by_255_into_unit_interval(images):
    out = normalize(images, Normalization("scale"))
    assert out.dtype == np.float32 and out.shape == images.shape
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_array_equal(out, images.astype(np.float32) / np.float32(255))


def test_normalize_wants_uint8_pixels(images):
    with pytest.raises(ConfigError, match="images of dtype float32: expected uint8 pixels"):
        normalize(images.astype(np.float32), Normalization("scale"))


def test_l2_is_exactly_the_notebooks_keras_normalize(images, real_train_images):
    blank = np.zeros((1, 28, 28), np.uint8)  # columns of zeros keep their zeros, as in Keras
    flat = images.reshape(len(images), -1)  # other shapes: Keras's own function
    for pixels in (images, real_train_images[:3000], blank, flat):
        out = normalize(pixels, Normalization.fit("l2", pixels))
        assert out.dtype == np.float32 and out.shape == pixels.shape
        np.testing.assert_array_equal(out, keras.utils.normalize(pixels.astype(np.float32), axis=1))


def test_standardize_gives_zero_mean_unit_std_on_training_images(real_train_images):
    norm = Normalization.fit("standardize", real_train_images)
    assert norm.mean == pytest.approx(0.1307, abs=1e-4)  # MNIST's well-known statistics
    assert norm.std == pytest.approx(0.3081, abs=5e-4)
    out = normalize(real_train_images, norm)
    assert out.dtype == np.float32
    assert abs(float(out.mean(dtype=np.float64))) < 1e-4
    assert float(out.std(dtype=np.float64)) == pytest.approx(1.0, abs=1e-4)


def test_fit_of_other_modes_keeps_no_statistics(images):
    assert Normalization.fit("scale", images) == Normalization("scale", 0.0, 1.0)
    assert Normalization.fit("l2", images) == Normalization("l2", 0.0, 1.0)


def test_unknown_normalize_mode_is_rejected(images):
    message = "normalize='minmax': expected one of scale, l2, standardize"
    with pytest.raises(ConfigError, match=message):
        Normalization.fit("minmax", images)
    with pytest.raises(ConfigError, match=message):
        normalize(images, Normalization("minmax"))


# --- preprocess -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(784,), (28, 28, 1)])
def test_preprocess_reshapes_to_the_model_input(images, shape):
    out = preprocess(images, Normalization("scale"), shape)
    assert out.shape == (len(images), *shape) and out.dtype == np.float32
    np.testing.assert_array_equal(out.reshape(images.shape), normalize(images, Normalization("scale")))


def test_preprocess_rejects_a_shape_that_does_not_hold_28_by_28(images):
    with pytest.raises(ConfigError, match=r"input shape \(32, 32, 1\) does not hold a 28×28 image"):
        preprocess(images, Normalization("scale"), [32, 32, 1])


# --- one_hot ----------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [10, None])
def test_one_hot_matches_the_notebooks_to_categorical(classes):
    labels = np.array([3, 0, 7, 7, 1, 5], dtype=np.uint8)
    out = one_hot(labels, classes)
    expected = keras.utils.to_categorical(labels, classes)
    assert out.dtype == np.float32
    assert out.shape == (6, 10 if classes else 8)
    np.testing.assert_array_equal(out, expected)


def test_one_hot_rejects_a_negative_label():
    with pytest.raises(ConfigError, match="label -1 is negative"):
        one_hot(np.array([2, -1, 3]), 10)


def test_one_hot_rejects_a_label_beyond_the_classes():
    with pytest.raises(ConfigError, match="label 10 does not fit classes=10"):
        one_hot(np.array([2, 10, 3]), 10)


def test_one_hot_rejects_a_matrix():
    with pytest.raises(ConfigError, match=r"labels of shape \(2, 3\) .*expected a vector of integers"):
        one_hot(np.zeros((2, 3), dtype=np.int64), 10)


def test_one_hot_rejects_float_labels():
    with pytest.raises(ConfigError, match="dtype float64: expected a vector of integers"):
        one_hot(np.array([1.0, 2.0]), 10)


# --- validation_split -------------------------------------------------------------------


def split_indices(labels, size=5000, seed=0):
    """Split with the row numbers as images, so the parts say which rows they took."""
    rows = np.arange(len(labels))
    (train_rows, train_labels), (val_rows, val_labels) = validation_split(rows, labels, size, seed)
    np.testing.assert_array_equal(train_labels, labels[train_rows])
    np.testing.assert_array_equal(val_labels, labels[val_rows])
    return train_rows, val_rows


def test_validation_split_has_the_exact_size(real_train_labels):
    for size in (5000, 1, 777):
        train_rows, val_rows = split_indices(real_train_labels, size)
        assert len(val_rows) == size and len(train_rows) == 60000 - size


def test_validation_split_is_stratified(real_train_labels):
    _, val_rows = split_indices(real_train_labels, 5000)
    proportional = np.bincount(real_train_labels) * 5000 / 60000
    taken = np.bincount(real_train_labels[val_rows], minlength=10)
    assert np.all(np.abs(taken - proportional) < 1), (taken, proportional)


def test_validation_split_is_deterministic_per_seed(real_train_labels):
    _, first = split_indices(real_train_labels, seed=7)
    _, again = split_indices(real_train_labels, seed=7)
    _, other = split_indices(real_train_labels, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_validation_split_parts_are_disjoint_complementary_and_in_order(real_train_labels):
    train_rows, val_rows = split_indices(real_train_labels)
    assert not set(train_rows) & set(val_rows)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_rows, val_rows])), np.arange(60000))
    assert np.all(np.diff(train_rows) > 0) and np.all(np.diff(val_rows) > 0)


def test_validation_split_keeps_images_with_their_labels(images):
    labels = np.arange(len(images)) % 10
    (x_train, y_train), (x_val, y_val) = validation_split(images, labels, size=10, seed=3)
    assert x_train.shape == (30, 28, 28) and x_val.shape == (10, 28, 28)
    assert sorted(y_val) == list(range(10))
    for x, y in ((x_train, y_train), (x_val, y_val)):
        for image, label in zip(x, y):
            rows = [i for i in range(len(images)) if np.array_equal(images[i], image)]
            assert labels[rows[0]] == label


@pytest.mark.parametrize("size", [0, -5, 40, 41])
def test_validation_split_rejects_a_bad_size(images, size):
    labels = np.arange(len(images)) % 10
    with pytest.raises(ConfigError, match=f"validation size {size}: expected between 1 and 39"):
        validation_split(images, labels, size)


@pytest.mark.parametrize("mode", ["scale", "standardize"])
@pytest.mark.parametrize("shape", [(784,), (28, 28, 1)])
def test_the_in_step_normalizer_matches_preprocess_bit_for_bit(images, mode, shape):
    import jax

    norm = Normalization.fit(mode, images)
    expected = preprocess(images, norm, shape)
    np.testing.assert_array_equal(np.asarray(jax.jit(batch_normalizer(norm, shape))(images)), expected)


def test_l2_has_no_in_step_normalizer():
    assert batch_normalizer(Normalization("l2"), (784,)) is None
