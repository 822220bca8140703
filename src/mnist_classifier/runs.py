"""Run directories: the complete, reproducible record of a training run.

- ``config.toml``: the resolved config (``train --config`` it to repeat the run)
- ``run.json``: status (running, completed, interrupted, failed with its ``reason``), epochs done, best epoch
- ``history.csv`` / ``history.json``: per-epoch loss, accuracy, validation, learning rate, time
- ``best.keras``: the best-``val_loss`` checkpoint; ``model.keras``: the final model
- ``last.keras``: the state after the last finished epoch, for ``train --resume``
- ``metrics.json``: test loss and accuracy, per-class scores, timings, versions, backend, seed

- ``.lock``: locked by the one process writing the run (``flock``, released by the kernel
  when its holder dies), and bearing its PID

Every file is written atomically, so an interrupted run leaves each one intact; the
temporaries a killed process leaves beside them are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_classifier.config import Config, read_config_file
from mnist_classifier.errors import TrainingError, first_line
from mnist_classifier.evaluation import Evaluation
from mnist_classifier.inference.model_info import ModelInfo
from mnist_classifier.persistence import BackgroundSaver
from mnist_classifier.system.files import write_text_atomic


def check_output_dir(out: Path) -> None:
    """Create the folder for run directories now, so a bad ``--out`` fails before training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"{out}: cannot create the output folder ({exc.strerror})") from None


RUN_RECORD = "run.json"
LOCK_FILE = ".lock"


def new_run_dir(out: Path, config: Config) -> Path:
    """Create a fresh run directory under ``out``: ``STAMP-PRESET-DATASET``, then ``-2``, ``-3``, ... if taken.

    Each name is claimed by creating it, so processes starting together never share one.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out / f"{stamp}-{config.preset}-{config.data.dataset}"
    run_dir, n = base, 1
    while True:
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")


@dataclass(frozen=True)
class RunRecord:
    """What a finished run directory holds: its settings, per-epoch history and final metrics."""

    path: Path
    settings: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]

    @classmethod
    def read(cls, run_dir: str | Path) -> RunRecord:
        """Read a finished run directory (a TrainingError names what is missing)."""
        path = Path(run_dir)
        history = read_history(path, required=True)
        metrics = read_json(path / "metrics.json", "metrics record (is the run finished?)", dict)
        return cls(path, read_config_file(path / "config.toml"), history, metrics)

    @property
    def classes(self) -> list[str]:
        """Class names, in label order."""
        return [row["class"] for row in self.metrics["evaluation"]["per_class"]]


@dataclass(frozen=True)
class RunResult:
    """What a run just finished in this process produced."""

    run_dir: Path
    evaluation: Evaluation
    metrics: dict[str, Any]


@contextlib.contextmanager
def writing_run(run_dir: Path) -> Iterator[None]:
    """Own ``run_dir`` within: the one process writing it, whose end is recorded in ``run.json``.

    On entry: the run's lock is taken (a TrainingError naming the holder's PID if
    another process writes the run), the temporaries of a killed writer are
    removed, and a record still saying ``running`` (its process is gone) becomes
    ``interrupted``. On the way out of a run that was under way (its record says
    ``running``, or there is none yet): Ctrl-C marks it ``interrupted``; any other
    error marks it ``failed`` with the error's first line as ``reason``, and an
    OSError (a full disk, ...) or MemoryError comes out as that one-line
    TrainingError. A refusal before training (e.g. a completed run) changes nothing.
    """
    with contextlib.ExitStack() as lock:
        try:
            lock.enter_context(exclusive_lock(run_dir / LOCK_FILE, wait=False))
        except LockHeld as held:
            raise TrainingError(
                f"{run_dir}: in use by process {held.pid or '(unknown)'}, which is training or resuming this run"
            ) from None
        except OSError as exc:
            raise TrainingError(f"{run_dir}: cannot lock the run directory ({exc.strerror or exc})") from None
        try:
            _remove_temporaries(run_dir)
            if _read_record(run_dir).get("status") == "running":
                _end_run(run_dir, "interrupted")
            yield
        except KeyboardInterrupt:
            _end_run(run_dir, "interrupted")
            raise
        except (OSError, MemoryError) as exc:
            _end_run(run_dir, "failed", first_line(exc))
            raise TrainingError(f"{run_dir}: training failed ({first_line(exc)}); {RUN_RECORD} says failed") from None
        except Exception as exc:  # the package's own one-line errors, and bugs (with their traceback)
            _end_run(run_dir, "failed", first_line(exc))
            raise


def _end_run(run_dir: Path, status: str, reason: str | None = None) -> None:
    """Mark a run under way (``running``, or no record yet) as ``status``, keeping the rest of its record.

    Best effort: when even this small write fails (the disk is full), the record
    keeps its last state and the caller's error still comes out.
    """
    record = _read_record(run_dir)
    if record.get("status", "running") != "running":
        return
    record = {"epochs_completed": 0, "best_epoch": None, "best_val_loss": None, **record, "status": status}
    if reason is not None:
        record["reason"] = reason
    with contextlib.suppress(OSError):
        _write_record(run_dir, record)


def _read_record(run_dir: Path) -> dict[str, Any]:
    """``run.json`` as a dict, or an empty one where there is none or it is unreadable."""
    try:
        return read_json(run_dir / RUN_RECORD, "run record", dict)
    except TrainingError:
        return {}


def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``run.json``, stamped with the time."""
    record = {**record, "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_text_atomic(run_dir / RUN_RECORD, json.dumps(record, indent=2))


def _remove_temporaries(run_dir: Path) -> None:
    """Remove what a killed writer left half-written: the hidden temporaries of atomic writes (all but the lock)."""
    for path in run_dir.glob(".*"):
        if path.name != LOCK_FILE and path.is_file():
            path.unlink(missing_ok=True)


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is the process ID it wrote into the lock file (None if unknown)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path}: held by process {pid or '(unknown)'}")
        self.path, self.pid = path, pid


