"""ONNX: export a model through Keras's own exporter, checked against Keras, and load one for onnxruntime.

Keras exports JAX models with jax2onnx, which writes 2-D max-pooling as a 4-D
``MaxPool`` that onnxruntime refuses ("Unsupported pooling size"). The exported
graph therefore traces a copy of the model whose pooling layers compute the same
maxima by reshaping (plain ``Reshape`` and ``ReduceMax`` in ONNX). Every export is
run on onnxruntime and compared with Keras before it is kept: a graph that
disagrees is an error, never a file.

The model's record (data set, classes, normalization) travels in the ONNX
metadata, so a ``.onnx`` file predicts with the same preprocessing as its
``.keras`` source.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras
import numpy as np

from mnist_classifier.errors import ModelFileError
from mnist_classifier.files import atomic_path, cache_root
from mnist_classifier.persistence import ModelInfo, check_model_file, first_line, parse_model_info

RUNTIMES = ("keras", "onnx")
INFO_KEY = "mnist_classifier"
INPUT_NAME = "image"
TOLERANCE = 1e-5  # largest difference in any probability between onnxruntime and Keras
CHECK_IMAGES = 256


class PoolByReshape(keras.layers.Layer):
    """2-D max-pooling whose strides equal its window, with valid padding: crop, reshape, max."""

    def __init__(self, pool_size: tuple[int, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def call(self, x):
        """The same maxima as ``MaxPooling2D(pool_size)`` on channels-last images."""
        (ph, pw), (height, width, channels) = self.pool_size, x.shape[1:]
        x = x[:, : height // ph * ph, : width // pw * pw, :]
        x = keras.ops.reshape(x, (-1, height // ph, ph, width // pw, pw, channels))
        return keras.ops.max(x, axis=(2, 4))


def export_onnx(network: keras.Model, path: str | os.PathLike, info: ModelInfo | None = None) -> Path:
    """Write ``network`` to ``path`` as ONNX (with ``info`` in its metadata), after checking it on onnxruntime.

    Raises:
        ModelFileError: the exporter failed, or its graph does not run or does not
            match Keras within TOLERANCE; nothing is left at ``path``.
    """
    path = check_target(Path(path))
    with atomic_path(path, suffix=".onnx") as temp:
        _trace(network, temp)
        _add_info(temp, info)
        check_export(network, temp)
    return path


def check_target(path: Path) -> Path:
    """An ONNX file to write must end in .onnx, in a folder that exists."""
    if path.suffix != ".onnx":
        raise ModelFileError(f"{path}: ONNX files must end in .onnx")
    if not path.parent.is_dir():
        raise ModelFileError(f"{path}: folder {path.parent} does not exist")
    return path


def check_export(network: keras.Model, path: Path, inputs: np.ndarray | None = None) -> float:
    """Largest probability difference between the ONNX file and Keras on ``inputs`` (default: random ones).

    Raises ModelFileError when it exceeds TOLERANCE.
    """
    if inputs is None:
        inputs = np.random.default_rng(0).random((CHECK_IMAGES, *network.input_shape[1:]), np.float32)
    expected = keras.ops.convert_to_numpy(network.predict_on_batch(inputs))
    got = OnnxNetwork(path)(inputs)
    gap = float(np.max(np.abs(got - expected)))
    if not gap <= TOLERANCE:
        raise ModelFileError(f"{path}: the exported graph differs from Keras by {gap:.2g} (at most {TOLERANCE} allowed)")
    return gap


def cached_export(keras_path: Path, network: keras.Model, info: ModelInfo | None) -> Path:
    """The ONNX export of ``network`` loaded from ``keras_path``, made once and kept in the cache (keyed by the file's content)."""
    digest = hashlib.sha256(keras_path.read_bytes()).hexdigest()[:16]
    target = cache_root() / "onnx" / f"{keras_path.stem}-{digest}.onnx"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(network, target, info)
    return target


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
        self.output_shape = tuple(outputs[0].shape[1:])
        self.info = _read_info(path, self.session)

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of inputs shaped as the model expects."""
        try:
            return self.session.run(None, {self.input: np.asarray(inputs, np.float32)})[0]
        except Exception as exc:  # e.g. an operator onnxruntime does not implement
            raise ModelFileError(f"{self.path}: onnxruntime cannot run the model ({first_line(exc)})") from None


def _read_info(path: Path, session) -> ModelInfo | None:
    """The record an export of ours stores in the metadata; None for a foreign file."""
    text = session.get_modelmeta().custom_metadata_map.get(INFO_KEY)
    return parse_model_info(text, path, f"{INFO_KEY} metadata") if text else None


def _trace(network: keras.Model, path: Path) -> None:
    """Keras's ONNX export of ``network`` with its pooling rewritten for onnxruntime."""
    spec = keras.InputSpec(shape=(None, *network.input_shape[1:]), dtype="float32", name=INPUT_NAME)
    try:
        _for_onnx(network).export(str(path), format="onnx", verbose=False, input_signature=[spec])
    except ImportError as exc:
        raise ModelFileError(f"ONNX export needs jax2onnx ({first_line(exc)})") from None
    except Exception as exc:  # the exporter raises many kinds for what it cannot convert
        raise ModelFileError(f"cannot export {network.name} to ONNX ({first_line(exc)})") from None


def _for_onnx(network: keras.Model) -> keras.Model:
    """``network`` sharing its weights, with 2-D max-pooling computed by reshaping."""

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if (
            isinstance(layer, keras.layers.MaxPooling2D)
            and tuple(layer.strides) == tuple(layer.pool_size)
            and layer.padding == "valid"
            and layer.data_format == "channels_last"
        ):
            return PoolByReshape(tuple(layer.pool_size), name=layer.name)
        return layer

    if not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in network.layers):
        return network
    return keras.models.clone_model(network, clone_function=swap)


def _add_info(path: Path, info: ModelInfo | None) -> None:
    """Store the model's record (if any) in the ONNX file's metadata."""
    import onnx

    model = onnx.load(str(path))
    if info is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = INFO_KEY, info.to_json()
    model.producer_name = "mnist-classifier"
    onnx.save(model, str(path))

