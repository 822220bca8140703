"""Run directories: the complete, reproducible record of a training run.

- ``config.toml``: the resolved config (``train --config`` it to repeat the run)
- ``run.json``: status (running, completed, interrupted), epochs done, best epoch
- ``history.csv`` / ``history.json``: per-epoch loss, accuracy, validation, learning rate, time
- ``best.keras``: the best-``val_loss`` checkpoint; ``model.keras``: the final model
- ``last.keras``: the state after the last finished epoch, for ``train --resume``
- ``metrics.json``: test loss and accuracy, per-class scores, timings, versions, backend, seed

Every file is written atomically, so an interrupted run leaves each one intact.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_classifier.config import Config
from mnist_classifier.errors import TrainingError
from mnist_classifier.files import write_text_atomic
from mnist_classifier.model_info import ModelInfo
from mnist_classifier.persistence import save_model


def check_output_dir(out: Path) -> None:
    """Create the folder for run directories now, so a bad ``--out`` fails before training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"{out}: cannot create the output folder ({exc.strerror})") from None


def new_run_dir(out: Path, config: Config) -> Path:
    """A fresh, uniquely named run directory under ``out``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out / f"{stamp}-{config.preset}-{config.data.dataset}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    run_dir.mkdir(parents=True)
    return run_dir


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
    """After every epoch: history (CSV and JSON), ``last.keras`` and ``run.json``."""

    def __init__(self, run_dir: Path, history: list[dict[str, Any]], info: ModelInfo) -> None:
        super().__init__()
        self.run_dir, self.history, self.info = run_dir, history, info

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        super().on_epoch_end(epoch, logs)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}, "time_s": self.epoch_seconds[-1]}
        self.history.append(row)
        save_model(self.model, self.run_dir / "last.keras", self.info)
        write_text_atomic(self.run_dir / "history.json", json.dumps(self.history, indent=2))
        write_text_atomic(self.run_dir / "history.csv", _to_csv(self.history))
        self.write_status("running")

    def write_status(self, status: str) -> None:
        """Record the run's state in ``run.json``."""
        best = best_epoch(self.history)
        record = {
            "status": status,
            "epochs_completed": len(self.history),
            "best_epoch": best,
            "best_val_loss": None if best is None else self.history[best - 1]["val_loss"],
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_text_atomic(self.run_dir / "run.json", json.dumps(record, indent=2))


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