@contextlib.contextmanager
def exclusive_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) within; it bears this process's PID meanwhile.

    ``wait=False`` raises LockHeld at once when another process holds it; otherwise
    this waits for it. The kernel drops the lock when its holder exits, even by
    SIGKILL, so a lock is never left stale; the file itself stays.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # never truncated on open: it bears the holder's PID
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(path, _holder(fd)) from None
        _write_pid(fd, str(os.getpid()))
        try:
            yield
        finally:
            _write_pid(fd, "")
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> int | None:
    """The PID written in the lock file, or None if there is none yet."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _write_pid(fd: int, text: str) -> None:
    """Replace the lock file's content; a full disk only loses the PID, never the lock."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("ascii"), 0)


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of training (``started``) and of each epoch (``epoch_seconds``)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        self.epoch_seconds: list[float] = []
        self._epoch_start = 0.0

    def on_train_begin(self, logs=None) -> None:
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)


class RunRecorder(EpochTimer):
    """After every epoch: ``last.keras``, then history (CSV and JSON) and ``run.json``.

    The epoch's state is a snapshot written in the background, the record after it
    so that ``run.json`` never counts an epoch ``last.keras`` lacks; :meth:`close`
    waits for them and raises a failed write's error.
    """

    def __init__(self, run_dir: Path, history: list[dict[str, Any]], info: ModelInfo) -> None:
        super().__init__()
        self.run_dir, self.history, self.info = run_dir, history, info
        self._saver: BackgroundSaver | None = None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        super().on_epoch_end(epoch, logs)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}, "time_s": self.epoch_seconds[-1]}
        self.history.append(row)
        if self._saver is None:
            self._saver = BackgroundSaver(self.model, self.info)
        rows = list(self.history)
        self._saver.save(self.run_dir / "last.keras", after=lambda: self._record(rows))

    def close(self) -> None:
        """Wait for the last epoch's files; raise the error of a failed write."""
        if self._saver is not None:
            self._saver.close()

    def _record(self, history: list[dict[str, Any]]) -> None:
        write_text_atomic(self.run_dir / "history.json", json.dumps(history, indent=2))
        write_text_atomic(self.run_dir / "history.csv", _to_csv(history))
        self.write_status("running", history)

    def write_status(self, status: str, history: list[dict[str, Any]] | None = None) -> None:
        """Record the run's state and its epochs so far (default: all recorded) in ``run.json``."""
        history = self.history if history is None else history
        best = best_epoch(history)
        record = {
            "status": status,
            "epochs_completed": len(history),
            "best_epoch": best,
            "best_val_loss": None if best is None else history[best - 1]["val_loss"],
        }
        _write_record(self.run_dir, record)


def best_epoch(history: list[dict[str, Any]]) -> int | None:
    """The 1-based epoch of the lowest finite ``val_loss``, or None if there is none."""
    losses = np.array([row.get("val_loss", np.nan) for row in history], dtype=float)
    if not np.isfinite(losses).any():
        return None
    return int(np.nanargmin(np.where(np.isfinite(losses), losses, np.nan))) + 1


def resume_state(history: list[dict[str, Any]]) -> dict[str, float] | None:
    """Best ``val_loss`` so far and epochs since it, for early stopping and checkpointing."""
    best = best_epoch(history)
    if best is None:
        return None
    return {"best": float(history[best - 1]["val_loss"]), "wait": len(history) - best}


def read_history(run_dir: Path, required: bool = False) -> list[dict[str, Any]]:
    """The epochs ``history.json`` records (none if it is missing and not ``required``), each a JSON object of numbers.

    Raises TrainingError naming the file and the first entry that is not, or the file when it is required and missing.
    """
    path = run_dir / "history.json"
    if not path.exists() and not required:
        return []
    history = read_json(path, "history", list)
    for number, row in enumerate(history, 1):
        numbers = isinstance(row, dict) and all(
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in row.values()
        )
        if not numbers:
            raise TrainingError(f"{path}: unreadable history (entry {number} is not a JSON object of numbers)")
    return history


def _to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as CSV text, columns in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_json(path: Path, what: str, kind: type) -> Any:
    """A JSON file of a run directory holding a ``kind`` (dict or list), or a TrainingError naming it."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainingError(f"{path}: no {what} here; is {path.parent} a run directory?") from None
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(value, kind):
        raise TrainingError(f"{path}: unreadable {what} (expected a JSON {kind.__name__})")
    return value
