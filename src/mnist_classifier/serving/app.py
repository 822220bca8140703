"""The HTTP service: predictions as JSON, model facts, and a page to draw digits on.

``create_app(classifier)`` builds a FastAPI app around one loaded model;
``server_config`` gives uvicorn's settings for it and ``serve`` runs it. Every bad
request gets a 4xx answer with a JSON ``error`` message, never a 500; what a
request may cost is bounded as it arrives (``http_limits``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import io
import json
import os
import socket
import sys
import warnings
from dataclasses import asdict
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from swagger_ui_bundle import swagger_ui_path
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnist_classifier import __version__
from mnist_classifier.errors import MnistClassifierError
from mnist_classifier.serving.listening import listen
from mnist_classifier.serving.limits import JSON_DEPTH, Limits, LimitsMiddleware, TimedH11Protocol, json_depth
from mnist_classifier.inference.predict import Classifier

WEB = resources.files("mnist_classifier.serving") / "web"
ASSETS = {"index.html": "text/html", "draw.js": "text/javascript", "style.css": "text/css"}


class RequestError(Exception):
    """A request the service refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(classifier: Classifier, limits: Limits = Limits()) -> FastAPI:
    """The service around one loaded model."""
    app = FastAPI(
        title="mnist-classifier",
        version=__version__,
        description=f"Classify {classifier.info.dataset} images with a Keras model.",
        docs_url=None,
        redoc_url=None,
    )
    app.openapi_version = "3.0.3"  # what the bundled Swagger UI (4.x) renders
    app.add_middleware(LimitsMiddleware, limits=limits)
    _add_error_handlers(app)
    _add_docs(app)

    @app.head("/health", include_in_schema=False)  # the same answer, its body left out by the server
    @app.get("/health", summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="What the model is and how well it did")
    def model() -> dict[str, Any]:
        info = classifier.info
        return {
            "file": classifier.name,
            "dataset": info.dataset,
            "classes": list(info.classes),
            "input_shape": list(info.input_shape),
            "normalization": info.normalization.mode,
            "test_accuracy": info.metrics.get("test_accuracy"),
            "package_version": info.package_version,
            "keras_version": metadata.version("keras"),
            "backend": os.environ["KERAS_BACKEND"] if classifier.runtime == "keras" else "onnxruntime",
            "runtime": classifier.runtime,
            "reads_numbers": classifier.reads_digits,
            "temperature": info.temperature,
            "reject_below": classifier.reject_below,
            "limits": asdict(limits),
        }

    @app.post("/predict", summary="Read one picture: its number, digit by digit", openapi_extra=_request_doc(batch=False))
    async def predict(request: Request, inputs: bool = False) -> dict[str, Any]:
        ((name, image),) = await _images(request, limits, batch=False)
        return (await run_in_threadpool(_answer, classifier, [name], [image], limits, inputs))[0]

    @app.post("/predict/batch", summary="Read several pictures", openapi_extra=_request_doc(batch=True))
    async def predict_batch(request: Request, inputs: bool = False) -> dict[str, Any]:
        names, images = zip(*await _images(request, limits, batch=True))
        return {"predictions": await run_in_threadpool(_answer, classifier, names, images, limits, inputs)}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return _asset("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise StarletteHTTPException(404, f"no asset {name!r}")
        return _asset(name)

    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the files of the ``swagger-ui-bundle`` package: no CDN, works offline."""
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="mnist-classifier API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def _asset(name: str) -> FileResponse:
    """One of the page's files, shipped inside the package."""
    return FileResponse(Path(str(WEB / name)), media_type=ASSETS[name])


async def _images(request: Request, limits: Limits, batch: bool) -> list[tuple[str, Any]]:
    """The images a request carries, as (name, bytes or pixel array) pairs."""
    if "content-length" not in request.headers:  # the size itself is LimitsMiddleware's to check
        raise RequestError(411, "a Content-Length header is required")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        items = await _from_form(request, batch)
    elif kind == "application/json":
        items = _from_json(await request.body(), batch)
    else:
        raise RequestError(415, f"content type {kind or 'none'!r}: send multipart/form-data or application/json")
    if not items:
        raise RequestError(422, "no image in the request")
    if len(items) > limits.batch:
        raise RequestError(422, f"{len(items)} images: at most {limits.batch} per request")
    return items


async def _from_form(request: Request, batch: bool) -> list[tuple[str, bytes]]:
    """Uploaded files: ``file`` for one image, ``files`` (repeated) for a batch."""
    field = "files" if batch else "file"
    try:
        form = await request.form()
    except Exception as exc:  # Starlette raises several kinds for a malformed body
        raise RequestError(400, f"malformed multipart body ({exc})") from None
    uploads = form.getlist(field)
    if not batch and len(uploads) > 1:
        raise RequestError(422, "one image per request here: use /predict/batch for more")
    if any(isinstance(upload, str) for upload in uploads):
        raise RequestError(422, f"form field {field!r} must be a file upload")
    return [(upload.filename or f"{field}[{i}]", await upload.read()) for i, upload in enumerate(uploads)]


def _from_json(body: bytes, batch: bool) -> list[tuple[str, Any]]:
    """``{"pixels": 28×28}`` or ``{"image": base64 PNG}``; a batch: ``{"images": [such objects]}``."""
    depth = json_depth(body)
    if depth > JSON_DEPTH:
        raise RequestError(400, f"JSON nested {depth:,} levels deep: at most {JSON_DEPTH} accepted")
    try:
        payload = json.loads(body.decode("utf-8"))  # JSON is UTF-8 (RFC 8259), as json_depth reads it
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"malformed JSON ({exc})") from None
    except ValueError:  # Python's bound on the digits of an int
        raise RequestError(422, f"a JSON integer of over {sys.get_int_max_str_digits():,} digits, expected pixel values in 0-255") from None
    if batch:
        if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
            raise RequestError(422, 'expected {"images": [{"pixels": ...} or {"image": "<base64>"}, ...]}')
        return [_json_image(item, f"images[{i}]") for i, item in enumerate(payload["images"])]
    return [_json_image(payload, "body")]


