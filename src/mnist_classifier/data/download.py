"""Checksum-verified downloads into the data cache, written atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnist_classifier.errors import DownloadError
from mnist_classifier.system.files import publish

#: Called as ``progress(file_name, bytes_done, bytes_total_or_None)`` while a file arrives.
Progress = Callable[[str, int, int | None], None]

_CHUNK = 1 << 16
MIRROR_HINT = "MNIST_CLASSIFIER_MIRROR to an http(s) base URL"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set on the mirror: its name there and its sha256."""

    name: str
    sha256: str


def download_files(
    base_url: str,
    files: Sequence[RemoteFile],
    target_dir: Path,
    *,
    retries: int = 3,
    timeout: float = 30.0,
    progress: Progress | None = None,
) -> list[Path]:
    """Download ``files`` from ``base_url`` into ``target_dir``, all or none.

    Each file is streamed to a temporary file beside its target and its sha256
    checked; only when every file has arrived intact are they renamed into place,
    so a failed or interrupted download never leaves a file behind.

    Returns:
        The paths of the downloaded files, in the order of ``files``.
    """
    if retries < 1:
        raise ValueError(f"retries={retries}: expected at least 1")
    created = [folder for folder in (target_dir, *target_dir.parents) if not folder.exists()]
    target_dir.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    try:
        for remote in files:
            url = base_url.rstrip("/") + "/" + remote.name
            parts.append(_fetch_with_retries(url, remote, target_dir, retries, timeout, progress))
        targets = [target_dir / remote.name for remote in files]
        for part, target in zip(parts, targets):
            publish(part, target)
        return targets
    except BaseException:
        for part in parts:
            part.unlink(missing_ok=True)
        # Folders made here go too: an empty one would hide other sources (e.g. Debian's).
        for folder in created:
            if not any(folder.iterdir()):
                folder.rmdir()
        raise


def _fetch_with_retries(
    url: str,
    remote: RemoteFile,
    target_dir: Path,
    retries: int,
    timeout: float,
    progress: Progress | None,
) -> Path:
    """Fetch one file, retrying transient failures with exponential back-off."""
    for attempt in range(1, retries + 1):
        try:
            return _fetch(url, remote, target_dir, timeout, progress)
        except DownloadError:
            # A checksum mismatch or a 4xx answer will not change on a retry.
            raise
        except (OSError, http.client.HTTPException) as exc:
            if attempt == retries:
                raise DownloadError(
                    f"{url}: download failed after {retries} attempts: {_reason(exc)}"
                ) from None
            time.sleep(0.5 * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _fetch(
    url: str, remote: RemoteFile, target_dir: Path, timeout: float, progress: Progress | None
) -> Path:
    """Stream ``url`` into a temporary file in ``target_dir``, checking length and sha256."""
    fd, name = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part", dir=target_dir)
    part = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, _open(url, timeout) as response:
            total = _content_length(response)
            digest = hashlib.sha256()
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(remote.name, done, total)
        if total is not None and done != total:
            raise ConnectionError(f"connection closed after {done} of {total} bytes")
        if digest.hexdigest() != remote.sha256:
            raise DownloadError(
                f"{url}: sha256 mismatch (expected {remote.sha256}, got {digest.hexdigest()})"
            )
        return part
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _open(url: str, timeout: float):
    """Open ``url``, turning client errors (4xx) into a final DownloadError."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except ValueError:  # no scheme, unknown scheme
        raise DownloadError(f"{url}: not a valid download URL (set {MIRROR_HINT})") from None
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        raise


def _content_length(response) -> int | None:
    """The announced size of a response, or None when the server did not say."""
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _reason(exc: BaseException) -> str:
    """A short human reason for a network failure."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
