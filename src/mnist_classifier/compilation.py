"""A persistent XLA compilation cache, so that a second run of the same model starts fast."""

from __future__ import annotations

import os
from pathlib import Path

from mnist_classifier.files import cache_root

CACHE_ENV = "MNIST_CLASSIFIER_COMPILE_CACHE"


def cache_dir() -> Path | None:
    """Where compiled programs are kept: ``$MNIST_CLASSIFIER_COMPILE_CACHE`` (``off`` disables it),
    else ``$XDG_CACHE_HOME/mnist-classifier/xla`` (``~/.cache/...``)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "0", "off", "false", "no") else Path(chosen).expanduser()
    return cache_root() / "xla"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent cache for every compiled program; returns its folder (None: off or not JAX)."""
    import keras

    folder = cache_dir()
    if folder is None or keras.backend.backend() != "jax":
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
