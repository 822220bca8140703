"""Prediction latency and throughput, in process and over HTTP on 127.0.0.1.

Usage (from the project root):

    .venv/bin/python benchmarks/serve.py --model runs/…/model.keras
    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python benchmarks/serve.py   # trains mlp for 3 epochs first

Prints p50/p99 single-image latency of the model call on a prepared 28×28 image,
of the image preprocessing (PNG bytes to 28×28) apart, and of ``POST /predict``
against ``mnist-classifier serve`` in its own process; and batch throughput in
images per second, in process (batch 256) and over HTTP (``/predict/batch``, 64).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mnist_classifier  # noqa: F401, I001  (first: selects JAX before keras loads)
import httpx
import numpy as np
from PIL import Image

from mnist_classifier import load_dataset
from mnist_classifier.config import apply_overrides
from mnist_classifier.pipeline import train_run
from mnist_classifier.predict import Classifier
from mnist_classifier.presets import PRESETS


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
    """Measure in process, then against a served model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras model (default: train the mlp preset for 3 epochs)")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            print("training the mlp preset for 3 epochs...", file=sys.stderr, flush=True)
            config = apply_overrides(PRESETS["mlp"], {"training.epochs": 3})
            model = str(train_run(config, Path(tmp)).run_dir / "model.keras")
        _, (test_images, _) = load_dataset("mnist")
        measure(model, test_images[:256], args.repeats)


def measure(model: str, digits: np.ndarray, repeats: int) -> None:
    """Every figure for one model."""
    classifier = Classifier.load(model)
    upload = png(digits[0])
    one = digits[:1]
    row("model", f"{model}")
    p50, p99 = percentiles(lambda: classifier.probabilities(one), repeats)
    row("in process: model call, one prepared image", f"p50 {p50 * 1000:.0f} µs, p99 {p99 * 1000:.0f} µs")
    p50, p99 = percentiles(lambda: classifier.prepare(upload), repeats)
    row("in process: preprocessing, 140×140 PNG to 28×28", f"p50 {p50 * 1000:.0f} µs, p99 {p99 * 1000:.0f} µs")
    rate = throughput(lambda: classifier.probabilities(digits), len(digits))
    row("in process: batch of 256 prepared images", f"{rate:,.0f} images/s")

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mnist-classifier"), "serve", model, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_for(client)
            pixels = {"pixels": digits[0].tolist()}
            p50, p99 = percentiles(lambda: client.post("/predict", json=pixels).raise_for_status(), repeats)
            row("HTTP POST /predict, JSON 28×28 pixels", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
            files = {"file": ("digit.png", upload, "image/png")}
            p50, p99 = percentiles(lambda: client.post("/predict", files=files).raise_for_status(), repeats)
            row("HTTP POST /predict, 140×140 PNG upload", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
            batch = {"images": [{"pixels": d.tolist()} for d in digits[:64]]}
            rate = throughput(lambda: client.post("/predict/batch", json=batch).raise_for_status(), 64)
            row("HTTP POST /predict/batch, 64 JSON images", f"{rate:,.0f} images/s")
    finally:
        server.terminate()
        server.wait(30)


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
