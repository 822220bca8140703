"""glibc's malloc, told to give back what the process no longer needs (nothing to do on other C libraries).

XLA compiles on many threads and h5py writes checkpoints on another, and glibc keeps
each thread's arena at its peak: a long ``train`` grew epoch after epoch. :func:`tune`
sets the process's policy once, at the CLI's start; :func:`release` hands the free
pages of every arena back after a burst of allocations off the training path (a
checkpoint written). Figures are in benchmarks/README.md.
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameter numbers


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None where the C library is another (musl, macOS) or lacks mallopt and malloc_trim."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc's own functions, absent elsewhere)
    except (OSError, AttributeError):
        return None
    return libc


def tune(arenas: int = 2, mmap_threshold: int = 32 << 20) -> None:
    """Cap the arenas and fix the mmap threshold, without paying for it on every training step.

    Each arena keeps its peak: cap them. And glibc raises its mmap threshold after
    each large free, so the very large buffers that come and go (checkpoints, the
    data on its way to the device) would stay in the heap and fragment it: a fixed
    threshold returns them to the system. It sits at glibc's own ceiling (32 MB),
    with the heap trimmed only past twice that, as glibc's dynamic setting would
    have it: a step's activations (a few MB each) are reused from the heap, where a
    lower threshold would map and fault them in afresh on every step.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * mmap_threshold)


def release() -> None:
    """Give the free pages of every arena back to the system (``malloc_trim(0)``); a few milliseconds."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
