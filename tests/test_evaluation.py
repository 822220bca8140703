"""evaluate: one prediction pass, Keras's loss, per-class scores; models that do not fit are refused."""

import json

import keras
import numpy as np
import pytest

from mnist_classifier import ModelFileError, build_model, save_model, test_model
from mnist_classifier.evaluation import confusion_matrix, evaluate, per_class_scores, predict_probabilities
from mnist_classifier.pipeline import evaluate_file
from mnist_classifier.presets import preset
from mnist_classifier.config import apply_overrides
from mnist_classifier.pipeline import train_run


def test_loss_and_accuracy_match_keras_evaluate(tiny_model, small_mnist):
    x, y = small_mnist["test"]
    result = evaluate(tiny_model, x, small_mnist["test_labels"], tuple("0123456789"))
    loss, accuracy = test_model(tiny_model, x, y, verbose=False)
    assert result.loss == pytest.approx(loss, rel=1e-4) and result.accuracy == pytest.approx(accuracy)


def test_an_uncompiled_model_is_evaluated_too(small_mnist):
    model = build_model(784, [16, 10], ["relu", "softmax"], 0.01, None)
    result = evaluate(model, small_mnist["test"][0], small_mnist["test_labels"], tuple("0123456789"))
    assert result.loss > 0 and 0 <= result.accuracy <= 1 and result.confusion.sum() == 500


def test_predictions_come_in_equal_padded_batches_of_one_shape(tiny_model, small_mnist):
    x = small_mnist["test"][0][:10]
    shapes = []
    original = tiny_model.predict

    def predict(inputs, batch_size, verbose):
        shapes.append((len(inputs), batch_size))
        return original(inputs, batch_size=batch_size, verbose=verbose)

    tiny_model.predict = predict
    got = predict_probabilities(tiny_model, x, batch_size=4)  # 3 batches of 4, the last padded with 2 blank images
    assert shapes == [(12, 4)] and got.shape == (10, 10)
    np.testing.assert_allclose(got, original(x, batch_size=10, verbose=0), rtol=1e-5, atol=1e-6)
    assert predict_probabilities(tiny_model, x[:0]).shape == (0, 10)


def test_per_class_scores_from_a_confusion_matrix():
    matrix = confusion_matrix(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    precision, recall, f1 = per_class_scores(matrix)
    assert precision.tolist() == pytest.approx([0.5, 2 / 3, 0.0])
    assert recall.tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert f1.tolist() == pytest.approx([0.5, 0.8, 0.0])


def _two_outputs(path):
    inputs = keras.Input((784,))
    keras.Model(inputs, [keras.layers.Dense(10)(inputs), keras.layers.Dense(10)(inputs)]).save(path)


def _five_classes(path):
    save_model(build_model(784, [5], ["softmax"], 0.0, None), path)


@pytest.mark.parametrize(
    ("make", "message"), [(_two_outputs, "several inputs or outputs"), (_five_classes, r"outputs shape \(5,\)")]
)
def test_models_that_do_not_fit_are_refused(tmp_path, mnist_dir, make, message):
    make(tmp_path / "m.keras")
    with pytest.raises(ModelFileError, match=message):
        evaluate_file(tmp_path / "m.keras", data_path=str(mnist_dir))


def test_a_model_is_not_evaluated_on_another_data_set(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))
    settings = {"data.train_limit": 1000, "data.validation_size": 200, "data.test_limit": 100, "training.epochs": 1,
                "model.layers": [8, 10], "model.activations": ["relu", "softmax"]}  # fmt: skip
    run = train_run(apply_overrides(preset("mlp"), settings), tmp_path).run_dir
    assert json.loads((run / "metrics.json").read_text())["dataset"] == "mnist"
    with pytest.raises(ModelFileError, match="trained on mnist, not fashion_mnist"):
        evaluate_file(run / "model.keras", dataset="fashion_mnist")
