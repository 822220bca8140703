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
from mnist_classifier.inference.model_info import ModelInfo
from mnist_classifier.data.preprocessing import Normalization


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


# Whole runs: the calibration a run records, and where its temperature and threshold come from.

SMALL = {
    "data.train_limit": 2500, "data.test_limit": 1000, "data.validation_size": 1000, "training.batch_size": 64,
    "model.layers": [64, 10], "model.activations": ["relu", "softmax"], "training.epochs": 1,
}  # fmt: skip


@pytest.fixture
def data_env(monkeypatch, mnist_dir):
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))


def _run(tmp_path, **extra):
    from mnist_classifier.config import apply_overrides
    from mnist_classifier.pipeline import train_run
    from mnist_classifier.presets import preset

    return train_run(apply_overrides(preset("mlp"), {**SMALL, **extra}), tmp_path)


def test_a_holdout_run_records_its_calibration_in_metrics_and_model(tmp_path, data_env):
    from mnist_classifier.inference.model_info import read_model_info
    from mnist_classifier.report import write_report

    result = _run(tmp_path)
    block = json.loads((result.run_dir / "metrics.json").read_text())["calibration"]
    assert block["fitted_on"] == "1000 validation images" and block["bins"] == 15
    assert block["temperature"] != 1.0 and block["ece_after"] <= block["ece_before"] + 1e-3
    assert block["validation_rejected"] <= 0.005 and 0 <= block["test_rejected"] <= 0.03
    info = read_model_info(result.run_dir / "model.keras")
    assert (info.temperature, info.reject_below) == (block["temperature"], block["reject_below"])
    write_report(result.run_dir)
    report = result.run_dir / "report"
    assert (report / "reliability.png").stat().st_size > 10_000
    assert "reliability.png" in (report / "report.md").read_text() and "calibration error" in (report / "report.md").read_text()


def test_the_threshold_is_the_validation_digits_quantile(tmp_path, data_env):
    from mnist_classifier.data.sources import load_dataset
    from mnist_classifier.persistence import load_model
    from mnist_classifier.data.preprocessing import Normalization, preprocess, validation_split

    result = _run(tmp_path, **{"training.reject_share": 0.02})
    block = result.metrics["calibration"]
    (x_train, y_train), _ = load_dataset("mnist")
    _, (x_val, y_val) = validation_split(x_train[:2500], y_train[:2500], 1000)
    network = load_model(result.run_dir / "model.keras")
    p = network.predict(preprocess(x_val, Normalization("scale"), (784,)), verbose=0)
    scores = digit_score(calibrated(p, block["temperature"]))
    assert block["reject_below"] == pytest.approx(rejection_threshold(scores, 0.02), abs=1e-6)
    assert fit_temperature(p, y_val) == pytest.approx(block["temperature"], rel=1e-3)


def test_a_run_without_validation_keeps_temperature_one_and_says_so(tmp_path, data_env):
    from mnist_classifier.inference.model_info import read_model_info

    result = _run(tmp_path, **{"data.validation": "none", "training.save_best": False})
    block = result.metrics["calibration"]
    assert (block["temperature"], block["reject_below"], block["fitted_on"]) == (1.0, None, "none")
    info = read_model_info(result.run_dir / "model.keras")
    assert (info.temperature, info.reject_below) == (1.0, None)


def test_init_from_starts_from_that_models_weights(tmp_path, data_env):
    from mnist_classifier.persistence import load_model

    first = _run(tmp_path / "first")
    second = _run(tmp_path / "second", **{"training.init_from": str(first.run_dir / "model.keras")})
    assert second.metrics["init_from"]["path"] == str((first.run_dir / "model.keras").resolve())
    assert second.metrics["test_accuracy"] >= first.metrics["test_accuracy"] - 0.02
    before = load_model(first.run_dir / "model.keras").get_layer("dense_0").get_weights()[0]
    after = load_model(second.run_dir / "model.keras").get_layer("dense_0").get_weights()[0]
    assert np.abs(after - before).max() < 0.5 * np.abs(before).max()  # moved on from them, not drawn afresh
    # The same fine-tune taking back a quarter of each weight from its base: the weight-space average.
    third = _run(tmp_path / "third", **{"training.init_from": str(first.run_dir / "model.keras"), "training.base_share": 0.25})
    averaged = load_model(third.run_dir / "model.keras").get_layer("dense_0").get_weights()[0]
    np.testing.assert_allclose(averaged, 0.25 * before + 0.75 * after, atol=1e-5)
    assert third.metrics["calibration"]["temperature"] != second.metrics["calibration"]["temperature"]


def test_base_share_needs_a_base_and_a_share_under_one():
    from mnist_classifier.config import TrainingConfig

    with pytest.raises(ConfigError, match=r"training.base_share=0.5: needs training.init_from"):
        TrainingConfig(base_share=0.5)
    with pytest.raises(ConfigError, match=r"training.base_share=1.0: expected 0 <= value < 1"):
        TrainingConfig(base_share=1.0, init_from="mnist-cnn")


