"""Exclusive locks between processes: ``flock`` on a file, released by the kernel when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is the process ID it wrote into the lock file (None if unknown)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path}: held by process {pid or '(unknown)'}")
        self.path, self.pid = path, pid


@contextlib.contextmanager
def exclusive_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) within; it bears this process's PID meanwhile.

    ``wait=False`` raises LockHeld at once when another process holds it; otherwise
    this waits for it. The kernel drops the lock when its holder exits, even by
    SIGKILL, so a lock is never left stale; the file itself stays.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # never truncated on open: it bears the holder's PID
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(path, _holder(fd)) from None
        _write_pid(fd, str(os.getpid()))
        try:
            yield
        finally:
            _write_pid(fd, "")
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> int | None:
    """The PID written in the lock file, or None if there is none yet."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _write_pid(fd: int, text: str) -> None:
    """Replace the lock file's content; a full disk only loses the PID, never the lock."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("ascii"), 0)
