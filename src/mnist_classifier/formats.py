"""The files MNIST-style data sets come in: IDX (gzipped or not) and Keras's ``.npz``.

Every reader validates what it reads and raises a one-line DataError naming the file.
"""

from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mnist_classifier.errors import DataError

IMAGE_SIZE = 28  # MNIST and Fashion-MNIST images are 28×28 greyscale

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def kind_of(key: str) -> str:
    """What an array named x_* or y_* must hold."""
    return "images" if key.startswith("x") else "labels"


def read_idx(path: Path, kind: str | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not): uint8 images N×28×28 or labels N in 0–9.

    ``kind`` ("images" or "labels"), when given, is what the file must hold.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: IDX data type 0x{dtype_code:02x}, expected 0x08 (unsigned byte)")
    if ndim not in (1, 3):
        raise DataError(f"{path}: IDX with {ndim} dimensions, expected 1 (labels) or 3 (images)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "trailing data"
        raise DataError(f"{path}: {problem}: {len(raw)} bytes, expected {expected} for {shape}")
    held = "images" if ndim == 3 else "labels"
    if kind is not None and held != kind:
        raise DataError(f"{path}: holds {held}, expected {kind}")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    _check_array(array, path, held)
    return array


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read a Keras-layout ``.npz`` with x_train, y_train, x_test and y_test."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in IDX_FILES if key not in archive.files]
            if missing:
                raise DataError(f"{path}: npz without {', '.join(missing)}")
            arrays = {key: archive[key] for key in IDX_FILES}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    for key, array in arrays.items():
        if array.dtype != np.uint8:
            raise DataError(f"{path}: {key} has dtype {array.dtype}, expected uint8")
        _check_array(array, path, kind_of(key), key)
    return arrays


def _read_bytes(path: Path) -> bytes:
    """The bytes of a file, decompressed when it is gzipped."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_array(array: np.ndarray, path: Path, kind: str, key: str | None = None) -> None:
    """Images must be N×28×28; labels N values in 0–9."""
    where = f"{path}: {key}" if key else str(path)
    if kind == "images" and (array.ndim != 3 or array.shape[1:] != (28, 28)):
        raise DataError(f"{where}: images of shape {array.shape}, expected N×28×28")
    if kind == "labels":
        if array.ndim != 1:
            raise DataError(f"{where}: labels of shape {array.shape}, expected a vector")
        if array.size and array.max() > 9:
            raise DataError(f"{where}: label {int(array.max())} out of range, expected 0–9")
