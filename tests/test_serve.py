"""The HTTP service against a real uvicorn server on 127.0.0.1: answers, every refusal, bursts."""

import base64
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from mnist_classifier import load_dataset
from mnist_classifier.inference.predict import Classifier
from mnist_classifier.serving.app import Limits, server_config

LIMITS = Limits(upload_bytes=200_000, pixels=1_000_000, request_pixels=2_000_000, batch=8, request_seconds=2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def service(mlp_model_path):
    """A real server in a background thread, set up as ``serve`` sets it up, for the module's tests."""
    server = uvicorn.Server(server_config(Classifier.load(mlp_model_path), LIMITS, port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def digits(mnist_dir):
    _, (images, labels) = load_dataset("mnist", mnist_dir)
    return images[:10], labels[:10]


def png(pixels: np.ndarray, size: int = 140) -> bytes:
    """A digit as a person would upload it: dark ink on white, enlarged."""
    buffer = io.BytesIO()
    Image.fromarray(255 - pixels).resize((size, size)).save(buffer, "PNG")
    return buffer.getvalue()


def test_health_model_and_docs(service):
    assert service.get("/health").json() == {"status": "ok"}
    model = service.get("/model").json()
    assert model["dataset"] == "mnist" and model["classes"] == [str(i) for i in range(10)]
    assert model["input_shape"] == [784] and model["test_accuracy"] > 0.95
    assert model["limits"] == {"upload_bytes": 200_000, "pixels": 1_000_000, "request_pixels": 2_000_000, "batch": 8, "request_seconds": 2}
    schema = service.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/model", "/health"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_one_image_three_ways(service, digits):
    images, labels = digits
    upload = service.post("/predict", files={"file": ("seven.png", png(images[0]), "image/png")}).json()
    pixels = service.post("/predict", json={"pixels": images[1].tolist()}).json()
    encoded = base64.b64encode(png(images[2])).decode()
    as_url = service.post("/predict", json={"image": f"data:image/png;base64,{encoded}"}).json()
    assert [upload["label"], pixels["label"], as_url["label"]] == list(labels[:3])
    assert upload["file"] == "seven.png" and len(upload["probabilities"]) == 10
    assert sum(upload["probabilities"]) == pytest.approx(1, abs=1e-4) and upload["top"][0]["name"] == upload["name"]


def test_batches_as_files_and_as_json(service, digits):
    images, labels = digits
    files = [("files", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images[:5])]
    answers = service.post("/predict/batch", files=files).json()["predictions"]
    assert [a["label"] for a in answers] == list(labels[:5])
    body = {"images": [{"pixels": image.tolist()} for image in images[5:]]}
    assert [a["label"] for a in service.post("/predict/batch", json=body).json()["predictions"]] == list(labels[5:])


def _chunked():
    yield b'{"pixels": '
    yield b"[]}"


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "malformed JSON"),
        (dict(content=_chunked(), headers={"content-type": "application/json"}), 411, "Content-Length header is required"),
        (dict(files={"file": ("big.png", bytes(300_000), "image/png")}), 413, "at most 200,000 accepted"),
        (dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "content type 'text/plain'"),
        (dict(files={"file": ("notes.png", b"plain text", "image/png")}), 422, "notes.png: not an image"),
        (dict(json={"pixels": [[0] * 28] * 27}), 422, "body.pixels: expected 28 rows of 28 numbers"),
        (dict(json={"pixels": [["x"] * 28] * 28}), 422, "body.pixels: expected 28 rows of 28 numbers"),
        (dict(json={"pixels": [[True] * 28] * 28}), 422, "body.pixels: expected 28 rows of 28 numbers"),
        (dict(json={"pixels": [[0] * 28] * 27 + [[0] * 29]}), 422, "body.pixels: expected 28 rows of 28 numbers"),
        (dict(json={"pixels": [[900] * 28] * 28}), 422, "pixels must be finite values in 0-255"),
        (dict(json={"image": "%%%"}), 422, "body.image: not valid base64"),
        (dict(json={"picture": 1}), 422, 'expected {"pixels"'),
        (dict(files={"file": ("wide.png", png(np.zeros((28, 28), np.uint8), 1100), "image/png")}), 422, "over the 1,000,000-pixel limit"),
        (dict(data={"file": "not a file"}, files={"other": ("o.png", b"x", "image/png")}), 422, "must be a file upload"),
        (dict(files=[("file", ("a.png", b"x", "image/png")), ("file", ("b.png", b"x", "image/png"))]), 422, "use /predict/batch"),
    ],
    ids=["bad-json", "no-length", "too-big", "media-type", "not-image", "short-rows", "not-numbers", "booleans", "ragged", "out-of-range",
         "bad-base64", "no-image-key", "too-many-pixels", "field-not-file", "two-files"],
)
def test_bad_requests_get_4xx_with_a_json_error(service, request_args, status, message):
    response = service.post("/predict", **request_args)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_a_blank_picture_is_answered_as_rejected_with_its_reason(service):
    response = service.post("/predict", json={"image": base64.b64encode(png(np.zeros((28, 28), np.uint8))).decode()})
    assert response.status_code == 200
    answer = response.json()
    assert answer["rejected"] is True and answer["number"] == "" and answer["digits"] == []
    assert "no ink found" in answer["reason"]


def test_batch_limits_and_other_refusals(service, digits):
    images, _ = digits
    too_many = {"images": [{"pixels": images[0].tolist()}] * 9}
    assert service.post("/predict/batch", json=too_many).json() == {"error": "9 images: at most 8 per request"}
    assert service.post("/predict/batch", json={"images": []}).status_code == 422
    one_bad = {"images": [{"pixels": images[0].tolist()}, {"image": "@@"}]}
    assert service.post("/predict/batch", json=one_bad).json()["error"] == "images[1].image: not valid base64"
    assert service.get("/nowhere").status_code == 404 and "error" in service.get("/nowhere").json()
    assert service.get("/predict").status_code == 405
    assert service.get("/static/secret.py").status_code == 404


def test_a_burst_of_concurrent_requests_is_answered_correctly(service, digits):
    images, labels = digits

    def ask(i: int) -> int:
        if i % 2:
            return service.post("/predict", json={"pixels": images[i % 10].tolist()}).json()["label"]
        return service.post("/predict", files={"file": ("d.png", png(images[i % 10]), "image/png")}).json()["label"]

    alone = [ask(i) for i in range(20)]  # each kind of request once, one at a time
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(64)))
    assert answers == [alone[i % 20] for i in range(64)]
    assert sum(a == labels[i % 10] for i, a in enumerate(answers)) >= 0.8 * 64


@contextlib.contextmanager
def served(*args, env=None) -> Iterator[httpx.Client]:
    """``mnist-classifier serve ARGS`` in its own process, until Ctrl-C; yields a client once it answers."""
    port = free_port()
    exe = Path(sys.executable).parent / "mnist-classifier"
    command = [exe, "serve", *args, "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    assert client.get("/health").json() == {"status": "ok"}
                    break
                except httpx.TransportError:
                    time.sleep(0.3)
            else:
                pytest.fail(f"the served model never answered: {process.stderr.read() if process.poll() is not None else ''}")
            yield client
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode in (0, 130) and "Traceback" not in stderr


def test_the_cli_serves_until_ctrl_c(mlp_model_path):
    with served(mlp_model_path) as client:
        assert "Write a number" in client.get("/").text
