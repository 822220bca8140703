"""The errors this package raises: one base class, one subclass per stage; how an unknown name is told."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def closest(name: str, known: Sequence[str]) -> str | None:
    """The one of ``known`` that a misspelt ``name`` most likely meant (difflib's closest match), or None."""
    close = difflib.get_close_matches(name, known, n=1)
    return close[0] if close else None


def unknown_name(kind: str, name: str, known: Sequence[str]) -> str:
    """The message for a ``name`` of ``kind`` that is not one of ``known``, with the closest one first.

    >>> unknown_name("model", "mnist-cnm", ["mnist-mlp", "mnist-cnn"])
    "unknown model 'mnist-cnm': did you mean 'mnist-cnn'? (known: mnist-mlp, mnist-cnn)"
    >>> unknown_name("preset", "huge", ["mlp", "cnn"])
    "unknown preset 'huge': expected one of mlp, cnn"
    """
    listed = ", ".join(known)
    close = closest(name, known)
    if close is None:
        return f"unknown {kind} {name!r}: expected one of {listed}"
    return f"unknown {kind} {name!r}: did you mean {close!r}? (known: {listed})"


class MnistClassifierError(Exception):
    """Base class of every error the package raises on bad input or bad files."""


class DataError(MnistClassifierError):
    """A data set could not be found, read or validated."""


class DownloadError(DataError):
    """A download failed, was cut off or did not match its checksum."""


class ConfigError(MnistClassifierError, ValueError):
    """A setting has a bad value; a ValueError too, as scikit-learn does."""


class ModelFileError(MnistClassifierError):
    """A model file is missing, unreadable or does not fit the data."""


class TrainingError(MnistClassifierError):
    """Training was asked for something it cannot do (e.g. early stopping without validation)."""


class ImageError(MnistClassifierError):
    """An image to classify is missing, too large, of another format or undecodable."""


class MissingExtraError(MnistClassifierError):
    """An optional part of the package is asked for but its extra is not installed (e.g. ``export``)."""


class OutputError(MnistClassifierError):
    """An output cannot be written where asked: its folder is missing, or a device, FIFO or folder is in the way."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
