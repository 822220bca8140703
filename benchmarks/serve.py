"""Prediction latency and throughput on Keras and on onnxruntime, in process and over HTTP on 127.0.0.1.

Usage (from the project root; the test digits come from MNIST):

    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python benchmarks/serve.py
    ... benchmarks/serve.py --model runs/…/model.keras --runtime onnx

For each model (default: the bundled mnist-mlp and mnist-cnn) and runtime (default:
keras and onnx) it prints p50/p99 single-image latency of the model on a prepared
28×28 image, of the image preprocessing (PNG bytes to 28×28) apart, and of
``POST /predict`` against ``mnist-classifier serve`` in its own process (each
request encoded once, sent on one keep-alive connection); and batch
throughput in images per second, in process (batch 256) and over HTTP
(``/predict/batch``, 64). Targets are checked on onnxruntime. Each model and
runtime is measured in a process of its own.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mnist_classifier  # noqa: F401, I001  (first: selects JAX before keras loads)
import httpx
import numpy as np
from PIL import Image

from mnist_classifier import load_dataset
from mnist_classifier.predict import Classifier

MODEL_TARGET_US = {"mnist-mlp": 100, "mnist-cnn": 500}  # one prepared image on onnxruntime
HTTP_TARGET_MS = (3, 10)  # POST /predict p50, p99 on onnxruntime


def percentiles(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """p50 and p99 of ``run``'s wall time, in milliseconds, after one warm-up call."""
    run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(samples, n=100)
    return statistics.median(samples), cuts[98]


def throughput(run: Callable[[], object], images: int, repeats: int = 5) -> float:
    """Images per second of ``run`` (which handles ``images`` images), best of ``repeats``."""
    run()
    best = min(_timed(run) for _ in range(repeats))
    return images / best


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def png(digit: np.ndarray) -> bytes:
    """A test digit as someone's upload: dark ink on white, 140×140 pixels."""
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((140, 140)).save(buffer, "PNG")
    return buffer.getvalue()


def row(name: str, figure: str) -> None:
    print(f"{name:52} {figure}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    """Measure each model on each runtime, in process, then served."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a .keras or .onnx file or a bundled model (repeatable)")
    parser.add_argument("--runtime", action="append", choices=["keras", "onnx"], help="(repeatable; default both)")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    pairs = [(model, runtime) for model in args.model or list(MODEL_TARGET_US) for runtime in args.runtime or ["keras", "onnx"]]
    if len(pairs) == 1:
        _, (test_images, _) = load_dataset("mnist")
        measure(*pairs[0], test_images[:256], args.repeats)
        return
    for model, runtime in pairs:  # each in a fresh process: JAX's and onnxruntime's threads would disturb the next
        command = [sys.executable, __file__, "--model", model, "--runtime", runtime, "--repeats", str(args.repeats)]
        subprocess.run(command, check=True)


def verdict(value: float, target: float | None, runtime: str) -> str:
    """``target ≤ X: met`` (or not met) for onnxruntime figures with a target."""
    if target is None or runtime != "onnx":
        return ""
    return f"  (target ≤ {target:g}: {'met' if value <= target else 'NOT met'})"


def measure(model: str, runtime: str, digits: np.ndarray, repeats: int) -> None:
    """Every figure for one model on one runtime."""
    classifier = Classifier.load(model, runtime=runtime)
    upload = png(digits[0])
    one = digits[:1]
    row(f"model {model} on {runtime}", "")
    p50, p99 = percentiles(lambda: classifier.probabilities(one), repeats)
    target = MODEL_TARGET_US.get(model)
    row("  in process: model, one prepared image", f"p50 {p50 * 1000:.0f} µs, p99 {p99 * 1000:.0f} µs" + verdict(p50 * 1000, target, runtime))
    p50, p99 = percentiles(lambda: classifier.prepare(upload), repeats)
    row("  in process: preprocessing, 140×140 PNG to 28×28", f"p50 {p50 * 1000:.0f} µs, p99 {p99 * 1000:.0f} µs")
    rate = throughput(lambda: classifier.probabilities(digits), len(digits))
    row("  in process: batch of 256 prepared images", f"{rate:,.0f} images/s")

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mnist-classifier"), "serve", model, "--port", str(port), "--runtime", runtime],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_for(client)
        send = sender(port, "/predict", json={"pixels": digits[0].tolist()})
        p50, p99 = percentiles(send, repeats)
        met = verdict(p50, HTTP_TARGET_MS[0], runtime) + verdict(p99, HTTP_TARGET_MS[1], runtime)
        row("  HTTP POST /predict, JSON 28×28 pixels", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms{met}")
        p50, p99 = percentiles(sender(port, "/predict", files={"file": ("digit.png", upload, "image/png")}), repeats)
        row("  HTTP POST /predict, 140×140 PNG upload", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        batch = {"images": [{"pixels": d.tolist()} for d in digits[:64]]}
        rate = throughput(sender(port, "/predict/batch", json=batch), 64)
        row("  HTTP POST /predict/batch, 64 JSON images", f"{rate:,.0f} images/s")
    finally:
        server.terminate()
        server.wait(30)


def sender(port: int, path: str, **content) -> Callable[[], None]:
    """Sends one POST, encoded once beforehand, on a keep-alive connection; raises unless it gets 200.

    The standard library's client, so that the figures are the service's: httpx
    spent another 1-2 ms of its own on each request here.
    """
    request = httpx.Request("POST", f"http://127.0.0.1:{port}{path}", **content)
    body, headers = request.read(), dict(request.headers)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def send() -> None:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {answer[:200]!r}")

    return send


def _wait_for(client: httpx.Client, seconds: float = 120) -> None:
    """Wait until the served model answers /health."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.get("/health").raise_for_status()
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the service did not start")


if __name__ == "__main__":
    main()