def _json_image(item: Any, name: str) -> tuple[str, Any]:
    """One JSON image: a 28×28 pixel array, or a base64 (or data-URL) encoded picture."""
    if isinstance(item, dict) and "pixels" in item:
        rows = item["pixels"]
        if not (
            isinstance(rows, list)
            and len(rows) == 28
            and all(isinstance(row, list) and len(row) == 28 for row in rows)
            and {type(value) for row in rows for value in row} <= {int, float}  # JSON numbers, not true/false
        ):
            raise RequestError(422, f"{name}.pixels: expected 28 rows of 28 numbers")
        try:
            return name, np.array(rows, np.float64)
        except OverflowError:  # an integer beyond any float
            raise RequestError(422, f"{name}.pixels: a number too large for a float, expected values in 0-255") from None
    if isinstance(item, dict) and isinstance(item.get("image"), str):
        encoded = item["image"]
        if encoded.startswith("data:"):
            header, comma, encoded = encoded.partition(",")
            if not comma:
                raise RequestError(422, f"{name}.image: data URL {header[:40]!r} has no comma, expected data:<type>;base64,<data>")
        try:
            return name, base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(422, f"{name}.image: not valid base64") from None
    raise RequestError(422, f'{name}: expected {{"pixels": 28×28 numbers}} or {{"image": "<base64 PNG>"}}')


def _answer(classifier: Classifier, names, images, limits: Limits, inputs: bool = False) -> list[dict[str, Any]]:
    """Answers for the request's pictures (with each digit's 28×28 input as a PNG data URL if ``inputs``); a bad image is a 422 naming it."""
    claimed = sum(map(_claimed_pixels, images))
    if claimed > limits.request_pixels:
        raise RequestError(422, f"{len(images)} pictures of {claimed:,} pixels in all: at most {limits.request_pixels:,} per request")
    try:
        readings = [classifier.read(image, name, limits.pixels) for name, image in zip(names, images)]
    except MnistClassifierError as exc:
        raise RequestError(422, str(exc)) from None
    answers = classifier.answer(readings, list(names), top_k=len(classifier.info.classes))
    records = [answer.to_dict() for answer in answers]
    if inputs:
        for answer, record in zip(answers, records):
            for digit, entry in zip(answer.digits, record.get("digits", [])):
                entry["input"] = _png_data_url(digit.image)
    return records


def _claimed_pixels(image: bytes | np.ndarray) -> int:
    """The pixels a picture decodes to, from its header alone (0 for bytes Pillow cannot open: reading them says why)."""
    if isinstance(image, np.ndarray):
        return image.size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image)) as picture:
                width, height = picture.size
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return 0
    return width * height


def _png_data_url(pixels: np.ndarray) -> str:
    """A greyscale image as a ``data:image/png;base64,...`` URL."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"error": message}`` with its 4xx status."""

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "; ".join(str(e.get("msg")) for e in exc.errors())}, status_code=422)


def _request_doc(batch: bool) -> dict[str, Any]:
    """The request bodies the docs show (the endpoints parse them by content type)."""
    image = {"type": "object", "properties": {"pixels": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}, "image": {"type": "string", "description": "base64 PNG/JPEG or a data: URL"}}}
    json_schema = {"type": "object", "properties": {"images": {"type": "array", "items": image}}} if batch else image
    field = "files" if batch else "file"
    binary = {"type": "string", "format": "binary"}
    form = {"type": "object", "properties": {field: {"type": "array", "items": binary} if batch else binary}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": json_schema}, "multipart/form-data": {"schema": form}}}}


def serve(
    model: str | Path | Classifier,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits = Limits(),
    runtime: str | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``model`` (loaded, a file or a bundled model's name, loaded once on ``runtime``) with uvicorn until interrupted.

    It listens on ``sock`` when given (bound by :func:`~mnist_classifier.serving.listening.listen`,
    ``host`` and ``port`` then only name it), else binds ``host``:``port`` first:
    a port in use is a ConfigError before the model loads.
    """
    sock = sock or listen(host, port)
    classifier = model if isinstance(model, Classifier) else Classifier.load(model, runtime=runtime)
    classifier.classify(np.zeros((1, 28, 28), np.uint8), ["warm-up"])  # compile before the first request
    with sock, contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it stopped on
        uvicorn.Server(server_config(classifier, limits, host, port)).run(sockets=[sock])


def server_config(
    classifier: Classifier, limits: Limits = Limits(), host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> uvicorn.Config:
    """uvicorn's settings for the service around ``classifier``: its app, and headers given ``limits.request_seconds``."""
    protocol = functools.partial(TimedH11Protocol, header_seconds=limits.request_seconds)
    return uvicorn.Config(create_app(classifier, limits), host=host, port=port, log_level=log_level, http=protocol)
