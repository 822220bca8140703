"""save_model / load_model: round trips, the stored record, plain Keras, bad files."""

import dataclasses
import json
import os
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

from mnist_classifier import (
    ModelFileError,
    Normalization,
    build_model,
    load_model,
    save_model,
)
from mnist_classifier.errors import OutputError
from mnist_classifier.inference.model_info import ModelInfo, read_model_info
from tests.conftest import FIXTURES
from tests.test_cli import digit_png, run_main

INFO = ModelInfo("mnist", tuple("0123456789"), Normalization("scale"), (784,), "0.1.0", {"test_accuracy": 0.9})


def test_round_trip_predicts_identically_and_keeps_the_record(tiny_model, small_mnist, tmp_path):
    x = small_mnist["test"][0]
    path = tmp_path / "m.keras"
    save_model(tiny_model, path, INFO)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), tiny_model.predict(x, verbose=0))
    assert read_model_info(path) == INFO
    assert os.listdir(tmp_path) == ["m.keras"]  # no temporary file left behind


def _predict_in_a_fresh_process(model, x, tmp_path, loader):
    """Save ``model``, load it in a new Python with ``loader`` and check identical predictions."""
    save_model(model, tmp_path / "m.keras", INFO)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    script = (
        f"import sys, numpy as np\n{loader}\n"
        "d = sys.argv[1]\n"
        "got = load(d + '/m.keras').predict(np.load(d + '/x.npy'), verbose=0)\n"
        "assert np.array_equal(got, np.load(d + '/expected.npy')), 'predictions differ'\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env, cwd=tmp_path)


def test_fresh_process_predicts_bit_identically(tiny_model, small_mnist, tmp_path):
    _predict_in_a_fresh_process(
        tiny_model, small_mnist["test"][0][:64], tmp_path, "from mnist_classifier import load_model as load"
    )


def test_plain_keras_loads_our_file_without_the_package(tiny_model, small_mnist, tmp_path):
    loader = "import keras\nassert 'mnist_classifier' not in sys.modules\nload = keras.models.load_model"
    _predict_in_a_fresh_process(tiny_model, small_mnist["test"][0][:16], tmp_path, loader)


def test_the_notebooks_tf_keras_file_loads():
    model = load_model(FIXTURES / "notebook_model.keras")
    assert model.input_shape == (None, 784) and model.output_shape == (None, 10)
    assert read_model_info(FIXTURES / "notebook_model.keras") is None


def test_a_file_saved_by_plain_keras_has_no_record(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "plain.keras")
    assert read_model_info(tmp_path / "plain.keras") is None


def _write(path, data):
    path.write_bytes(data)
    return path


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.keras", "model file not found"),
        (lambda d: _write(d / "empty.keras", b""), "model file is empty"),
        (lambda d: _write(d / "text.keras", b"hello"), r"not a .keras model \(not a zip archive\)"),
        (lambda d: _zip(d / "other.keras", {"readme.txt": "x"}), "zip archive without config.json"),
        (lambda d: _zip(d / "broken.keras", {"config.json": "{not json", "metadata.json": "{}"}), "cannot load the model"),
        (lambda d: d, "is a folder"),
    ],
)
def test_bad_model_files_raise_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ModelFileError, match=message) as raised:
        load_model(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_truncated_model_file_is_refused(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.keras"):
        load_model(tmp_path / "cut.keras")


def test_unreadable_record_is_refused(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras", "a") as archive:
        archive.writestr("mnist_classifier.json", json.dumps({"dataset": "mnist"}))
    with pytest.raises(ModelFileError, match="unreadable mnist_classifier.json"):
        read_model_info(tmp_path / "m.keras")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [("m.h5", ModelFileError, "must end in .keras"), ("nodir/m.keras", OutputError, "folder .*nodir does not exist")],
)
def test_save_refuses_bad_destinations(tiny_model, tmp_path, name, error, message):
    with pytest.raises(error, match=message):
        save_model(tiny_model, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_a_record_naming_fewer_classes_than_the_model_has_outputs_is_refused_at_load(tiny_model, tmp_path, monkeypatch, capsys):
    path = tmp_path / "one-class.keras"
    save_model(tiny_model, path, dataclasses.replace(INFO, classes=("0",)))
    message = f"{path}: its mnist_classifier.json lists 1 class for 10 model outputs: expected one class per output"
    with pytest.raises(ModelFileError, match=message):
        load_model(path)
    for command in (["predict", path, digit_png(tmp_path / "one.png")], ["serve", path, "--port", "9"]):  # serve: before it listens
        assert run_main(monkeypatch, capsys, *command) == (1, "", f"error: {message}\n")


@pytest.mark.parametrize("classes", [[], list(range(10))], ids=["none", "numbers"])
def test_a_record_without_a_list_of_class_names_is_unreadable(tiny_model, tmp_path, classes):
    save_model(tiny_model, tmp_path / "m.keras")
    record = {**json.loads(INFO.to_json()), "classes": classes}
    with zipfile.ZipFile(tmp_path / "m.keras", "a") as archive:
        archive.writestr("mnist_classifier.json", json.dumps(record))
    with pytest.raises(ModelFileError, match="unreadable mnist_classifier.json .*expected a non-empty list of class names"):
        read_model_info(tmp_path / "m.keras")


def test_failed_save_leaves_the_old_file_intact(tmp_path, tiny_model):
    path = tmp_path / "m.keras"
    save_model(tiny_model, path, INFO)
    before = path.read_bytes()
    unsaveable = build_model(784, [8, 10], ["relu", "softmax"], 0.0, None)
    unsaveable.save = lambda *_: (_ for _ in ()).throw(KeyboardInterrupt())  # interrupted mid-save
    with pytest.raises(KeyboardInterrupt):
        save_model(unsaveable, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.keras"]


def _weights_file(path):
    """The datasets of a ``.keras`` file's weights (model and optimizer), by their path in the archive."""
    import io

    import h5py

    arrays = {}
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        weights.visititems(lambda name, item: arrays.update({name: np.array(item)}) if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_background_save_writes_what_a_synchronous_save_writes(tiny_model, small_mnist, tmp_path):
    from mnist_classifier.persistence import BackgroundSaver

    tiny_model.fit(*small_mnist["train"], batch_size=256, epochs=1, verbose=0)
    saver = BackgroundSaver(tiny_model, INFO)
    saver.save(tmp_path / "background.keras")
    snapshot = tiny_model.get_weights()
    tiny_model.fit(*small_mnist["train"], batch_size=256, epochs=1, verbose=0)  # the snapshot is not touched
    saver.close()
    loaded = load_model(tmp_path / "background.keras")
    for ours, theirs in zip(snapshot, loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert read_model_info(tmp_path / "background.keras") == INFO
    assert sorted(os.listdir(tmp_path)) == ["background.keras"]


def test_background_save_equals_a_synchronous_save_with_the_optimizer_state(tiny_model, small_mnist, tmp_path):
    from mnist_classifier.persistence import BackgroundSaver

    tiny_model.fit(*small_mnist["train"], batch_size=256, epochs=1, verbose=0)
    saver = BackgroundSaver(tiny_model, INFO)
    saver.save(tmp_path / "background.keras")
    saver.close()
    save_model(tiny_model, tmp_path / "now.keras", INFO)
    background, now = _weights_file(tmp_path / "background.keras"), _weights_file(tmp_path / "now.keras")
    assert background.keys() == now.keys() and any(name.startswith("optimizer") for name in now)
    for name, array in now.items():
        np.testing.assert_array_equal(background[name], array, err_msg=name)


def test_background_saves_run_at_the_lowest_cpu_priority_and_training_keeps_its_own(tiny_model, small_mnist, tmp_path):
    from mnist_classifier.persistence import BackgroundSaver

    tiny_model.fit(*small_mnist["test"], batch_size=500, epochs=1, verbose=0)
    niceness = []
    saver = BackgroundSaver(tiny_model)
    saver.save(tmp_path / "model.keras", after=lambda: niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    saver.close()
    assert niceness == [19]  # on two cores the write's time was taken from the training's epoch
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19


def test_a_failed_background_save_is_raised(tiny_model, small_mnist, tmp_path):
    from mnist_classifier.persistence import BackgroundSaver

    tiny_model.fit(*small_mnist["test"], batch_size=500, epochs=1, verbose=0)
    (tmp_path / "model.keras").mkdir()  # a folder where the file should go
    saver = BackgroundSaver(tiny_model)
    saver.save(tmp_path / "model.keras")
    with pytest.raises(OutputError, match="is a folder"):
        saver.close()
    saver.close()  # reported once
