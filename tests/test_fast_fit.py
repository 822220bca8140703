"""Whole-epoch scans: the same results as Keras's fit, chunked so Ctrl-C still lands."""

import keras
import numpy as np
import pytest

from mnist_classifier import build_cnn, build_model, optimize_model, train_model
from mnist_classifier.accel import fast_fit as fast_fit_module
from mnist_classifier.errors import ConfigError
from mnist_classifier.accel.fast_fit import batch_chunks, fast_fit, forward_flops, supported


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_model(784, [64, 32, 10], ["relu", "relu", "softmax"], 0.001, 0.8)
    optimize_model(model, 0.001, 0.9, 0.999)
    return model


def _cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_cnn((16, 10), ("relu", "softmax"), 0.0, 0.5, filters=(4, 8), conv_keep_prob=0.9)
    optimize_model(model, 0.003, 0.9, 0.999)
    return model


def _train_both(make, x, y, validation, **kwargs):
    """Train two identical models, one with Keras's fit and one with fast_fit."""
    keras_model = make()
    expected = keras_model.fit(x, y, validation_data=validation, verbose=0, **kwargs).history
    fast_model = make()
    got = fast_fit(fast_model, x, y, validation_data=validation, **kwargs).history
    return (keras_model, expected), (fast_model, got)


def _assert_same(pair_a, pair_b):
    (model_a, history_a), (model_b, history_b) = pair_a, pair_b
    assert history_a.keys() == history_b.keys()
    for key in history_a:
        np.testing.assert_allclose(history_a[key], history_b[key], rtol=1e-5, err_msg=key)
    for a, b in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("shuffle", [False, True])
def test_an_mlp_trains_exactly_as_keras_fit_does(small_mnist, shuffle):
    x, y = small_mnist["train"]
    x, y = x[:1000], y[:1000]  # 1000 = 31 batches of 32 and a last one of 8
    _assert_same(*_train_both(_mlp, x, y, small_mnist["val"], batch_size=32, epochs=2, shuffle=shuffle))


def test_a_cnn_with_batch_norm_trains_exactly_as_keras_fit_does(small_mnist):
    x, y = small_mnist["train"]
    x = x[:300].reshape(-1, 28, 28, 1)  # 4 batches of 64 and a last one of 44
    val_x, val_y = small_mnist["val"]
    # One batch: each shape more is a compilation more; uneven validation batches are the MLP tests' part.
    validation = (val_x[:64].reshape(-1, 28, 28, 1), val_y[:64])
    _assert_same(*_train_both(_cnn, x, y[:300], validation, batch_size=64, epochs=2, shuffle=True))


def test_uint8_images_normalized_in_the_step_train_as_preprocessed_floats_do(mnist_dir):
    from mnist_classifier import Normalization, load_dataset, one_hot, preprocess
    from mnist_classifier.data.preprocessing import batch_normalizer

    (images, labels), _ = load_dataset("mnist", mnist_dir)
    images, y = images[:600], one_hot(labels[:600], 10)
    norm = Normalization.fit("standardize", images)
    floats = preprocess(images, norm, (784,))
    expected_model = _mlp()
    expected = expected_model.fit(floats, y, batch_size=64, epochs=2, validation_data=(floats[:100], y[:100]), verbose=0)
    model = _mlp()
    got = fast_fit(model, images, y, 64, 2, (images[:100], y[:100]), input_transform=batch_normalizer(norm, (784,)))
    _assert_same((expected_model, expected.history), (model, got.history))


def test_small_chunks_with_padding_give_the_same_result(small_mnist, monkeypatch):
    x, y = small_mnist["train"]
    x, y = x[:1000], y[:1000]
    model = _mlp()
    step_flops = fast_fit_module.TRAIN_FLOPS_PER_FORWARD * forward_flops(model, x[:32])
    monkeypatch.setattr(fast_fit_module, "CHUNK_FLOPS", 7 * step_flops)  # 31 batches: four chunks of 7, one of 3 padded to 7
    _assert_same(*_train_both(_mlp, x, y, small_mnist["val"], batch_size=32, epochs=1, shuffle=True))


def test_schedules_set_per_epoch_reach_the_compiled_step(small_mnist):
    x, y = small_mnist["train"]
    runs = []
    for engine in ("keras", "auto"):
        model = _mlp()
        history = train_model(
            model, x[:500], y[:500], 50, 3, small_mnist["val"], learning_rate_decay=True, alpha=0.01,
            decay_rate=1.0, verbose=False, engine=engine,
        )  # fmt: skip
        runs.append((model, history.history))
    assert runs[1][1]["learning_rate"] == pytest.approx([0.01, 0.005, 0.01 / 3])
    _assert_same(*runs)


def test_convolutional_steps_are_never_run_inside_a_compiled_loop(small_mnist):
    # XLA on the CPU runs convolutions inside loops many times slower: one batch per call.
    x = small_mnist["train"][0][:64].reshape(-1, 28, 28, 1)
    identity = lambda batch: batch  # noqa: E731
    assert fast_fit_module._Epochs(_cnn(), (x, x[:, 0]), None, 8, identity).chunk == 1
    assert fast_fit_module._Epochs(_mlp(), (x.reshape(-1, 784), x[:, 0]), None, 8, identity).chunk == 8


def test_batch_chunks_cover_every_sample_once():
    np.random.seed(0)
    chunks = batch_chunks(103, 10, 4, shuffle=True)
    assert [c[0].shape for c in chunks] == [(4, 10), (4, 10), (4, 10), (1, 3)]
    assert [c[1].tolist() for c in chunks] == [[True] * 4, [True] * 4, [True, True, False, False], [True]]
    used = np.concatenate([indices[valid].ravel() for indices, valid in chunks])
    assert sorted(used.tolist()) == list(range(103))
    assert batch_chunks(20, 10, 2, shuffle=False)[0][0].tolist() == [list(range(10)), list(range(10, 20))]


def test_early_stopping_and_callbacks_see_every_epoch(small_mnist):
    x, y = small_mnist["train"]
    seen = []
    stop_after_two = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: (seen.append(sorted(logs)), epoch == 1 and setattr(model, "stop_training", True))
    )
    model = _mlp()
    history = fast_fit(model, x, y, 64, 5, small_mnist["val"], callbacks=[stop_after_two])
    assert seen == [["accuracy", "loss", "val_accuracy", "val_loss"]] * 2
    assert len(history.history["loss"]) == 2 and model.history is history


def test_train_model_picks_the_engine(small_mnist, monkeypatch):
    x, y = small_mnist["train"]
    calls = []
    monkeypatch.setattr("mnist_classifier.accel.fast_fit.fast_fit", lambda *a, **k: calls.append("fast") or fast_fit(*a, **k))
    train_model(_mlp(), x[:256], y[:256], 64, 1, verbose=False)
    train_model(_mlp(), x[:256], y[:256], 64, 1, verbose=False, engine="keras")
    assert calls == ["fast"]
    assert supported(_mlp(), x) and not supported(_mlp(), [x])
    with pytest.raises(ConfigError, match="engine='fastest': expected one of auto, keras"):
        train_model(_mlp(), x[:256], y[:256], 64, 1, engine="fastest")
