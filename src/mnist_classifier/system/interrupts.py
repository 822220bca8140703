"""Ctrl-C during training: stop cleanly at the next step boundary."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_ctrl_c = threading.Event()


@contextlib.contextmanager
def interrupts_between_steps() -> Iterator[None]:
    """Within: the first Ctrl-C stops training at the next step boundary; a second one at once.

    Python raises KeyboardInterrupt wherever the main thread happens to be, and
    where that is inside a finalizer (JAX frees arrays all the time), Python prints
    and drops it: training would go on. Deferred to a step boundary, it always lands.
    Only the main thread can take signals; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_ctrl_c(signum, frame) -> None:
        if _ctrl_c.is_set():
            raise KeyboardInterrupt
        _ctrl_c.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        pressed = _ctrl_c.is_set()
        _ctrl_c.clear()
    if pressed:  # pressed during the last step: stop before evaluating and saving
        raise KeyboardInterrupt


def stop_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C pressed during the last step (see interrupts_between_steps)."""
    if _ctrl_c.is_set():
        _ctrl_c.clear()
        raise KeyboardInterrupt
