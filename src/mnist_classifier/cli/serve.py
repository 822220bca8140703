"""``serve``: the model over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_classifier.cli.common import RejectOpt, RuntimeOpt, err, shown, waiting
from mnist_classifier.inference.bundled import DEFAULT_MODEL


def serve(
    model: Annotated[
        Path, typer.Argument(help="A .keras or .onnx file, or a bundled model's name (see `models`).")
    ] = Path(DEFAULT_MODEL),
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", min=1, max=65535, help="Port to listen on.")] = 8000,
    runtime: RuntimeOpt = None,
    reject_below: RejectOpt = None,
) -> None:
    """Serve the model over HTTP: POST /predict, /predict/batch; GET /model, /health, /docs; a drawing page at /."""
    from mnist_classifier.serving.listening import listen

    sock = listen(host, port)  # a busy port is told before the slow imports and the model's loading
    with waiting(f"loading {shown(model)}"):
        from mnist_classifier.inference.predict import Classifier
        from mnist_classifier.serving.app import serve as run_service

        classifier = Classifier.load(model, runtime=runtime, reject_below=reject_below)
    err.print(f"serving {shown(model)} on http://{host}:{port}/ (drawing page), API docs at /docs; Ctrl-C stops")
    run_service(classifier, host, port, sock=sock)
