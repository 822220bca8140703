"""Whole runs on small slices: the run directory, resume after Ctrl-C, determinism, evaluate_file."""

import csv
import json
import os
import stat

import keras
import numpy as np
import pytest

from mnist_classifier import TrainingError, load_model, read_model_info
from mnist_classifier.config import apply_overrides
from mnist_classifier.presets import preset
from mnist_classifier.pipeline import evaluate_file, resume_run, train_run

SMALL = {"data.train_limit": 3000, "data.test_limit": 500, "data.validation_size": 500, "training.batch_size": 32}


def _config(name="mlp", **extra):
    settings = {**SMALL, "model.layers": [64, 10], "model.activations": ["relu", "softmax"], "training.epochs": 3}
    return apply_overrides(preset(name), {**settings, **extra})


@pytest.fixture
def data_env(monkeypatch, mnist_dir):
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))


def test_a_run_directory_is_a_complete_record(tmp_path, data_env):
    result = train_run(_config(), tmp_path)
    run = result.run_dir
    assert {p.name for p in run.iterdir()} == {
        "config.toml", "run.json", "history.csv", "history.json", "best.keras", "last.keras", "model.keras", "metrics.json",
        ".lock",
    }  # fmt: skip
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "time_s"} <= set(history[0])
    assert history[1]["learning_rate"] == pytest.approx(0.001 / (1 + 0.2))  # mlp: inverse-time decay
    with open(run / "history.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8 and metrics["backend"] == "jax" and metrics["seed"] == 0
    assert set(metrics["versions"]) >= {"keras", "jax", "numpy", "python"}
    assert metrics["timings"]["first_epoch_s"] > 0 and len(metrics["evaluation"]["per_class"]) == 10
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    info = read_model_info(run / "model.keras")
    assert info.dataset == "mnist" and info.input_shape == (784,) and info.normalization.mode == "scale"
    assert info.metrics["test_accuracy"] == metrics["test_accuracy"]
    assert result.evaluation.accuracy == metrics["test_accuracy"]
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in run.iterdir()} == {0o666 & ~umask}


def test_the_notebook_preset_validates_on_the_test_set(tmp_path, data_env):
    config = _config("notebook", **{"training.epochs": 1})
    result = train_run(config, tmp_path)
    history = json.loads((result.run_dir / "history.json").read_text())
    assert history[0]["val_loss"] == pytest.approx(result.metrics["test_loss"], rel=1e-4)
    assert read_model_info(result.run_dir / "model.keras").normalization.mode == "l2"


@pytest.mark.parametrize("engine", ["auto", "keras"])
def test_mixed_bfloat16_trains_as_float32_does_and_reloads_with_plain_keras(tmp_path, data_env, small_mnist, engine):
    runs = {
        precision: train_run(_config(**{"model.precision": precision, "training.engine": engine}), tmp_path / precision)
        for precision in ("float32", "mixed_bfloat16")
    }
    assert runs["mixed_bfloat16"].metrics["test_accuracy"] == pytest.approx(runs["float32"].metrics["test_accuracy"], abs=0.03)
    path = runs["mixed_bfloat16"].run_dir / "model.keras"
    plain = keras.models.load_model(path)
    assert plain.get_layer("dense_0").dtype_policy.name == "mixed_bfloat16"
    assert plain.get_layer("dense_1").dtype_policy.name == "float32"
    x = small_mnist["test"][0][:64]
    np.testing.assert_array_equal(plain.predict(x, verbose=0), load_model(path).predict(x, verbose=0))


def test_same_seed_same_weights_through_the_pipeline(tmp_path, data_env):
    config = _config(**{"training.epochs": 2, "training.seed": 5})
    first = load_model(train_run(config, tmp_path / "a").run_dir / "model.keras").get_weights()
    second = load_model(train_run(config, tmp_path / "b").run_dir / "model.keras").get_weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


class _InterruptAfter(keras.callbacks.Callback):
    """Simulates Ctrl-C once ``epochs`` epochs have finished."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_interrupted_run_keeps_its_checkpoint_and_resumes(tmp_path, data_env):
    config = _config(**{"training.epochs": 4})
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path, [_InterruptAfter(2)])
    run = next(tmp_path.iterdir())
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted" and status["epochs_completed"] == 2
    assert load_model(run / "best.keras").output_shape == (None, 10)
    assert not (run / "model.keras").exists()

    result = resume_run(run)
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[3]["learning_rate"] == pytest.approx(0.001 / (1 + 0.2 * 3))
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert result.metrics["epochs"] == 4 and result.metrics["test_accuracy"] > 0.8


def test_resume_can_extend_and_refuses_finished_runs(tmp_path, data_env):
    run = train_run(_config(**{"training.epochs": 1}), tmp_path).run_dir
    with pytest.raises(TrainingError, match="already completed"):
        resume_run(run)
    with pytest.raises(TrainingError, match="no run record here"):
        resume_run(tmp_path)


def test_evaluate_file_applies_the_stored_preprocessing(tmp_path, data_env):
    run = train_run(_config("notebook", **{"training.epochs": 1}), tmp_path).run_dir
    evaluation, record = evaluate_file(run / "model.keras")
    metrics = json.loads((run / "metrics.json").read_text())
    assert record.normalization.mode == "l2"
    # full test set here, 500 images in the run: close, not equal
    assert evaluation.accuracy == pytest.approx(metrics["test_accuracy"], abs=0.05)
    assert evaluation.confusion.sum() == 10000


@pytest.mark.parametrize("name", ["cnn", "cnn-augmented"])
def test_cnn_presets_train_save_and_reload(tmp_path, data_env, name, small_mnist):
    # The preset's blocks, convolutions per block, batch norm and augmentation, on narrow layers: what is
    # checked is the round trip, not the preset's accuracy.
    settings = {
        **SMALL, "data.train_limit": 512, "data.test_limit": 256, "data.validation_size": 256, "training.epochs": 1,
        "training.label_smoothing": 0.1, "model.filters": [4, 8, 16], "model.layers": [16, 10],
    }  # fmt: skip
    run = train_run(apply_overrides(preset(name), settings), tmp_path).run_dir
    info = read_model_info(run / "model.keras")
    assert info.input_shape == (28, 28, 1)
    model = load_model(run / "model.keras")
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    x = small_mnist["test"][0][:64].reshape(-1, 28, 28, 1)
    first, second = model.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, second)  # augmentation and dropout are off
    assert first.shape == (64, 10)
    history = json.loads((run / "history.json").read_text())
    assert history[0]["learning_rate"] == pytest.approx(0.0, abs=1e-9)  # one-cycle ends at 0
    evaluation, record = evaluate_file(run / "model.keras", test_limit=256)
    assert record.input_shape == (28, 28, 1) and evaluation.confusion.sum() == 256
