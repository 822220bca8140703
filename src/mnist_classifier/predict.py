"""Classify people's images with a saved model: the model's own preprocessing, top-k answers."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_classifier.bundled import model_path
from mnist_classifier.data import DATASETS
from mnist_classifier.errors import ConfigError, ModelFileError
from mnist_classifier.formats import IMAGE_SIZE
from mnist_classifier.images import read_image, to_digit, to_item
from mnist_classifier.model_info import ModelInfo, check_archive, read_model_info
from mnist_classifier.onnx_runtime import RUNTIMES, OnnxNetwork, cached_export_path
from mnist_classifier.preprocessing import Normalization, preprocess

if TYPE_CHECKING:  # Keras is imported only for models that run on it: onnxruntime starts without it
    import keras

ImageSource = str | os.PathLike | bytes | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """One image's answer: the most likely class, its probability, and the top k."""

    source: str
    label: int
    name: str
    probability: float
    top: tuple[tuple[str, float], ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict:
        """A JSON-ready record."""
        return {
            "file": self.source,
            "label": self.label,
            "name": self.name,
            "probability": self.probability,
            "top": [{"name": name, "probability": p} for name, p in self.top],
            "probabilities": list(self.probabilities),
        }


class Classifier:
    """A loaded model with the preprocessing recorded in its file, ready for images.

    ``runtime`` says what computes its answers: ``keras``, or ``onnx`` (onnxruntime);
    ``name`` is the model's file name or bundled name.
    """

    def __init__(self, network: keras.Model | OnnxNetwork, info: ModelInfo, name: str = "model") -> None:
        self.network = network
        self.info = info
        self.name = name
        self.runtime = "onnx" if isinstance(network, OnnxNetwork) else "keras"
        self.frame = to_digit if info.dataset == "mnist" else to_item
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        dataset: str | None = None,
        normalize: str | None = None,
        runtime: str | None = None,
    ) -> Classifier:
        """Load a ``.keras`` or ``.onnx`` file or a bundled model (by name) on ``runtime`` (keras or onnx).

        ``dataset`` and ``normalize`` describe a model we did not write. A ``.keras``
        model asked to run on onnx is exported once, checked, and kept in the cache.
        """
        network, shape, info = open_model(model, dataset, runtime)
        if info is None:
            if normalize == "standardize":
                raise ConfigError("normalize=standardize needs the training statistics a model file of ours records")
            name = dataset or "mnist"
            info = ModelInfo(name, DATASETS[name].classes, Normalization(normalize or "scale"), shape)
        elif normalize is not None:
            info = ModelInfo(info.dataset, info.classes, Normalization(normalize), shape, metrics=info.metrics)
        return cls(network, info, Path(model).name)

    def prepare(self, source: ImageSource, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
        """One image in the data set's 28×28 uint8 form; a 28×28 array is taken as already in it."""
        label = name or _describe(source, 0)
        if not isinstance(source, np.ndarray):
            return self.frame(read_image(source, label, max_pixels), label)
        if source.ndim != 2:
            raise ConfigError(f"{label}: array of shape {source.shape}, expected a 2-D greyscale image")
        pixels = _as_pixels(source, label)
        return pixels if pixels.shape == (28, 28) else self.frame(pixels, label)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities of N×28×28 uint8 images."""
        inputs = preprocess(images, self.info.normalization, self.info.input_shape)
        if self.runtime == "onnx":  # onnxruntime sessions are thread-safe
            return self.network(inputs)
        with self._lock:  # one model, many threads (the service): Keras's predict state is shared
            return np.asarray(self.network.predict_on_batch(inputs))

    def classify(self, images: np.ndarray, sources: Sequence[str], top_k: int = 3) -> list[Prediction]:
        """Predictions for prepared 28×28 images, named by ``sources``."""
        if top_k < 1:
            raise ConfigError(f"top_k={top_k}: expected at least 1")
        classes = self.info.classes
        results = []
        for source, row in zip(sources, self.probabilities(images)):
            order = np.argsort(row)[::-1][: min(top_k, len(classes))]
            top = tuple((classes[i], float(row[i])) for i in order)
            results.append(Prediction(source, int(order[0]), classes[order[0]], float(row[order[0]]), top, tuple(map(float, row))))
        return results


def open_model(
    model: str | Path, dataset: str | None = None, runtime: str | None = None
) -> tuple[keras.Model | OnnxNetwork, tuple[int, ...], ModelInfo | None]:
    """A classifier of 28×28 images for inference, its input shape and its record (if any).

    ``model`` is a ``.keras`` or ``.onnx`` file or a bundled model's name; ``runtime``
    (default: ``onnx`` for a ``.onnx`` file, else ``keras``) is what runs it, a
    ``.keras`` model on ``onnx`` being exported once into the cache. ``dataset``,
    when given, must be the one the record names.
    """
    path = model_path(model)
    runtime = runtime or ("onnx" if path.suffix == ".onnx" else "keras")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if path.suffix == ".onnx" and runtime != "onnx":
        raise ConfigError(f"{path}: an ONNX file runs on onnxruntime only (runtime onnx), not on {runtime}")
    if runtime == "onnx":
        network = OnnxNetwork(path if path.suffix == ".onnx" else _cached_export(path))
        shape, info = check_shapes(network.input_shape, network.output_shape, path), network.info
    else:
        network, shape, info = _keras_classifier(path)
    if info is not None and dataset is not None and dataset != info.dataset:
        raise ModelFileError(f"{path}: model was trained on {info.dataset}, not {dataset}")
    return network, shape, info


def _cached_export(path: Path) -> Path:
    """The ONNX export of a ``.keras`` file, from the cache; exported (with Keras) on first use."""
    target = cached_export_path(check_archive(path))
    if not target.exists():
        from mnist_classifier.onnx_format import export_onnx  # Keras is imported only to export

        network, _, info = _keras_classifier(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(network, target, info)
    return target


def _keras_classifier(path: Path) -> tuple[keras.Model, tuple[int, ...], ModelInfo | None]:
    """A ``.keras`` classifier of 28×28 images, its input shape and its record."""
    from mnist_classifier.persistence import load_model  # imports Keras

    network = load_model(path, compile=False)
    return network, image_input_shape(network, path), read_model_info(path)


def image_input_shape(network: keras.Model, path: Path) -> tuple[int, ...]:
    """The per-image input shape of a one-input, ten-output Keras classifier of 28×28 images."""
    try:
        shape, outputs = network.input_shape, network.output_shape
    except (AttributeError, ValueError):
        raise ModelFileError(f"{path}: model has no defined input and output (never built)") from None
    if not isinstance(shape, tuple) or not isinstance(outputs, tuple):
        raise ModelFileError(f"{path}: model has several inputs or outputs, expected one of each")
    return check_shapes(tuple(shape[1:]), tuple(outputs[1:]), path)


def check_shapes(shape: tuple, outputs: tuple, path: Path, n_classes: int = 10) -> tuple[int, ...]:
    """A model's per-image input shape, checked to hold a 28×28 image, and its outputs one score per class."""
    if not all(isinstance(size, int) for size in shape) or math.prod(shape) != IMAGE_SIZE * IMAGE_SIZE:
        raise ModelFileError(f"{path}: model takes inputs of shape {shape}, which do not fit 28×28 images")
    if outputs != (n_classes,):
        raise ModelFileError(f"{path}: model outputs shape {outputs}, expected ({n_classes},): one score per class")
    return shape


def _as_pixels(array: np.ndarray, name: str) -> np.ndarray:
    """An array of 0-255 pixels (or 0-1 floats) as uint8."""
    values = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 255:
        raise ConfigError(f"{name}: pixels must be finite values in 0-255 (or 0-1)")
    if values.max() <= 1 and not np.issubdtype(array.dtype, np.integer):
        values = values * 255
    return np.round(values).astype(np.uint8)


def predict_images(
    model: str | os.PathLike | Classifier, images: Iterable[ImageSource], *, top_k: int = 3
) -> list[Prediction]:
    """Classify image files, their bytes, or greyscale arrays with a saved model.

    Each image goes through the MNIST recipe (dark ink on light paper is inverted,
    cropped, scaled and centred) and then the model's own normalization; a 28×28
    array is taken as an already-prepared image. Raises ImageError naming the first
    image that cannot be read.
    """
    classifier = model if isinstance(model, Classifier) else Classifier.load(model)
    images = list(images)
    if not images:
        return []
    names = [_describe(image, i) for i, image in enumerate(images)]
    prepared = np.stack([classifier.prepare(image, name) for image, name in zip(images, names)])
    return classifier.classify(prepared, names, top_k)


def _describe(image: ImageSource, index: int) -> str:
    """How an image is named in answers and errors: its path, or its position."""
    return f"image {index}" if isinstance(image, (bytes, np.ndarray)) else str(image)
