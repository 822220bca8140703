"""Shared fixtures: the real data sets in ../shared/data and Debian's Fashion-MNIST."""

import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def _compile_cache(tmp_path_factory) -> Path:
    """One persistent XLA cache for the whole session, away from the user's."""
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="session")
def _user_cache(tmp_path_factory) -> Path:
    """One package cache (ONNX exports, Matplotlib's font list) for the whole session, away from the user's.

    The font list is built here, so that no command a test runs writes "Matplotlib is
    building the font cache" on its stderr, whichever test comes first.
    """
    cache = tmp_path_factory.mktemp("user_cache")
    environment = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=environment, check=True, capture_output=True)
    return cache


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory, monkeypatch, _compile_cache, _user_cache):
    """No test sees the user's data variables or caches; downloads go nowhere real."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_user_cache))
    monkeypatch.delenv("MNIST_CLASSIFIER_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    monkeypatch.setenv("MNIST_CLASSIFIER_MIRROR", "http://127.0.0.1:9/unreachable/")
    monkeypatch.setenv("MNIST_CLASSIFIER_COMPILE_CACHE", str(_compile_cache))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST IDX files."""
    if not MNIST_DIR.is_dir():
        pytest.fail(f"{MNIST_DIR} is missing: tests need ../shared/data/mnist")
    return MNIST_DIR


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Debian's Fashion-MNIST (package dataset-fashion-mnist, installed by .ci/run)."""
    if not FASHION_DIR.is_dir():
        pytest.fail(f"{FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")
    return FASHION_DIR


@pytest.fixture(scope="session")
def small_mnist(mnist_dir):
    """Flattened, scaled slices of real MNIST with one-hot labels: 2000 train, 500 val, 500 test."""
    from mnist_classifier import Normalization, load_dataset, one_hot, preprocess

    (x_train, y_train), (x_test, y_test) = load_dataset("mnist", mnist_dir)
    prep = lambda x: preprocess(x, Normalization("scale"), (784,))  # noqa: E731
    return {
        "train": (prep(x_train[:2000]), one_hot(y_train[:2000], 10)),
        "val": (prep(x_train[-500:]), one_hot(y_train[-500:], 10)),
        "test": (prep(x_test[:500]), one_hot(y_test[:500], 10)),
        "test_labels": y_test[:500],
    }


@pytest.fixture
def tiny_model():
    """A compiled 784-32-10 network (a fresh one per test)."""
    import keras

    from mnist_classifier import build_model, optimize_model

    keras.utils.set_random_seed(0)
    model = build_model(784, [32, 10], ["relu", "softmax"], 0.0001, 0.9)
    optimize_model(model, 0.001, 0.9, 0.999)
    return model


def _train_mlp(mnist_dir: Path, out: Path) -> Path:
    from mnist_classifier.config import apply_overrides
    from mnist_classifier.pipeline import train_run
    from mnist_classifier.presets import PRESETS

    config = apply_overrides(PRESETS["mlp"], {"data.path": str(mnist_dir), "training.epochs": 3})
    return train_run(config, out).run_dir / "model.keras"


@pytest.fixture(scope="session")
def mlp_model_path(mnist_dir, tmp_path_factory) -> Path:
    """The ``mlp`` preset trained 3 epochs on full MNIST (about 97.5% test accuracy), for tests that only read it.

    Trained once per test session, not once per pytest-xdist worker: the first worker to
    ask trains it under the folder the workers' temporary folders share, holding a lock
    there, and the others wait for it and use that same run.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _train_mlp(mnist_dir, tmp_path_factory.mktemp("mlp_run"))
    shared = tmp_path_factory.getbasetemp().parent  # this session's, one per run of pytest
    with open(shared / "mlp_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if training fails
        done = shared / "mlp_run.path"
        if not done.is_file():
            done.write_text(str(_train_mlp(mnist_dir, Path(tempfile.mkdtemp(prefix="mlp_run", dir=shared)))))
        return Path(done.read_text())


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"  # screenshots the page tests keep


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's) driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()
