"""ONNX export of a model through Keras's own exporter, checked against Keras on onnxruntime.

Keras exports JAX models with jax2onnx, which writes 2-D max-pooling as a
``MaxPool`` over all four axes of the tensor (made 6-D by two ``Unsqueeze``) that
onnxruntime refuses ("Unsupported pooling size"). Each such pooling is rewritten
into the standard form: a ``MaxPool`` over the spatial axes of a channels-first
tensor, between two ``Transpose`` nodes for a channels-last model (onnxruntime
cancels those, folds batch normalization into the convolutions and runs the whole
network in its blocked NCHWc layout). Every export is run on onnxruntime and
compared with Keras before it is kept: a graph that disagrees is an error, never
a file.

A mixed-precision model is exported as its float32 twin (the same weights,
computing in float32): onnxruntime's CPU kernels are float32, and the check
compares that twin's own outputs.

The model's record (data set, classes, normalization) travels in the ONNX
metadata, so a ``.onnx`` file predicts with the same preprocessing as its
``.keras`` source, and so does the digest of that source, by which a graph
shipped beside a ``.keras`` file is known to be its own.

Exporting needs the ``export`` extra (jax2onnx and onnx); running a graph needs
only onnxruntime.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from mnist_classifier.errors import ModelFileError, first_line
from mnist_classifier.system.files import atomic_path
from mnist_classifier.inference.model_info import ModelInfo
from mnist_classifier.models import as_float32
from mnist_classifier.inference.onnx_runtime import INFO_KEY, SOURCE_KEY, OnnxNetwork, require_exporter

INPUT_NAME = "image"
TOLERANCE = 1e-5  # largest difference in any probability between onnxruntime and Keras
CHECK_IMAGES = 256


def export_onnx(
    network: keras.Model,
    path: str | os.PathLike,
    info: ModelInfo | None = None,
    source: str | None = None,
    inputs: np.ndarray | None = None,
) -> Path:
    """Write ``network`` to ``path`` as ONNX, after checking it on onnxruntime against Keras.

    ``info`` (the model's record) and ``source`` (the
    :func:`~mnist_classifier.inference.onnx_runtime.source_digest` of its ``.keras``
    file) go into the graph's metadata; ``inputs`` are what the check compares
    (default: random ones, see :func:`check_export`).

    Raises:
        MissingExtraError: the ``export`` extra (jax2onnx, onnx) is not installed.
        ModelFileError: the exporter failed, or its graph does not run or does not
            match Keras within TOLERANCE; nothing is left at ``path``.
    """
    require_exporter()
    path = check_target(Path(path))
    network = as_float32(network)
    with atomic_path(path, suffix=".onnx") as temp:
        weights = temp.with_name(f"{temp.name}.data")  # where the exporter puts large weights; _finish takes them in
        try:
            _trace(network, temp)
            _finish(temp, info, source)
            check_export(network, temp, inputs)
        finally:
            weights.unlink(missing_ok=True)
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


def _trace(network: keras.Model, path: Path) -> None:
    """Keras's own ONNX export of ``network``, with the input named ``image``."""
    spec = keras.InputSpec(shape=(None, *network.input_shape[1:]), dtype="float32", name=INPUT_NAME)
    try:
        network.export(str(path), format="onnx", verbose=False, input_signature=[spec])
    except ImportError as exc:
        raise ModelFileError(f"ONNX export needs jax2onnx ({first_line(exc)})") from None
    except Exception as exc:  # the exporter raises many kinds for what it cannot convert
        raise ModelFileError(f"cannot export {network.name} to ONNX ({first_line(exc)})") from None


def _finish(path: Path, info: ModelInfo | None, source: str | None) -> None:
    """Rewrite the exported graph's max-pooling for onnxruntime; store the model's record and source (if any) in its metadata.

    The graph is saved as one file, its weights inside it.
    """
    import onnx

    model = onnx.load(str(path))
    _rewrite_pooling(model.graph)
    for key, value in ((INFO_KEY, info and info.to_json()), (SOURCE_KEY, source)):
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    model.producer_name = "mnist-classifier"
    onnx.save(model, str(path))


