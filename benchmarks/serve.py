"""Prediction latency and throughput on Keras and on onnxruntime, in process and over HTTP on 127.0.0.1.

Usage (from the project root; the test digits come from MNIST, the photos from tests/scenes):

    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python benchmarks/serve.py
    ... benchmarks/serve.py --model runs/…/model.keras --runtime onnx
    ... benchmarks/serve.py --model mnist-cnn --runtime onnx --photos 8 --photo-repeats 20

For each model (default: the bundled mnist-mlp and mnist-cnn) and runtime (default:
keras and onnx) it prints p50/p99 single-image latency of the model on a prepared
28×28 image, of the image preprocessing (PNG bytes to 28×28) apart, and of
``POST /predict`` against ``mnist-classifier serve`` in its own process (each
request encoded once, sent on one keep-alive connection); and batch
throughput in images per second, in process (batch 256) and over HTTP
(``/predict/batch``, 64). A model that reads digits also reads phone photos
from decode to answer (``predict_images`` on the JPEG's bytes): ``--photos``
scenes of one handwritten digit (``tests.scenes.photo_of_digit``, 4:3, drawn
at 6 Mpixel or more), each resized to 4000×3000 (12 Mpixel) and to 1155×866
(1 Mpixel), turned for a portrait shot, and saved as JPEG quality 90 with its
EXIF orientation; p50/p90 over all photos' ``--photo-repeats`` calls, and for
12 Mpixel the same split by stage (``read_picture``, ``read_digits``, the
model with the answer). Targets are checked on onnxruntime. Each model and
runtime is measured in a process of its own.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import io
import json
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.scenes

from mnist_classifier import load_dataset  # noqa: E402
from mnist_classifier.inference.images import read_picture  # noqa: E402
from mnist_classifier.inference.predict import Classifier, predict_images  # noqa: E402
from mnist_classifier.inference.reading import read_digits  # noqa: E402
from tests.scenes import photo_of_digit  # noqa: E402

MODEL_TARGET_US = {"mnist-mlp": 100, "mnist-cnn": 500}  # one prepared image on onnxruntime
HTTP_TARGET_MS = (3, 10)  # POST /predict p50, p99 on onnxruntime
PHOTO_SIZES = {"12-Mpixel": ((4000, 3000), 300), "1-Mpixel": ((1155, 866), None)}  # landscape pixels, p50 target in ms
ANSWER_FIELDS = {"label", "probability", "top", "number", "rejected", "reason", "digits"}  # of POST /predict


def percentiles(run: Callable[[], object], repeats: int, upper: int = 99) -> tuple[float, float]:
    """p50 and p``upper`` of ``run``'s wall time, in milliseconds, after one warm-up call."""
    return spread(timings(run, repeats), upper)


def timings(run: Callable[[], object], repeats: int) -> list[float]:
    """``run``'s wall time in milliseconds, ``repeats`` times, after one warm-up call."""
    run()
    return [_timed(run) * 1000 for _ in range(repeats)]


def spread(samples: list[float], upper: int) -> tuple[float, float]:
    """p50 and p``upper`` of ``samples``."""
    return statistics.median(samples), statistics.quantiles(samples, n=100)[upper - 1]


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


def phone_scenes(count: int) -> list[tuple[bytes, int]]:
    """The first ``count`` phone JPEGs of one digit (seeds 0, 1, …) that are 4:3 and 6 Mpixel or more, with their digits."""
    scenes, seed = [], 0
    while len(scenes) < count:
        jpeg, digit = photo_of_digit(seed)
        seed += 1
        width, height = Image.open(io.BytesIO(jpeg)).size
        if abs(max(width, height) / min(width, height) - 4 / 3) < 0.01 and width * height >= 6e6:
            scenes.append((jpeg, digit))
    return scenes


def resized_jpeg(jpeg: bytes, pixels: tuple[int, int]) -> bytes:
    """``jpeg`` resized to ``pixels`` (width, height; swapped when stored portrait), saved at quality 90 with its EXIF."""
    photo = Image.open(io.BytesIO(jpeg))
    size = pixels if photo.width >= photo.height else pixels[::-1]
    buffer = io.BytesIO()
    photo.resize(size, Image.LANCZOS).save(buffer, "JPEG", quality=90, exif=photo.info.get("exif", b""))
    return buffer.getvalue()


