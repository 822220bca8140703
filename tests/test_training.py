"""optimize_model and train_model: Adam, decay, early stopping, best checkpoint, determinism."""

import threading

import keras
import numpy as np
import pytest

from mnist_classifier import (
    TrainingError,
    build_model,
    load_model,
    optimize_model,
    train_model,
)
from mnist_classifier.errors import OutputError
from mnist_classifier.training import inverse_time_decay, step_schedule


def test_optimize_model_compiles_with_adam_and_cross_entropy():
    model = build_model(784, [10], ["softmax"], 0.0, None)
    optimize_model(model, 0.002, 0.8, 0.99)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)
    assert (model.optimizer.beta_1, model.optimizer.beta_2) == (0.8, 0.99)
    assert model.loss == "categorical_crossentropy"


def test_label_smoothing_spreads_part_of_each_target_over_all_classes():
    model = build_model(784, [10], ["softmax"], 0.0, None)
    optimize_model(model, 0.001, 0.9, 0.999, label_smoothing=0.1)
    x, y = np.random.default_rng(0).random((4, 784), np.float32), np.eye(10, dtype=np.float32)[[3, 1, 4, 1]]
    probabilities = model.predict_on_batch(x)
    targets = 0.9 * y + 0.1 / 10
    expected = -np.mean(np.sum(targets * np.log(probabilities), axis=1))
    assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(expected, rel=1e-5)


def test_training_learns_and_records_the_learning_rate(tiny_model, small_mnist):
    history = train_model(tiny_model, *small_mnist["train"], 64, 3, validation_data=small_mnist["val"], verbose=False)
    logs = history.history
    assert len(logs["loss"]) == 3 and logs["loss"][-1] < logs["loss"][0]
    assert logs["val_accuracy"][-1] > 0.8
    assert logs["learning_rate"] == pytest.approx([0.001] * 3)


def test_inverse_time_decay_sets_the_rate_of_every_epoch(tiny_model, small_mnist):
    history = train_model(
        tiny_model, *small_mnist["train"], 128, 4, learning_rate_decay=True, alpha=0.01, decay_rate=1, verbose=False
    )
    assert history.history["learning_rate"] == pytest.approx([0.01 / (1 + e) for e in range(4)])
    assert inverse_time_decay(0.1, 0.5)(2) == pytest.approx(0.05)


def test_decay_works_without_validation_data(tiny_model, small_mnist):
    history = train_model(tiny_model, *small_mnist["train"], 256, 2, learning_rate_decay=True, alpha=0.5, verbose=False)
    assert history.history["learning_rate"] == pytest.approx([0.5, 0.25])


@pytest.mark.parametrize("flag", ["early_stopping", "save_best", "restore_best"])
def test_monitoring_without_validation_data_is_refused(tiny_model, small_mnist, flag, tmp_path):
    with pytest.raises(TrainingError, match="need validation_data"):
        train_model(tiny_model, *small_mnist["train"], 64, 1, filepath=tmp_path / "b.keras", **{flag: True})


def test_save_best_needs_a_filepath(tiny_model, small_mnist):
    with pytest.raises(TrainingError, match="save_best needs a filepath"):
        train_model(tiny_model, *small_mnist["train"], 64, 1, validation_data=small_mnist["val"], save_best=True)


def test_early_stopping_stops_when_validation_loss_stalls(tiny_model, small_mnist):
    x_val, y_val = small_mnist["val"]
    shuffled = np.random.default_rng(0).permutation(y_val)  # labels it cannot learn
    history = train_model(
        tiny_model, *small_mnist["train"], 32, 40, validation_data=(x_val, shuffled),
        early_stopping=True, patience=1, verbose=False,
    )  # fmt: skip
    assert len(history.history["loss"]) < 40


def test_save_best_keeps_the_lowest_validation_loss_model(tiny_model, small_mnist, tmp_path):
    path = tmp_path / "best.keras"
    history = train_model(
        tiny_model, *small_mnist["train"], 64, 4, validation_data=small_mnist["val"],
        save_best=True, filepath=path, verbose=False,
    )  # fmt: skip
    best = load_model(path)
    loss = best.evaluate(*small_mnist["val"], verbose=0)[0]
    assert loss == pytest.approx(min(history.history["val_loss"]), rel=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]


