"""ONNX export through Keras's exporter, checked against Keras; predict and serve on onnxruntime."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import onnx
import pytest

from mnist_classifier import Augmentation, Normalization, build_cnn, build_model, load_dataset, preprocess
from mnist_classifier.errors import ModelFileError
from mnist_classifier.inference.bundled import BUNDLES
from mnist_classifier.inference.model_info import ModelInfo
from mnist_classifier.models import as_float32, dtype_policy
from mnist_classifier.inference.onnx_export import TOLERANCE, check_export, export_onnx
from mnist_classifier.inference.onnx_runtime import OnnxNetwork, cached_export_path
from mnist_classifier.inference.predict import Classifier
from tests.test_cli import assert_one_line_error, cli
from tests.test_predict import png_file
from tests.test_serve import served


@pytest.fixture(scope="module")
def test_images(mnist_dir):
    _, (images, labels) = load_dataset("mnist", mnist_dir)
    return images[:1000], labels[:1000]


@pytest.fixture(scope="module")
def mlp_onnx(mlp_model_path, tmp_path_factory):
    """The session's mlp exported with the CLI."""
    target = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    result = cli("export", mlp_model_path, "--out", target)
    assert target.exists() and "checked against Keras" in result.stdout
    return target


def agreement(network: keras.Model, path, inputs: np.ndarray) -> tuple[float, float]:
    """Largest probability gap between onnxruntime and Keras, and the share of equal predicted classes."""
    expected = keras.ops.convert_to_numpy(network.predict_on_batch(inputs))
    got = OnnxNetwork(path)(inputs)
    return float(np.max(np.abs(got - expected))), float(np.mean(got.argmax(1) == expected.argmax(1)))


def kernel_shape(node: onnx.NodeProto) -> list[int]:
    """A pooling node's window."""
    return next(list(attribute.ints) for attribute in node.attribute if attribute.name == "kernel_shape")


def test_max_pooling_exports_as_spatial_maxpools_equal_to_keras(tmp_path):
    """jax2onnx's MaxPool over all axes (refused by onnxruntime) is rewritten; the maxima are Keras's exactly."""
    poolings = [
        dict(pool_size=2),
        dict(pool_size=3),  # 9 is not a multiple of 2, 4 not of 3: the edges are dropped
        dict(pool_size=3, strides=2, padding="same"),
        dict(pool_size=(2, 3), strides=(1, 2)),
        dict(pool_size=2, data_format="channels_first"),
    ]
    inputs = keras.Input((9, 9, 4))
    branches = [keras.layers.Flatten()(keras.layers.MaxPooling2D(**pooling)(inputs)) for pooling in poolings]
    network = keras.Model(inputs, keras.layers.Concatenate()(branches))
    path = export_onnx(network, tmp_path / "pool.onnx")
    pools = [kernel_shape(node) for node in onnx.load(str(path)).graph.node if node.op_type == "MaxPool"]
    assert len(pools) == len(poolings) and all(len(kernel) == 2 for kernel in pools)
    x = np.random.default_rng(0).normal(size=(4, 9, 9, 4)).astype(np.float32)
    np.testing.assert_array_equal(OnnxNetwork(path)(x), keras.ops.convert_to_numpy(network(x)))


def test_a_cnn_with_augmentation_exports_and_matches_keras(tmp_path, test_images):
    keras.utils.set_random_seed(0)
    network = build_cnn(filters=(8, 16, 16), augmentation=Augmentation(0.1, 10, 0.1))
    info = ModelInfo("mnist", tuple("0123456789"), Normalization("scale"), (28, 28, 1))
    path = export_onnx(network, tmp_path / "cnn.onnx", info)
    assert [kernel_shape(node) for node in onnx.load(str(path)).graph.node if node.op_type == "MaxPool"] == [[2, 2]] * 3
    gap, same = agreement(network, path, preprocess(test_images[0], info.normalization, info.input_shape))
    assert gap <= TOLERANCE and same == 1.0
    assert OnnxNetwork(path).info == info


def test_a_mixed_bfloat16_model_exports_as_its_float32_twin(tmp_path, test_images):
    keras.utils.set_random_seed(0)
    with dtype_policy("mixed_bfloat16"):
        network = build_cnn(filters=(8, 16))
    twin = as_float32(network)
    assert {layer.compute_dtype for layer in twin.layers} == {"float32"} and as_float32(twin) is twin
    path = export_onnx(network, tmp_path / "mixed.onnx")
    inputs = preprocess(test_images[0], Normalization("scale"), (28, 28, 1))
    assert agreement(twin, path, inputs)[0] <= TOLERANCE
    gap, same = agreement(network, path, inputs)  # bfloat16 rounding apart
    assert gap < 0.05 and same > 0.97


