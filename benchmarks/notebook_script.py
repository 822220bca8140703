"""The original notebook's code as one script: the reference that ``speed.py`` times.

    KERAS_BACKEND=tensorflow python benchmarks/notebook_script.py ../shared/data/mnist OUT_DIR

Its cells are kept as they are (``tensorflow.keras`` is Keras 3 under TensorFlow 2.16+;
plain ``keras`` with the backend the environment selects), but for the data loading
(the machines here are offline, so the IDX files are read directly) and a callback
that records each epoch's time. The last line printed is a JSON record.
"""

import gzip
import json
import sys
import time
from pathlib import Path

import keras as K
import numpy as np
from keras.utils import normalize


def read_idx(path):
    """An IDX file (gzipped) as a uint8 array."""
    raw = gzip.open(path).read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_notebook_data(folder):
    """The notebook's data cells: l2-normalized, flattened images and one-hot labels."""
    folder = Path(folder)
    x_train = read_idx(folder / "train-images-idx3-ubyte.gz")
    y_train = read_idx(folder / "train-labels-idx1-ubyte.gz")
    x_test = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    x_train = normalize(x_train.astype('float32'), axis=1)
    x_test = normalize(x_test.astype('float32'), axis=1)
    x_train = x_train.reshape(x_train.shape[0], -1)
    x_test = x_test.reshape(x_test.shape[0], -1)
    return (x_train, one_hot(y_train, 10)), (x_test, one_hot(y_test, 10))


def one_hot(labels, classes=None):
    return K.utils.to_categorical(labels, classes)


def build_model(nx, layers, activations, lambtha, keep_prob):
    inputs = K.Input(shape=(nx,))
    x = inputs
    for i in range(len(layers)):
        x = K.layers.Dense(layers[i],
                           activation=activations[i],
                           kernel_regularizer=K.regularizers.L2(lambtha))(x)
        if i != len(layers) - 1 and keep_prob is not None:
            x = K.layers.Dropout(1 - keep_prob)(x)
    model = K.Model(inputs, x)
    return model


def optimize_model(network, alpha, beta1, beta2):
    Adam_optimizer = K.optimizers.Adam(learning_rate=alpha, beta_1=beta1, beta_2=beta2)
    network.compile(optimizer=Adam_optimizer, loss='categorical_crossentropy', metrics=['accuracy'])


def train_model(network, data, labels, batch_size, epochs, validation_data=None, early_stopping=False,
                patience=0, learning_rate_decay=False, alpha=0.1, decay_rate=1, save_best=False,
                filepath=None, verbose=True, shuffle=False, extra_callbacks=()):
    callback = []
    if early_stopping is True and validation_data is not None:
        callback.append(K.callbacks.EarlyStopping(monitor='val_loss', patience=patience))
    if learning_rate_decay and validation_data:
        def scheduler(epochs):
            return alpha / (1 + decay_rate * epochs)
        callback.append(K.callbacks.LearningRateScheduler(scheduler, verbose=1))
    if save_best:
        callback.append(K.callbacks.ModelCheckpoint(filepath=filepath, monitor='val_loss', save_best_only=True))
    return network.fit(x=data, y=labels, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                       callbacks=[*callback, *extra_callbacks], verbose=verbose, shuffle=shuffle)


def test_model(network, data, labels, verbose=True):
    return network.evaluate(x=data, y=labels, verbose=verbose)


def save_model(network, filename):
    network.save(filename)


class EpochTimes(K.callbacks.Callback):
    """Seconds per epoch, validation included."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.started)


def main(data_folder, out_folder):
    """The notebook from data to saved model; prints a JSON record last."""
    out = Path(out_folder)
    (x_train, y_train_one_hot), (x_test, y_test_one_hot) = load_notebook_data(data_folder)
    model = build_model(x_train.shape[1], [128, 64, 10], ['relu', 'relu', 'softmax'], 0.01, 0.8)
    optimize_model(model, 0.001, 0.9, 0.999)
    times = EpochTimes()
    train_model(model, x_train, y_train_one_hot, 32, 6, validation_data=(x_test, y_test_one_hot),
                early_stopping=True, patience=3, save_best=True, filepath=str(out / 'best_model.keras'),
                verbose=2, extra_callbacks=[times])
    loss, accuracy = test_model(model, x_test, y_test_one_hot, verbose=0)
    save_model(model, str(out / 'mnist_model.keras'))
    print(json.dumps({"backend": K.backend.backend(), "epoch_s": times.times, "test_accuracy": accuracy}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
