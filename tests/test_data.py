"""Finding, reading and validating MNIST / Fashion-MNIST (IDX folders and Keras npz)."""

import dataclasses
import gzip
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mnist_classifier.data import sources
from mnist_classifier.data.sources import load_dataset, read_dataset
from mnist_classifier.data.formats import IDX_FILES, read_idx
from mnist_classifier.errors import DataError, DownloadError

# --- helpers: synthetic data written by hand -------------------------------------------


def idx_bytes(array: np.ndarray, *, dtype_code: int = 0x08) -> bytes:
    """An IDX file: two zero bytes, the data type, the number of dims, big-endian dims, data."""
    header = bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic(n_train: int = 30, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Small random arrays in the Keras layout; labels cycle through 0-9."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.permutation(np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.permutation(np.arange(n_test) % 10).astype(np.uint8),
    }


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = True) -> Path:
    """Write the four IDX files (gzipped or not) of ``arrays`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        raw = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return folder


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def replace_file(folder: Path, stem: str, raw: bytes, *, gz: bool = False) -> Path:
    """Put ``raw`` (gzipped when ``gz``) in place of the IDX file ``stem``; return its path."""
    for old in folder.glob(f"{stem}*"):
        old.unlink()
    path = folder / (f"{stem}.gz" if gz else stem)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def assert_same(loaded, arrays: dict[str, np.ndarray]) -> None:
    (x_train, y_train), (x_test, y_test) = loaded
    for key, got in zip(IDX_FILES, (x_train, y_train, x_test, y_test)):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[key], err_msg=key)


@pytest.fixture
def folder(tmp_path) -> Path:
    """A valid synthetic IDX folder to break one file of."""
    return write_idx_folder(tmp_path / "idx", synthetic())


def at(path: Path) -> str:
    """A regex matching the start of an error about ``path``."""
    return re.escape(str(path))


# --- the real data sets -----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist(mnist_dir):
    return read_dataset("mnist", mnist_dir)


def test_real_mnist_loads_with_keras_shapes_and_dtypes(real_mnist, mnist_dir):
    (x_train, y_train), (x_test, y_test) = real_mnist.train, real_mnist.test
    assert (x_train.shape, y_train.shape) == ((60000, 28, 28), (60000,))
    assert (x_test.shape, y_test.shape) == ((10000, 28, 28), (10000,))
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert set(np.unique(y_train)) == set(np.unique(y_test)) == set(range(10))
    assert str(mnist_dir) in real_mnist.source and "IDX files" in real_mnist.source
    assert real_mnist.classes == tuple("0123456789")


def test_load_dataset_returns_train_and_test_pairs(mnist_dir, real_mnist):
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist", mnist_dir)
    np.testing.assert_array_equal(y_train, real_mnist.train[1])
    np.testing.assert_array_equal(x_test, real_mnist.test[0])


def test_fashion_is_found_in_debian_location_when_nothing_else_is_given(fashion_dir):
    dataset = read_dataset("fashion_mnist")
    assert str(fashion_dir) in dataset.source and "Debian" in dataset.source
    (x_train, y_train), (x_test, y_test) = dataset.train, dataset.test
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert dataset.classes[9] == "Ankle boot"


def test_fashion_mnist_asked_of_the_mnist_folder_is_refused(mnist_dir):
    with pytest.raises(DataError, match=at(mnist_dir) + ".*holds mnist, not fashion_mnist"):
        load_dataset("fashion_mnist", mnist_dir)


def test_mnist_asked_of_the_fashion_folder_is_refused(fashion_dir):
    with pytest.raises(DataError, match=at(fashion_dir) + ".*holds fashion_mnist, not mnist"):
        load_dataset("mnist", fashion_dir)


# --- where the data is looked for -------------------------------------------------------


def test_data_variable_is_used(tmp_path, monkeypatch):
    arrays = synthetic(seed=1)
    folder = write_idx_folder(tmp_path / "from-env", arrays)
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(folder))
    dataset = read_dataset("mnist")
    assert_same((dataset.train, dataset.test), arrays)
    assert str(folder) in dataset.source and "$MNIST_CLASSIFIER_DATA" in dataset.source


def test_root_with_one_sub_folder_per_dataset_is_used(tmp_path):
    digits, clothes = synthetic(seed=2), synthetic(seed=3)
    write_idx_folder(tmp_path / "mnist", digits)
    write_idx_folder(tmp_path / "fashion_mnist", clothes)
    assert_same(load_dataset("mnist", tmp_path), digits)
    assert_same(load_dataset("fashion_mnist", tmp_path), clothes)


@pytest.mark.parametrize(
    ("name", "entry", "write", "kind"),
    [("mnist", "mnist.npz", write_npz, "npz"), ("fashion_mnist", "fashion-mnist", write_idx_folder, "IDX")],
)
def test_the_keras_cache_is_found_before_debian(monkeypatch, tmp_path, name, entry, write, kind):
    arrays = synthetic(seed=4)
    cache = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(cache))
    write(cache / "datasets" / entry, arrays)
    dataset = read_dataset(name)
    assert_same((dataset.train, dataset.test), arrays)
    assert "Keras cache" in dataset.source and kind in dataset.source


def test_uncompressed_idx_files_are_read(tmp_path):
    arrays = synthetic(seed=6)
    write_idx_folder(tmp_path, arrays, gz=False)
    assert_same(load_dataset("mnist", tmp_path), arrays)


def test_npz_path_is_read(tmp_path):
    arrays = synthetic(seed=7)
    path = write_npz(tmp_path / "digits.npz", arrays)
    dataset = read_dataset("mnist", path)
    assert_same((dataset.train, dataset.test), arrays)
    assert str(path) in dataset.source and "npz" in dataset.source


def test_empty_data_variable_counts_as_unset(tmp_path, monkeypatch):
    # KERAS_HOME and MNIST_CLASSIFIER_MIRROR treat an empty value as unset; so should this.
    arrays = synthetic(seed=8)
    cache = tmp_path / "keras"
    write_npz(cache / "datasets" / "mnist.npz", arrays)
    monkeypatch.setenv("KERAS_HOME", str(cache))
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", "")
    monkeypatch.chdir(tmp_path)
    assert_same(load_dataset("mnist"), arrays)


# --- broken IDX files -------------------------------------------------------------------

TRAIN_IMAGES = IDX_FILES["x_train"]
TRAIN_LABELS = IDX_FILES["y_train"]
TEST_LABELS = IDX_FILES["y_test"]


def test_bad_magic_is_rejected(folder):
    path = replace_file(folder, TRAIN_LABELS, b"\x01\x02" + idx_bytes(np.zeros(30, np.uint8))[2:])
    with pytest.raises(DataError, match=at(path) + r": not an IDX file \(bad magic number\)"):
        load_dataset("mnist", folder)


def test_wrong_data_type_code_is_rejected(folder):
    path = replace_file(folder, TRAIN_LABELS, idx_bytes(np.zeros(30, np.uint8), dtype_code=0x0D))
    with pytest.raises(DataError, match=at(path) + r": IDX data type 0x0d, expected 0x08"):
        load_dataset("mnist", folder)


def test_wrong_number_of_dimensions_is_rejected(folder):
    path = replace_file(folder, TRAIN_IMAGES, idx_bytes(np.zeros((30, 784), np.uint8)))
    with pytest.raises(DataError, match=at(path) + r": IDX with 2 dimensions, expected 1"):
        load_dataset("mnist", folder)


def test_truncated_idx_is_rejected(folder):
    raw = idx_bytes(synthetic()["x_train"])
    path = replace_file(folder, TRAIN_IMAGES, raw[:-1], gz=True)
    problem = rf": truncated: {len(raw) - 1} bytes, expected {len(raw)} for \(30, 28, 28\)"
    with pytest.raises(DataError, match=at(path) + problem):
        load_dataset("mnist", folder)


def test_truncated_idx_header_is_rejected(folder):
    path = replace_file(folder, TRAIN_IMAGES, b"\x00\x00\x08\x03\x00\x00\x00\x1e")
    with pytest.raises(DataError, match=at(path) + ": truncated IDX header"):
        load_dataset("mnist", folder)


def test_trailing_data_in_idx_is_rejected(folder):
    path = replace_file(folder, TRAIN_LABELS, idx_bytes(np.zeros(30, np.uint8)) + b"\x00")
    with pytest.raises(DataError, match=at(path) + ": trailing data"):
        load_dataset("mnist", folder)


def test_images_not_28_by_28_are_rejected(folder):
    path = replace_file(folder, TRAIN_IMAGES, idx_bytes(np.zeros((30, 28, 27), np.uint8)))
    with pytest.raises(DataError, match=at(path) + r": images of shape \(30, 28, 27\), expected N×28×28"):
        load_dataset("mnist", folder)


def test_label_above_nine_is_rejected(folder):
    path = replace_file(folder, TEST_LABELS, idx_bytes(np.array([0, 10, 3] * 6 + [1, 2], np.uint8)))
    with pytest.raises(DataError, match=at(path) + ": label 10 out of range, expected 0–9"):
        load_dataset("mnist", folder)


def test_images_and_labels_count_mismatch_is_rejected(folder):
    replace_file(folder, TRAIN_LABELS, idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(DataError, match=at(folder) + ": 30 train images but 29 labels"):
        load_dataset("mnist", folder)


def test_images_file_in_place_of_labels_is_rejected(folder):
    # Same count as the images, so only the kind of file gives it away.
    path = replace_file(folder, TRAIN_LABELS, idx_bytes(np.zeros((30, 28, 28), np.uint8)))
    with pytest.raises(DataError, match=at(path) + ".*label"):
        load_dataset("mnist", folder)


def test_idx_header_with_overflowing_dimensions_is_rejected(folder):
    # 2**22 * 2**21 * 2**21 == 2**64: the element count must not wrap around to 0.
    raw = b"\x00\x00\x08\x03" + struct.pack(">3I", 1 << 22, 1 << 21, 1 << 21)
    path = replace_file(folder, TRAIN_IMAGES, raw)
    with pytest.raises(DataError, match=at(path)):
        load_dataset("mnist", folder)


@pytest.mark.parametrize("gz", [True, False])
def test_reading_an_idx_file_takes_no_more_memory_than_its_array(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (10000, 28, 28), dtype=np.uint8)  # 7.8 MB
    path = tmp_path / ("images.gz" if gz else "images")
    path.write_bytes(gzip.compress(idx_bytes(images), compresslevel=1) if gz else idx_bytes(images))
    tracemalloc.start()
    try:
        read = read_idx(path, "images")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(read, images)
    assert peak < images.nbytes + 3 * 2**20  # the array and a few one-megabyte pieces


def test_truncated_gzip_is_rejected(folder):
    packed = gzip.compress(idx_bytes(synthetic()["x_train"]))
    path = folder / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=at(path) + ": truncated or corrupt gzip"):
        load_dataset("mnist", folder)


def test_corrupt_gzip_is_rejected(folder):
    packed = bytearray(gzip.compress(idx_bytes(synthetic()["x_train"])))
    packed[-8:-4] = bytes(b ^ 0xFF for b in packed[-8:-4])  # the CRC32 of the trailer
    path = folder / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match=at(path) + ": truncated or corrupt gzip"):
        load_dataset("mnist", folder)


def test_missing_file_in_folder_is_named(folder):
    (folder / f"{TEST_LABELS}.gz").unlink()
    with pytest.raises(DataError, match=at(folder) + rf": missing {TEST_LABELS}\.gz \(or {TEST_LABELS}\)"):
        load_dataset("mnist", folder)


# --- broken npz files -------------------------------------------------------------------


def test_npz_missing_keys_is_rejected(tmp_path):
    arrays = synthetic()
    del arrays["y_test"], arrays["x_test"]
    path = write_npz(tmp_path / "m.npz", arrays)
    with pytest.raises(DataError, match=at(path) + ": npz without x_test, y_test"):
        load_dataset("mnist", path)


def test_npz_with_wrong_image_shape_is_rejected(tmp_path):
    arrays = synthetic()
    arrays["x_train"] = arrays["x_train"].reshape(30, 784)
    path = write_npz(tmp_path / "m.npz", arrays)
    with pytest.raises(DataError, match=at(path) + r": x_train: images of shape \(30, 784\)"):
        load_dataset("mnist", path)


def test_npz_with_wrong_dtype_is_rejected(tmp_path):
    arrays = synthetic()
    arrays["y_train"] = arrays["y_train"].astype(np.int64)
    path = write_npz(tmp_path / "m.npz", arrays)
    with pytest.raises(DataError, match=at(path) + ": y_train has dtype int64, expected uint8"):
        load_dataset("mnist", path)


def test_npz_with_label_above_nine_is_rejected(tmp_path):
    arrays = synthetic()
    arrays["y_test"][0] = 12
    path = write_npz(tmp_path / "m.npz", arrays)
    with pytest.raises(DataError, match=at(path) + ": y_test: label 12 out of range"):
        load_dataset("mnist", path)


def test_file_that_is_not_an_npz_is_rejected(tmp_path):
    path = tmp_path / "m.npz"
    path.write_text("not a zip archive\n")
    with pytest.raises(DataError, match=at(path) + ": not a readable .npz"):
        load_dataset("mnist", path)


def test_truncated_npz_is_rejected(tmp_path):
    path = write_npz(tmp_path / "m.npz", synthetic())
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=at(path) + ": not a readable .npz"):
        load_dataset("mnist", path)


def test_npy_file_instead_of_npz_is_rejected(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as handle:
        np.save(handle, synthetic()["x_train"])
    with pytest.raises(DataError, match=at(path) + ": not a readable .npz"):
        load_dataset("mnist", path)


# --- nothing found ----------------------------------------------------------------------


def test_unknown_dataset_name_is_rejected():
    with pytest.raises(DataError, match="unknown dataset 'cifar10': expected one of mnist, fashion_mnist"):
        load_dataset("cifar10")


def test_explicit_missing_path_lists_where_it_looked(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", missing)
    message = str(caught.value)
    assert type(caught.value) is DataError  # no download was tried for an explicit path
    assert f"{missing / 'mnist'}, {missing};" in message
    assert "--data PATH" in message and "MNIST_CLASSIFIER_DATA" in message


def test_missing_data_variable_path_is_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=at(tmp_path / "nowhere") + ".*MNIST_CLASSIFIER_DATA") as caught:
        load_dataset("mnist")
    assert type(caught.value) is DataError


def test_offline_with_nothing_found_explains_and_leaves_cache_empty():
    cache = sources.keras_cache_dir()
    with pytest.raises(DownloadError) as caught:
        load_dataset("mnist")
    message = str(caught.value)
    assert f"mnist not found in {cache / 'mnist.npz'}" in message
    assert "http://127.0.0.1:9/unreachable/mnist.npz" in message and "download failed" in message
    assert "--data PATH" in message and "MNIST_CLASSIFIER_DATA" in message
    assert not cache.exists() or not any(cache.rglob("*"))


def test_failed_download_leaves_no_folder_that_hides_other_sources(monkeypatch, fashion_dir):
    spec = sources.DATASETS["fashion_mnist"]
    monkeypatch.setitem(sources.DATASETS, "fashion_mnist", dataclasses.replace(spec, debian_dir=None))
    with pytest.raises(DownloadError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("fashion_mnist")
    cache = sources.keras_cache_dir()
    assert not any(cache.rglob("*")), f"left behind: {sorted(cache.rglob('*'))}"
    # Once the Debian package is there, it must be found, not an empty cache folder.
    monkeypatch.setitem(sources.DATASETS, "fashion_mnist", spec)
    assert read_dataset("fashion_mnist").source.startswith(str(fashion_dir))


def test_data_variable_holding_the_other_data_set_is_passed_over(monkeypatch, mnist_dir, fashion_dir):
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))
    dataset = sources.read_dataset("fashion_mnist")
    assert "Debian" in dataset.source
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir.parent))  # a root without fashion_mnist/
    assert "Debian" in sources.read_dataset("fashion_mnist").source


def test_data_variable_naming_nothing_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataError, match="MNIST_CLASSIFIER_DATA=.*typo: no such file or folder"):
        load_dataset("mnist")
