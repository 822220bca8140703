"""Keras classifiers for MNIST and Fashion-MNIST: the notebook's pipeline as a library.

Importing the package selects Keras's JAX backend unless ``KERAS_BACKEND`` is already
set: Keras would otherwise fall back to TensorFlow, which is slower here and not
installed by default. Keras itself is imported only when a function needing it is
first used, so data tools start fast.

Example:
    >>> from mnist_classifier import load_dataset, one_hot, build_model, optimize_model
    >>> (x_train, y_train), (x_test, y_test) = load_dataset("mnist")
"""

import importlib
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from mnist_classifier.data import load_dataset, read_dataset  # noqa: E402
from mnist_classifier.errors import (  # noqa: E402
    ConfigError,
    DataError,
    DownloadError,
    MnistClassifierError,
    ModelFileError,
    ImageError,
    TrainingError,
)
from mnist_classifier.data.preprocessing import (  # noqa: E402
    Normalization,
    one_hot,
    preprocess,
    validation_split,
)

__version__ = "0.1.0"

# Public names loaded on first use: most of their modules import Keras.
_LAZY = {
    "Config": "config",
    "resolve_config": "presets",
    "build_model": "models",
    "build_cnn": "models",
    "Augmentation": "models",
    "optimize_model": "training",
    "train_model": "training",
    "test_model": "evaluation",
    "evaluate": "evaluation",
    "save_model": "persistence",
    "load_model": "persistence",
    "read_model_info": "inference.model_info",
    "ModelInfo": "inference.model_info",
    "predict_images": "inference.predict",
    "Classifier": "inference.predict",
    "Prediction": "inference.predict",
    "export_onnx": "inference.onnx_export",
}


def __getattr__(name: str):
    """Import Keras-dependent parts of the API when first asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"mnist_classifier.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mnist_classifier' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataError",
    "DownloadError",
    "MnistClassifierError",
    "ImageError",
    "ModelFileError",
    "Normalization",
    "TrainingError",
    "load_dataset",
    "one_hot",
    "preprocess",
    "read_dataset",
    "validation_split",
    *_LAZY,
]
