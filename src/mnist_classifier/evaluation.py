"""Evaluate: loss and accuracy as the notebook does, plus per-class metrics and confusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np


def test_model(
    network: keras.Model, data: np.ndarray, labels: np.ndarray, verbose: bool = True
) -> list[float]:
    """Evaluate ``network`` on ``data`` and one-hot ``labels``.

    Returns:
        ``[loss, accuracy]``; the loss includes the L2 penalty, as Keras reports it.
    """
    return [float(value) for value in network.evaluate(x=data, y=labels, verbose=verbose)]


test_model.__test__ = False  # a library function, not a pytest test


@dataclass(frozen=True)
class Evaluation:
    """Everything ``evaluate`` reports about a model on one labelled set."""

    loss: float
    accuracy: float
    classes: tuple[str, ...]
    confusion: np.ndarray  # rows: true class, columns: predicted class
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "per_class": [
                {
                    "class": name,
                    "precision": float(p),
                    "recall": float(r),
                    "f1": float(f),
                    "support": int(s),
                }
                for name, p, r, f, s in zip(
                    self.classes, self.precision, self.recall, self.f1, self.confusion.sum(axis=1)
                )
            ],
            "confusion_matrix": self.confusion.tolist(),
        }


def evaluate(
    network: keras.Model,
    data: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    batch_size: int = 1024,
) -> Evaluation:
    """Loss, accuracy, per-class precision/recall/F1 and confusion matrix on integer ``labels``.

    One prediction pass (:func:`predict_probabilities`), independent of how (or
    whether) the model was compiled; then :func:`scores`.
    """
    return scores(predict_probabilities(network, data, batch_size), labels, classes, weight_penalty(network))


def predict_probabilities(network: keras.Model, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """``network.predict`` of ``inputs`` in equal batches of at most ``batch_size``, the last one padded.

    One batch shape, so one compiled program, for a set of any size, and the same
    one for sets whose batch counts divide them alike (5,000 and 10,000 images both
    go in batches of 1,000).
    """
    count = len(inputs)
    batches = max(1, -(-count // batch_size))
    size = -(-count // batches) if count else 1
    padding = batches * size - count
    if padding:
        inputs = np.concatenate([inputs, np.zeros((padding, *inputs.shape[1:]), inputs.dtype)])
    return np.asarray(network.predict(inputs, batch_size=size, verbose=0))[:count]


def weight_penalty(network: keras.Model) -> float:
    """The sum of the model's weight penalties (L2), as Keras adds it to the loss."""
    return float(sum(keras.ops.convert_to_numpy(loss) for loss in network.losses))


def scores(probabilities: np.ndarray, labels: np.ndarray, classes: Sequence[str], penalty: float = 0.0) -> Evaluation:
    """The :class:`Evaluation` of predicted class ``probabilities`` against integer ``labels``.

    The loss is Keras's: mean categorical cross-entropy plus ``penalty`` (the
    model's weight penalties).
    """
    picked = probabilities[np.arange(len(labels)), labels]
    # Keras clips probabilities to [1e-7, 1 - 1e-7] in its cross-entropy.
    cross_entropy = float(-np.mean(np.log(np.clip(picked, 1e-7, 1 - 1e-7))))
    predicted = np.argmax(probabilities, axis=1)
    confusion = confusion_matrix(labels, predicted, len(classes))
    precision, recall, f1 = per_class_scores(confusion)
    accuracy = float(np.mean(predicted == labels))
    return Evaluation(cross_entropy + penalty, accuracy, tuple(classes), confusion, precision, recall, f1)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs, an n×n int matrix."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of every class; 0 where a class was never predicted or seen."""
    hits = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return precision, recall, f1
