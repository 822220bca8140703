"""``report`` and ``compare``: finished runs made visible."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mnist_classifier.cli.common import DataOpt, DownloadBars, out, shown


def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: DataOpt = None,
) -> None:
    """Learning curves, confusion matrix, misclassified digits and per-class scores as PNGs, HTML and Markdown."""
    from mnist_classifier.report import write_report

    with DownloadBars():
        out.print(f"report: {shown(write_report(run_dir, data))}")


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Finished run directories.")],
    plot: Annotated[Path, typer.Option("--out", help="Where to draw the validation curves.")] = Path("compare.png"),
) -> None:
    """Runs side by side: the settings that differ, accuracy, loss, epochs, time; and their validation curves."""
    from mnist_classifier.report import compare_runs

    header, rows = compare_runs(run_dirs, plot)
    table = Table(*map(shown, header), title="Runs side by side")
    for row in rows:
        table.add_row(*map(shown, row))
    out.print(table)
    out.print(f"validation curves: {shown(plot)}")
