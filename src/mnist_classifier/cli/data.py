"""``info``: what a data set holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from mnist_classifier.cli.common import DataOpt, DatasetOpt, DownloadBars, JsonOpt, err, out, shown


def info(
    dataset: DatasetOpt = "mnist",
    data: DataOpt = None,
    as_json: JsonOpt = False,
    show: Annotated[Optional[int], typer.Option(metavar="N", min=1, max=50, help="Draw N sample images per class into a PNG.")] = None,
    grid: Annotated[
        Optional[Path],
        typer.Option("--out", metavar="PNG", help="Where --show draws (default: runs/samples-DATASET.png, beside train's runs)."),
    ] = None,
) -> None:
    """Where the data came from, shapes, dtypes, class counts and pixel statistics."""
    from mnist_classifier.data.sources import read_dataset, summarize

    with DownloadBars(f"reading {dataset or 'mnist'}") as bars:
        loaded = read_dataset(dataset or "mnist", data, progress=bars)
    if show is not None:
        from mnist_classifier.report import sample_grid
        from mnist_classifier.runs import check_output_dir

        if grid is None:  # the default folder is made; a named one must exist
            grid = Path("runs", f"samples-{loaded.name}.png")
            check_output_dir(grid.parent)
        err.print(f"samples: {shown(sample_grid(loaded, show, grid))}")
    summary = summarize(loaded)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"[bold]{loaded.name}[/] from {shown(loaded.source)}")
    for name, split in summary["splits"].items():
        out.print(
            f"{name}: x {split['x_shape']} {split['x_dtype']}, y {split['y_shape']} {split['y_dtype']}\n"
            f"  pixels min {split['pixels']['min']} max {split['pixels']['max']} "
            f"mean {split['pixels']['mean']:.2f} std {split['pixels']['std']:.2f}"
        )
    table = Table("label", "class", "train", "test", title="Images per class")
    for label, name in enumerate(loaded.classes):
        table.add_row(str(label), name, *(str(split["class_counts"][label]) for split in summary["splits"].values()))
    out.print(table)
