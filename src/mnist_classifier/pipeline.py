"""The whole run, as the CLI drives it: config → data → model → training → evaluation → run directory."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_classifier import __version__
from mnist_classifier.inference.bundled import BUNDLES, model_path
from mnist_classifier.calibration import Calibration, calibrate
from mnist_classifier.config import Config, DataConfig, write_config
from mnist_classifier.presets import preset, resolve_config
from mnist_classifier.data.formats import read_npz
from mnist_classifier.data.sources import Split, read_dataset
from mnist_classifier.accel.distribute import device_count, distributed, host_share, on_this_host
from mnist_classifier.data.download import Progress
from mnist_classifier.errors import ConfigError, DataError, ModelFileError, TrainingError
from mnist_classifier.evaluation import Evaluation, evaluate, predict_probabilities, scores, weight_penalty
from mnist_classifier.inference.model_info import ModelInfo, read_model_info
from mnist_classifier.models import build_from_config, copy_weights
from mnist_classifier.data.forms import flagged_ones, low_resolution
from mnist_classifier.data.outliers import digit_pairs, non_digits
from mnist_classifier.persistence import load_model, save_model
from mnist_classifier.inference.predict import open_model
from mnist_classifier.data.preprocessing import (
    batch_normalizer,
    Normalization,
    one_hot,
    preprocess,
    validation_split,
)
from mnist_classifier.system.files import write_text_atomic
from mnist_classifier.runs import (
    RunRecorder,
    RunResult,
    best_epoch,
    check_output_dir,
    new_run_dir,
    read_history,
    read_json,
    resume_state,
    writing_run,
)
from mnist_classifier.training import compile_network, train

@dataclass(frozen=True)
class PreparedData:
    """The splits as uint8 images and integer labels, and how images become model inputs."""

    source: str
    classes: tuple[str, ...]
    normalization: Normalization
    input_shape: tuple[int, ...]
    train: Split
    validation: Split | None
    test: Split
    outliers: np.ndarray | None = None  # non-digit uint8 images, trained towards the uniform distribution

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """Model inputs for uint8 images."""
        return preprocess(images, self.normalization, self.input_shape)

    @property
    def training_size(self) -> int:
        """How many images an epoch trains on: the labelled ones and the outliers."""
        return len(self.train[1]) + (0 if self.outliers is None else len(self.outliers))

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The training images (outliers after the labelled ones) and their target rows.

        A labelled image's target is its one-hot row; an outlier's is the uniform
        distribution over the classes (outlier exposure).
        """
        images, labels = self.train
        targets = one_hot(labels, len(self.classes))
        if self.outliers is None or not len(self.outliers):
            return images, targets
        uniform = np.full((len(self.outliers), len(self.classes)), 1 / len(self.classes), np.float32)
        return np.concatenate([images, self.outliers]), np.concatenate([targets, uniform])


def prepare_data(
    config: DataConfig, input_shape: Sequence[int], progress: Progress | None = None
) -> PreparedData:
    """Load, split and normalize the data set a data config names."""
    dataset = read_dataset(config.dataset, config.path, progress=progress)
    (x_train, y_train), (x_test, y_test) = dataset.train, dataset.test
    x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    held_out = None
    if config.validation == "holdout":
        (x_train, y_train), held_out = validation_split(x_train, y_train, config.validation_size)
    norm = Normalization.fit(config.normalize, x_train)  # statistics of the data set's training part only
    kinds = [non_digits(config.outliers)] if config.outliers else []
    if config.flagged_ones:
        ones = flagged_ones(x_train, y_train, config.flagged_ones)
        x_train, y_train = np.concatenate([x_train, ones]), np.concatenate([y_train, np.ones(len(ones), y_train.dtype)])
    if config.low_resolution:
        small, digits = low_resolution(x_train, y_train, config.low_resolution)
        x_train, y_train = np.concatenate([x_train, small]), np.concatenate([y_train, digits])
    if config.extra:
        x_train, y_train, extra_outliers = _with_extra(x_train, y_train, Path(config.extra))
        kinds.append(extra_outliers)
    validation = (x_test, y_test) if config.validation == "test" else held_out
    if config.pairs:
        kinds.append(digit_pairs(x_train, config.pairs))
    outliers = np.concatenate(kinds) if kinds else None
    return PreparedData(
        dataset.source, dataset.classes, norm, tuple(input_shape), (x_train, y_train), validation, (x_test, y_test),
        outliers,
    )  # fmt: skip


