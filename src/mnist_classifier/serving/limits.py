"""What one HTTP request may cost the service, enforced while the request arrives.

``Limits`` says what a request may carry. ``LimitsMiddleware`` (ASGI) counts a
request's body bytes as they arrive, whatever its headers declare, and gives the
body ``request_seconds`` to arrive; ``TimedH11Protocol`` (uvicorn's h11
protocol, subclassed: this is the one module that reaches into uvicorn) gives
the headers as long from their first byte. A request past a limit is answered
413 or 408 with a JSON ``error`` and its connection closed; a client that goes
away mid-body is logged as one line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import h11
import numpy as np
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

LOG = logging.getLogger("uvicorn.error")  # uvicorn's own log: its format, its level
JSON_DEPTH = 8  # a batch of pixel arrays nests 5 deep: {"images": [{"pixels": [[
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_STEP = np.zeros(256, np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


@dataclass(frozen=True)
class Limits:
    """What one request may carry, and how long it may take to arrive.

    ``pixels`` bounds one picture and ``request_pixels`` all of a request's
    pictures together, both counted from the image headers before anything is
    decoded. The headers, and then the body, each get ``request_seconds``.
    """

    upload_bytes: int = 5 * 2**20
    pixels: int = 16_000_000
    request_pixels: int = 64_000_000
    batch: int = 64
    request_seconds: float = 30.0


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a UTF-8 JSON text nest, found without parsing it.

    Brackets inside strings do not count. For text that is not valid JSON the
    answer is at least the depth a parser reaches before it fails, so a parser
    given text of depth ``d`` never recurses deeper than ``d``.

    >>> json_depth(b'{"images": [{"pixels": [[0]]}], "note": "[[["}')
    5
    """
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")  # left: the quotes that open or close strings
    marks = np.frombuffer(unescaped.translate(None, _NOT_STRUCTURE), np.uint8)
    steps = np.take(_STEP, marks)
    steps[np.bitwise_xor.accumulate(marks == ord('"'))] = 0  # inside a string
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


class LimitsMiddleware:
    """Refuse a body past ``limits.upload_bytes`` (413) or slower than ``limits.request_seconds`` (408) as it arrives.

    The app is told the client went away (``http.disconnect``) and whatever it
    answers is dropped; the refusal is sent instead, with ``Connection: close``.
    """

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(self.limits, scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limits.upload_bytes:
            body.refuse(413, f"request of {int(declared):,} bytes: at most {self.limits.upload_bytes:,} accepted")
        else:
            try:
                await self.app(scope, body.receive, body.send)
            except ClientDisconnect:  # logged as it happened, in _Body.receive
                pass
        if body.refusal is not None and not body.responded:
            status, message = body.refusal
            await JSONResponse({"error": message}, status, headers={"connection": "close"})(scope, receive, send)


class _Body:
    """One request's body as the app receives it: bytes counted, time bounded, a client gone away logged."""

    def __init__(self, limits: Limits, scope: Scope, receive: Receive, send: Send) -> None:
        self.limits, self.scope, self._receive, self._send = limits, scope, receive, send
        self.deadline = asyncio.get_running_loop().time() + limits.request_seconds
        self.received = 0
        self.complete = False
        self.refusal: tuple[int, str] | None = None
        self.responded = False

    def refuse(self, status: int, message: str) -> Message:
        """Remember the refusal; to the app, the client has gone."""
        self.refusal = (status, message)
        return {"type": "http.disconnect"}

    async def receive(self) -> Message:
        if self.refusal is not None:
            return {"type": "http.disconnect"}
        if self.complete:  # what follows the body (a disconnect, say) has no deadline
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            seconds = self.limits.request_seconds
            return self.refuse(408, f"request body not complete within {seconds:g} s ({self.received:,} bytes arrived)")
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limits.upload_bytes:
                return self.refuse(413, f"request body of at least {self.received:,} bytes: at most {self.limits.upload_bytes:,} accepted")
            self.complete = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.complete = True
            LOG.warning("%s - client went away after %s bytes of the request body", _who(self.scope), f"{self.received:,}")
        return message

    async def send(self, message: Message) -> None:
        if self.refusal is None:
            self.responded = True
            await self._send(message)


def _who(scope: Scope) -> str:
    """``HOST:PORT "METHOD PATH"``, as uvicorn's access log names a request."""
    host, port = scope.get("client") or ("?", 0)
    return f'{host}:{port} "{scope["method"]} {scope["path"]}"'


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not whole ``header_seconds`` after their first byte.

    The client gets a 408 with a JSON ``error`` first. Use it as
    ``uvicorn.Config(http=functools.partial(TimedH11Protocol, header_seconds=30))``.
    """

    def __init__(self, *args: Any, header_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_seconds = header_seconds
        self._timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self.conn.their_state is h11.IDLE:  # a request's first bytes
            self._timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # its headers are whole (or the connection is done)
            self._cancel_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        message = f"request headers not complete within {self.header_seconds:g} s"
        LOG.warning("%s:%d - %s: connection closed", *(self.client or ("?", 0)), message)
        body = json.dumps({"error": message}).encode()
        head = f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        self.transport.write(head.encode() + body)  # no request yet, so h11 has no response to send
        self.transport.close()
