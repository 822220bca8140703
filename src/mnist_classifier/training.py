"""Compile and train: Adam, early stopping, inverse-time decay, best checkpoint."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import keras
import numpy as np

from mnist_classifier import accel
from mnist_classifier.config import Config, OptimizerConfig, TrainingConfig, check_count
from mnist_classifier.errors import TrainingError
from mnist_classifier.inference.model_info import ModelInfo
from mnist_classifier.persistence import BackgroundSaver, load_model
from mnist_classifier.system.interrupts import interrupts_between_steps, stop_if_interrupted

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule
Arrays = tuple[np.ndarray, np.ndarray]

# Share of the steps that one-cycle spends warming up, and its starting fraction of alpha.
ONE_CYCLE_WARMUP = 0.3
ONE_CYCLE_START = 1 / 25


def optimize_model(
    network: keras.Model, alpha: LearningRate, beta1: float, beta2: float, label_smoothing: float = 0.0
) -> None:
    """Compile ``network`` with Adam, categorical cross-entropy and accuracy.

    Args:
        network: the model to compile, in place.
        alpha: learning rate, or a per-step Keras ``LearningRateSchedule``.
        beta1: Adam's first-moment decay (momentum), typically 0.9.
        beta2: Adam's second-moment decay, typically 0.999.
        label_smoothing: share of each target's probability spread evenly over all
            classes (0: the plain one-hot targets).

    Raises:
        ConfigError: a rate not above 0, a beta or label_smoothing outside [0, 1).
    """
    schedule = isinstance(alpha, keras.optimizers.schedules.LearningRateSchedule)
    config = Config(  # checks the numbers as a config file's are checked
        optimizer=OptimizerConfig(OptimizerConfig.alpha if schedule else alpha, beta1, beta2),
        training=TrainingConfig(label_smoothing=label_smoothing),
    )
    _compile(network, config, alpha)


def compile_network(network: keras.Model, config: Config, train_count: int) -> None:
    """Compile with Adam as ``config`` says, for ``train_count`` images an epoch: a per-step schedule spans the whole run."""
    steps = math.ceil(train_count / config.training.batch_size) * config.training.epochs
    _compile(network, config, step_schedule(config.optimizer.alpha, config.training.schedule, steps))


def _compile(network: keras.Model, config: Config, rate: LearningRate) -> None:
    """Compile with Adam at ``rate`` and ``config``'s betas, cross-entropy with its label smoothing, and accuracy."""
    optimizer = keras.optimizers.Adam(learning_rate=rate, beta_1=config.optimizer.beta1, beta_2=config.optimizer.beta2)
    smoothing = config.training.label_smoothing
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing) if smoothing else "categorical_crossentropy"
    network.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])


def inverse_time_decay(alpha: float, decay_rate: float) -> Callable[[int], float]:
    """The notebook's schedule: ``lr = alpha / (1 + decay_rate * epoch)``, epoch from 0."""
    return lambda epoch: alpha / (1 + decay_rate * epoch)


def step_schedule(alpha: float, schedule: str, total_steps: int) -> LearningRate:
    """Adam's learning rate for a schedule applied per step (``cosine``, ``one_cycle``).

    ``cosine`` decays from ``alpha`` to 0 over ``total_steps``; ``one_cycle`` rises
    linearly from ``alpha / 25`` to ``alpha`` over the first 30% of the steps, then
    decays to 0 along a cosine. Any other schedule leaves the constant ``alpha``.
    """
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(alpha, max(1, total_steps))
    if schedule == "one_cycle":
        warmup = max(1, int(total_steps * ONE_CYCLE_WARMUP))
        return keras.optimizers.schedules.CosineDecay(
            alpha * ONE_CYCLE_START, max(1, total_steps - warmup), warmup_target=alpha, warmup_steps=warmup
        )
    return alpha


