"""The errors this package raises: one base class, one subclass per stage."""


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
