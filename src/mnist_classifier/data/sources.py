"""Find, download, verify and parse MNIST and Fashion-MNIST.

Sources are tried in this order: an explicit path (or ``$MNIST_CLASSIFIER_DATA``),
the Keras cache (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``), Debian's
``/usr/share/datasets``, and finally a download from the mirror into the Keras cache.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_classifier.data.download import Progress, RemoteFile, download_files
from mnist_classifier.errors import DataError, DownloadError, unknown_name
from mnist_classifier.data.formats import IDX_FILES, kind_of, read_idx, read_npz

DATA_ENV = "MNIST_CLASSIFIER_DATA"
MIRROR_ENV = "MNIST_CLASSIFIER_MIRROR"
DEFAULT_MIRROR = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

Split = tuple[np.ndarray, np.ndarray]

_HINT = f"pass --data PATH (a folder of the four IDX files or a .npz) or set {DATA_ENV}"


@dataclass(frozen=True)
class DatasetSpec:
    """What the package knows of one data set: classes, cache layout, mirror files."""

    name: str
    classes: tuple[str, ...]
    cache_entry: str  # name of the file or folder in the Keras cache
    remote: tuple[RemoteFile, ...]
    debian_dir: Path | None
    # sha256 of the decompressed test labels: tells the two data sets apart,
    # since both use the same file names.
    test_labels_sha256: str


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        classes=tuple(str(digit) for digit in range(10)),
        cache_entry="mnist.npz",
        remote=(
            RemoteFile(
                "mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
            ),
        ),
        debian_dir=None,
        test_labels_sha256="ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        classes=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        cache_entry="fashion-mnist",
        remote=(
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            ),
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            ),
        ),
        debian_dir=Path("/usr/share/datasets/fashion-mnist"),
        test_labels_sha256="3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    ),
}


@dataclass(frozen=True)
class Dataset:
    """A loaded data set and where it came from."""

    name: str
    source: str  # a human description, e.g. "path /data/mnist (IDX files)"
    train: Split
    test: Split

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by label."""
        return DATASETS[self.name].classes