def test_restore_best_ends_with_the_best_epochs_weights(tiny_model, small_mnist, tmp_path):
    x_val, y_val = small_mnist["val"]
    history = train_model(
        tiny_model, *small_mnist["train"], 32, 6, validation_data=(x_val, y_val),
        save_best=True, filepath=tmp_path / "best.keras", restore_best=True, verbose=False,
    )  # fmt: skip
    best = load_model(tmp_path / "best.keras")
    for ours, theirs in zip(tiny_model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert tiny_model.evaluate(x_val, y_val, verbose=0)[0] == pytest.approx(min(history.history["val_loss"]), rel=1e-4)


def _train_weights(seed, small_mnist):
    keras.utils.set_random_seed(seed)
    model = build_model(784, [32, 10], ["relu", "softmax"], 0.001, 0.8)
    optimize_model(model, 0.001, 0.9, 0.999)
    train_model(model, *small_mnist["train"], 64, 2, verbose=False, shuffle=True)
    return model.get_weights()


def test_same_seed_gives_the_same_weights(small_mnist):
    first, second = _train_weights(7, small_mnist), _train_weights(7, small_mnist)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = _train_weights(8, small_mnist)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("schedule", ["cosine", "one_cycle"])
def test_step_schedules_are_recorded_per_epoch(small_mnist, schedule):
    import math

    steps_per_epoch, epochs, alpha = math.ceil(2000 / 250), 4, 0.01
    rate = step_schedule(alpha, schedule, steps_per_epoch * epochs)
    keras.utils.set_random_seed(0)
    model = build_model(784, [16, 10], ["relu", "softmax"], 0.0, None)
    optimize_model(model, rate, 0.9, 0.999)
    history = train_model(model, *small_mnist["train"], 250, epochs, verbose=False)
    expected = [float(rate((epoch + 1) * steps_per_epoch)) for epoch in range(epochs)]
    assert history.history["learning_rate"] == pytest.approx(expected, rel=1e-5)
    assert expected[-1] == pytest.approx(0.0, abs=1e-9)
    if schedule == "one_cycle":  # warm-up: rises to alpha first
        assert float(rate(0)) == pytest.approx(alpha / 25) and max(expected) <= alpha
        assert float(rate(int(0.3 * steps_per_epoch * epochs))) == pytest.approx(alpha, rel=1e-3)
    else:
        assert float(rate(0)) == pytest.approx(alpha)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size=0: expected an integer >= 1"),
        ({"epochs": 0}, "epochs=0: expected an integer >= 1"),
        ({"patience": -1}, "patience=-1: expected an integer >= 0"),
    ],
)
def test_train_model_checks_its_arguments(tiny_model, small_mnist, kwargs, message):
    args = {"batch_size": 32, "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_model(tiny_model, *small_mnist["train"], **args)


def test_save_best_needs_a_keras_file_name_up_front(tiny_model, small_mnist, tmp_path):
    with pytest.raises(TrainingError, match="ending in .keras"):
        train_model(tiny_model, *small_mnist["train"], 32, 1, validation_data=small_mnist["val"],
                    save_best=True, filepath=tmp_path / "best.h5")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [((0.0, 0.9, 0.999), "alpha=0.0"), ((0.001, 1.5, 0.999), "beta1=1.5"), ((0.001, 0.9, 0.999, 1.0), "label_smoothing=1.0")],
)
def test_optimize_model_checks_its_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        optimize_model(build_model(784, [10], ["softmax"], 0.0, None), *args)


@pytest.mark.parametrize("engine", ["auto", "keras"])
def test_ctrl_c_stops_training_at_the_next_step_boundary(tiny_model, small_mnist, engine):
    import os
    import signal

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    history = keras.callbacks.History()
    x, y = small_mnist["train"]
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_model(tiny_model, x, y, 32, 5, callbacks=[CtrlC(), history], verbose=False, engine=engine)
    assert signal.getsignal(signal.SIGINT) is before  # the handler in place before training is back
    assert len(history.history.get("loss", [])) == 1  # epoch 2 stopped at its first step boundary, unfinished


def test_the_checkpoint_is_complete_when_train_returns(tiny_model, small_mnist, tmp_path):
    path = tmp_path / "best.keras"
    train_model(
        tiny_model, *small_mnist["train"], 64, 2, validation_data=small_mnist["val"],
        save_best=True, filepath=path, verbose=False, restore_best=True,
    )  # fmt: skip
    assert not any(thread.name == "mnist-classifier-saver" for thread in threading.enumerate())
    for ours, theirs in zip(tiny_model.get_weights(), load_model(path).get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_checkpoint_that_cannot_be_written_fails_training(tiny_model, small_mnist, tmp_path):
    (tmp_path / "best.keras").mkdir()  # a folder where the checkpoint should go
    with pytest.raises(OutputError, match="is a folder"):
        train_model(
            tiny_model, *small_mnist["train"], 500, 1, validation_data=small_mnist["val"],
            save_best=True, filepath=tmp_path / "best.keras", verbose=False,
        )  # fmt: skip
