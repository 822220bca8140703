"""Input files read within a limit, outputs written atomically (write beside the target, then rename), the cache folder."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mnist_classifier.errors import MnistClassifierError, OutputError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(mode: int) -> str | None:
    """What a file of ``mode`` (an ``st_mode``) is, in words, when it is not a regular file; None when it is.

    Example:
        >>> special_kind(os.stat("/dev/null").st_mode)
        'a character device'
    """
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def read_input(path: Path, limit: int, error: type[MnistClassifierError], what: str, label: str | None = None) -> bytes:
    """The bytes of the regular file ``path``: never more than ``limit`` are read.

    A folder, FIFO, device or socket is refused unread (it is opened without
    blocking, so a FIFO nobody writes to cannot hang the caller, and ``/dev/zero``
    is never read); so is a file over ``limit`` bytes, whatever its size said when
    it was opened. Each refusal is an ``error`` naming ``label`` (default: the path)
    and ``what`` the file should have been, e.g. ``"config file"``.
    """
    label = label or str(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{label}: {what} not found") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(descriptor)
        kind = special_kind(info.st_mode)
        if kind is not None:
            raise error(f"{label}: is {kind}, expected a regular {what}")
        if info.st_size > limit:
            raise error(f"{label}: {info.st_size:,} bytes is over the {limit:,}-byte limit")
        with open(descriptor, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:  # it grew after it was opened
        raise error(f"{label}: over the {limit:,}-byte limit")
    return data


def check_output(path: Path) -> Path:
    """``path`` may be written: its folder exists, and it is missing or a regular file (never a device, FIFO or folder).

    Raises:
        OutputError: naming the path and what is in the way.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise OutputError(f"{path}: folder {path.parent} does not exist") from None
        return path
    except OSError as exc:  # e.g. a file where its folder should be
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    kind = special_kind(mode)
    if kind is not None:
        raise OutputError(f"{path}: is {kind}: an output replaces only a regular file")
    return path


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed.

    ``path`` is checked first (:func:`check_output`): an OutputError, before
    anything is written, when its folder is missing or a device, FIFO or folder is
    in its place.
    """
    check_output(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {path.parent} ({exc.strerror or exc})") from None
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        publish(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def publish(temp: Path, path: Path) -> None:
    """Give ``temp`` the usual permissions (mkstemp makes it private) and rename it to ``path``.

    Raises OutputError, leaving ``path`` as it was, when something other than a
    regular file is at ``path`` (:func:`check_output`).
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, check_output(path))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text)


def cache_root() -> Path:
    """The package's cache folder: ``$XDG_CACHE_HOME/mnist-classifier`` (default ``~/.cache/...``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-classifier"
