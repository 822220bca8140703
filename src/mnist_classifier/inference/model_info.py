"""The record a model file carries (data set, classes, normalization, input shape, calibration), read without Keras.

:func:`~mnist_classifier.persistence.save_model` stores it as an extra
``mnist_classifier.json`` entry in the ``.keras`` zip (plain
``keras.models.load_model`` ignores it), and ONNX exports carry it in their
metadata. Reading it, and checking that a model file is there and whole, needs
no Keras: inference on onnxruntime starts without importing it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_classifier.calibration import check_temperature
from mnist_classifier.errors import ConfigError, ModelFileError
from mnist_classifier.system.files import special_kind
from mnist_classifier.data.preprocessing import Normalization, check_normalize_mode

INFO_ENTRY = "mnist_classifier.json"
MAX_INFO_BYTES = 2**20  # a record is a few kilobytes


@dataclass(frozen=True)
class ModelInfo:
    """What a model needs to be fed and understood: recorded with it at save time.

    ``temperature`` rescales the model's probabilities into calibrated ones
    (:func:`mnist_classifier.calibration.calibrated`; 1 leaves them as they are) and
    ``reject_below`` is the :func:`~mnist_classifier.calibration.digit_score` under
    which a picture is "not a digit" (None: nothing is rejected). Records written
    before these fields existed read as 1 and None.
    """

    dataset: str
    classes: tuple[str, ...]
    normalization: Normalization
    input_shape: tuple[int, ...]
    package_version: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    temperature: float = 1.0
    reject_below: float | None = None

    def __post_init__(self) -> None:
        if not self.classes or not all(isinstance(name, str) for name in self.classes):
            raise ConfigError(f"classes={self.classes!r}: expected a non-empty list of class names")
        check_temperature(self.temperature)
        reject = self.reject_below
        if reject is not None and (isinstance(reject, bool) or not isinstance(reject, (int, float)) or not math.isfinite(reject)):
            raise ConfigError(f"reject_below={reject!r}: expected a finite number or None")

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
            temperature=raw.get("temperature", 1.0),
            reject_below=raw.get("reject_below"),
        )


def read_model_info(filename: str | os.PathLike) -> ModelInfo | None:
    """The record stored with a model by :func:`save_model`, or None for a foreign file."""
    path = check_archive(Path(filename))
    with zipfile.ZipFile(path) as archive:
        if INFO_ENTRY not in archive.namelist():
            return None
        with archive.open(INFO_ENTRY) as entry:
            data = entry.read(MAX_INFO_BYTES + 1)
    if len(data) > MAX_INFO_BYTES:
        raise ModelFileError(f"{path}: {INFO_ENTRY} is over the {MAX_INFO_BYTES:,}-byte limit")
    return parse_model_info(data.decode(errors="replace"), path, INFO_ENTRY)


def parse_model_info(text: str, path: Path, where: str) -> ModelInfo:
    """A record as stored in ``path`` (at ``where``), checked; a ModelFileError when it cannot be used."""
    try:
        info = ModelInfo.from_json(text)
        check_normalize_mode(info.normalization.mode)
        return info
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: unreadable {where} ({exc})") from None


def check_outputs(info: ModelInfo | None, outputs: int, path: Path) -> None:
    """A model's record (if any) must name one class per output of the model; a ModelFileError otherwise."""
    if info is not None and len(info.classes) != outputs:
        count = f"{len(info.classes)} class" + ("" if len(info.classes) == 1 else "es")
        raise ModelFileError(f"{path}: its {INFO_ENTRY} lists {count} for {outputs} model outputs: expected one class per output")


def check_model_file(path: Path, suffix: str) -> Path:
    """A model path must be an existing, non-empty regular file (``suffix`` names the kind expected).

    A folder, FIFO or device is refused without being opened.
    """
    try:
        status = path.stat()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    kind = special_kind(status.st_mode)
    if kind is not None:
        raise ModelFileError(f"{path}: is {kind}, expected a {suffix} file")
    if status.st_size == 0:
        raise ModelFileError(f"{path}: model file is empty")
    return path


def check_archive(path: Path) -> Path:
    """A model path must be an existing, non-empty zip with a Keras config."""
    check_model_file(path, ".keras")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a .keras model (not a zip archive)")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ModelFileError(f"{path}: zip archive without config.json: not a Keras model")
    return path


def network_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The rows of Keras's ``model.summary()`` table: ``layer (type)``, output shape, parameters.

    ``summary`` is :func:`~mnist_classifier.models.network_summary`'s; shapes are
    written as Keras writes them, ``(None, 28, 28, 32)``, and counts with thousands
    separators. :func:`network_totals` is the line below the table.
    """
    return [
        (
            f"{layer['name']} ({layer['type']})",
            "(" + ", ".join(str(side) for side in layer["output_shape"]) + ")",
            f"{layer['params']:,}",
        )
        for layer in summary["layers"]
    ]


def network_totals(summary: dict[str, Any]) -> str:
    """The line below the network's table: ``203,530 parameters: 203,530 trainable, 0 not``."""
    return f"{summary['total']:,} parameters: {summary['trainable']:,} trainable, {summary['non_trainable']:,} not"


NETWORK_COLUMNS = ("layer (type)", "output shape", "parameters")