@pytest.mark.parametrize(
    "init_from, message",
    [
        ("nowhere/model.keras", "training.init_from='nowhere/model.keras': no such .keras file, and not a bundled model"),
        ("mnist-cn", "training.init_from='mnist-cn': no such .keras file"),
        ("fashion-cnn", "training.init_from='fashion-cnn': a model of fashion_mnist"),
        ("mnist-cnn", "training.init_from='mnist-cnn': layer 'dense_0' has weights of shapes [(1152, 128), (128,)]"),
    ],
)
def test_a_bad_init_from_is_one_clear_config_error(tmp_path, data_env, init_from, message):
    with pytest.raises(ConfigError) as caught:
        _run(tmp_path, **{"training.init_from": init_from})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_outliers_join_the_training_set_with_uniform_targets(data_env):
    from mnist_classifier.config import DataConfig
    from mnist_classifier.pipeline import prepare_data

    data = prepare_data(DataConfig(train_limit=2000, validation_size=500, outliers=300), (784,))
    images, targets = data.training_set()
    assert images.shape == (1800, 28, 28) and images.dtype == np.uint8 and targets.shape == (1800, 10)
    np.testing.assert_allclose(targets[-300:], 0.1)
    assert (targets[:1500].max(axis=1) == 1).all()
    with pytest.raises(ConfigError, match="data.outliers=10 on fashion_mnist"):
        DataConfig(dataset="fashion_mnist", outliers=10)


def test_extra_labelled_images_join_the_training_split_only(data_env, tmp_path):
    from mnist_classifier.config import DataConfig
    from mnist_classifier.errors import DataError
    from mnist_classifier.pipeline import prepare_data

    rng = np.random.default_rng(0)
    extra = tmp_path / "crops.npz"
    np.savez(extra, x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y_train=np.arange(40, dtype=np.uint8) % 10)
    plain = prepare_data(DataConfig(train_limit=2000, validation_size=500), (784,))
    data = prepare_data(DataConfig(train_limit=2000, validation_size=500, extra=str(extra)), (784,))
    assert len(data.train[1]) == len(plain.train[1]) + 40 and data.training_size == 1540
    np.testing.assert_array_equal(data.train[0][-40:], np.load(extra)["x_train"])
    np.testing.assert_array_equal(data.validation[0], plain.validation[0])  # never validated or tested on
    np.testing.assert_array_equal(data.test[0], plain.test[0])
    assert data.normalization == plain.normalization  # the data set's statistics, as the base model's
    bad = {
        "missing.npz": None,
        "keys.npz": {"x_test": np.zeros((2, 28, 28), np.uint8)},
        "shape.npz": {"x_train": np.zeros((2, 14, 14), np.uint8), "y_train": np.zeros(2, np.uint8)},
        "count.npz": {"x_train": np.zeros((3, 28, 28), np.uint8), "y_train": np.zeros(2, np.uint8)},
        "label.npz": {"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.array([1, 12], np.uint8)},
    }
    expected = {
        "missing.npz": "no such file, expected a .npz with x_train, y_train", "keys.npz": "npz without x_train, y_train",
        "shape.npz": "images of shape (2, 14, 14), expected N×28×28", "count.npz": "3 images but 2 labels",
        "label.npz": "label 12 out of range",
    }
    for name, arrays in bad.items():
        if arrays is not None:
            np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataError) as caught:
            prepare_data(DataConfig(train_limit=2000, validation_size=500, extra=str(tmp_path / name)), (784,))
        message = str(caught.value)
        assert name in message and expected[name] in message and "\n" not in message, message


def test_an_extra_files_outliers_are_trained_towards_the_uniform_distribution(data_env, tmp_path):
    from mnist_classifier.config import DataConfig
    from mnist_classifier.errors import DataError
    from mnist_classifier.pipeline import prepare_data

    rng = np.random.default_rng(1)
    extra = tmp_path / "crops.npz"
    arrays = {
        "x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "y_train": np.arange(20, dtype=np.uint8) % 10,
        "x_outliers": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
    }  # fmt: skip
    np.savez(extra, **arrays)
    data = prepare_data(DataConfig(train_limit=2000, validation_size=500, outliers=50, extra=str(extra)), (784,))
    assert len(data.train[1]) == 1520 and len(data.outliers) == 80 and data.training_size == 1600
    np.testing.assert_array_equal(data.outliers[-30:], arrays["x_outliers"])  # after the generated ones
    images, targets = data.training_set()
    np.testing.assert_allclose(targets[-30:], 0.1)
    np.testing.assert_array_equal(images[-30:], arrays["x_outliers"])
    np.savez(tmp_path / "bad.npz", **{**arrays, "x_outliers": np.zeros((3, 28, 27), np.uint8)})
    with pytest.raises(DataError, match=r"bad.npz: x_outliers: images of shape \(3, 28, 27\), expected N×28×28"):
        prepare_data(DataConfig(train_limit=2000, validation_size=500, extra=str(tmp_path / "bad.npz")), (784,))


def test_onnx_exports_carry_the_temperature_and_threshold(tiny_model, tmp_path):
    from mnist_classifier.inference.onnx_export import export_onnx
    from mnist_classifier.inference.onnx_runtime import OnnxNetwork

    info = ModelInfo(**{**INFO.__dict__, "temperature": 0.61, "reject_below": 0.93})
    path = export_onnx(tiny_model, tmp_path / "tiny.onnx", info)
    assert (OnnxNetwork(path).info.temperature, OnnxNetwork(path).info.reject_below) == (0.61, 0.93)