def test_keras_plain_export_of_pooling_is_caught_not_shipped(tmp_path):
    """The known obstacle: Keras's own export of MaxPooling2D is a graph onnxruntime cannot run."""
    keras.utils.set_random_seed(0)
    network = build_cnn(filters=(8,))
    raw = tmp_path / "raw.onnx"
    network.export(str(raw), format="onnx", verbose=False, input_signature=[keras.InputSpec(shape=(None, 28, 28, 1), dtype="float32", name="image")])
    with pytest.raises(ModelFileError, match="raw.onnx: onnxruntime cannot run the model .*pooling"):
        check_export(network, raw)


def test_an_export_that_differs_from_keras_is_refused(tmp_path):
    keras.utils.set_random_seed(0)
    exported, other = build_model(784, [16, 10], ["relu", "softmax"], 0.0, 1.0), build_model(784, [16, 10], ["relu", "softmax"], 0.0, 1.0)
    path = export_onnx(exported, tmp_path / "a.onnx")
    assert check_export(exported, path) <= TOLERANCE
    with pytest.raises(ModelFileError, match="a.onnx: the exported graph differs from Keras"):
        check_export(other, path)


def test_cli_export_then_predict_on_onnxruntime_agrees_with_keras(mlp_model_path, mlp_onnx, test_images, tmp_path):
    images, labels = test_images
    files = [png_file(tmp_path / f"{i}.png", images[i]) for i in range(5)]
    on_onnx = json.loads(cli("predict", mlp_onnx, *files, "--json").stdout)
    on_keras = json.loads(cli("predict", mlp_model_path, *files, "--json").stdout)
    assert [a["label"] for a in on_onnx] == [a["label"] for a in on_keras] == list(labels[:5])
    assert np.max(np.abs(np.array([a["probabilities"] for a in on_onnx]) - [a["probabilities"] for a in on_keras])) <= TOLERANCE
    gap, same = agreement(keras.models.load_model(mlp_model_path), mlp_onnx, preprocess(images, Normalization("scale"), (784,)))
    assert gap <= TOLERANCE and same == 1.0


def test_serve_on_an_onnx_file(mlp_onnx, test_images):
    images, labels = test_images
    with served(mlp_onnx) as client:
        model = client.get("/model").json()
        assert model["runtime"] == "onnx" and model["dataset"] == "mnist" and model["file"] == "mlp.onnx"
        assert model["backend"] == "onnxruntime"
        answers = [client.post("/predict", json={"pixels": images[i].tolist()}).json()["label"] for i in range(5)]
    assert answers == list(labels[:5])


def test_runtime_onnx_exports_a_keras_model_once_into_the_cache(mlp_model_path, test_images):
    first = Classifier.load(mlp_model_path, runtime="onnx")
    cached = cached_export_path(mlp_model_path)  # other tests' exports may share this session's cache
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    second = Classifier.load(mlp_model_path, runtime="onnx")
    assert first.runtime == second.runtime == "onnx" and cached.stat().st_mtime_ns == stamp
    keras_answers = Classifier.load(mlp_model_path).probabilities(test_images[0][:100])
    assert np.max(np.abs(second.probabilities(test_images[0][:100]) - keras_answers)) <= TOLERANCE


WITHOUT_KERAS = """
import sys
from mnist_classifier.cli import app
try:
    app(sys.argv[1:])
except SystemExit as stop:
    assert not stop.code, stop.code
print(sorted({"keras", "jax", "tensorflow"} & set(sys.modules)))
"""


def test_onnxruntime_predictions_never_import_keras(mlp_model_path, mlp_onnx, test_images, tmp_path):
    """A .onnx file, or a .keras file whose export is cached, predicts in a process without Keras or JAX (fast start)."""
    images, labels = test_images
    image = png_file(tmp_path / "digit.png", images[0])
    Classifier.load(mlp_model_path, runtime="onnx")  # exported into the cache, if not there yet
    for model in (mlp_onnx, mlp_model_path):
        command = [sys.executable, "-c", WITHOUT_KERAS, "predict", str(model), str(image), "--runtime", "onnx", "--json"]
        *answer, imported = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()
        assert imported == "[]" and json.loads("\n".join(answer))[0]["label"] == labels[0]


