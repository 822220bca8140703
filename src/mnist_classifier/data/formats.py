"""The files MNIST-style data sets come in: IDX (gzipped or not) and Keras's ``.npz``.

Every reader validates what it reads and raises a one-line DataError naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mnist_classifier.errors import DataError

IMAGE_SIZE = 28  # MNIST and Fashion-MNIST images are 28×28 greyscale
READ_PIECE = 1 << 20  # bytes decompressed at a time
DEFLATE_MAX_RATIO = 1032  # deflate expands its input at most this much

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

    ``kind`` ("images" or "labels"), when given, is what the file must hold. The
    values are decompressed straight into the array, so reading takes no more memory
    than the array itself.
    """
    with _Reader(path) as reader:
        start = reader.read(4)
        if len(start) < 4 or start[0:2] != b"\x00\x00":
            raise DataError(f"{path}: not an IDX file (bad magic number)")
        dtype_code, ndim = start[2], start[3]
        if dtype_code != 0x08:
            raise DataError(f"{path}: IDX data type 0x{dtype_code:02x}, expected 0x08 (unsigned byte)")
        if ndim not in (1, 3):
            raise DataError(f"{path}: IDX with {ndim} dimensions, expected 1 (labels) or 3 (images)")
        dims = reader.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise DataError(f"{path}: truncated IDX header")
        shape = tuple(int.from_bytes(dims[4 * i : 4 + 4 * i], "big") for i in range(ndim))
        header, count = 4 + 4 * ndim, math.prod(shape)
        array = np.empty(count if count <= reader.most else 0, dtype=np.uint8)  # more than the file can hold: no array
        length = header + reader.read_into(array) + reader.rest()
    if length != header + count:
        problem = "truncated" if length < header + count else "trailing data"
        raise DataError(f"{path}: {problem}: {length} bytes, expected {header + count} for {shape}")
    held = "images" if ndim == 3 else "labels"
    if kind is not None and held != kind:
        raise DataError(f"{path}: holds {held}, expected {kind}")
    array = array.reshape(shape)
    _check_array(array, path, held)
    return array


def read_npz(path: Path, keys: tuple[str, ...] = tuple(IDX_FILES), optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read a Keras-layout ``.npz``: x_train, y_train, x_test and y_test, or just ``keys`` of them,
    and those of the ``optional`` keys it holds."""
    if not path.is_file():
        raise DataError(f"{path}: no such file, expected a .npz with {', '.join(keys)}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise DataError(f"{path}: npz without {', '.join(missing)}")
            arrays = {key: archive[key] for key in (*keys, *optional) if key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    for key, array in arrays.items():
        if array.dtype != np.uint8:
            raise DataError(f"{path}: {key} has dtype {array.dtype}, expected uint8")
        _check_array(array, path, kind_of(key), key)
    return arrays


class _Reader:
    """A file's bytes in order, decompressed on the fly when it is gzipped; read errors become one-line DataErrors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._errors():
            self.handle = open(path, "rb")
            gzipped = self.handle.peek(2)[:2] == b"\x1f\x8b"
            size = os.fstat(self.handle.fileno()).st_size
        self.stream = gzip.GzipFile(fileobj=self.handle) if gzipped else self.handle
        self.most = size * DEFLATE_MAX_RATIO if gzipped else size  # no more bytes than this can come out

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.handle.close()

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer at the end of the file)."""
        buffer = bytearray(size)
        return bytes(buffer[: self.read_into(buffer)])

    def read_into(self, target: np.ndarray | bytearray) -> int:
        """Fill ``target`` as far as the file goes, a piece at a time; the number of bytes read."""
        view, done = memoryview(target).cast("B"), 0
        with self._errors():
            while done < len(view) and (got := self.stream.readinto(view[done : done + READ_PIECE])):
                done += got
        return done

    def rest(self) -> int:
        """Read to the end of the file; the number of bytes that were left."""
        scratch, left = bytearray(READ_PIECE), 0
        while got := self.read_into(scratch):
            left += got
        return left

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Within: a truncated or corrupt gzip, or a file that cannot be read, raises a DataError naming the file."""
        try:
            yield
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(f"{self.path}: truncated or corrupt gzip ({exc})") from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror or exc})") from None


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
