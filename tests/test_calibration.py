"""Temperature scaling, calibration error, the rejection threshold, and the model record's calibration fields."""

import json

import numpy as np
import pytest

from mnist_classifier.calibration import (
    calibrate,
    calibrated,
    digit_score,
    expected_calibration_error,
    fit_temperature,
    rejection_threshold,
    reliability,
)
from mnist_classifier.errors import ConfigError
from mnist_classifier.model_info import ModelInfo
from mnist_classifier.preprocessing import Normalization


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated_toy(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from those very probabilities: perfectly calibrated."""
    rng = np.random.default_rng(seed)
    p = _softmax(rng.normal(size=(n, 10)) * 3)
    labels = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return p, np.minimum(labels, 9)


def test_temperature_fit_recovers_a_known_temperature():
    p, labels = _calibrated_toy()
    overconfident = calibrated(p, 1 / 2.5)  # logits multiplied by 2.5
    assert fit_temperature(overconfident, labels) == pytest.approx(2.5, rel=0.05)


def test_ece_of_a_perfectly_calibrated_toy_is_near_zero():
    p, labels = _calibrated_toy()
    assert expected_calibration_error(p, labels) < 0.01
    assert expected_calibration_error(calibrated(p, 0.3), labels) > 0.1


def test_calibrated_rows_sum_to_one_and_survive_zeros():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    for temperature in (0.1, 1.0, 3.0):
        out = calibrated(p, temperature)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out.sum(axis=1), 1, atol=1e-6)
        np.testing.assert_array_equal(out.argmax(axis=1), p.argmax(axis=1))
    np.testing.assert_allclose(calibrated(np.array([[0.9, 0.1]]), 2.0), [[0.75, 0.25]], atol=1e-6)


def test_a_higher_temperature_lowers_the_digit_score():
    p, _ = _calibrated_toy(100)
    assert (digit_score(calibrated(p, 2.0)) <= digit_score(p) + 1e-6).all()
    assert digit_score(np.full((1, 10), 0.1)) == pytest.approx(0.1)


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf"), float("nan"), True])
def test_bad_temperatures_are_refused(temperature):
    with pytest.raises(ConfigError, match="temperature"):
        calibrated(np.array([[0.5, 0.5]]), temperature)


def test_bad_probabilities_and_labels_are_refused():
    with pytest.raises(ConfigError, match="shape"):
        digit_score(np.ones(10))
    with pytest.raises(ConfigError, match="labels"):
        fit_temperature(np.full((3, 2), 0.5), np.array([0, 1, 2]))


def test_threshold_rejects_at_most_the_share_asked_for():
    scores = np.random.default_rng(0).random(2000)
    threshold = rejection_threshold(scores, 0.01)
    assert np.mean(scores < threshold) <= 0.01
    assert np.mean(scores <= threshold) >= 0.01
    with pytest.raises(ConfigError, match="rejected=1.5"):
        rejection_threshold(scores, 1.5)


def test_reliability_bins_count_every_row():
    p, labels = _calibrated_toy(1000)
    table = reliability(p, labels, bins=15)
    assert sum(table["count"]) == 1000 and len(table["edges"]) == 16


def test_calibrate_sets_the_threshold_from_validation_only():
    p, labels = _calibrated_toy(4000)
    sharp = calibrated(p, 0.5)
    validation, test = (sharp[:2000], labels[:2000]), (sharp[2000:], labels[2000:])
    result = calibrate(validation, test, rejected=0.01)
    assert result.temperature == pytest.approx(2.0, rel=0.1)
    scores = digit_score(calibrated(validation[0], result.temperature))
    assert result.reject_below == rejection_threshold(scores, 0.01)
    assert result.validation_rejected <= 0.01
    assert result.ece_after < result.ece_before
    shifted = calibrate(validation, (sharp[2000:] ** 3, labels[2000:]), rejected=0.01)
    assert shifted.reject_below == result.reject_below  # the test set moves nothing
    json.dumps(result.to_dict())


def test_calibrate_without_validation_keeps_temperature_one():
    p, labels = _calibrated_toy(500)
    result = calibrate(None, (p, labels))
    assert (result.temperature, result.reject_below, result.fitted_on) == (1.0, None, "none")
    assert result.ece_before == result.ece_after


INFO = ModelInfo("mnist", tuple("0123456789"), Normalization("scale"), (784,), "0.1.0")


def test_record_round_trips_temperature_and_threshold():
    info = ModelInfo(**{**INFO.__dict__, "temperature": 1.7, "reject_below": 0.42})
    assert ModelInfo.from_json(info.to_json()) == info


def test_old_records_without_calibration_still_load():
    raw = json.loads(INFO.to_json())
    del raw["temperature"], raw["reject_below"]
    info = ModelInfo.from_json(json.dumps(raw))
    assert (info.temperature, info.reject_below) == (1.0, None)


def test_record_refuses_a_bad_temperature():
    with pytest.raises(ConfigError, match="temperature=0"):
        ModelInfo(**{**INFO.__dict__, "temperature": 0})
