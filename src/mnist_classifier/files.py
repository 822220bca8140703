"""Atomic file writes (write beside the target, then rename, so no reader sees half a file) and the cache folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        publish(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def publish(temp: Path, path: Path) -> None:
    """Give ``temp`` the usual permissions (mkstemp makes it private) and rename it to ``path``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text)


def cache_root() -> Path:
    """The package's cache folder: ``$XDG_CACHE_HOME/mnist-classifier`` (default ``~/.cache/...``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-classifier"