def train(
    network: keras.Model,
    config: Config,
    x: np.ndarray,
    y: np.ndarray,
    validation_data: Arrays | None = None,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint: str | os.PathLike | None = None,
    info: ModelInfo | None = None,
    initial_epoch: int = 0,
    resume_state: dict[str, float] | None = None,
    input_transform: Callable | None = None,
    verbose: bool = False,
) -> keras.callbacks.History:
    """Train a network compiled for ``config`` (see :func:`compile_network`) as ``config.training`` says.

    Args:
        network: the compiled model, trained in place.
        config: the run's settings; ``training`` says how to train, and
            ``optimizer.alpha`` is where the ``inverse_time`` schedule starts.
        x, y: training inputs and target rows (one-hot, or any distribution).
        validation_data: ``(inputs, target rows)`` to monitor ``val_loss`` on; needed
            for early stopping, ``save_best`` and ``restore_best``.
        callbacks: more Keras callbacks.
        checkpoint: the ``.keras`` file ``training.save_best`` writes the best model
            to, atomically with ``info`` inside (None: no checkpoint); it is written
            on a background thread (:class:`~mnist_classifier.persistence.BackgroundSaver`)
            and complete when ``train`` returns or raises, a failed write raised.
        initial_epoch, resume_state: where an interrupted run goes on from: its
            epochs done, and the ``best`` val_loss and ``wait`` epochs since it.
        input_transform: a Keras-ops function turning stored inputs into model
            inputs (e.g. uint8 images into normalized floats).
        verbose: Keras's progress bar.

    Returns:
        The Keras ``History``; ``history.history["learning_rate"]`` holds the rate
        of every epoch.
    """
    training = config.training
    decay = None
    if training.schedule == "inverse_time":
        decay = inverse_time_decay(config.optimizer.alpha, training.decay_rate)
    state = resume_state or {}
    chain: list[keras.callbacks.Callback] = [_LearningRate(decay)]
    if training.early_stopping:
        chain.append(_ResumableEarlyStopping(training.patience, state.get("best"), int(state.get("wait", 0))))
    save_to = checkpoint if training.save_best else None
    best = None
    if save_to is not None or training.restore_best:
        best = BestModel(save_to, training.restore_best, info, state.get("best"))
        chain.append(best)
    fit = accel.engine(training)
    with interrupts_between_steps():
        try:
            return fit(
                network,
                x,
                y,
                validation_data,
                callbacks=[*chain, *callbacks, _StopOnInterrupt()],
                initial_epoch=initial_epoch,
                input_transform=input_transform,
                verbose=verbose,
            )
        finally:  # the checkpoint is written before train returns, also on Ctrl-C and errors
            if best is not None:
                best.close()


def train_model(
    network: keras.Model,
    data: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    epochs: int,
    validation_data: Arrays | None = None,
    early_stopping: bool = False,
    patience: int = 0,
    learning_rate_decay: bool = False,
    alpha: float = 0.1,
    decay_rate: float = 1,
    save_best: bool = False,
    filepath: str | os.PathLike | None = None,
    verbose: bool = True,
    shuffle: bool = False,
    *,
    restore_best: bool = False,
    initial_epoch: int = 0,
    model_info: ModelInfo | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    resume_state: dict[str, float] | None = None,
    engine: str = "auto",
    input_transform: Callable | None = None,
) -> keras.callbacks.History:
    """Train ``network`` with mini-batch gradient descent, as the notebook does.

    Args:
        network: a compiled model.
        data, labels: training inputs and one-hot labels.
        batch_size, epochs: mini-batch size and number of passes over the data.
        validation_data: ``(inputs, one-hot labels)`` to monitor ``val_loss`` on.
        early_stopping: stop once ``val_loss`` has not improved for ``patience`` epochs.
        learning_rate_decay: inverse-time decay, ``alpha / (1 + decay_rate * epoch)``.
        save_best: save the model with the best ``val_loss`` to ``filepath``
            (atomically, with ``model_info`` inside).
        verbose, shuffle: passed to ``fit``.
        restore_best: end with the weights of the best ``val_loss`` epoch.
        initial_epoch: epoch to start from when resuming.
        callbacks: more Keras callbacks.
        resume_state: ``best`` val_loss and ``wait`` epochs of an interrupted run.
        engine: ``auto`` trains with one compiled scan per chunk of an epoch where it
            can (JAX, arrays in memory: the same arithmetic as ``fit``, faster), and
            on a CPU with faster gradients of convolution, pooling and split-batch
            normalization; ``keras`` always calls ``network.fit`` with Keras's own
            operations (see :func:`mnist_classifier.accel.engine`).
        input_transform: a Keras-ops function turning stored inputs into model
            inputs (e.g. uint8 images into normalized floats); it runs on each batch
            inside the compiled step, or once up front under Keras's ``fit``.

    Returns:
        The Keras ``History``; ``history.history["learning_rate"]`` holds the rate
        of every epoch.

    Raises:
        ConfigError: a count that is not a whole number in range, an unknown engine.
        TrainingError: monitoring without validation data, ``save_best`` without a
            ``.keras`` filepath.
    """
    check_count("batch_size", batch_size)
    check_count("epochs", epochs)
    check_count("patience", patience, minimum=0)
    if (early_stopping or save_best or restore_best) and validation_data is None:
        raise TrainingError("early stopping, save_best and restore_best need validation_data")
    if save_best and (filepath is None or not str(filepath).endswith(".keras")):
        raise TrainingError(f"save_best needs a filepath ending in .keras for the checkpoint, got {filepath!r}")
    training = TrainingConfig(
        batch_size=batch_size,
        epochs=epochs,
        shuffle=shuffle,
        early_stopping=early_stopping,
        patience=patience,
        schedule="inverse_time" if learning_rate_decay else "constant",
        decay_rate=decay_rate,
        save_best=save_best,
        restore_best=restore_best,
        engine=engine,
    )
    config = Config(optimizer=OptimizerConfig(alpha=alpha), training=training)
    return train(
        network,
        config,
        data,
        labels,
        validation_data,
        callbacks=callbacks,
        checkpoint=filepath,
        info=model_info,
        initial_epoch=initial_epoch,
        resume_state=resume_state,
        input_transform=input_transform,
        verbose=verbose,
    )


