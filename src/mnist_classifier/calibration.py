"""Confidence that means something: temperature scaling, calibration error, and "not a digit".

A network's softmax probabilities are rescaled by one temperature ``T`` fitted on
held-out validation images (Guo et al., 2017, "On Calibration of Modern Neural
Networks"): ``softmax(log p / T)``, the same as dividing the logits by ``T``, so the
predicted class never changes. The temperature and the rejection threshold live in
the model's record (:class:`~mnist_classifier.model_info.ModelInfo`), so Keras and
onnxruntime apply them alike, after the network, on its probabilities.

A picture is "not a digit" when ``digit_score(calibrated(p, info.temperature)) <
info.reject_below``; the threshold is a low quantile of the validation digits' scores.

Example:
    >>> probabilities = calibrated(network.predict(inputs), info.temperature)
    >>> rejected = digit_score(probabilities) < info.reject_below
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mnist_classifier.errors import ConfigError

ECE_BINS = 15  # Guo et al.'s bins of confidence
# Temperatures searched when fitting: far wider than any trained network needs.
TEMPERATURE_RANGE = (0.05, 20.0)
# Share of validation digits the default threshold may reject.
REJECTED_DIGITS = 0.005
_TINY = np.finfo(np.float64).tiny


def calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities rescaled by ``temperature``: ``softmax(log p / T)``, row by row.

    Args:
        probabilities: N×K softmax outputs (rows summing to 1; zeros allowed).
        temperature: above 1 softens, below 1 sharpens, 1 leaves the rows as they are.

    Returns:
        N×K float32 probabilities, rows summing to 1, each row's ranking unchanged.

    Example:
        >>> calibrated(np.array([[0.9, 0.1]]), 2.0).round(3)
        array([[0.75, 0.25]], dtype=float32)
    """
    check_temperature(temperature)
    p = _rows(probabilities)
    if temperature == 1:
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    scaled = np.log(np.maximum(p, _TINY)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def digit_score(probabilities: np.ndarray) -> np.ndarray:
    """How digit-like each row of (calibrated) probabilities is: higher is more digit-like.

    The score is the largest class probability (Hendrycks and Gimpel, 2017); with a
    model trained to answer non-digits with the uniform distribution (outlier
    exposure), it falls towards ``1/K`` on pictures that are no digit.

    Returns:
        A float32 vector, one score in [1/K, 1] per row.
    """
    return _rows(probabilities).max(axis=1).astype(np.float32)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimizes the negative log-likelihood of ``labels`` (Guo et al.).

    The search runs over ``log T`` within TEMPERATURE_RANGE (bounded Brent's method);
    the result is the same whichever ``T`` the probabilities were computed at.

    Args:
        probabilities: N×K softmax outputs on held-out images (never the test set).
        labels: their N integer classes.
    """
    from scipy.optimize import minimize_scalar

    p = _rows(probabilities)
    y = _labels(labels, p)
    log_p = np.log(np.maximum(p, _TINY))

    def nll(log_t: float) -> float:
        scaled = log_p / math.exp(log_t)
        top = scaled.max(axis=1)
        log_norm = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(y)), y]))

    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    found = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(found.x))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """The expected calibration error: over equal-width bins of confidence, the gap
    between accuracy and mean confidence, weighted by each bin's share of the rows.

    Returns:
        A share in [0, 1] (0: every bin's accuracy equals its confidence).
    """
    table = reliability(probabilities, labels, bins)
    counts = np.array(table["count"], dtype=np.float64)
    gaps = np.abs(np.array(table["accuracy"]) - np.array(table["confidence"]))
    return float(np.nansum(gaps * counts) / counts.sum())


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width bin of confidence (the top probability): its edges, row count,
    mean confidence and accuracy (NaN for an empty bin). What a reliability diagram draws."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins={bins!r}: expected an integer >= 1")
    p = _rows(probabilities)
    y = _labels(labels, p)
    confidence = p.max(axis=1)
    right = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / counts
        accuracy = np.bincount(which, right, bins) / counts
    return {
        "edges": edges.tolist(),
        "count": counts.tolist(),
        "confidence": mean_confidence.tolist(),
        "accuracy": accuracy.tolist(),
    }


def rejection_threshold(scores: np.ndarray, rejected: float = REJECTED_DIGITS) -> float:
    """The score below which a share ``rejected`` of ``scores`` (validation digits) lies.

    A lower-interpolated quantile, so that at most that share of those digits scores
    strictly below it.
    """
    if isinstance(rejected, bool) or not isinstance(rejected, (int, float)) or not 0 <= rejected < 1:
        raise ConfigError(f"rejected={rejected!r}: expected a share 0 <= rejected < 1")
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise ConfigError(f"scores: expected a non-empty vector of finite numbers, got {values.size} values")
    return float(np.quantile(values, rejected, method="lower"))


@dataclass(frozen=True)
class Calibration:
    """A model's calibration as ``metrics.json`` records it.

    ``temperature`` and ``reject_below`` were set on ``fitted_on`` (validation images,
    or ``"none"``: T=1 and no threshold); ECE and the share of digits rejected are
    measured on the test images.
    """

    fitted_on: str
    temperature: float
    reject_below: float | None
    validation_rejected: float | None
    test_rejected: float | None
    ece_before: float
    ece_after: float
    bins: int = ECE_BINS
    reliability_before: dict[str, list] | None = None
    reliability_after: dict[str, list] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def calibrate(
    validation: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray],
    rejected: float = REJECTED_DIGITS,
) -> Calibration:
    """Fit the temperature and threshold on ``validation`` and measure them on ``test``.

    Args:
        validation: ``(probabilities, labels)`` of held-out images, or None: then the
            temperature stays 1 and nothing is rejected.
        test: ``(probabilities, labels)`` of the test images: measured, never fitted on.
        rejected: share of validation digits the threshold may reject.
    """
    test_p, test_y = test
    if validation is None:
        table = reliability(test_p, test_y)
        ece = expected_calibration_error(test_p, test_y)
        return Calibration("none", 1.0, None, None, None, ece, ece, ECE_BINS, table, table)
    val_p, val_y = validation
    temperature = fit_temperature(val_p, val_y)
    threshold = rejection_threshold(digit_score(calibrated(val_p, temperature)), rejected)
    after = calibrated(test_p, temperature)
    return Calibration(
        fitted_on=f"{len(val_y)} validation images",
        temperature=temperature,
        reject_below=threshold,
        validation_rejected=float(np.mean(digit_score(calibrated(val_p, temperature)) < threshold)),
        test_rejected=float(np.mean(digit_score(after) < threshold)),
        ece_before=expected_calibration_error(test_p, test_y),
        ece_after=expected_calibration_error(after, test_y),
        reliability_before=reliability(test_p, test_y),
        reliability_after=reliability(after, test_y),
    )


def check_temperature(temperature: float) -> None:
    """A temperature must be a finite number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ConfigError(f"temperature={temperature!r}: expected a number > 0")


def _rows(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities as an N×K float64 array of non-negative numbers, or a ConfigError."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ConfigError(f"probabilities of shape {p.shape}: expected N×K rows, K >= 2")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ConfigError("probabilities: expected finite non-negative numbers")
    return p


def _labels(labels: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Integer labels matching the rows of ``p``, or a ConfigError."""
    y = np.asarray(labels)
    if y.shape != (len(p),) or not np.issubdtype(y.dtype, np.integer) or (y.size and not 0 <= y.min() <= y.max() < p.shape[1]):
        raise ConfigError(f"labels of shape {y.shape}: expected {len(p)} integers in 0..{p.shape[1] - 1}")
    return y
