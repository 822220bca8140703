"""``report`` and ``compare``: finished runs made visible."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from mnist_classifier.cli.common import DataOpt, DownloadBars, out, shown


def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: DataOpt = None,
) -> None:
    """Learning curves, confusion matrix, misclassified digits and per-class scores as PNGs, HTML and Markdown."""
    from mnist_classifier.report import write_report

    with DownloadBars(f"drawing the report of {shown(run_dir)}"):
        out.print(f"report: {shown(write_report(run_dir, data))}")


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Finished run directories.")],
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--out", metavar="PNG", show_default=False,
            help="Where to draw the validation curves (default: compare.png in the folder holding the runs).",
        ),
    ] = None,
) -> None:
    """Runs side by side: the settings that differ, accuracy, loss, epochs, time; and their validation curves.

    Runs are named by preset, data set and start time (the date too when it differs).
    """
    from mnist_classifier.report import compare_runs, comparison_path

    plot = plot or comparison_path(run_dirs)
    header, rows = compare_runs(run_dirs, plot)
    table = Table(*map(shown, header), title="Runs side by side")
    for row in rows:
        table.add_row(*map(shown, row))
    out.print(table)
    out.print(f"validation curves: {shown(plot)}")
