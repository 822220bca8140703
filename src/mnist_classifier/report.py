"""Results people can see: learning curves, confusion matrix, misclassified digits, per-class scores, calibration.

``write_report(run_dir)`` draws the PNGs into ``RUN_DIR/report/`` and writes a
self-contained ``report.html`` (figures embedded, opens offline) and a Markdown
summary. ``compare_runs`` puts runs side by side; ``sample_grid`` shows a data set.
matplotlib draws with the Agg backend: no display needed.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mnist_classifier.data.sources import Dataset, read_dataset  # noqa: E402
from mnist_classifier.inference.model_info import NETWORK_COLUMNS, network_rows, network_totals  # noqa: E402
from mnist_classifier.system.files import atomic_path, write_text_atomic  # noqa: E402
from mnist_classifier.runs import RunRecord  # noqa: E402

DPI = 100
MISCLASSIFIED_SHOWN = 24


# Figures of the hyperparameter search that produced the run (``tune``), when there was one.
SEARCH_FIGURES = {
    "Search: validation accuracy of each trial": "tune/history.png",
    "Search: parameter importances": "tune/importances.png",
}


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Write a figure as PNG, atomically, and close it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    plt.close(figure)
    return path


def plot_curves(record: RunRecord, path: Path) -> Path:
    """Loss and accuracy per epoch, training vs validation, with the learning rate on a second axis."""
    epochs = [row["epoch"] for row in record.history]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, [row[metric] for row in record.history], "o-", label=f"training {metric}")
        if "val_" + metric in record.history[0]:
            axis.plot(epochs, [row["val_" + metric] for row in record.history], "s-", label=f"validation {metric}")
        _epoch_axis(axis)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        rate = axis.twinx()
        rate.plot(epochs, [row.get("learning_rate", np.nan) for row in record.history], ":", color="grey", label="learning rate")
        rate.set_ylabel("learning rate", color="grey")
        lines = axis.get_lines() + rate.get_lines()
        axis.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    figure.suptitle(f"{record.path.name}: learning curves")
    return save_figure(figure, path)


def _epoch_axis(axis: plt.Axes) -> None:
    """Label the x axis "epoch", ticked at whole epochs only (a short run gets no 1.5)."""
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_confusion(record: RunRecord, path: Path) -> Path:
    """The test confusion matrix as a heat map with counts (rows: true class)."""
    matrix = np.array(record.metrics["evaluation"]["confusion_matrix"])
    classes = record.classes
    figure, axis = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    image = axis.imshow(np.log1p(matrix), cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            axis.text(col, row, str(count), ha="center", va="center", fontsize=7, color="white" if row == col else "black")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"Confusion matrix, test accuracy {record.metrics['test_accuracy']:.2%}")
    figure.colorbar(image, ax=axis, label="log(1 + count)")
    return save_figure(figure, path)


def plot_per_class(record: RunRecord, path: Path) -> Path:
    """Precision, recall and F1 of every class as grouped bars."""
    rows = record.metrics["evaluation"]["per_class"]
    positions = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(10, 4), layout="constrained")
    for offset, score in zip((-0.27, 0, 0.27), ("precision", "recall", "f1")):
        axis.bar(positions + offset, [row[score] for row in rows], width=0.27, label=score)
    lowest = min(min(row[s] for s in ("precision", "recall", "f1")) for row in rows)
    axis.set_ylim(max(0.0, lowest - 0.05), 1.0)
    axis.set_xticks(positions, [row["class"] for row in rows], rotation=30, ha="right")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside the axes, to the right: it covers no bar
    axis.grid(axis="y", alpha=0.3)
    axis.set_title("Per-class scores on the test set")
    return save_figure(figure, path)


def plot_misclassified(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], path: Path
) -> Path:
    """The most confidently misclassified test images, with their true and predicted classes."""
    predicted = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:MISCLASSIFIED_SHOWN]
    columns = 8
    rows = max(1, -(-len(worst) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.5, rows * 1.75), layout="constrained", squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, worst):
        axis.imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        axis.set_title(
            f"true {classes[labels[index]]}\npred {classes[predicted[index]]} {probabilities[index, predicted[index]]:.0%}",
            fontsize=8,
        )
    figure.suptitle(f"Most confidently misclassified: {len(worst)} of {len(wrong)} error{'s' * (len(wrong) != 1)}")
    return save_figure(figure, path)


def plot_reliability(record: RunRecord, path: Path) -> Path:
    """The reliability diagram of the test set: accuracy against confidence per bin, before and after temperature scaling.

    Draws the ``calibration`` block of ``metrics.json``; a perfectly calibrated model
    lies on the diagonal.
    """
    calibration = record.metrics["calibration"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained", sharey=True)
    for axis, when, ece in zip(axes, ("before", "after"), (calibration["ece_before"], calibration["ece_after"])):
        table = calibration[f"reliability_{when}"]
        edges = np.array(table["edges"])
        accuracy = np.nan_to_num(np.array(table["accuracy"], dtype=float))
        confidence = np.array(table["confidence"], dtype=float)
        widths = np.diff(edges)
        axis.bar(edges[:-1], accuracy, width=widths, align="edge", edgecolor="black", label="accuracy")
        axis.bar(edges[:-1], np.nan_to_num(confidence), width=widths, align="edge", fill=False,
                 edgecolor="tab:red", hatch="//", label="mean confidence")  # fmt: skip
        axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        scale = f"T = {calibration['temperature']:.3f}" if when == "after" else "T = 1"
        axis.set_title(f"{when} temperature scaling ({scale}): ECE {ece:.2%}")
        axis.set_xlabel("confidence (top probability)")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(f"Reliability on the test set ({calibration['bins']} bins); temperature fitted on {calibration['fitted_on']}")
    return save_figure(figure, path)


def sample_grid(dataset: Dataset, per_class: int, path: Path, seed: int = 0) -> Path:
    """A grid of ``per_class`` random training images of every class."""
    x, y = dataset.train
    rng = np.random.default_rng(seed)
    classes = dataset.classes
    figure, axes = plt.subplots(
        len(classes), per_class, figsize=(per_class * 0.9 + 1.6, len(classes) * 0.95), squeeze=False, layout="constrained"
    )
    for label, row in enumerate(axes):
        picks = rng.choice(np.flatnonzero(y == label), size=per_class, replace=False)
        for axis, index in zip(row, picks):
            axis.imshow(x[index], cmap="gray_r", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
        row[0].set_ylabel(classes[label], rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(f"{dataset.name}: {per_class} training images per class")
    return save_figure(figure, path)


def write_report(run_dir: str | Path, data_path: str | None = None) -> Path:
    """Figures, ``report.html`` (self-contained) and ``report.md`` in ``RUN_DIR/report/``; returns the HTML path."""
    from mnist_classifier.inference.predict import open_model
    from mnist_classifier.data.preprocessing import preprocess
    from mnist_classifier.evaluation import predict_probabilities
    from mnist_classifier.models import network_summary

    record = RunRecord.read(run_dir)
    out = record.path / "report"
    out.mkdir(exist_ok=True)
    network, shape, info = open_model(record.path / "model.keras")
    data_settings = record.settings.get("data", {})
    dataset = read_dataset(info.dataset, data_path or data_settings.get("path"))
    images, labels = dataset.test
    limit = data_settings.get("test_limit")
    images, labels = images[:limit], labels[:limit]
    probabilities = predict_probabilities(network, preprocess(images, info.normalization, shape))
    figures = {
        "Learning curves": plot_curves(record, out / "curves.png"),
        "Confusion matrix": plot_confusion(record, out / "confusion.png"),
        "Per-class precision, recall and F1": plot_per_class(record, out / "per_class.png"),
        "Most confidently misclassified test images": plot_misclassified(
            images, labels, probabilities, info.classes, out / "misclassified.png"
        ),
    }
    if "calibration" in record.metrics:
        figures["Reliability diagram"] = plot_reliability(record, out / "reliability.png")
    figures |= {title: record.path / name for title, name in SEARCH_FIGURES.items() if (record.path / name).exists()}
    network_table = network_summary(network)
    write_text_atomic(out / "report.md", _markdown(record, figures, network_table))
    html_path = out / "report.html"
    write_text_atomic(html_path, _html(record, figures, network_table))
    return html_path


def _summary_rows(record: RunRecord) -> list[tuple[str, str]]:
    """The run's headline figures as (name, value) pairs."""
    metrics = record.metrics
    timings = metrics.get("timings", {})
    return [
        ("preset", str(metrics.get("preset"))),
        ("data set", f"{metrics.get('dataset')} ({metrics.get('data_source')})"),
        ("test accuracy", f"{metrics['test_accuracy']:.2%}"),
        ("test loss", f"{metrics['test_loss']:.4f}"),
        ("epochs (best)", f"{metrics.get('epochs')} ({metrics.get('best_epoch')})"),
        ("training time", f"{timings.get('train_s', float('nan')):.1f} s"),
        ("backend", f"{metrics.get('backend')}, Keras {metrics.get('versions', {}).get('keras')}"),
        *_calibration_rows(metrics.get("calibration")),
    ]


