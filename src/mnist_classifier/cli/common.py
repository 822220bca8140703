"""What the commands share: the consoles, how names are shown, the common options, download bars."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich import box
from rich.markup import escape
from rich.status import Status
from rich.table import Table
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
# C0 controls, DEL, C1 controls, and the surrogates Python decodes a file name's undecodable bytes to
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

DatasetOpt = Annotated[
    Optional[str], typer.Option("--dataset", metavar="NAME", help="mnist or fashion_mnist.", show_default=False)
]
DataOpt = Annotated[
    Optional[str],
    typer.Option("--data", metavar="PATH", help="Folder of IDX files or a .npz (default: $MNIST_CLASSIFIER_DATA, caches, download)."),
]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a setting: section.key=value (repeatable).")
]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print JSON instead of tables.")]
RuntimeOpt = Annotated[
    Optional[str],
    typer.Option(metavar="keras|onnx", help="keras or onnx (onnxruntime; a .keras model is exported once, cached). Default: by file type."),
]
RejectOpt = Annotated[
    Optional[float],
    typer.Option(
        "--reject-below", metavar="SCORE", min=0.0, max=1.0,
        help="Reject a picture whose digit score (calibrated top probability) is under this. Default: the model's own threshold.",
    ),
]  # fmt: skip


def shown(value: object) -> str:
    """``value`` as text to print inside Rich markup, as it is and on one line.

    Control characters and undecodable bytes are written as Python writes them in
    a string's repr (``evil\\x1b[31m.png``, ``new\\nline.png``), so that a file
    name can neither colour the terminal nor forge a line of output; markup is
    escaped, so that ``[bold]`` in a name is printed as it is.
    """
    return escape(_UNPRINTABLE.sub(lambda char: repr(char.group())[1:-1], str(value)))


def print_network(console: Console, summary: dict) -> None:
    """Print a network as Keras's ``model.summary()`` does: its layers' output shapes and parameters, then the totals.

    ``summary`` is :func:`~mnist_classifier.models.network_summary`'s.
    """
    from mnist_classifier.inference.model_info import NETWORK_COLUMNS, network_rows, network_totals

    table = Table(*NETWORK_COLUMNS, box=box.SIMPLE_HEAD, title="Network")
    table.columns[-1].justify = "right"
    for row in network_rows(summary):
        table.add_row(*map(shown, row))
    console.print(table)
    console.print(network_totals(summary))


def waiting(what: str) -> Status:
    """A spinner on stderr saying ``what`` is under way, for as long as the ``with`` block lasts.

    Shown on a terminal only and erased when done: piped output and ``--json`` get nothing.
    """
    return err.status(f"{what} ...")


class DownloadBars:
    """Rich progress bars for data set downloads, one per file, shown only if one starts.

    With ``status``, a :func:`waiting` spinner says it until a download starts (or the block ends).
    """

    def __init__(self, status: str | None = None) -> None:
        self.bars: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.status = None if status is None else waiting(status)

    def __enter__(self) -> DownloadBars:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop_status()
        if self.bars is not None:
            self.bars.stop()

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if self.bars is None:
            self._stop_status()  # one live display at a time: the bars take the spinner's place
            self.bars = Progress(
                TextColumn("downloading {task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), console=err,
            )  # fmt: skip
            self.bars.start()
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total)
        self.bars.update(self.tasks[name], completed=done)
