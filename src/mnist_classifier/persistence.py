"""Save and load ``.keras`` files, with the preprocessing a model needs stored inside.

The model's own record (data set, classes, normalization, input shape) travels as
an extra ``mnist_classifier.json`` entry in the ``.keras`` zip: plain
``keras.models.load_model`` ignores it, and our ``evaluate`` and ``predict`` read it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from mnist_classifier.errors import ModelFileError
from mnist_classifier.files import atomic_path
from mnist_classifier.models import allow_jit
from mnist_classifier.preprocessing import Normalization, check_normalize_mode

INFO_ENTRY = "mnist_classifier.json"


@dataclass(frozen=True)
class ModelInfo:
    """What a model needs to be fed and understood: recorded with it at save time."""

    dataset: str
    classes: tuple[str, ...]
    normalization: Normalization
    input_shape: tuple[int, ...]
    package_version: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize to JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """Parse what :meth:`to_json` wrote."""
        raw = json.loads(text)
        return cls(
            dataset=raw["dataset"],
            classes=tuple(raw["classes"]),
            normalization=Normalization(**raw["normalization"]),
            input_shape=tuple(raw["input_shape"]),
            package_version=raw.get("package_version", ""),
            metrics=raw.get("metrics", {}),
        )


def save_model(network: keras.Model, filename: str | os.PathLike, info: ModelInfo | None = None) -> None:
    """Save the entire model (architecture, weights, optimizer state) to ``filename``.

    The file is written to a temporary name in the same folder and renamed into
    place, so an interrupted save never leaves a half-written model behind.
    """
    path = Path(filename)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    if not path.parent.is_dir():
        raise ModelFileError(f"{path}: folder {path.parent} does not exist")
    with atomic_path(path, suffix=".keras") as temp:
        network.save(temp)
        if info is not None:
            with zipfile.ZipFile(temp, "a") as archive:
                archive.writestr(INFO_ENTRY, info.to_json())


def load_model(filename: str | os.PathLike, *, compile: bool = True) -> keras.Model:
    """Load an entire model saved by :func:`save_model` (or by Keras itself).

    Loading uses Keras's safe mode (no arbitrary code from the file). A missing,
    empty, non-zip or non-model file raises ModelFileError naming the file.
    ``compile=False`` skips the optimizer and its state: enough for inference, and
    lighter.
    """
    path = _check_archive(Path(filename))
    try:
        model = keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad archive
        raise ModelFileError(f"{path}: cannot load the model ({first_line(exc)})") from None
    return allow_jit(model)


def read_model_info(filename: str | os.PathLike) -> ModelInfo | None:
    """The record stored with a model by :func:`save_model`, or None for a foreign file."""
    path = _check_archive(Path(filename))
    with zipfile.ZipFile(path) as archive:
        if INFO_ENTRY not in archive.namelist():
            return None
        return parse_model_info(archive.read(INFO_ENTRY).decode(), path, INFO_ENTRY)


def parse_model_info(text: str, path: Path, where: str) -> ModelInfo:
    """A record as stored in ``path`` (at ``where``), checked; a ModelFileError when it cannot be used."""
    try:
        info = ModelInfo.from_json(text)
        check_normalize_mode(info.normalization.mode)
        return info
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: unreadable {where} ({exc})") from None


def check_model_file(path: Path, suffix: str) -> Path:
    """A model path must be an existing, non-empty file (``suffix`` names the kind expected)."""
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, expected a {suffix} file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: model file is empty")
    return path


def _check_archive(path: Path) -> Path:
    """A model path must be an existing, non-empty zip with a Keras config."""
    check_model_file(path, ".keras")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a .keras model (not a zip archive)")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ModelFileError(f"{path}: zip archive without config.json: not a Keras model")
    return path


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