def load_dataset(
    name: str = "mnist",
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> tuple[Split, Split]:
    """Load MNIST or Fashion-MNIST as ``keras.datasets`` does.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        path: a folder of the four IDX files (gzipped or not) or a Keras-layout
            ``.npz``; defaults to ``$MNIST_CLASSIFIER_DATA``, then the usual places.
        download: whether to download into the Keras cache when nothing is found.
        mirror: base URL to download from (default ``$MNIST_CLASSIFIER_MIRROR``,
            then the Keras mirror).
        progress: called with (file name, bytes done, bytes total) while downloading.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 arrays shaped N×28×28 and N.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = load_dataset("mnist")
    """
    dataset = read_dataset(name, path, download=download, mirror=mirror, progress=progress)
    return dataset.train, dataset.test


def read_dataset(
    name: str = "mnist",
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Like :func:`load_dataset`, but also says where the data came from."""
    spec = dataset_spec(name)
    places = _places(spec, path)
    for location, origin, strict in places:
        if not _holds_data(location):
            continue
        try:
            return _read(spec, location, origin)
        except _OtherDataset:
            if strict:
                raise
    looked = f"{name} not found in {', '.join(str(location) for location, _, _ in places)}"
    if path is not None or not download:
        raise DataError(f"{looked}; {_HINT}")
    base = mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    cache = keras_cache_dir()
    target = cache if spec.cache_entry.endswith(".npz") else cache / spec.cache_entry
    try:
        download_files(base, spec.remote, target, progress=progress)
    except DownloadError as exc:
        raise DownloadError(f"{looked}, and the download failed ({exc}); {_HINT}") from None
    return _read(spec, cache / spec.cache_entry, f"downloaded from {base}")


def summarize(dataset: Dataset) -> dict:
    """Source, classes, and per split: shapes, dtypes, class counts and pixel statistics."""
    n_classes = len(dataset.classes)
    return {
        "dataset": dataset.name,
        "source": dataset.source,
        "classes": list(dataset.classes),
        "splits": {
            name: _split_summary(x, y, n_classes) for name, (x, y) in (("train", dataset.train), ("test", dataset.test))
        },
    }


def _split_summary(x: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    """Shapes, dtypes, class counts and pixel statistics of one split."""
    return {
        "x_shape": list(x.shape),
        "x_dtype": str(x.dtype),
        "y_shape": list(y.shape),
        "y_dtype": str(y.dtype),
        "class_counts": np.bincount(y, minlength=n_classes).tolist(),
        "pixels": {
            "min": int(x.min()),
            "max": int(x.max()),
            "mean": float(x.mean()),
            "std": float(x.std()),
        },
    }


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a known data set, or a DataError naming the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(unknown_name("dataset", name, list(DATASETS))) from None


def keras_cache_dir() -> Path:
    """Keras's data set cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "datasets"


def _places(spec: DatasetSpec, path: str | os.PathLike | None) -> list[tuple[Path, str, bool]]:
    """Where to look, in order: (location, description, strict).

    An explicit ``path`` is strict: it is the only place, and holding the other data
    set there is an error. ``$MNIST_CLASSIFIER_DATA`` is looked at first, but a
    folder there that holds the other data set (or none) is passed over.
    """
    if path is not None:
        return _under(Path(path).expanduser(), spec, "path", strict=True)
    places = []
    variable = os.environ.get(DATA_ENV)
    if variable:
        root = Path(variable).expanduser()
        if not root.exists():  # a typo should not quietly fall back to a download
            raise DataError(f"{DATA_ENV}={variable}: no such file or folder; {_HINT}")
        places = _under(root, spec, f"${DATA_ENV}", strict=False)
    places.append((keras_cache_dir() / spec.cache_entry, "Keras cache", False))
    if spec.debian_dir is not None:
        places.append((spec.debian_dir, "Debian package", False))
    return places


def _under(root: Path, spec: DatasetSpec, origin: str, strict: bool) -> list[tuple[Path, str, bool]]:
    """A folder may hold the files themselves or one sub-folder per data set."""
    return [(root / spec.name, origin, strict), (root, origin, strict)]


def _holds_data(location: Path) -> bool:
    """A file (an .npz), or a folder with at least one of the IDX files."""
    if location.is_file():
        return True
    return location.is_dir() and any(
        (location / f"{stem}{ext}").is_file() for stem in IDX_FILES.values() for ext in (".gz", "")
    )


def _read(spec: DatasetSpec, location: Path, origin: str) -> Dataset:
    """Parse and validate a folder of IDX files or an ``.npz``."""
    if location.is_dir():
        arrays = {
            key: read_idx(_idx_path(location, stem), kind_of(key)) for key, stem in IDX_FILES.items()
        }
        kind = "IDX files"
    else:
        arrays = read_npz(location)
        kind = "npz"
    _check_pairs(arrays, location)
    _check_identity(spec, arrays["y_test"], location)
    return Dataset(
        name=spec.name,
        source=f"{location} ({origin}, {kind})",
        train=(arrays["x_train"], arrays["y_train"]),
        test=(arrays["x_test"], arrays["y_test"]),
    )


def _idx_path(folder: Path, stem: str) -> Path:
    """The IDX file ``stem`` in ``folder``, gzipped or not."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: missing {stem}.gz (or {stem})")


def _check_pairs(arrays: dict[str, np.ndarray], location: Path) -> None:
    """Each split needs as many labels as images."""
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(images) != len(labels):
            raise DataError(
                f"{location}: {len(images)} {split} images but {len(labels)} labels"
            )


def _check_identity(spec: DatasetSpec, y_test: np.ndarray, location: Path) -> None:
    """Refuse the other data set's files (both use the same file names)."""
    digest = hashlib.sha256(y_test.tobytes()).hexdigest()
    for other in DATASETS.values():
        if other.name != spec.name and digest == other.test_labels_sha256:
            raise _OtherDataset(f"{location}: holds {other.name}, not {spec.name}")


class _OtherDataset(DataError):
    """The files found are the other data set's (both use the same file names)."""
