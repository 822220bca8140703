"""The persistent compilation cache: where it lives, how to turn it off, that it fills."""

import subprocess
import sys
from pathlib import Path

import pytest

from mnist_classifier.accel.compilation import cache_dir


def test_the_cache_lives_under_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MNIST_CLASSIFIER_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "mnist-classifier" / "xla"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "mnist-classifier" / "xla"


@pytest.mark.parametrize("value", ["off", "0", "", "False"])
def test_the_cache_can_be_turned_off(monkeypatch, value):
    monkeypatch.setenv("MNIST_CLASSIFIER_COMPILE_CACHE", value)
    assert cache_dir() is None


@pytest.mark.parametrize("jax_first", [True, False], ids=["jax-imported-first", "enabled-before-jax"])
def test_compiled_programs_are_kept_for_the_next_process(monkeypatch, tmp_path, jax_first):
    """Enabling works whether JAX is already imported (its config) or not yet (its environment variables)."""
    monkeypatch.setenv("MNIST_CLASSIFIER_COMPILE_CACHE", str(tmp_path / "xla"))
    enable = "from mnist_classifier.accel.compilation import enable_compilation_cache\nprint(enable_compilation_cache())\n"
    use_jax = "import jax, jax.numpy as jnp\n"
    script = (
        "import mnist_classifier\n"
        + (use_jax + enable if jax_first else enable + use_jax)
        + "print(float(jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((8, 8))).sum()))\n"
    )
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert first.stdout.splitlines()[0] == str(tmp_path / "xla")
    entries = sorted(p.name for p in (tmp_path / "xla").iterdir())
    assert entries, "the first process left nothing in the cache"
    subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert sorted(p.name for p in (tmp_path / "xla").iterdir()) == entries  # reused, not compiled anew
