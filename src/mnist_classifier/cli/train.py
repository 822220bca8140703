"""``train`` and ``tune``: a run from flags to a run directory, and the search for its settings."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from mnist_classifier.cli.common import DataOpt, DatasetOpt, DownloadBars, SetOpt, err, out, print_network, shown
from mnist_classifier.errors import ConfigError
from mnist_classifier.presets import DEFAULT_PRESET, PRESETS

PRESET_CHOICES = ", ".join(f"{name} (the default)" if name == DEFAULT_PRESET else name for name in PRESETS)

if TYPE_CHECKING:  # the CLI imports Keras only for the commands that need it
    import keras
    import optuna

    from mnist_classifier.accel.distribute import Cluster
    from mnist_classifier.config import Config
    from mnist_classifier.pipeline import PreparedData
    from mnist_classifier.runs import RunResult


def train(
    preset: Annotated[
        Optional[str], typer.Option(metavar="NAME", help=f"{PRESET_CHOICES} (see `docs/configuration.md`).")
    ] = None,
    config: Annotated[Optional[Path], typer.Option("--config", metavar="FILE", help="TOML config file.")] = None,
    set_: SetOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    epochs: Annotated[Optional[int], typer.Option(metavar="N", help="Number of epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(metavar="N", help="Random seed (same seed, same weights).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder for run directories.")] = Path("runs"),
    resume: Annotated[
        Optional[Path], typer.Option(metavar="RUN_DIR", help="Continue an interrupted run directory from its last finished epoch (--epochs: new total).")
    ] = None,
    report: Annotated[bool, typer.Option(metavar="", help="Write the run's report (figures, HTML, Markdown) at the end.")] = True,
    distribute: Annotated[
        Optional[str],
        typer.Option(metavar="MODE", help="none (the default) or data-parallel: split each batch over all local devices (GPUs, or the CPU's cores)."),
    ] = None,
    coordinator: Annotated[
        Optional[str], typer.Option(metavar="HOST:PORT", help="Multi-host data-parallel: HOST:PORT of process 0, the same for every process.")
    ] = None,
    num_processes: Annotated[Optional[int], typer.Option(metavar="N", help="Multi-host: how many processes (hosts) take part.")] = None,
    process_id: Annotated[Optional[int], typer.Option(metavar="ID", help="Multi-host: this process's number, 0 to N-1.")] = None,
) -> None:
    """Train a model and record the run (config, history, checkpoints, metrics, report)."""
    from mnist_classifier.pipeline import resume_run, train_run

    if resume is not None and (preset or config or set_ or dataset or data or seed is not None or distribute):
        raise ConfigError("--resume continues a run with its own config.toml: only --epochs may be given with it")
    cluster = _cluster(coordinator, num_processes, process_id, distribute)
    reporter = _EpochReporter()
    try:
        with DownloadBars() as bars, _host_out_dir(cluster, out_dir) as out_dir:
            if resume is not None:
                result = resume_run(resume, [reporter.callback()], reporter.start, epochs, bars)
            else:
                flags = {"training.seed": seed, "training.distribute": distribute}
                settings = _settings(preset, config, set_, dataset, data, epochs, flags)
                result = train_run(settings, out_dir, [reporter.callback()], reporter.start, bars)
    except KeyboardInterrupt:
        if reporter.run_dir is not None:
            err.print(
                f"interrupted; best checkpoint and history kept in {shown(reporter.run_dir)}. "
                f"Continue with: mnist-classifier train --resume {shown(reporter.run_dir)}"
            )
        raise typer.Exit(130) from None
    if cluster and cluster.process_id:
        out.print(f"test accuracy {result.metrics['test_accuracy']:.4f}; process 0 records the run")
        return
    _finish(result, report)


def _settings(
    preset: str | None,
    config: Path | None,
    set_: list[str] | None,
    dataset: str | None,
    data: str | None,
    epochs: int | None,
    flags: dict[str, object] | None = None,
) -> Config:
    """The run's config: preset, file, ``--set`` overrides, then the shortcut flags; checked to fit in memory."""
    from mnist_classifier.config import parse_assignment
    from mnist_classifier.system.memory import check_memory
    from mnist_classifier.presets import resolve_config

    overrides = dict(parse_assignment(item) for item in set_ or [])
    data_path = str(Path(data).expanduser().absolute()) if data else None
    shortcuts = {"data.dataset": dataset, "data.path": data_path, "training.epochs": epochs, **(flags or {})}
    overrides.update({key: value for key, value in shortcuts.items() if value is not None})
    settings = resolve_config(preset, config, overrides)
    check_memory(settings.model, settings.training.batch_size)
    return settings


def _finish(result: RunResult, report: bool) -> None:
    """Print a finished run's test figures and write its report."""
    metrics = result.metrics
    out.print(
        f"[bold]test accuracy {metrics['test_accuracy']:.4f}[/], loss {metrics['test_loss']:.4f} "
        f"after {metrics['epochs']} epoch{'s' * (metrics['epochs'] != 1)} (best {metrics['best_epoch']}) "
        f"in {metrics['timings']['total_s']:.1f} s; run saved in {shown(result.run_dir)}"
    )
    if report:
        from mnist_classifier.report import write_report

        out.print(f"report: {shown(write_report(result.run_dir))}")


