"""Save and load ``.keras`` files, with the preprocessing a model needs stored inside.

The model's own record (:class:`~mnist_classifier.model_info.ModelInfo`) travels
as an extra ``mnist_classifier.json`` entry in the ``.keras`` zip: plain
``keras.models.load_model`` ignores it, and our ``evaluate`` and ``predict`` read it.
"""

from __future__ import annotations

import os
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from mnist_classifier.errors import ModelFileError, first_line
from mnist_classifier.system import malloc
from mnist_classifier.system.files import atomic_path
from mnist_classifier.inference.model_info import INFO_ENTRY, ModelInfo, check_archive, check_outputs, read_model_info
from mnist_classifier.models import allow_jit


def save_model(network: keras.Model, filename: str | os.PathLike, info: ModelInfo | None = None) -> None:
    """Save the entire model (architecture, weights, optimizer state) to ``filename``.

    The file is written to a temporary name in the same folder and renamed into
    place, so an interrupted save never leaves a half-written model behind. A
    missing folder, or a device, FIFO or folder at ``filename``, raises OutputError.
    """
    path = Path(filename)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    with atomic_path(path, suffix=".keras") as temp:
        network.save(temp)
        if info is not None:
            with zipfile.ZipFile(temp, "a") as archive:
                archive.writestr(INFO_ENTRY, info.to_json())


class BackgroundSaver:
    """Saves snapshots of one model with :func:`save_model` on a thread of its own, off the training path.

    :meth:`save` copies the model's variables and its optimizer's to host memory
    and returns; the thread writes that snapshot to the file, atomically as
    :func:`save_model` does, through a copy of the model rebuilt from its config on
    the first snapshot, so the file is the one a synchronous save would have
    written at that moment. The thread runs at the lowest CPU priority, so that on a
    busy machine the write waits for the training rather than the training for the
    write. One write runs at a time; a newer snapshot of a file
    replaces one of the same file still waiting. A failed write is raised by the
    next :meth:`save` or by :meth:`close`, which waits for every snapshot taken.

    Example:
        >>> saver = BackgroundSaver(network)
        >>> saver.save("runs/best.keras")  # returns once the weights are copied
        >>> saver.close()  # the file is written (or its error raised)
    """

    def __init__(self, network: keras.Model, info: ModelInfo | None = None) -> None:
        self.network, self.info = network, info
        self._config: tuple[dict, dict | None, bool] | None = None
        self._copy: keras.Model | None = None
        self._waiting: dict[Path, tuple[list[np.ndarray], Callable[[], None] | None]] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._changed = threading.Condition()

    def save(self, filename: str | os.PathLike, after: Callable[[], None] | None = None) -> None:
        """Snapshot the model now and write it to ``filename`` in the background, then call ``after`` there.

        Raises the error of an earlier failed write, and ModelFileError for a name
        not ending in ``.keras``.
        """
        self._raise_failure()
        path = Path(filename)
        if path.suffix != ".keras":
            raise ModelFileError(f"{path}: model files must end in .keras")
        if self._config is None:
            optimizer = getattr(self.network, "optimizer", None)
            compiled = self.network.get_compile_config() if self.network.compiled else None
            built = optimizer is not None and optimizer.built
            self._config = (keras.saving.serialize_keras_object(self.network), compiled, built)
        values = [np.array(variable.numpy()) for variable in _state(self.network)]
        with self._changed:
            self._waiting[path] = (values, after)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="mnist-classifier-saver", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Wait until every snapshot is written; raise the first failed write's error."""
        with self._changed:
            while self._thread is not None:
                self._changed.wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _work(self) -> None:
        _lowest_priority()
        while True:
            with self._changed:
                if not self._waiting:
                    self._thread = None
                    self._changed.notify_all()
                    return
                path = next(iter(self._waiting))
                values, after = self._waiting.pop(path)
            try:
                self._write(path, values)
                if after is not None:
                    after()
            except BaseException as exc:  # raised on the training thread by save() or close()
                with self._changed:
                    self._error = self._error or exc
            malloc.release()  # what the write took, back to the system (its arena would keep its peak), outside the lock save() takes

    def _write(self, path: Path, values: list[np.ndarray]) -> None:
        if self._copy is None:
            self._copy = _rebuild(*self._config)
        for variable, value in zip(_state(self._copy), values, strict=True):
            variable.assign(value)
        save_model(self._copy, path, self.info)


def _lowest_priority() -> None:
    """This thread at the lowest CPU priority (nice 19; Linux sets it per thread), so that training's threads come first.

    Elsewhere (other systems take the number for a process's), or where it is refused,
    the thread keeps the process's priority.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError):
        pass


def _state(network: keras.Model) -> list:
    """The variables a ``.keras`` file holds: the model's, then its optimizer's."""
    optimizer = getattr(network, "optimizer", None)
    return [*network.variables, *(optimizer.variables if optimizer is not None else [])]


def _rebuild(config: dict, compiled: dict | None, built: bool) -> keras.Model:
    """A model built from ``config``, compiled from ``compiled`` (its optimizer built if ``built``), to carry snapshots.

    The layers' variables are left uninitialized (a stateless scope defers them)
    rather than drawn at random, which compiles: each is assigned a snapshot first.
    """
    layers = {key: value for key, value in config.items() if key != "compile_config"}  # compiled below, in eager scope
    with keras.StatelessScope(initialize_variables=False):
        network = keras.saving.deserialize_keras_object(layers)
    if compiled is not None:
        network.compile_from_config(compiled)
        if built and not network.optimizer.built:
            network.optimizer.build(network.trainable_variables)
    return network


def load_model(filename: str | os.PathLike, *, compile: bool = True) -> keras.Model:
    """Load an entire model saved by :func:`save_model` (or by Keras itself).

    Loading uses Keras's safe mode (no arbitrary code from the file). A missing,
    empty, non-zip or non-model file, or a record that does not name one class
    per output of the model, raises ModelFileError naming the file.
    ``compile=False`` skips the optimizer and its state: enough for inference, and
    lighter.
    """
    path = check_archive(Path(filename))
    try:
        model = keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad archive
        raise ModelFileError(f"{path}: cannot load the model ({first_line(exc)})") from None
    outputs = getattr(model, "output_shape", None)  # several outputs, or none (never built): the caller says
    if isinstance(outputs, tuple) and isinstance(outputs[-1], int):
        check_outputs(read_model_info(path), outputs[-1], path)
    return allow_jit(model)
