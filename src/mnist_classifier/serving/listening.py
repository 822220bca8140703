"""The service's listening socket, bound before anything slow starts, so that a busy port is told at once."""

from __future__ import annotations

import errno
import socket

from mnist_classifier.errors import ConfigError


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port``, for uvicorn to serve on.

    Raises ConfigError naming the port and host when the port is in use (pick
    another), or the address cannot be listened on (not this machine's, or a port
    the user may not open).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        if getattr(exc, "errno", None) == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use: pick another with --port") from None
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot listen on {host} port {port}: {reason}") from None
    return sock
