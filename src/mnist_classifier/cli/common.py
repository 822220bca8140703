"""What the commands share: the consoles, how names are shown, the common options, download bars."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
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
    Optional[str], typer.Option("--dataset", help="mnist or fashion_mnist.", show_default=False)
]
DataOpt = Annotated[
    Optional[str],
    typer.Option("--data", help="Folder of IDX files or a .npz (default: $MNIST_CLASSIFIER_DATA, caches, download)."),
]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a setting: section.key=value (repeatable).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
RuntimeOpt = Annotated[
    Optional[str],
    typer.Option(help="keras or onnx (onnxruntime; a .keras model is exported once, cached). Default: by file type."),
]
RejectOpt = Annotated[
    Optional[float],
    typer.Option(
        "--reject-below", min=0.0, max=1.0,
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


class DownloadBars:
    """Rich progress bars for data set downloads, one per file, shown only if one starts."""

    def __init__(self) -> None:
        self.bars: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> DownloadBars:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bars is not None:
            self.bars.stop()

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if self.bars is None:
            self.bars = Progress(
                TextColumn("downloading {task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), console=err,
            )  # fmt: skip
            self.bars.start()
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total)
        self.bars.update(self.tasks[name], completed=done)
