"""Digit forms MNIST's writers seldom use, and digits as small pictures hold them, made from its own digits."""

import numpy as np
import pytest

from mnist_classifier.errors import ConfigError


def _top_wider_than_middle(image: np.ndarray) -> int:
    """How many pixels wider the ink is in the top fifth of a digit than in its middle fifth."""
    rows = np.nonzero(image.max(axis=1) > 100)[0]
    top, height = rows.min(), np.ptp(rows) + 1

    def width(start: float, stop: float) -> int:
        band = image[top + round(start * height) : top + round(stop * height)] > 100
        cols = np.nonzero(band.any(axis=0))[0]
        return int(np.ptp(cols) + 1) if cols.size else 0

    return width(0.0, 0.2) - width(0.4, 0.6)


def test_flagged_ones_are_mnists_ones_with_a_flag_at_the_top(monkeypatch, mnist_dir):
    from mnist_classifier.config import DataConfig
    from mnist_classifier.data.forms import flagged_ones
    from mnist_classifier.data.sources import load_dataset
    from mnist_classifier.pipeline import prepare_data

    (images, labels), _ = load_dataset("mnist", mnist_dir, download=False)
    images, labels = images[:3000], labels[:3000]
    ones = flagged_ones(images, labels, 80, seed=1)
    assert ones.shape == (80, 28, 28) and ones.dtype == np.uint8
    np.testing.assert_array_equal(ones, flagged_ones(images, labels, 80, seed=1))
    sides = [max(np.ptp(np.nonzero(one)[0]), np.ptp(np.nonzero(one)[1])) + 1 for one in ones]
    assert set(sides) <= {19, 20, 21}  # framed as MNIST frames a digit: its ink box scaled to 20 px
    plain = [_top_wider_than_middle(image) for image in images[labels == 1][:80]]
    flagged = [_top_wider_than_middle(image) for image in ones]
    assert np.median(flagged) - np.median(plain) >= 3, (np.median(plain), np.median(flagged))

    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))
    data = prepare_data(DataConfig(train_limit=2000, validation_size=500, flagged_ones=100), (784,))
    x_train, y_train = data.train
    assert len(y_train) == 1600 and (y_train[-100:] == 1).all() and data.outliers is None
    assert len(data.validation[1]) == 500


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: __import__("mnist_classifier.config").config.DataConfig(flagged_ones=-1), "data.flagged_ones=-1: expected >= 0"),
        (
            lambda: __import__("mnist_classifier.config").config.DataConfig(dataset="fashion_mnist", flagged_ones=5),
            "data.flagged_ones=5 on fashion_mnist: flagged 1s are made for mnist only",
        ),
        (
            lambda: __import__("mnist_classifier.data.forms").data.forms.flagged_ones(
                np.zeros((3, 28, 28), np.uint8), np.array([0, 2, 3]), 5
            ),
            "flagged ones need 1s among the training digits",
        ),
    ],
)
def test_bad_flagged_ones_settings_are_one_clear_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_low_resolution_digits_are_mnists_digits_read_from_small_pictures(monkeypatch, mnist_dir):
    """Soft, uneven strokes framed as the reader frames a digit, labelled with the digit they were made of."""
    from mnist_classifier.config import DataConfig
    from mnist_classifier.data.forms import low_resolution
    from mnist_classifier.data.sources import load_dataset
    from mnist_classifier.pipeline import prepare_data

    (images, labels), _ = load_dataset("mnist", mnist_dir, download=False)
    images, labels = images[:2000], labels[:2000]
    small, digits = low_resolution(images, labels, 60, seed=1)
    assert small.shape == (60, 28, 28) and small.dtype == np.uint8 and digits.shape == (60,)
    np.testing.assert_array_equal(small, low_resolution(images, labels, 60, seed=1)[0])
    assert len(set(digits.tolist())) >= 8  # random digits of every kind, not one class
    sides = [max(np.ptp(np.nonzero(image)[0]), np.ptp(np.nonzero(image)[1])) + 1 for image in small]
    assert np.median(sides) in (19, 20, 21)  # framed as MNIST frames a digit
    # Softer than MNIST's: more of their ink is in half tones.
    def half_tones(batch):
        return np.mean([((x > 30) & (x < 200)).sum() / max((x > 30).sum(), 1) for x in batch])
    assert half_tones(small) > half_tones(images[:60]) + 0.05, (half_tones(small), half_tones(images[:60]))

    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))
    data = prepare_data(DataConfig(train_limit=1000, validation_size=500, low_resolution=20), (784,))
    x_train, y_train = data.train
    assert len(y_train) == 520 and x_train.shape == (520, 28, 28)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: __import__("mnist_classifier.config").config.DataConfig(low_resolution=-2), "data.low_resolution=-2: expected >= 0"),
        (
            lambda: __import__("mnist_classifier.config").config.DataConfig(dataset="fashion_mnist", low_resolution=5),
            "data.low_resolution=5 on fashion_mnist: low-resolution digits are made for mnist only",
        ),
        (
            lambda: __import__("mnist_classifier.data.forms").data.forms.low_resolution(np.zeros((4, 28, 28), np.uint8), np.arange(4), 2.5),
            r"count=2.5: expected a whole number >= 0",
        ),
    ],
)
def test_bad_low_resolution_settings_are_one_clear_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
