"""Hyperparameter search on Optuna: trials on held-out validation images, pruning, resumable studies, the best retrained."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import re
import time
import urllib.parse
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import optuna

from mnist_classifier.config import Config, apply_overrides
from mnist_classifier.errors import ConfigError, MnistClassifierError, first_line
from mnist_classifier.system.files import write_text_atomic
from mnist_classifier.models import build_from_config, input_shape
from mnist_classifier.pipeline import PreparedData, fit, prepare_data
from mnist_classifier.runs import exclusive_lock
from mnist_classifier.training import compile_network

# Trials the median pruner lets finish before it compares, and epochs it waits within each trial.
PRUNER_STARTUP_TRIALS = 3
PRUNER_WARMUP_EPOCHS = 1
SQLITE_FILE = "tune.db"
OPEN_ATTEMPTS = 3
# Query-string parameters of a storage URL whose values are secrets (password=, sslpassword=, token=, ...).
SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)
TrialReport = Callable[[optuna.trial.FrozenTrial], None]


@dataclass(frozen=True)
class Search:
    """Where a search is kept and how much of it to run now."""

    storage: str
    study: str
    trials: int
    timeout: float | None = None
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.trials < 0:
            raise ConfigError(f"--trials {self.trials}: expected 0 or more")
        if self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs}: expected at least 1")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout {self.timeout}: expected seconds > 0")


def default_storage(out: Path) -> str:
    """SQLite in the runs folder: an embedded file, nothing to start."""
    return f"sqlite:///{(out / SQLITE_FILE).absolute()}"


def trial_config(base: Config) -> Config:
    """The config trials train with: the base one, validated on images held out of the training set."""
    if base.data.validation == "holdout":
        return base
    return dataclasses.replace(base, data=dataclasses.replace(base.data, validation="holdout"))


def suggest(trial: optuna.Trial, base: Config) -> dict[str, Any]:
    """One point of ``base.tune.space`` chosen by ``trial``, as ``section.key`` overrides."""
    chosen = {}
    for name, spec in base.tune.space.items():
        if "choices" in spec:
            # Optuna's choices must be plain values: lists (e.g. layer widths) go by their text.
            labels = {json.dumps(choice): choice for choice in spec["choices"]}
            chosen[name] = labels[trial.suggest_categorical(name, list(labels))]
            continue
        section, _, key = name.partition(".")
        integer = isinstance(getattr(getattr(base, section), key), int)
        kind = trial.suggest_int if integer else trial.suggest_float
        extra = {"step": spec["step"]} if spec.get("step") is not None else {}
        chosen[name] = kind(name, spec["low"], spec["high"], log=bool(spec.get("log")), **extra)
    return chosen


def params_config(base: Config, params: dict[str, Any]) -> Config:
    """``base`` with a trial's parameters (as Optuna stored them) applied."""
    decoded = {}
    for name, value in params.items():
        spec = base.tune.space.get(name, {})
        decoded[name] = json.loads(value) if "choices" in spec and isinstance(value, str) else value
    return apply_overrides(trial_config(base), decoded)