def tune(
    preset: Annotated[Optional[str], typer.Option(metavar="NAME", help="The preset to search around (default: mlp).")] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", metavar="FILE", help="TOML config file (its tune.space table sets the search space).")
    ] = None,
    set_: SetOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    epochs: Annotated[Optional[int], typer.Option(metavar="N", help="Epochs per trial (and for the retrained best).")] = None,
    trials: Annotated[int, typer.Option(metavar="N", help="Trials to run now (0: only retrain the study's best).")] = 20,
    timeout: Annotated[Optional[float], typer.Option(metavar="SECONDS", help="Start no trial after this many seconds.")] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(metavar="URL", help="Where the study lives: an SQLAlchemy URL, e.g. postgresql://user:pw@host/db (default: SQLite in --out)."),
    ] = None,
    study: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="Study name; the same storage and name continue a search (default: PRESET-DATASET).")
    ] = None,
    jobs: Annotated[int, typer.Option(metavar="N", help="Worker processes on this machine.")] = 1,
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder for the run directory (and the default SQLite study).")
    ] = Path("runs"),
    retrain: Annotated[bool, typer.Option(metavar="", help="Retrain the best trial's settings as a normal run at the end.")] = True,
    report: Annotated[bool, typer.Option(metavar="", help="Write the retrained run's report, with the search's plots.")] = True,
) -> None:
    """Search hyperparameters with Optuna on held-out validation images; retrain and save the best."""
    from mnist_classifier.pipeline import train_run
    from mnist_classifier.runs import check_output_dir
    from mnist_classifier.tune import Search, best_config, default_storage, record_search, redact, run_search

    settings = _settings(preset, config, set_, dataset, data, epochs)
    check_output_dir(out_dir)
    name = study or f"{settings.preset}-{settings.data.dataset}"
    plan = Search(storage or default_storage(out_dir), name, trials, timeout, jobs)
    out.print(f"study {shown(repr(plan.study))} in {shown(redact(plan.storage))}: {trials} more trial(s), {jobs} worker(s)")
    try:
        with DownloadBars() as bars:
            found = run_search(settings, plan, _print_trial, bars)
            out.print(f"study {shown(repr(plan.study))}: {_states(found)}")
            if not retrain:
                return
            best = best_config(settings, found)
            out.print(f"best trial {found.best_trial.number}: validation accuracy {found.best_value:.4f}; retraining it")
            reporter = _EpochReporter()
            result = train_run(best, out_dir, [reporter.callback()], reporter.start, bars)
            record_search(found, plan, result.run_dir)
    except KeyboardInterrupt:
        err.print("interrupted; the study keeps its finished trials: run the same command to continue")
        raise typer.Exit(130) from None
    _finish(result, report)


def _print_trial(trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial: number, state, value, parameters."""
    from mnist_classifier.tune import value_text

    params = ", ".join(
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}" for name, value in trial.params.items()
    )
    out.print(f"trial {trial.number} {trial.state.name.lower()}: val_acc {value_text(trial.value)}  {shown(params)}")


def _states(study: optuna.Study) -> str:
    """How many of the study's trials ended in each state, as text."""
    from mnist_classifier.tune import finished_summary

    return ", ".join(f"{count} {state}" for state, count in finished_summary(study).items())


def _cluster(
    coordinator: str | None, num_processes: int | None, process_id: int | None, distribute: str | None
) -> Cluster | None:
    """The multi-host job this process joins (and joins it), or None without the flags."""
    from mnist_classifier.accel.distribute import Cluster, join_cluster

    given = [flag for flag, value in (("--coordinator", coordinator), ("--num-processes", num_processes),
                                      ("--process-id", process_id)) if value is not None]  # fmt: skip
    if not given:
        return None
    if len(given) < 3:
        raise ConfigError(f"multi-host training needs --coordinator, --num-processes and --process-id; got only {', '.join(given)}")
    if distribute != "data-parallel":
        raise ConfigError("--coordinator, --num-processes and --process-id go with --distribute data-parallel")
    cluster = Cluster(coordinator, num_processes, process_id)
    join_cluster(cluster)
    return cluster


@contextlib.contextmanager
def _host_out_dir(cluster: Cluster | None, out_dir: Path) -> Iterator[Path]:
    """Where this process records the run: ``out_dir`` for process 0, a scratch folder (removed after) for the others."""
    if cluster is None or cluster.process_id == 0:
        yield out_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"mnist-classifier-process-{cluster.process_id}-") as scratch:
        yield Path(scratch)


class _EpochReporter:
    """Prints where a run goes and one line per finished epoch."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.epochs = 0

    def start(self, run_dir: Path, data: PreparedData, config: Config) -> None:
        """Announce the run."""
        self.run_dir, self.epochs = run_dir, config.training.epochs
        val = "none" if data.validation is None else str(len(data.validation[1]))
        out.print(f"data: {shown(data.source)}")
        out.print(f"train {len(data.train[1])}, validation {val}, test {len(data.test[1])}; run directory {shown(run_dir)}")
        if config.training.distribute != "none":
            from mnist_classifier.accel.distribute import device_count

            out.print(f"{config.training.distribute}: each batch split over {device_count()} devices")
        from mnist_classifier.accel import convolutions_note

        note = convolutions_note(config)
        if note:
            out.print(f"convolutions: {note}")

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback printing the network before the first epoch, then each epoch's figures."""
        import keras

        from mnist_classifier.models import network_summary

        callback = keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: print_network(out, network_summary(callback.model)), on_epoch_end=self.epoch
        )
        return callback

    def epoch(self, epoch: int, logs: dict | None) -> None:
        """One line of figures for a finished epoch."""
        names = [("loss", "loss {:.4f}"), ("accuracy", "acc {:.4f}"), ("val_loss", "val_loss {:.4f}"),
                 ("val_accuracy", "val_acc {:.4f}"), ("learning_rate", "lr {:.2e}")]  # fmt: skip
        figures = "  ".join(fmt.format(logs[key]) for key, fmt in names if key in (logs or {}))
        out.print(f"epoch {epoch + 1}/{self.epochs}  {figures}")