def test_broken_onnx_files_are_one_clear_error(mlp_onnx, test_images, tmp_path):
    image = png_file(tmp_path / "digit.png", test_images[0][0])
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "garbage.onnx").write_bytes(b"not a protobuf at all" * 50)
    data = mlp_onnx.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    assert_one_line_error(cli("predict", tmp_path / "empty.onnx", image, check=False), "empty.onnx: model file is empty")
    for name in ("garbage.onnx", "truncated.onnx"):
        assert_one_line_error(cli("predict", tmp_path / name, image, check=False), f"{name}: not a usable ONNX model")
    assert_one_line_error(cli("serve", tmp_path / "truncated.onnx", check=False), "truncated.onnx: not a usable ONNX model")
    assert_one_line_error(cli("predict", mlp_onnx, image, "--runtime", "keras", check=False), "runs on onnxruntime only")
    assert_one_line_error(cli("predict", mlp_onnx, image, "--runtime", "tflite", check=False), "runtime 'tflite'")


def test_an_onnx_record_naming_fewer_classes_than_outputs_is_refused(mlp_onnx, test_images, tmp_path):
    model = onnx.load(str(mlp_onnx))
    (entry,) = [entry for entry in model.metadata_props if entry.key == "mnist_classifier"]
    entry.value = json.dumps({**json.loads(entry.value), "classes": ["0"]})
    onnx.save(model, str(tmp_path / "one-class.onnx"))
    with pytest.raises(ModelFileError, match="lists 1 class for 10 model outputs"):
        OnnxNetwork(tmp_path / "one-class.onnx")
    image = png_file(tmp_path / "digit.png", test_images[0][0])
    assert_one_line_error(cli("predict", tmp_path / "one-class.onnx", image, check=False), "lists 1 class for 10 model outputs")


def test_runtime_onnx_checks_a_keras_file_before_looking_for_its_export(tmp_path):
    (tmp_path / "folder.keras").mkdir()
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "text.keras").write_bytes(b"not a zip archive")
    expected = {"missing": "model file not found", "folder": "is a folder", "empty": "model file is empty",
                "text": "not a .keras model"}  # fmt: skip
    for name, message in expected.items():
        with pytest.raises(ModelFileError, match=f"{name}.keras: {message}"):
            Classifier.load(tmp_path / f"{name}.keras", runtime="onnx")
    result = cli("predict", tmp_path / "missing.keras", tmp_path / "digit.png", "--runtime", "onnx", check=False)
    assert_one_line_error(result, "missing.keras: model file not found")


def test_export_refuses_bad_requests_and_writes_nothing(mlp_model_path, tmp_path):
    assert_one_line_error(cli("export", mlp_model_path, "--format", "tflite", check=False), "--format tflite: expected onnx")
    target = tmp_path / "missing" / "m.onnx"
    assert_one_line_error(cli("export", mlp_model_path, "--out", target, check=False), "folder", "does not exist")
    assert_one_line_error(cli("export", mlp_model_path, "--out", tmp_path / "m.txt", check=False), "must end in .onnx")
    assert_one_line_error(cli("export", tmp_path / "none.keras", check=False), "none.keras: model file not found")
    assert list(tmp_path.iterdir()) == []


WITHOUT_EXPORTER = """
import sys
sys.modules["jax2onnx"] = None  # as if the export extra were not installed
from mnist_classifier.cli import main
main()
"""


def test_without_the_export_extra_export_says_how_to_install_it_and_bundled_models_still_run_on_onnx(
    test_images, tmp_path
):
    image = png_file(tmp_path / "digit.png", test_images[0][0])
    target, user_model = tmp_path / "out.onnx", tmp_path / "mine.keras"
    shutil.copyfile(BUNDLES["mnist-mlp"].path, user_model)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run(*args, check=False):
        command = [sys.executable, "-c", WITHOUT_EXPORTER, *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=check)

    for args in (("export", "mnist-mlp", "--out", target), ("predict", user_model, image, "--runtime", "onnx")):
        assert_one_line_error(run(*args), "export needs the export extra: pip install 'mnist-classifier[export]'")
    assert not target.exists() and not (tmp_path / "cache" / "mnist-classifier" / "onnx").exists()
    answer = run("predict", "mnist-cnn", image, "--runtime", "onnx", "--json", check=True).stdout
    assert json.loads(answer)[0]["label"] == test_images[1][0]


def test_a_model_of_ones_own_on_onnx_is_exported_once_saying_so(test_images, tmp_path):
    model = tmp_path / "model.keras"
    shutil.copyfile(BUNDLES["mnist-mlp"].path, model)  # no graph shipped beside it
    image = png_file(tmp_path / "digit.png", test_images[0][0])
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = cli("predict", model, image, "--runtime", "onnx", env=env)
    assert "exporting model.keras to ONNX (once)..." in first.stderr.splitlines()
    (cached,) = (tmp_path / "cache" / "mnist-classifier" / "onnx").iterdir()  # one file: its weights inside
    assert cached.suffix == ".onnx" and not cached.name.startswith(".")
    second = cli("predict", model, image, "--runtime", "onnx", env=env)
    assert "exporting" not in second.stderr and second.stdout == first.stdout
