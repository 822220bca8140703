"""The service against hostile input (issue 24), on test_serve's real server: bodies past the limit whatever
the headers say, JSON built to break a parser, slow and vanishing clients, small requests of huge pictures."""

import contextlib
import io
import json
import logging
import re
import select
import socket
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.test_serve import LIMITS, service  # noqa: F401  (the live server fixture)


@contextlib.contextmanager
def connection(service) -> Iterator[socket.socket]:  # noqa: F811
    """A raw TCP connection to the server, for what an HTTP client will not send."""
    with socket.create_connection((service.base_url.host, service.base_url.port), timeout=10) as sock:
        yield sock


def request_head(path: str, **headers: str) -> bytes:
    """A POST's request line and headers (``content_type`` for ``Content-Type``), ended by the blank line."""
    lines = [f"POST {path} HTTP/1.1", "Host: test", *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket, seconds: float) -> tuple[int | None, dict | None]:
    """The status and JSON body the server sends before it closes the connection; (None, None) if it sends nothing in ``seconds``."""
    sock.settimeout(seconds)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return None, None
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def trickle(sock: socket.socket, seconds: float) -> bool:
    """Send a byte every 0.2 s, as a slow client does, until the server answers or closes; False if ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.2)[0]:
            return True
        try:
            sock.sendall(b"a")
        except OSError:  # closed on us
            return True
    return False


@contextlib.contextmanager
def server_log() -> Iterator[list[logging.LogRecord]]:
    """The records uvicorn's error log receives meanwhile (the server runs in this process)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# How each kind of body starts, so that the server reads on (an image's data follows)
BODY_STARTS = {
    "application/json": b'{"image": "',
    "multipart/form-data; boundary=x": b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n',
}
KINDS = pytest.mark.parametrize("content_type", BODY_STARTS, ids=["json", "multipart"])


@KINDS
def test_a_chunked_body_past_the_limit_is_refused_as_it_arrives_whatever_its_length_says(service, content_type):  # noqa: F811
    chunk = b"A" * 2**16
    with connection(service) as sock:
        sock.sendall(request_head("/predict", content_type=content_type, content_length="100", transfer_encoding="chunked"))
        sock.sendall(b"%x\r\n%s\r\n" % (len(BODY_STARTS[content_type]), BODY_STARTS[content_type]))
        for _ in range(LIMITS.upload_bytes // len(chunk) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = answer(sock, 10)  # the body has not ended: the answer must come without its end
    assert status == 413, "a body past the limit was still being read"
    counted = re.fullmatch(r"request body of at least ([\d,]+) bytes: at most 200,000 accepted", body["error"])
    assert counted and 200_000 < int(counted[1].replace(",", "")) <= 262_144 + len(BODY_STARTS[content_type]), body


def _pixels_with(value: str) -> str:
    """A 28×28 pixel array in JSON whose first pixel is written as ``value``."""
    return json.dumps({"pixels": [[-1] + [0] * 27] + [[0] * 28] * 27}).replace("-1", value, 1)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/predict", '{"image": "data:image/png;base64"}', 422, "body.image: data URL 'data:image/png;base64' has no comma"),
        ("/predict/batch", '{"images": [{"image": "data:image/png;base64"}]}', 422, "images[0].image: data URL"),
        ("/predict", _pixels_with("9" * 400), 422, "body.pixels: a number too large for a float, expected values in 0-255"),
        ("/predict/batch", '{"images": [%s]}' % _pixels_with("9" * 400), 422, "images[0].pixels: a number too large"),
        ("/predict", '{"pixels": %s}' % ("7" * 5000), 422, "a JSON integer of over 4,300 digits"),
        ("/predict", "[" * 100_000, 400, "JSON nested 100,000 levels deep: at most 8 accepted"),
        ("/predict/batch", '{"a": ' * 30_000, 400, "JSON nested 30,000 levels deep: at most 8 accepted"),
    ],
    ids=["data-url-no-comma", "data-url-no-comma-in-batch", "400-digit-pixel", "400-digit-pixel-in-batch", "5000-digit-int", "deep-arrays", "deep-objects"],
)
def test_json_built_to_break_the_parser_gets_4xx(service, path, body, status, message):  # noqa: F811
    response = service.post(path, content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def _blank_png(side: int, truncated: bool) -> bytes:
    """A white square PNG; ``truncated``: its header and the start of its data only."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 255).save(buffer, "PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2] if truncated else data


@pytest.mark.parametrize("truncated", [False, True], ids=["whole", "truncated"])
def test_pictures_too_large_together_are_refused_from_their_headers(service, truncated):  # noqa: F811
    files = [("files", (f"{i}.png", _blank_png(1000, truncated), "image/png")) for i in range(3)]  # each within 1,000,000
    response = service.post("/predict/batch", files=files)
    assert response.status_code == 422, response.text
    assert response.json() == {"error": "3 pictures of 3,000,000 pixels in all: at most 2,000,000 per request"}


def test_head_health_is_answered_without_a_body(service):  # noqa: F811
    response = service.head("/health")
    assert response.status_code == 200 and response.content == b""


def test_headers_trickled_in_are_timed_out(service):  # noqa: F811
    with connection(service) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        assert trickle(sock, LIMITS.request_seconds + 5), "a client trickling its headers was held on to"
        status, body = answer(sock, 5)
    assert (status, body) == (408, {"error": "request headers not complete within 2 s"})


def test_a_body_trickled_in_is_timed_out(service):  # noqa: F811
    with connection(service) as sock:
        sock.sendall(request_head("/predict", content_type="application/json", content_length="10000") + b'{"pixels": ')
        assert trickle(sock, LIMITS.request_seconds + 5), "a client trickling its body was held on to"
        status, body = answer(sock, 5)
    assert status == 408 and body["error"].startswith("request body not complete within 2 s (")


@KINDS
def test_a_client_gone_mid_body_is_logged_as_one_line(service, content_type):  # noqa: F811
    sent = BODY_STARTS[content_type] + b"0123456789"
    with server_log() as records:
        with connection(service) as sock:
            client = f"127.0.0.1:{sock.getsockname()[1]} "
            sock.sendall(request_head("/predict", content_type=content_type, content_length="1000") + sent)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(client in record.getMessage() for record in records):
            time.sleep(0.05)
        time.sleep(0.2)  # anything the app logs after it
        lines = [record.getMessage() for record in records]
    assert lines == [f'{client}"POST /predict" - client went away after {len(sent)} bytes of the request body'], lines
    assert not any(record.exc_info for record in records)
