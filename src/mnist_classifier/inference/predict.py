"""Classify people's pictures with a saved model: find the digits, frame them, top-k answers.

A digit model reads every digit of a picture, left to right, into a ``number``;
a picture that shows nothing it recognises as digits is ``rejected`` with a
``reason``. Other models (Fashion-MNIST) answer one item per picture.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_classifier.inference.bundled import model_path
from mnist_classifier.calibration import calibrated, digit_score
from mnist_classifier.data.sources import DATASETS
from mnist_classifier.errors import ConfigError, ImageError, ModelFileError
from mnist_classifier.data.formats import IMAGE_SIZE
from mnist_classifier.inference.images import Picture, is_framed, read_picture, to_item
from mnist_classifier.inference.model_info import ModelInfo, check_archive, read_model_info
from mnist_classifier.inference.onnx_runtime import (
    RUNTIMES,
    OnnxNetwork,
    cached_export_path,
    require_exporter,
    shipped_graph,
    source_digest,
)
from mnist_classifier.data.preprocessing import Normalization, preprocess
from mnist_classifier.inference.reading import Mark, Reading, read_digits

if TYPE_CHECKING:  # Keras is imported only for models that run on it: onnxruntime starts without it
    import keras

ImageSource = str | os.PathLike | bytes | np.ndarray
# A row of this many digits or more is a number even with one digit unsure, within NUMBER_SLACK of the
# threshold, when the model is at least NUMBER_SURE of every other (a hard digit among sure ones).
NUMBER_MARKS = 4
NUMBER_SLACK = 0.2
NUMBER_SURE = 0.99
_log = logging.getLogger(__name__)  # with no handler set up, Python prints its warnings alone on stderr


def _top_records(top: tuple[tuple[str, float], ...]) -> list[dict]:
    """The top k as JSON-ready ``{"name", "probability"}`` records."""
    return [{"name": name, "probability": p} for name, p in top]


@dataclass(frozen=True)
class Digit:
    """One digit of a picture: the most likely class, its probability, the top k, and where it is."""

    label: int
    name: str
    probability: float
    top: tuple[tuple[str, float], ...]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the original picture's pixels
    image: np.ndarray  # the 28×28 input the model was given
    rejected: bool = False  # its digit score is under the threshold

    def to_dict(self) -> dict:
        """A JSON-ready record (without the input image)."""
        return {
            "label": self.label,
            "name": self.name,
            "probability": self.probability,
            "top": _top_records(self.top),
            "box": list(self.box),
        }


@dataclass(frozen=True)
class Prediction:
    """One picture's answer.

    For a picture of one digit (or item), ``label``, ``name``, ``probability``,
    ``top`` and ``probabilities`` describe it. For a number, ``name`` is the
    number, ``probability`` the chance that every digit is right (the product of
    theirs) and ``label`` None; each digit is in ``digits``, left to right.
    ``number`` is the digits read ("" when none; None for models of other
    things than digits). ``rejected`` says the picture shows nothing the model
    recognises, ``reason`` why.
    """

    source: str
    label: int | None
    name: str
    probability: float
    top: tuple[tuple[str, float], ...]
    probabilities: tuple[float, ...]
    number: str | None = None
    rejected: bool = False
    reason: str | None = None
    digits: tuple[Digit, ...] = ()

    def to_dict(self) -> dict:
        """A JSON-ready record."""
        record = {
            "file": self.source,
            "label": self.label,
            "name": self.name,
            "probability": self.probability,
            "top": _top_records(self.top),
            "probabilities": list(self.probabilities),
            "rejected": self.rejected,
            "reason": self.reason,
        }
        if self.number is not None:
            record["number"] = self.number
            record["digits"] = [digit.to_dict() for digit in self.digits]
        return record


class Classifier:
    """A loaded model with the preprocessing recorded in its file, ready for images.

    ``runtime`` says what computes its answers: ``keras``, or ``onnx`` (onnxruntime);
    ``name`` is the model's file name or bundled name.
    """

    def __init__(
        self, network: keras.Model | OnnxNetwork, info: ModelInfo, name: str = "model", reject_below: float | None = None
    ) -> None:
        self.network = network
        self.info = info
        self.name = name
        self.runtime = "onnx" if isinstance(network, OnnxNetwork) else "keras"
        self.reads_digits = info.dataset == "mnist"
        self.reject_below = info.reject_below if reject_below is None else reject_below
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        dataset: str | None = None,
        normalize: str | None = None,
        runtime: str | None = None,
        reject_below: float | None = None,
    ) -> Classifier:
        """Load a ``.keras`` or ``.onnx`` file or a bundled model (by name) on ``runtime`` (keras or onnx).

        ``dataset`` and ``normalize`` describe a model we did not write. A ``.keras``
        model asked to run on onnx is exported once, checked, and kept in the cache.
        ``reject_below`` replaces the model's own rejection threshold (see
        :func:`~mnist_classifier.calibration.digit_score`).
        """
        network, shape, info = open_model(model, dataset, runtime)
        if info is None:
            if normalize == "standardize":
                raise ConfigError("normalize=standardize needs the training statistics a model file of ours records")
            name = dataset or "mnist"
            info = ModelInfo(name, DATASETS[name].classes, Normalization(normalize or "scale"), shape)
        elif normalize is not None:
            info = dataclasses.replace(info, normalization=Normalization(normalize), input_shape=shape)
        return cls(network, info, Path(model).name, reject_below)

    def read(self, source: ImageSource, name: str | None = None, max_pixels: int | None = None) -> Reading:
        """What the model is to be shown of one picture: its digits (or its one item) as 28×28 inputs.

        A 28×28 array is taken as an input already framed: any for an item model,
        for a digit model one framed as MNIST frames its digits (light ink on black,
        its box 20 px; :func:`~mnist_classifier.inference.images.is_framed`). Other
        arrays are greyscale pictures. Raises ImageError for a file that cannot be read.
        """
        label = name or _describe(source, 0)
        if isinstance(source, np.ndarray):
            if source.ndim != 2:
                raise ConfigError(f"{label}: array of shape {source.shape}, expected a 2-D greyscale image")
            pixels = _as_pixels(source, label)
            if pixels.shape == (IMAGE_SIZE, IMAGE_SIZE) and (not self.reads_digits or is_framed(pixels)):
                return Reading((Mark(pixels, (0, 0, IMAGE_SIZE, IMAGE_SIZE)),))
            picture = Picture(pixels, 1.0, (pixels.shape[1], pixels.shape[0]))
        else:
            picture = read_picture(source, label, max_pixels)
        if self.reads_digits:
            return read_digits(picture, self.sureness)
        return Reading((Mark(to_item(picture.grey, label), (0, 0, *picture.size)),))

    def prepare(self, source: ImageSource, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
        """One picture's first digit (or item) as the model's 28×28 uint8 input; ImageError when it has none."""
        reading = self.read(source, name, max_pixels)
        if not reading.marks:
            raise ImageError(f"{name or _describe(source, 0)}: {reading.reason}")
        return reading.marks[0].image

    def answer(self, readings: Sequence[Reading], sources: Sequence[str], top_k: int = 3) -> list[Prediction]:
        """Each picture's answer from its reading: one call of the model for all their digits."""
        images = [mark.image for reading in readings for mark in reading.marks]
        rows = iter(self.calibrated(np.stack(images)) if images else ())
        return [self._answer(source, reading, [next(rows) for _ in reading.marks], top_k) for source, reading in zip(sources, readings)]

    def sureness(self, images: np.ndarray) -> np.ndarray:
        """How sure the model is of each of N×28×28 uint8 images: its digit score (top calibrated probability)."""
        return digit_score(self.calibrated(images))

    def calibrated(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities of N×28×28 uint8 images (the model's, scaled by its temperature)."""
        return calibrated(self.probabilities(images), self.info.temperature)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities of N×28×28 uint8 images."""
        inputs = preprocess(images, self.info.normalization, self.info.input_shape)
        if self.runtime == "onnx":  # onnxruntime sessions are thread-safe
            return self.network(inputs)
        with self._lock:  # one model, many threads (the service): Keras's predict state is shared
            return np.asarray(self.network.predict_on_batch(inputs))

    def classify(self, images: np.ndarray, sources: Sequence[str], top_k: int = 3) -> list[Prediction]:
        """Predictions for 28×28 images already framed, one digit (or item) each, named by ``sources``."""
        readings = [Reading((Mark(image, (0, 0, IMAGE_SIZE, IMAGE_SIZE)),)) for image in images]
        return self.answer(readings, sources, top_k)

    def _answer(self, source: str, reading: Reading, rows: list[np.ndarray], top_k: int) -> Prediction:
        """One picture's Prediction from its marks and their calibrated probabilities."""
        if top_k < 1:
            raise ConfigError(f"top_k={top_k}: expected at least 1")
        digits = tuple(self._digit(mark, row, top_k) for mark, row in zip(reading.marks, rows))
        number = "".join(digit.name for digit in digits) if self.reads_digits else None
        if not digits:
            return Prediction(source, None, "", 0.0, (), (), "" if self.reads_digits else None, True, reading.reason)
        rejected = [i for i, digit in enumerate(digits) if digit.rejected]
        if self._one_unsure_in_a_number(digits, rejected):
            rejected = []
        reason = None
        if rejected:
            which = "the picture" if len(digits) == 1 else f"mark {rejected[0] + 1} of {len(digits)}"
            kind = "a digit" if self.reads_digits else f"a {self.info.dataset} item"
            reason = f"{which} does not look like {kind} (score {digits[rejected[0]].probability:.2f} < {self.reject_below:.2f})"
        if len(digits) == 1:
            (digit,), row = digits, rows[0]
            return Prediction(
                source, digit.label, digit.name, digit.probability, digit.top, tuple(map(float, row)),
                number, bool(rejected), reason, digits,
            )  # fmt: skip
        probability = float(np.prod([digit.probability for digit in digits]))
        return Prediction(source, None, number or "", probability, (), (), number, bool(rejected), reason, digits)

    def _one_unsure_in_a_number(self, digits: tuple[Digit, ...], rejected: list[int]) -> bool:
        """Whether the one digit under the threshold is read anyway: a number of ``NUMBER_MARKS`` digits
        or more, that digit within ``NUMBER_SLACK`` of the threshold, every other at ``NUMBER_SURE`` or over."""
        if len(digits) < NUMBER_MARKS or len(rejected) != 1 or self.reject_below is None:
            return False
        sure = max(NUMBER_SURE, self.reject_below)
        unsure = digits[rejected[0]].probability
        return unsure >= self.reject_below - NUMBER_SLACK and all(digit.probability >= sure for digit in digits if not digit.rejected)

    def _digit(self, mark: Mark, row: np.ndarray, top_k: int) -> Digit:
        """One mark's answer; rejected when its digit score is under the threshold."""
        classes = self.info.classes
        order = np.argsort(row)[::-1][: min(top_k, len(classes))]
        top = tuple((classes[i], float(row[i])) for i in order)
        score = float(digit_score(row[None])[0])
        rejected = self.reject_below is not None and score < self.reject_below
        return Digit(int(order[0]), classes[order[0]], float(row[order[0]]), top, mark.box, mark.image, rejected)


def open_model(
    model: str | Path, dataset: str | None = None, runtime: str | None = None
) -> tuple[keras.Model | OnnxNetwork, tuple[int, ...], ModelInfo | None]:
    """A classifier of 28×28 images for inference, its input shape and its record (if any).

    ``model`` is a ``.keras`` or ``.onnx`` file or a bundled model's name; ``runtime``
    (default: ``onnx`` for a ``.onnx`` file, else ``keras``) is what runs it. A
    ``.keras`` model on ``onnx`` runs the graph shipped beside it (a bundled
    model's), else is exported once into the cache, with a message on stderr
    while it is (through :mod:`logging`). ``dataset``,
    when given, must be the one the record names.
    """
    path = model_path(model)
    runtime = runtime or ("onnx" if path.suffix == ".onnx" else "keras")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if path.suffix == ".onnx" and runtime != "onnx":
        raise ConfigError(f"{path}: an ONNX file runs on onnxruntime only (runtime onnx), not on {runtime}")
    if runtime == "onnx":
        network = OnnxNetwork(path) if path.suffix == ".onnx" else _onnx_network(check_archive(path))
        shape, info = check_shapes(network.input_shape, network.output_shape, path), network.info
    else:
        network, shape, info = _keras_classifier(path)
    if info is not None and dataset is not None and dataset != info.dataset:
        raise ModelFileError(f"{path}: model was trained on {info.dataset}, not {dataset}")
    return network, shape, info


def _onnx_network(path: Path) -> OnnxNetwork:
    """A ``.keras`` file's graph on onnxruntime: the one shipped beside it, else its export from the cache.

    The export is made (with Keras) on first use; it needs the ``export`` extra.
    """
    shipped = shipped_graph(path)
    if shipped is not None:
        return shipped
    target = cached_export_path(path)
    if not target.exists():
        require_exporter()
        from mnist_classifier.inference.onnx_export import export_onnx  # imports Keras

        _log.warning("exporting %s to ONNX (once)...", path.name)
        network, _, info = _keras_classifier(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(network, target, info, source_digest(path))
    return OnnxNetwork(target)


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
    """Read the digits (or the item) in image files, their bytes, or greyscale arrays with a saved model.

    A digit model finds every digit of a picture (paper lit unevenly, photos,
    whole numbers) and frames each as MNIST frames its digits; a 28×28 array
    framed that way already (light ink on black, its box 20 px) is taken as one
    digit as it is. Raises ImageError naming the first image
    that cannot be read.

    Example:
        >>> [answer] = predict_images("mnist-cnn", ["number.jpg"])
        >>> answer.number, [digit.box for digit in answer.digits]
    """
    classifier = model if isinstance(model, Classifier) else Classifier.load(model)
    images = list(images)
    names = [_describe(image, i) for i, image in enumerate(images)]
    readings = [classifier.read(image, name) for image, name in zip(images, names)]
    return classifier.answer(readings, names, top_k)


def _describe(image: ImageSource, index: int) -> str:
    """How an image is named in answers and errors: its path, or its position."""
    return f"image {index}" if isinstance(image, (bytes, np.ndarray)) else str(image)
