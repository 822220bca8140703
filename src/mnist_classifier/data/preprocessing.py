"""Turn uint8 images and labels into what a network eats: normalize, reshape, one-hot, split."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mnist_classifier.data.formats import IMAGE_SIZE
from mnist_classifier.errors import ConfigError

NORMALIZE_MODES = ("scale", "l2", "standardize")
# Start of every float array we make: JAX on the CPU uses 64-byte-aligned host memory as it
# is, without a copy.
ALIGNMENT = 64
LOOKUP_ROWS = 2048  # images per table lookup in ``normalize``


@dataclass(frozen=True)
class Normalization:
    """How pixels become inputs; ``mean``/``std`` are the training set's for ``standardize``."""

    mode: str = "scale"
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, mode: str, x_train: np.ndarray) -> Normalization:
        """The normalization ``mode`` with statistics taken from the training images."""
        check_normalize_mode(mode)
        if mode != "standardize":
            return cls(mode)
        counts = np.bincount(np.asarray(x_train, np.uint8).ravel(), minlength=256)  # no float copy of the images
        levels = np.arange(256) / 255.0
        mean = float(counts @ levels / counts.sum())
        return cls(mode, mean, float(np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())))


def check_normalize_mode(mode: str, name: str = "normalize") -> None:
    """Raise a ConfigError unless ``mode`` is a known normalization."""
    if mode not in NORMALIZE_MODES:
        raise ConfigError(f"{name}={mode!r}: expected one of {', '.join(NORMALIZE_MODES)}")


def normalize(x: np.ndarray, norm: Normalization) -> np.ndarray:
    """Scale uint8 images (N×28×28) to float32 as ``norm`` says.

    ``scale`` divides by 255; ``l2`` is the notebook's ``keras.utils.normalize(x, axis=1)``
    (each image column to unit L2 norm), kept for exact reproduction; ``standardize``
    subtracts the training mean and divides by its standard deviation.
    """
    check_normalize_mode(norm.mode)
    if np.asarray(x).dtype != np.uint8:
        raise ConfigError(f"images of dtype {np.asarray(x).dtype}: expected uint8 pixels (0-255)")
    if norm.mode == "l2":
        return _l2_columns(x)
    table = pixel_table(norm)
    if len(x) <= LOOKUP_ROWS:  # a served image or a small batch: one plain lookup is quickest
        return table[x]
    out = aligned_empty(np.shape(x), np.float32)  # one float copy, ready for JAX without another
    for start in range(0, len(x), LOOKUP_ROWS):  # numpy widens the indices: keep that copy small
        np.take(table, x[start : start + LOOKUP_ROWS], out=out[start : start + LOOKUP_ROWS])
    return out


def _l2_columns(x: np.ndarray) -> np.ndarray:
    """``keras.utils.normalize(x, axis=1)`` of uint8 images (N×28×28), bit for bit, 15× faster.

    Squared pixels and their sums over an image's 28 rows are integers below 2**24,
    exact in float32 whatever the order of summation, so the norms are Keras's; the
    float32 division is the same. For other shapes, Keras's own function.
    """
    if np.ndim(x) != 3 or np.shape(x)[1] != IMAGE_SIZE:
        from keras.utils import normalize as keras_normalize

        return keras_normalize(x.astype(np.float32), axis=1).astype(np.float32)
    out = aligned_empty(np.shape(x), np.float32)
    out[...] = x
    norms = np.sqrt(np.einsum("nij,nij->nj", out, out))
    norms[norms == 0] = 1
    return np.divide(out, norms[:, None, :], out=out)


@functools.cache
def pixel_table(norm: Normalization) -> np.ndarray:
    """The float32 input for each of the 256 pixel values (``scale`` or ``standardize``), made once, read-only.

    Looking values up, in numpy or inside a compiled step, gives bit-identical inputs
    whichever way the arithmetic would have been fused.
    """
    values = np.arange(256, dtype=np.float32) / np.float32(255.0)
    if norm.mode == "standardize":
        values = (values - np.float32(norm.mean)) / np.float32(norm.std)
    values.flags.writeable = False
    return values


def batch_normalizer(norm: Normalization, input_shape: Sequence[int]) -> Callable | None:
    """``preprocess`` as a Keras-ops function of a uint8 batch, to run inside a compiled step.

    Its results are bit-identical to ``preprocess``'s, so training data can stay uint8
    in memory (a quarter of the size). ``l2`` gives None: it keeps numpy's exact
    arithmetic, done once up front.
    """
    if norm.mode == "l2":
        return None
    check_normalize_mode(norm.mode)
    shape = tuple(input_shape)
    table = pixel_table(norm)

    def normalize_batch(x):
        from keras import ops

        return ops.reshape(ops.take(table, ops.cast(x, "int32")), (-1, *shape))

    return normalize_batch


def aligned_empty(shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """An uninitialized array whose data starts on an ``ALIGNMENT``-byte boundary."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + size].view(dtype).reshape(shape)


def preprocess(x: np.ndarray, norm: Normalization, input_shape: Sequence[int]) -> np.ndarray:
    """Normalize images and reshape them to a model's ``input_shape`` (784 or 28×28×1)."""
    shape = tuple(input_shape)
    if math.prod(shape) != IMAGE_SIZE * IMAGE_SIZE:
        raise ConfigError(f"input shape {shape} does not hold a 28×28 image")
    return normalize(x, norm).reshape((len(x), *shape))


def one_hot(labels: np.ndarray, classes: int | None = None) -> np.ndarray:
    """Convert a label vector into a one-hot matrix of shape (len(labels), classes).

    As in the notebook (``keras.utils.to_categorical``): ``classes=None`` means
    ``max(labels) + 1``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"labels of shape {labels.shape} and dtype {labels.dtype}: expected a vector of integers")
    if labels.size and labels.min() < 0:
        raise ConfigError(f"label {int(labels.min())} is negative")
    if classes is not None and labels.size and labels.max() >= classes:
        raise ConfigError(f"label {int(labels.max())} does not fit classes={classes}")
    from keras.utils import to_categorical

    return to_categorical(labels, classes).astype(np.float32)


def validation_split(
    x: np.ndarray, y: np.ndarray, size: int = 5000, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out ``size`` images, stratified by class, the same ones for the same ``seed``.

    Each class gives its share of ``size`` (largest remainders round it to an exact
    total); order inside both parts follows the original order.

    Returns:
        ``(x_train, y_train), (x_val, y_val)``.
    """
    if not 0 < size < len(y):
        raise ConfigError(f"validation size {size}: expected between 1 and {len(y) - 1}")
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * size / len(y)
    take = np.floor(exact).astype(int)
    extra = np.argsort(-(exact - take), kind="stable")[: size - take.sum()]
    take[extra] += 1
    rng = np.random.default_rng(seed)
    held = np.concatenate(
        [rng.permutation(np.flatnonzero(y == label))[:n] for label, n in zip(classes, take)]
    )
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return (x[~mask], y[~mask]), (x[mask], y[mask])
