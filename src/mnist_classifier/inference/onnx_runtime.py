"""Run an ONNX classifier on onnxruntime, without Keras.

A ``.keras`` model asked to run on onnxruntime runs the graph shipped beside it
(``model.onnx`` next to ``model.keras``, as the bundled models have) when that
graph records the file's :func:`source_digest`; otherwise it is exported once
(:mod:`mnist_classifier.inference.onnx_export`, which needs Keras and the
``export`` extra) into the cache, under a name made of the same digest. Later
runs load the graph directly and never import Keras.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from mnist_classifier.errors import MissingExtraError, ModelFileError, first_line
from mnist_classifier.system.files import cache_root
from mnist_classifier.inference.model_info import ModelInfo, check_model_file, check_outputs, parse_model_info

RUNTIMES = ("keras", "onnx")
INFO_KEY = "mnist_classifier"  # the ONNX metadata entry that holds the model's record
SOURCE_KEY = "mnist_classifier_source"  # the ONNX metadata entry that holds the source_digest it was exported from
EXPORT_REVISION = "spatial-maxpool"  # part of source_digest: change it when exports change


def source_digest(keras_path: Path) -> str:
    """The SHA-256 of a ``.keras`` file's content and EXPORT_REVISION: what an export of it records as its source."""
    return hashlib.sha256(keras_path.read_bytes() + EXPORT_REVISION.encode()).hexdigest()


def require_exporter() -> None:
    """Raise MissingExtraError unless the ``export`` extra (jax2onnx and onnx) is installed.

    Looks for the packages without importing them, or Keras: a missing extra is told at once.
    """
    if any(importlib.util.find_spec(name) is None for name in ("jax2onnx", "onnx")):
        raise MissingExtraError("export needs the export extra: pip install 'mnist-classifier[export]'")


def cached_export_path(keras_path: Path) -> Path:
    """Where the cache keeps the ONNX export of a ``.keras`` file (named by its :func:`source_digest`)."""
    return cache_root() / "onnx" / f"{keras_path.stem}-{source_digest(keras_path)[:16]}.onnx"


def shipped_graph(keras_path: Path) -> OnnxNetwork | None:
    """The graph shipped beside a ``.keras`` file (same name, ``.onnx``), if it was exported from that very file.

    None when there is no such file or it records another source (the weights
    changed since, or EXPORT_REVISION did): the caller exports instead.
    """
    graph = keras_path.with_suffix(".onnx")
    if not graph.is_file():
        return None
    network = OnnxNetwork(graph)
    return network if network.source == source_digest(keras_path) else None


class OnnxNetwork:
    """An ONNX classifier on onnxruntime: called on a batch of preprocessed inputs, it returns probabilities."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        check_model_file(path, ".onnx")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only, not onnxruntime's shape-merging notes
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail, InvalidGraph, ... types
            raise ModelFileError(f"{path}: not a usable ONNX model ({first_line(exc)})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"{path}: ONNX model has several inputs or outputs, expected one of each")
        self.path = path
        self.input = inputs[0].name
        self.input_shape = tuple(inputs[0].shape[1:])
        self.outputs = [outputs[0].name]
        self.output_shape = tuple(outputs[0].shape[1:])
        self.info = _read_info(path, self.session)
        self.source = self.session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
        if all(isinstance(side, int) for side in self.output_shape):
            check_outputs(self.info, int(np.prod(self.output_shape)), path)

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of inputs shaped as the model expects."""
        try:
            return self.session.run(self.outputs, {self.input: np.asarray(inputs, np.float32)})[0]
        except Exception as exc:  # e.g. an operator onnxruntime does not implement
            raise ModelFileError(f"{self.path}: onnxruntime cannot run the model ({first_line(exc)})") from None


def _read_info(path: Path, session) -> ModelInfo | None:
    """The record an export of ours stores in the metadata; None for a foreign file."""
    text = session.get_modelmeta().custom_metadata_map.get(INFO_KEY)
    return parse_model_info(text, path, f"{INFO_KEY} metadata") if text else None