class _Pruning(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy to the trial; stops the trial when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.trial.report(float(logs["val_accuracy"]), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


def objective(base: Config, data: PreparedData) -> Callable[[optuna.Trial], float]:
    """Train one trial's network on the training images; its value is the best validation accuracy."""

    def run_trial(trial: optuna.Trial) -> float:
        config = apply_overrides(base, suggest(trial, base))
        keras.utils.set_random_seed(config.training.seed)
        network = build_from_config(config.model)
        compile_network(network, config, len(data.train[1]))
        history = keras.callbacks.History()
        fit(config, network, data, [_Pruning(trial), history])
        return max(history.history["val_accuracy"])

    return run_trial


def open_study(search: Search) -> optuna.Study:
    """The named study in the storage, created if new: maximizing validation accuracy, median pruning.

    Workers starting together on a new database race to create Optuna's tables:
    for SQLite they take turns under a lock file beside the database
    (``tune.db.lock``), and any storage is retried a few times before its error
    is reported as one line, with the URL's secrets masked (see ``redact``).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _sqlite_lock(search.storage):
        for attempt in range(OPEN_ATTEMPTS):
            try:
                pruner = optuna.pruners.MedianPruner(PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS)
                return optuna.create_study(
                    storage=_storage(search.storage), study_name=search.study, direction="maximize",
                    load_if_exists=True, pruner=pruner,
                )  # fmt: skip
            except ImportError as exc:
                raise ConfigError(
                    f"--storage {redact(search.storage)}: its database driver is not installed "
                    f"({redact(search.storage, str(exc))})"
                ) from None
            except Exception as exc:  # SQLAlchemy's errors: bad URL, server down, wrong password, a racing worker
                failure = exc
                time.sleep(attempt + 1)
    reason = redact(search.storage, first_line(failure))
    raise ConfigError(f"--storage {redact(search.storage)}: cannot open the study ({reason})") from None


def _storage(url: str) -> str | optuna.storages.RDBStorage:
    """Optuna's storage for ``url``: SQLite waits up to a minute for the file's lock held by another process."""
    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return url


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    """Within: this process alone opens the SQLite database of ``url`` (others wait); no lock for other storages."""
    scheme, _, database = url.partition(":///")  # sqlite:///relative/path or sqlite:////absolute/path
    database = database.partition("?")[0]
    with contextlib.ExitStack() as stack:
        if scheme.startswith("sqlite") and database not in ("", ":memory:"):
            with contextlib.suppress(OSError):  # a missing or read-only folder: SQLite's own error will say so
                stack.enter_context(exclusive_lock(Path(f"{database}.lock")))
        yield


def redact(url: str, text: str | None = None) -> str:
    """The storage URL with its secrets masked, or ``text`` (e.g. a driver's error) with every echo of them masked.

    The secrets are the password of the URL's ``user:password@`` part (everything
    to the last ``@``, so an unencoded ``@`` in it stays hidden too) and the values
    of query parameters such as ``password=``, ``sslpassword=`` or ``token=``. In
    ``text``, each secret and each part of the password split at its ``@`` (a
    driver may read one as the host), as written, URL-decoded or URL-encoded, is
    masked where it stands alone (not inside a longer word).

        >>> redact("postgresql://me:pw@db/x?user=me&password=S3cret")
        'postgresql://me:***@db/x?user=me&password=***'
    """
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@") if sep else ("", "", rest)
    user, colon, password = credentials.partition(":")
    address, question, query = host.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    hidden = [value for key, value in pairs if SECRET_PARAMETER.search(key) and value]
    if text is not None:
        return _mask(text, [password, *urllib.parse.unquote(password).split("@"), *hidden] if colon else hidden)
    if colon and password:
        credentials = f"{user}:***"
    if hidden:
        masked = [(key, "***" if SECRET_PARAMETER.search(key) and value else value) for key, value in pairs]
        query = urllib.parse.urlencode(masked, safe="*")
    return f"{scheme}{sep}{credentials}{at}{address}{question}{query}"


def _mask(text: str, secrets: list[str]) -> str:
    """``text`` with each secret (as written, URL-decoded and URL-encoded) replaced by ``***`` where it stands alone."""
    plain = {urllib.parse.unquote(secret) for secret in secrets if secret}
    forms = {*filter(None, secrets), *plain, *(urllib.parse.quote(secret, safe="") for secret in plain)}
    for form in sorted(forms, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", "***", text)
    return text


def run_search(base: Config, search: Search, report: TrialReport | None = None, progress=None) -> optuna.Study:
    """Run ``search.trials`` more trials of the study (``search.jobs`` processes), then return it."""
    base = trial_config(base)
    open_study(search)  # created once, before any worker starts
    shares = [search.trials // search.jobs + (index < search.trials % search.jobs) for index in range(search.jobs)]
    shares = [share for share in shares if share]
    if len(shares) <= 1:
        _work(base, dataclasses.replace(search, trials=sum(shares)), report, progress)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(len(shares)) as pool:
            # Each worker reports its own trials (a module-level function travels to it by name).
            pool.starmap(_work, [(base, dataclasses.replace(search, trials=share), report, None) for share in shares])
    return open_study(search)


def _work(base: Config, search: Search, report: TrialReport | None, progress) -> None:
    """One worker: prepare the data once, then run its trials."""
    if not search.trials:
        return
    study = open_study(search)
    data = prepare_data(base.data, input_shape(base.model), progress)
    callbacks = [lambda _study, trial: report(trial)] if report else []
    study.optimize(
        objective(base, data), n_trials=search.trials, timeout=search.timeout, callbacks=callbacks,
        catch=(MnistClassifierError,),
    )  # fmt: skip


def best_config(base: Config, study: optuna.Study) -> Config:
    """``base`` with the best finished trial's parameters, or an error when no trial has finished."""
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise MnistClassifierError(f"study {study.study_name!r} has no finished trial yet: run some with --trials N")
    return params_config(base, study.best_trial.params)


def record_search(study: optuna.Study, search: Search, run_dir: Path) -> Path:
    """``RUN_DIR/tune/``: the study's trials as JSON and Optuna's plots (history, parameter importances)."""
    out = run_dir / "tune"
    out.mkdir(exist_ok=True)
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
         "epochs": len(t.intermediate_values)}
        for t in study.trials
    ]  # fmt: skip
    summary = {
        "study": study.study_name, "storage": redact(search.storage), "direction": "maximize",
        "objective": "best validation accuracy of the trial", "best_trial": study.best_trial.number,
        "best_value": study.best_value, "best_params": study.best_params, "trials": trials,
    }  # fmt: skip
    write_text_atomic(out / "tune.json", json.dumps(summary, indent=2))
    _plot(study, out)
    return out


def _plot(study: optuna.Study, out: Path) -> None:
    """Optuna's optimization history and (with two or more finished trials) parameter importances as PNGs."""
    from optuna.visualization import matplotlib as plots

    from mnist_classifier.report import save_figure

    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        drawings = {"history.png": plots.plot_optimization_history}
        if len(finished) >= 2 and len(study.best_params) > 1:
            drawings["importances.png"] = plots.plot_param_importances
        for name, draw in drawings.items():
            figure = draw(study).figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()  # room for the long setting names
            save_figure(figure, out / name)


def finished_summary(study: optuna.Study) -> dict[str, int]:
    """How many trials of the study ended in each state."""
    return dict(Counter(trial.state.name.lower() for trial in study.trials))


def value_text(value: float | None) -> str:
    """A trial value for people: a percentage, or a dash."""
    return "-" if value is None or math.isnan(value) else f"{value:.2%}"