def row(name: str, figure: str) -> None:
    print(f"{name:56} {figure}", flush=True)


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
    parser.add_argument("--photos", type=int, default=5, help="phone photos read at each size (0: none)")
    parser.add_argument("--photo-repeats", type=int, default=15, help="calls per photo")
    args = parser.parse_args()
    pairs = [(model, runtime) for model in args.model or list(MODEL_TARGET_US) for runtime in args.runtime or ["keras", "onnx"]]
    if len(pairs) == 1:
        _, (test_images, _) = load_dataset("mnist")
        measure(*pairs[0], test_images[:256], args)
        return
    for model, runtime in pairs:  # each in a fresh process: JAX's and onnxruntime's threads would disturb the next
        command = [sys.executable, __file__, "--model", model, "--runtime", runtime, "--repeats", str(args.repeats)]
        command += ["--photos", str(args.photos), "--photo-repeats", str(args.photo_repeats)]
        subprocess.run(command, check=True)


def verdict(value: float, target: float | None, runtime: str) -> str:
    """``target ≤ X: met`` (or not met) for onnxruntime figures with a target."""
    if target is None or runtime != "onnx":
        return ""
    return f"  (target ≤ {target:g}: {'met' if value <= target else 'NOT met'})"


def measure(model: str, runtime: str, digits: np.ndarray, args: argparse.Namespace) -> None:
    """Every figure for one model on one runtime."""
    repeats = args.repeats
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
    if classifier.reads_digits and args.photos > 0:
        scenes = phone_scenes(args.photos)
        for size, (pixels, target) in PHOTO_SIZES.items():
            photos = [(resized_jpeg(jpeg, pixels), digit) for jpeg, digit in scenes]
            read_photos(classifier, size, photos, args.photo_repeats, target)

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mnist-classifier"), "serve", model, "--port", str(port), "--runtime", runtime],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_for(client)
        send = sender(port, "/predict", json={"pixels": digits[0].tolist()})
        missing = ANSWER_FIELDS - json.loads(send()).keys()
        if missing:
            raise RuntimeError(f"POST /predict: the answer lacks {sorted(missing)}")
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


def read_photos(classifier: Classifier, size: str, photos: list[tuple[bytes, int]], repeats: int, target: float | None) -> None:
    """Rows for reading ``photos`` (JPEG bytes, digit) from decode to answer; by stage too for a size with a p50 ``target``."""
    calls = [timings(functools.partial(predict_images, classifier, [jpeg]), repeats) for jpeg, _ in photos]
    p50, p90 = spread([sample for samples in calls for sample in samples], 90)
    met = verdict(p50, target, classifier.runtime)
    row(f"  in process: {size} phone JPEG, decode to answer", f"p50 {p50:.0f} ms, p90 {p90:.0f} ms{met}")
    medians = [statistics.median(samples) for samples in calls]
    right = sum(predict_images(classifier, [jpeg])[0].number == str(digit) for jpeg, digit in photos)
    row(f"    {len(photos)} photos × {repeats}: each photo's p50", f"{min(medians):.0f}-{max(medians):.0f} ms; read right: {right} of {len(photos)}")
    if target is None:
        return
    pictures = [read_picture(jpeg) for jpeg, _ in photos]
    readings = [read_digits(picture) for picture in pictures]
    stages = {
        "read_picture (decode, upright, grey)": [functools.partial(read_picture, jpeg) for jpeg, _ in photos],
        "read_digits (ink, marks, 28×28 cuts)": [functools.partial(read_digits, picture) for picture in pictures],
        "model and answer": [functools.partial(classifier.answer, [reading], ["image 0"]) for reading in readings],
    }
    for stage, runs in stages.items():
        p50, p90 = spread([sample for run in runs for sample in timings(run, repeats)], 90)
        row(f"    stage: {stage}", f"p50 {p50:.1f} ms, p90 {p90:.1f} ms")


def sender(port: int, path: str, **content) -> Callable[[], bytes]:
    """Sends one POST, encoded once beforehand, on a keep-alive connection; its answer, or an error unless it gets 200.

    The standard library's client, so that the figures are the service's: httpx
    spent another 1-2 ms of its own on each request here.
    """
    request = httpx.Request("POST", f"http://127.0.0.1:{port}{path}", **content)
    body, headers = request.read(), dict(request.headers)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def send() -> bytes:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {answer[:200]!r}")
        return answer

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
