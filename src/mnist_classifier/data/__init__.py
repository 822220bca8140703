"""The data: MNIST and Fashion-MNIST found and read (``sources``, ``formats``, ``download``),
turned into model inputs (``preprocessing``), varied in training (``augmentation``), and the
non-digit pictures that teach a model what is not a digit (``outliers``).

Example:
    >>> from mnist_classifier.data import load_dataset
    >>> (x_train, y_train), (x_test, y_test) = load_dataset("mnist")
"""

from mnist_classifier.data.sources import load_dataset, read_dataset

__all__ = ["load_dataset", "read_dataset"]