class _StopOnInterrupt(keras.callbacks.Callback):
    """Ends training with KeyboardInterrupt at the first batch or epoch boundary after a Ctrl-C."""

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        stop_if_interrupted()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        stop_if_interrupted()


class _LearningRate(keras.callbacks.Callback):
    """Sets each epoch's rate from ``schedule`` (if any) and records the rate in the logs.

    A rate that the optimizer computes per step (a Keras ``LearningRateSchedule``) is
    left alone and recorded as it stands at the end of the epoch.
    """

    def __init__(self, schedule: Callable[[int], float] | None) -> None:
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.schedule is not None:
            self.model.optimizer.learning_rate = self.schedule(epoch)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's early stopping on ``val_loss`` that can pick up an interrupted run's count."""

    def __init__(self, patience: int, best: float | None, wait: int) -> None:
        super().__init__(monitor="val_loss", patience=patience)
        self._resume = (best, wait)

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        self.best, self.wait = self._resume


class BestModel(keras.callbacks.Callback):
    """Tracks the best ``val_loss``: saves it atomically and/or restores its weights at the end.

    The save is a snapshot written in the background (:class:`~mnist_classifier.persistence.BackgroundSaver`);
    :meth:`close` waits for it and raises a failed write's error.
    """

    def __init__(
        self,
        filepath: str | os.PathLike | None,
        restore: bool,
        info: ModelInfo | None,
        best: float | None = None,
    ) -> None:
        super().__init__()
        self.filepath = filepath
        self.restore = restore
        self.info = info
        self.best = math.inf if best is None else best
        self._weights: list[np.ndarray] | None = None
        self._saver: BackgroundSaver | None = None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        current = (logs or {}).get("val_loss")
        if current is None or not current < self.best:
            return
        self.best = float(current)
        if self.filepath is not None:
            if self._saver is None:
                self._saver = BackgroundSaver(self.model, self.info)
            self._saver.save(self.filepath)
        if self.restore:
            self._weights = self.model.get_weights()

    def close(self) -> None:
        """Wait for the checkpoint being written; raise its error if the write failed."""
        if self._saver is not None:
            self._saver.close()

    def on_train_end(self, logs=None) -> None:
        self.close()
        if self._weights is not None:
            self.model.set_weights(self._weights)
        elif self.restore and self.filepath is not None and os.path.exists(self.filepath):
            # Resumed run whose best epoch came before the interruption.
            self.model.set_weights(load_model(self.filepath).get_weights())
