"""Non-digit pictures for outlier exposure: kinds, shapes, determinism, and splits that share nothing."""

import numpy as np
import pytest

from mnist_classifier.errors import ConfigError
from mnist_classifier.data.outliers import KINDS, MIX, font_files, non_digit_kind, non_digits


def test_a_mixed_set_has_the_count_asked_for_as_uint8_28x28_pictures():
    images = non_digits(120, seed=3)
    assert images.shape == (120, 28, 28) and images.dtype == np.uint8
    strongest = images.reshape(120, -1).max(axis=1)
    # Every one framed: its ink stretched to full strength, then resized to a 20-pixel box. A hairline
    # script font's strokes (fonts-kristi, say) are averaged down to a third of that by the resize.
    assert (strongest >= 85).all() and np.median(strongest) == 255, sorted(strongest)[:5]
    np.testing.assert_array_equal(images, non_digits(120, seed=3))
    assert sum(MIX.values()) == pytest.approx(1)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_framed_like_a_users_digit(kind):
    images = non_digit_kind(kind, 8)
    assert images.shape == (8, 28, 28) and images.dtype == np.uint8
    rows, cols = np.nonzero(images.max(axis=0))
    assert rows.min() >= 1 and cols.min() >= 1 and rows.max() <= 26 and cols.max() <= 26  # inside a 20-px box, centred
    assert not np.array_equal(images[0], images[1])


def test_train_and_test_splits_share_no_font_and_no_picture():
    assert not set(font_files("train")) & set(font_files("test"))
    assert len(font_files("test")) >= 3
    train, test = non_digit_kind("letters", 50, split="train"), non_digit_kind("letters", 50, split="test")
    assert not any((train == picture).all(axis=(1, 2)).any() for picture in test)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: non_digits(-1), "count=-1"),
        (lambda: non_digits(5, split="val"), "split='val'"),
        (lambda: non_digit_kind("faces", 5), "kind='faces'"),
    ],
)
def test_bad_arguments_are_one_clear_error(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_pairs_are_two_digits_framed_as_one_wider_than_a_digit(monkeypatch, mnist_dir):
    from mnist_classifier.config import DataConfig
    from mnist_classifier.data.outliers import digit_pairs
    from mnist_classifier.data.sources import load_dataset
    from mnist_classifier.pipeline import prepare_data

    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))
    (images, _), _ = load_dataset("mnist", download=False)
    pairs = digit_pairs(images[:500], 60, seed=1)
    assert pairs.shape == (60, 28, 28) and pairs.dtype == np.uint8
    np.testing.assert_array_equal(pairs, digit_pairs(images[:500], 60, seed=1))
    widths = [np.ptp(np.nonzero(p)[1]) + 1 for p in pairs]
    heights = [np.ptp(np.nonzero(p)[0]) + 1 for p in pairs]
    assert np.median(widths) == 20 and np.median(heights) < 17  # wider than tall: the width is framed to 20 px
    digits_widths = [np.ptp(np.nonzero(d)[1]) + 1 for d in images[:60]]
    assert np.median(digits_widths) < 18
    data = prepare_data(DataConfig(train_limit=2000, validation_size=500, outliers=100, pairs=50), (784,))
    assert len(data.outliers) == 150 and data.training_size == 1650
    with pytest.raises(ConfigError, match="data.pairs=-1: expected >= 0"):
        DataConfig(pairs=-1)
    with pytest.raises(ConfigError, match="data.pairs=5 on fashion_mnist"):
        DataConfig(dataset="fashion_mnist", pairs=5)
