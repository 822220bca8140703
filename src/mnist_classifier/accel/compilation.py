"""A persistent XLA compilation cache, so that a second run of the same model starts fast."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mnist_classifier.system.files import cache_root

CACHE_ENV = "MNIST_CLASSIFIER_COMPILE_CACHE"


def cache_dir() -> Path | None:
    """Where compiled programs are kept: ``$MNIST_CLASSIFIER_COMPILE_CACHE`` (``off`` disables it),
    else ``$XDG_CACHE_HOME/mnist-classifier/xla`` (``~/.cache/...``)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "0", "off", "false", "no") else Path(chosen).expanduser()
    return cache_root() / "xla"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent cache for every compiled program; returns its folder (None: off or not JAX).

    Before JAX is imported this sets JAX's own environment variables, so commands
    that end up running on onnxruntime never import Keras or JAX for it.
    """
    folder = cache_dir()
    if folder is None or os.environ.get("KERAS_BACKEND") != "jax":
        return None
    settings = {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    jax = sys.modules.get("jax")
    for name, value in settings.items():
        if jax is None:
            os.environ[name.upper()] = str(value)
        else:
            jax.config.update(name, value)
    return folder