def _with_extra(images: np.ndarray, labels: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training split with the labelled images of ``data.extra`` after it (validation and test never see them),
    and the file's ``x_outliers`` (none when it has none): images to train towards the uniform distribution.

    ``read_npz`` checks the file, the images' shape and dtype and the labels' range.
    """
    arrays = read_npz(path, ("x_train", "y_train"), optional=("x_outliers",))
    extra_images, extra_labels = arrays["x_train"], arrays["y_train"]
    if len(extra_images) != len(extra_labels):
        raise DataError(f"data.extra={path}: {len(extra_images)} images but {len(extra_labels)} labels")
    outliers = arrays.get("x_outliers", np.zeros((0, *images.shape[1:]), np.uint8))
    return np.concatenate([images, extra_images]), np.concatenate([labels, extra_labels.astype(labels.dtype)]), outliers


def train_run(
    config: Config,
    out: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    on_start: Callable[[Path, PreparedData, Config], None] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Train as ``config`` says, recording everything in a new run directory.

    Training starts from random weights, or from those of ``training.init_from``
    (a bundled model's name or a ``.keras`` file of the same architecture). The
    run directory is this process's alone while it writes it (see ``writing_run``):
    a failure marks it ``failed``, Ctrl-C ``interrupted``.
    """
    started = time.perf_counter()
    check_output_dir(out)
    base = initial_model(config)
    with distributed(config.training, config.model.precision):
        keras.utils.set_random_seed(config.training.seed)
        network = build_from_config(config.model)
        if base is not None:
            copy_weights(load_model(base, compile=False), network, f"training.init_from={config.training.init_from!r}")
        data = prepare_data(config.data, network.input_shape[1:], progress)
        compile_network(network, config, data.training_size)
        run_dir = new_run_dir(out, config)
        with writing_run(run_dir):
            write_config(config, run_dir / "config.toml", preset(config.preset))
            if on_start:
                on_start(run_dir, data, config)
            return _fit_and_record(config, run_dir, network, data, [], callbacks, started)


def resume_run(
    run_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    on_start: Callable[[Path, PreparedData, Config], None] | None = None,
    epochs: int | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Continue an interrupted run from its last finished epoch (up to ``epochs`` in all).

    Refused (TrainingError) while another process writes the run, and for a run
    that is complete or has no finished epoch; a run whose process died is marked
    ``interrupted`` and its half-written temporaries removed before anything else.
    """
    started = time.perf_counter()
    with writing_run(run_dir):
        config, history = _resumable(run_dir, epochs)
        with distributed(config.training, config.model.precision):
            keras.utils.set_random_seed(config.training.seed + len(history))
            network = load_model(run_dir / "last.keras")
            data = prepare_data(config.data, network.input_shape[1:], progress)
            if on_start:
                on_start(run_dir, data, config)
            return _fit_and_record(config, run_dir, network, data, history, callbacks, started)


def _resumable(run_dir: Path, epochs: int | None) -> tuple[Config, list[dict[str, Any]]]:
    """The config (with ``epochs`` as the new total, written back) and history of a run that can go on.

    Raises TrainingError for a completed run, one without a finished epoch, or one
    that already has its epochs.
    """
    status = read_json(run_dir / "run.json", "run record", dict)
    if status.get("status") == "completed":
        raise TrainingError(f"{run_dir}: run already completed, nothing to resume")
    overrides = {} if epochs is None else {"training.epochs": epochs}
    config = resolve_config(config_file=run_dir / "config.toml", overrides=overrides)
    history = read_history(run_dir)
    if not history:
        raise TrainingError(f"{run_dir}: no finished epoch to resume from; start a new run")
    if len(history) >= config.training.epochs:
        raise TrainingError(
            f"{run_dir}: {len(history)} of {config.training.epochs} epochs already done; pass --epochs N to train longer"
        )
    if epochs is not None:
        write_config(config, run_dir / "config.toml", preset(config.preset))
    return config, history


def fit(
    config: Config,
    network: keras.Model,
    data: PreparedData,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint: Path | None = None,
    info: ModelInfo | None = None,
    history: Sequence[dict[str, Any]] = (),
) -> None:
    """Train a compiled network on the prepared training images as ``config.training`` says.

    Validation uses ``data.validation``; the best model goes to ``checkpoint`` (if
    given and asked for); ``history`` holds the epochs already done.
    """
    n_classes = len(data.classes)
    # Images stay uint8 and are normalized inside the compiled step where that is exact.
    normalizer = batch_normalizer(data.normalization, data.input_shape)
    model_inputs = (lambda images: images) if normalizer else data.inputs
    validation = None
    if data.validation is not None:
        images, labels = host_share(*data.validation)
        validation = (model_inputs(images), one_hot(labels, n_classes))
    images, targets = host_share(*data.training_set())
    train(
        network,
        config,
        model_inputs(images),
        targets,
        validation,
        callbacks=callbacks,
        checkpoint=checkpoint,
        info=info,
        initial_epoch=len(history),
        resume_state=resume_state(list(history)),
        input_transform=normalizer,
    )


def _fit_and_record(
    config: Config,
    run_dir: Path,
    network: keras.Model,
    data: PreparedData,
    history: list[dict[str, Any]],
    callbacks: Sequence[keras.callbacks.Callback],
    started: float,
) -> RunResult:
    """Train (from ``len(history)`` epochs on), average with the base (``training.base_share``), evaluate on the test set, write the record."""
    info = ModelInfo(
        dataset=config.data.dataset,
        classes=data.classes,
        normalization=data.normalization,
        input_shape=tuple(network.input_shape[1:]),
        package_version=__version__,
    )
    recorder = RunRecorder(run_dir, history, info)
    recorder.write_status("running")
    try:
        fit(config, network, data, [recorder, *callbacks], run_dir / "best.keras", info, history)
    finally:  # last.keras and the record are written, also on Ctrl-C and errors
        recorder.close()
    train_seconds = time.perf_counter() - recorder.started
    base = initial_model(config)
    if config.training.base_share:
        what = f"training.init_from={config.training.init_from!r}"
        copy_weights(load_model(base, compile=False), network, what, config.training.base_share)
    with on_this_host(network) as tester:
        test_probabilities = predict_probabilities(tester, data.inputs(data.test[0]))
        evaluated = scores(test_probabilities, data.test[1], data.classes, weight_penalty(tester))
        calibration = calibrate_run(config, tester, data, test_probabilities)
    metrics = _metrics(config, data, recorder, evaluated, train_seconds, time.perf_counter() - started)
    metrics["calibration"] = calibration.to_dict()
    if base is not None:
        metrics["init_from"] = _describe_base(base)
    record = replace(
        _with_metrics(info, metrics), temperature=calibration.temperature, reject_below=calibration.reject_below
    )
    save_model(network, run_dir / "model.keras", record)
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    recorder.write_status("completed")
    return RunResult(run_dir, evaluated, metrics)


def evaluate_file(
    path: Path,
    dataset: str | None = None,
    data_path: str | None = None,
    normalize: str | None = None,
    test_limit: int | None = None,
    progress: Progress | None = None,
) -> tuple[Evaluation, ModelInfo]:
    """Evaluate a ``.keras`` file on its data set's test images.

    The preprocessing comes from the record stored in the file; for a model we did
    not write, ``dataset`` and ``normalize`` supply it (defaults: mnist, scale).
    """
    network, shape, info = open_model(path, dataset, runtime="keras")
    name = dataset or (info.dataset if info else "mnist")
    loaded = read_dataset(name, data_path, progress=progress)
    if normalize is not None or info is None:
        norm = Normalization.fit(normalize or "scale", loaded.train[0])
    else:
        norm = info.normalization
    record = ModelInfo(name, loaded.classes, norm, shape, info.package_version if info else "")
    (x_test, y_test), classes = loaded.test, loaded.classes
    del loaded  # the training images (47 MB for MNIST) are not needed any more
    return evaluate(network, preprocess(x_test[:test_limit], norm, shape), y_test[:test_limit], classes), record


def _metrics(
    config: Config,
    data: PreparedData,
    recorder: RunRecorder,
    evaluated: Evaluation,
    train_seconds: float,
    total_seconds: float,
) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    epochs = recorder.epoch_seconds
    return {
        "dataset": config.data.dataset,
        "data_source": data.source,
        "preset": config.preset,
        "seed": config.training.seed,
        "test_loss": evaluated.loss,
        "test_accuracy": evaluated.accuracy,
        "epochs": len(recorder.history),
        "best_epoch": best_epoch(recorder.history),
        "timings": {
            "total_s": total_seconds,
            "train_s": train_seconds,
            "first_epoch_s": epochs[0] if epochs else None,
            "mean_epoch_s_after_first": float(np.mean(epochs[1:])) if len(epochs) > 1 else None,
        },
        "backend": keras.backend.backend(),
        "distribute": config.training.distribute,
        "devices": device_count(),
        "versions": {
            "mnist_classifier": __version__,
            "keras": keras.__version__,
            "jax": _version("jax"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "evaluation": evaluated.to_dict(),
    }


def _version(package: str) -> str | None:
    """The installed version of ``package``, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _with_metrics(info: ModelInfo, metrics: dict[str, Any]) -> ModelInfo:
    """The model record with its test results, as stored in ``model.keras``."""
    return replace(info, metrics={"test_loss": metrics["test_loss"], "test_accuracy": metrics["test_accuracy"]})


def initial_model(config: Config) -> Path | None:
    """The ``.keras`` file ``training.init_from`` names, or None to start from random weights.

    Raises ConfigError for a name that is neither a file nor a bundled model.
    """
    name = config.training.init_from
    if name is None:
        return None
    try:
        path = model_path(name)
    except ModelFileError:
        path = Path(name)
    if not path.is_file() or path.suffix != ".keras":
        raise ConfigError(
            f"training.init_from={name!r}: no such .keras file, and not a bundled model ({', '.join(BUNDLES)})"
        )
    info = read_model_info(path)
    if info is not None and (info.dataset, info.normalization.mode) != (config.data.dataset, config.data.normalize):
        raise ConfigError(
            f"training.init_from={name!r}: a model of {info.dataset} with {info.normalization.mode} normalization; "
            f"this run is {config.data.dataset} with {config.data.normalize}"
        )
    return path


def calibrate_run(
    config: Config, network: keras.Model, data: PreparedData, test_probabilities: np.ndarray
) -> Calibration:
    """Temperature and "not a digit" threshold fitted on the held-out validation images, measured on the test images.

    ``test_probabilities`` are the network's for ``data.test``. A run whose
    validation images are the test set, or that has none, keeps T=1 and no
    threshold (nothing may be fitted on the test set).
    """
    test = (np.asarray(test_probabilities, np.float64), data.test[1])
    if config.data.validation != "holdout" or data.validation is None:
        return calibrate(None, test)
    probabilities = predict_probabilities(network, data.inputs(data.validation[0]))
    return calibrate((np.asarray(probabilities, np.float64), data.validation[1]), test, config.training.reject_share)


def _describe_base(path: Path) -> dict[str, str]:
    """Which file a fine-tuned run started from: path and content digest."""
    return {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