def _calibration_rows(calibration: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The calibration block's headline figures as (name, value) pairs (none for older runs)."""
    if calibration is None:
        return []
    if calibration["reject_below"] is None:
        return [
            ("calibration", f"none: no held-out validation images to fit on (T = 1); ECE {calibration['ece_before']:.2%}"),
        ]
    return [
        ("temperature", f"{calibration['temperature']:.3f} (fitted on {calibration['fitted_on']})"),
        ("calibration error (ECE)", f"{calibration['ece_before']:.2%} before, {calibration['ece_after']:.2%} after"),
        ("not a digit below", f"{calibration['reject_below']:.4f}: rejects {calibration['test_rejected']:.2%} of the test digits"),
    ]


def _markdown(record: RunRecord, figures: dict[str, Path], network: dict[str, Any]) -> str:
    """The Markdown summary, pointing at the PNGs beside it, and the network's layers."""
    lines = [f"# Run {record.path.name}", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in _summary_rows(record)]
    lines += ["", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
        for r in record.metrics["evaluation"]["per_class"]
    ]
    for title, path in figures.items():
        lines += ["", f"## {title}", "", f"![{title}]({os.path.relpath(path, record.path / 'report')})"]
    lines += ["", "## Network", "", f"| {' | '.join(NETWORK_COLUMNS)} |", "| --- | --- | ---: |"]
    lines += [f"| {' | '.join(row)} |" for row in network_rows(network)]
    lines += ["", network_totals(network)]
    return "\n".join(lines) + "\n"


def _html(record: RunRecord, figures: dict[str, Path], network: dict[str, Any]) -> str:
    """One HTML page with every figure embedded as a data URL, the network's layers and the settings."""
    summary = "".join(f"<tr><th>{html.escape(n)}</th><td>{html.escape(v)}</td></tr>" for n, v in _summary_rows(record))
    sections = "".join(
        f'<section><h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"></section>'
        for title, path in figures.items()
    )
    layers = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in network_rows(network)
    )
    heads = "".join(f"<th>{html.escape(name)}</th>" for name in NETWORK_COLUMNS)
    settings = html.escape(json.dumps(record.settings, indent=2))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Run {html.escape(record.path.name)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse}th,td{text-align:left;padding:2px 12px 2px 0}img{max-width:100%}"
        "pre{background:#f4f4f0;padding:0.8rem;overflow:auto}.network td:last-child{text-align:right}</style></head><body>"
        f"<h1>Run {html.escape(record.path.name)}</h1><table>{summary}</table>{sections}"
        f"<section><h2>Network</h2><table class='network'><tr>{heads}</tr>{layers}</table>"
        f"<p>{html.escape(network_totals(network))}</p></section>"
        f"<section><h2>Settings</h2><pre>{settings}</pre></section></body></html>\n"
    )


