"""Save and load ``.keras`` files, with the preprocessing a model needs stored inside.

The model's own record (:class:`~mnist_classifier.model_info.ModelInfo`) travels
as an extra ``mnist_classifier.json`` entry in the ``.keras`` zip: plain
``keras.models.load_model`` ignores it, and our ``evaluate`` and ``predict`` read it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from mnist_classifier.errors import ModelFileError, first_line
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
