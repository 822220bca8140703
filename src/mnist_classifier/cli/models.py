"""``evaluate``, ``predict``, ``models`` and ``export``: what trained models do and where they go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from mnist_classifier.cli.common import (
    DatasetOpt,
    DataOpt,
    DownloadBars,
    JsonOpt,
    RejectOpt,
    RuntimeOpt,
    err,
    out,
    print_network,
    shown,
    waiting,
)
from mnist_classifier.errors import ConfigError, MnistClassifierError

ModelArg = Annotated[Path, typer.Argument(help="A .keras file or a bundled model's name (see `models`).")]
InferenceModelArg = Annotated[
    Path, typer.Argument(help="A .keras or .onnx file, or a bundled model's name (see `models`).")
]
NormalizeOpt = Annotated[
    Optional[str],
    typer.Option(metavar="scale|l2|standardize", help="scale, l2 or standardize: for models not written by this tool (e.g. the notebook's: l2)."),
]


def evaluate(
    model: ModelArg,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    normalize: NormalizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix on the test set."""
    from mnist_classifier.pipeline import evaluate_file

    with DownloadBars(f"loading {shown(model)} and its test set, evaluating") as bars:
        result, record = evaluate_file(model, dataset, data, normalize, progress=bars)
    if as_json:
        out.print_json(json.dumps({"model": str(model), "dataset": record.dataset, **result.to_dict()}))
        return
    out.print(f"[bold]{shown(model)}[/] on {shown(record.dataset)} test set ({record.normalization.mode} normalization)")
    out.print(f"loss {result.loss:.4f}  accuracy {result.accuracy:.4f}")
    scores = Table("class", "precision", "recall", "f1", "support", title="Per class")
    for row in result.to_dict()["per_class"]:
        scores.add_row(shown(row["class"]), f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    out.print(scores)
    confusion = Table("true \\ predicted", *[str(i) for i in range(len(result.classes))], title="Confusion matrix")
    for label, row in enumerate(result.confusion):
        confusion.add_row(f"{label} {shown(result.classes[label])}", *(str(n) for n in row))
    out.print(confusion)


def predict(
    model: InferenceModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, WebP) or folders of them.", readable=False)
    ],
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", min=1, help="How many classes to list per image.")] = 3,
    dataset: DatasetOpt = None,
    normalize: NormalizeOpt = None,
    runtime: RuntimeOpt = None,
    reject_below: RejectOpt = None,
    show_input: Annotated[
        Optional[Path], typer.Option("--show-input", metavar="DIR", help="Write each 28×28 input the model is given as a PNG into this folder.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read pictures: every digit of a number left to right (photos, uneven light, any size), or one item."""
    from mnist_classifier.inference.images import SUFFIXES, image_paths
    from mnist_classifier.inference.predict import Classifier

    with waiting(f"loading {shown(model)}"):
        classifier = Classifier.load(model, dataset, normalize, runtime, reject_below=reject_below)
    records: list[dict] = []
    readings = []
    for path in images:  # a file that cannot be read is one error among the answers, as a bad picture is
        try:
            files = image_paths(path)
        except MnistClassifierError as exc:
            files = []
            records.append({"file": str(path), "error": str(exc)})
        else:
            if not files:
                records.append({"file": str(path), "error": f"{path}: no {', '.join(SUFFIXES)} files in this folder"})
        for file in files:
            try:
                readings.append((len(records), classifier.read(file, str(file))))
                records.append({"file": str(file)})
            except MnistClassifierError as exc:
                records.append({"file": str(file), "error": str(exc)})
    if readings:
        slots, found = zip(*readings)
        answers = classifier.answer(found, [records[i]["file"] for i in slots], top_k)
        for slot, answer in zip(slots, answers):
            records[slot] = answer.to_dict()
        if show_input is not None:
            _write_inputs(answers, show_input)
    failed = [record["error"] for record in records if "error" in record]
    for message in failed:
        err.print(f"error: {shown(message)}")
    if as_json:
        out.print_json(json.dumps(records))
    else:
        for record in (r for r in records if "error" not in r):  # one line per file: easy to grep
            out.print(_answer_line(record, top_k))
    if failed:
        raise typer.Exit(1)


def _answer_line(record: dict, top_k: int) -> str:
    """``photo.jpg: 2026 (0.97)``, with the top k for one digit, or why the picture was rejected."""
    name = shown(record["file"])
    if record["rejected"]:
        return f"{name}: [bold]not read[/]: {shown(record['reason'])}"
    line = f"{name}: [bold]{shown(record['name'])}[/] ({record['probability']:.4f})"
    if record["top"]:
        top = ", ".join(f"{t['name']} {t['probability']:.3f}" for t in record["top"])
        line += f"  top {top_k}: {shown(top)}"
    return line


def _write_inputs(answers, folder: Path) -> None:
    """Each digit's 28×28 input as ``<picture>-<n>.png`` in ``folder`` (created if missing)."""
    from PIL import Image

    from mnist_classifier.system.files import atomic_path

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--show-input {folder}: cannot create the folder ({exc.strerror or exc})") from None
    for answer in answers:
        for index, digit in enumerate(answer.digits, 1):
            with atomic_path(folder / f"{Path(answer.source).stem}-{index}.png", ".png") as temp:
                Image.fromarray(digit.image).save(temp, "PNG")


def models(
    model: Annotated[
        Optional[Path],
        typer.Argument(
            metavar="MODEL", show_default=False,
            help="A .keras file or a bundled model's name: show its network and record instead of the list.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The trained models shipped with the package, usable by name wherever a model file is accepted; or one model's network.

    With MODEL: its layers, output shapes and parameters (Keras's ``model.summary()``),
    then what its record says (data set, classes, normalization, temperature, "not a
    digit" threshold).
    """
    if model is not None:
        _show_model(model, as_json)
        return
    from mnist_classifier.inference.bundled import bundled_models

    rows = bundled_models()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("name", "dataset", "preset", "accuracy", "epochs", "size", box=box.SIMPLE_HEAD)
    for row in rows:
        accuracy = "missing" if row["test_accuracy"] is None else f"{row['test_accuracy']:.2%}"
        size = "" if row["size_bytes"] is None else f"{row['size_bytes'] / 2**20:.1f} MB"
        table.add_row(row["name"], row["dataset"], row["preset"], accuracy, str(row["epochs"] or ""), size)
    out.print(table)
    for row in rows:  # below the table, so that an 80-column terminal squeezes nothing
        out.print(f"[bold]{row['name']}[/]: {row['summary']}", highlight=False)


def _show_model(model: Path, as_json: bool) -> None:
    """Print one model's network and record (``models MODEL``)."""
    from mnist_classifier.inference.bundled import model_path

    path = model_path(model)
    if path.suffix == ".onnx":
        raise ConfigError(f"{path}: an ONNX graph has no Keras layers to show: expected a .keras file or a bundled name")
    from mnist_classifier.inference.predict import open_model
    from mnist_classifier.models import network_summary

    with waiting(f"loading {shown(model)}"):
        network, _, info = open_model(path, runtime="keras")
        summary = network_summary(network)
    record = None if info is None else {
        "dataset": info.dataset, "classes": list(info.classes), "normalization": info.normalization.mode,
        "input_shape": list(info.input_shape), "temperature": info.temperature, "reject_below": info.reject_below,
    }  # fmt: skip
    if as_json:
        out.print_json(json.dumps({"model": str(model), "file": str(path), "network": summary, "record": record}))
        return
    print_network(out, summary)
    if record is None:
        out.print("record: none (a model not written by this tool)")
        return
    reject = "none" if info.reject_below is None else f"{info.reject_below:.4f}"
    out.print(f"data set: {shown(info.dataset)}, {info.normalization.mode} normalization, input {tuple(info.input_shape)}")
    out.print(f"classes: {shown(', '.join(info.classes))}")
    out.print(f"temperature {info.temperature:.3f}; not a digit below {reject}")


def export(
    model: ModelArg,
    fmt: Annotated[str, typer.Option("--format", metavar="onnx", help="Only onnx for now.")] = "onnx",
    out_file: Annotated[Optional[Path], typer.Option("--out", metavar="FILE", help="Where to write (default: MODEL with .onnx).")] = None,
) -> None:
    """Export a model to ONNX through Keras's exporter, checked against Keras on onnxruntime before it is kept."""
    from mnist_classifier.inference.bundled import model_path
    from mnist_classifier.system.files import check_output
    from mnist_classifier.inference.onnx_runtime import require_exporter

    if fmt != "onnx":
        raise ConfigError(f"--format {fmt}: expected onnx")
    require_exporter()  # before Keras is imported
    from mnist_classifier.inference.onnx_export import check_target, export_onnx
    from mnist_classifier.inference.predict import open_model

    path = model_path(model)
    target = out_file or (path.with_suffix(".onnx") if path == model else Path(f"{model}.onnx"))
    network, _, info = open_model(path, runtime="keras")
    check_output(check_target(target))
    err.print(f"exporting {shown(model)} to {shown(target)} ...")
    export_onnx(network, target, info)
    out.print(f"{shown(target)} ({target.stat().st_size / 2**20:.1f} MB), checked against Keras on onnxruntime")