def compare_runs(run_dirs: Sequence[str | Path], path: Path) -> tuple[list[str], list[list[str]]]:
    """Runs side by side, one column each (accuracy, loss, epochs, time, then the settings that
    differ), as a header and rows; their validation curves are drawn into ``path``."""
    records = [RunRecord.read(run_dir) for run_dir in run_dirs]
    flat = [_flatten(record.settings) for record in records]
    differing = sorted(key for key in set().union(*flat) if len({repr(f.get(key)) for f in flat}) > 1)
    names = run_labels([record.path.name for record in records])
    header = ["", *names]
    rows = [
        ["test accuracy", *(f"{r.metrics['test_accuracy']:.2%}" for r in records)],
        ["test loss", *(f"{r.metrics['test_loss']:.4f}" for r in records)],
        ["epochs", *(str(r.metrics.get("epochs")) for r in records)],
        ["training s", *(f"{r.metrics.get('timings', {}).get('train_s', float('nan')):.1f}" for r in records)],
        *([key, *(str(settings.get(key, "")) for settings in flat)] for key in differing),
    ]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for record, name in zip(records, names):
        epochs = [row["epoch"] for row in record.history]
        for axis, metric in zip(axes, ("val_accuracy", "val_loss")):
            axis.plot(epochs, [row.get(metric, np.nan) for row in record.history], "o-", label=name)
    for axis, metric in zip(axes, ("validation accuracy", "validation loss")):
        _epoch_axis(axis)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path)
    return header, rows


def comparison_path(run_dirs: Sequence[str | Path]) -> Path:
    """Where ``compare`` draws by default: ``compare.png`` in the folder that holds all the runs."""
    parents = [Path(run_dir).resolve().parent for run_dir in run_dirs]
    return Path(os.path.commonpath(parents)) / "compare.png"


_STAMPED = re.compile(r"(?P<date>\d{8})-(?P<time>\d{6})-(?P<rest>.+)")


def run_labels(names: Sequence[str]) -> list[str]:
    """Short names that tell runs apart: ``STAMP-PRESET-DATASET`` as ``PRESET-DATASET HH:MM``.

    The date is kept only when the runs' dates differ, and the seconds only when
    two labels would otherwise be the same; a name of another form is kept as it is.

    >>> run_labels(["20261201-062241-mlp-mnist", "20261201-071502-cnn-mnist"])
    ['mlp-mnist 06:22', 'cnn-mnist 07:15']
    """
    stamped = [_STAMPED.fullmatch(name) for name in names]
    if not all(stamped):
        return list(names)
    dated = len({match["date"] for match in stamped}) > 1
    for seconds in (False, True):
        labels = [
            f"{m['rest']} {m['date'][4:6] + '-' + m['date'][6:] + ' ' if dated else ''}"
            f"{m['time'][:2]}:{m['time'][2:4]}{':' + m['time'][4:] if seconds else ''}"
            for m in stamped
        ]  # fmt: skip
        if len(set(labels)) == len(labels):
            return labels
    return list(names)


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"path": x}}`` as ``{"data.path": x}``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