def _rewrite_pooling(graph) -> None:
    """Replace each max-pooling jax2onnx writes (Unsqueeze twice, MaxPool over every axis, Squeeze) by a spatial MaxPool."""
    from onnx import numpy_helper

    constants = {tensor.name: numpy_helper.to_array(tensor).tolist() for tensor in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    nodes = []
    for node in graph.node:
        pool = producer.get(node.input[0]) if node.op_type == "Squeeze" else None
        source = _pooled_source(pool, producer, constants) if pool is not None and pool.op_type == "MaxPool" else None
        window = _spatial_window(pool) if source is not None and _axes(node, constants) == [0, 1] else None
        nodes.extend(_spatial_pool(source, node.output[0], *window) if window else [node])
    live = {output.name for output in graph.output}
    kept = []
    for node in reversed(nodes):  # drop what no output needs any more: the bypassed Unsqueeze and MaxPool nodes
        if live.intersection(node.output):
            kept.append(node)
            live.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    unused = [tensor for tensor in graph.initializer if tensor.name not in live]  # the bypassed nodes' axes
    for tensor in unused:
        graph.initializer.remove(tensor)


def _axes(node, constants: dict) -> list[int] | None:
    """The ``axes`` of an Unsqueeze or Squeeze node: its second input (opset 13 on) or its attribute."""
    if len(node.input) > 1:
        return constants.get(node.input[1])
    return next((list(item.ints) for item in node.attribute if item.name == "axes"), None)


def _pooled_source(pool, producer: dict, constants: dict) -> str | None:
    """The tensor a MaxPool pools when its input is that tensor with two leading axes added by Unsqueeze."""
    axes, name = [], pool.input[0]
    while (node := producer.get(name)) is not None and node.op_type == "Unsqueeze" and len(axes) < 2:
        axes.insert(0, _axes(node, constants))
        name = node.input[0]
    return name if axes in ([[0], [1]], [[0], [0]], [[0, 1]]) else None


def _spatial_window(pool) -> tuple[int, list[int], dict] | None:
    """The channel axis and spatial axes of a MaxPool over every axis of a tensor, and its attributes over those.

    None unless the window leaves the batch axis and one channel axis (the last
    or the second) untouched, with no ceiling or storage options.
    """
    import onnx

    attributes = {item.name: onnx.helper.get_attribute_value(item) for item in pool.attribute}
    kernel = attributes.pop("kernel_shape")
    rank = len(kernel)
    window = {
        "kernel_shape": kernel,
        "strides": attributes.pop("strides", [1] * rank),
        "dilations": attributes.pop("dilations", [1] * rank),
    }
    pads = attributes.pop("pads", [0] * 2 * rank)
    if attributes or not 3 <= rank <= 5:
        return None

    def untouched(axis: int) -> bool:
        return all(values[axis] == 1 for values in window.values()) and pads[axis] == pads[rank + axis] == 0

    channel = next((axis for axis in (rank - 1, 1) if untouched(axis)), None)
    if channel is None or not untouched(0):
        return None
    spatial = [axis for axis in range(1, rank) if axis != channel]
    attributes = {key: [values[axis] for axis in spatial] for key, values in window.items()}
    attributes["pads"] = [pads[axis] for axis in spatial] + [pads[rank + axis] for axis in spatial]
    return channel, spatial, attributes


def _spatial_pool(source: str, output: str, channel: int, spatial: list[int], attributes: dict) -> list:
    """ONNX MaxPool nodes computing ``output`` from ``source``, moving the channel axis to second place and back."""
    from onnx import helper

    if channel == 1:
        return [helper.make_node("MaxPool", [source], [output], **attributes)]
    order = [0, channel, *spatial]
    back = [order.index(axis) for axis in range(len(order))]
    return [
        helper.make_node("Transpose", [source], [f"{output}_nc"], perm=order),
        helper.make_node("MaxPool", [f"{output}_nc"], [f"{output}_nc_pooled"], **attributes),
        helper.make_node("Transpose", [f"{output}_nc_pooled"], [output], perm=back),
    ]
