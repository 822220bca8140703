"""The ``mnist-classifier`` command: parse flags, build one config, call the library, print.

One module per group of commands (``data``: info; ``train``: train, tune; ``runs``:
report, compare; ``models``: evaluate, predict, models, export; ``serve``), wired here
into one typer app; :data:`ERRORS` says how each kind of error ends a command.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from mnist_classifier import __version__
from mnist_classifier.accel.compilation import enable_compilation_cache
from mnist_classifier.cli import data, models, runs, serve, train
from mnist_classifier.cli.common import err, out, shown
from mnist_classifier.errors import MnistClassifierError
from mnist_classifier.system import malloc



def _reflowed(text: str | None) -> str | None:
    """Help text with each paragraph's single line breaks joined: the terminal wraps it, not the docstring.

    Paragraphs that are lists or laid out (a line starting with ``-``, ``*``, a
    space or ``\\b``) keep their lines.
    """
    if not text:
        return text

    def laid_out(paragraph: str) -> bool:
        return any(line.startswith(("-", "*", " ", "\b")) for line in paragraph.splitlines())

    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if laid_out(p) else " ".join(p.split("\n")) for p in paragraphs)


class _PlainHelp:
    """typer's commands with their help reflowed (:func:`_reflowed`) and a ``--help`` that shows no type
    tag (``<bool>``) beside it, as flags show none."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help = _reflowed(self.help)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Argument(typer.core.TyperArgument):
    """A positional argument whose help shows no type tag (``<path>``, ``<list[Path]>``): its name and
    help say what it is."""

    def display_type_rich(self, ctx) -> str | None:
        return None


class _Command(_PlainHelp, typer.core.TyperCommand):
    """A command of the app; its positional arguments are :class:`_Argument`s."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is typer.core.TyperArgument:
                param.__class__ = _Argument


class _Group(_PlainHelp, typer.core.TyperGroup):
    """The app itself: its commands and the options before them."""


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train, evaluate and inspect Keras classifiers for MNIST and Fashion-MNIST.",
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, metavar="", help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, evaluate and inspect Keras classifiers for MNIST and Fashion-MNIST."""
    if version:
        out.print(f"mnist-classifier {__version__}")
        raise typer.Exit()
    enable_compilation_cache()  # before any command imports JAX, so that it takes the setting as it starts
    if ctx.invoked_subcommand is None:
        out.print(ctx.get_help())


app.command(cls=_Command)(data.info)
app.command(cls=_Command)(train.train)
app.command(cls=_Command)(train.tune)
app.command(cls=_Command)(runs.report)
app.command(cls=_Command)(runs.compare)
app.command(cls=_Command)(models.evaluate)
app.command(cls=_Command)(models.predict)
app.command(cls=_Command)(serve.serve)
app.command(cls=_Command)(models.models)
app.command(cls=_Command)(models.export)

# How an error that ends a command is told: its one line on stderr, and the exit code.
ERRORS: dict[type[BaseException], tuple[Callable[[BaseException], str], int]] = {
    MnistClassifierError: (lambda exc: f"error: {shown(exc)}", 1),
    typer.TyperException: (lambda exc: f"error: {shown(exc.format_message())} (see --help)", 2),  # bad flags, values
    typer.Abort: (lambda exc: "interrupted", 130),
    KeyboardInterrupt: (lambda exc: "interrupted", 130),
}


def main() -> None:
    """Entry point: errors become one line on stderr and an exit code, as :data:`ERRORS` says."""
    malloc.tune()
    try:
        code = app(standalone_mode=False)
    except tuple(ERRORS) as exc:
        tell, status = next(ERRORS[kind] for kind in ERRORS if isinstance(exc, kind))
        err.print(tell(exc))
        sys.exit(status)
    sys.exit(code if isinstance(code, int) else 0)
