"""The ``mnist-classifier`` command: parse flags, build one config, call the library, print."""

from __future__ import annotations

import contextlib
import ctypes
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.markup import escape
from rich.table import Table

from mnist_classifier.inference.bundled import DEFAULT_MODEL
from mnist_classifier.accel.compilation import enable_compilation_cache
from mnist_classifier.errors import ConfigError, MnistClassifierError

if TYPE_CHECKING:  # the CLI imports Keras only for the commands that need it
    import keras
    import optuna

    from mnist_classifier.config import Config
    from mnist_classifier.accel.distribute import Cluster
    from mnist_classifier.pipeline import PreparedData
    from mnist_classifier.runs import RunResult

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train, evaluate and inspect Keras classifiers for MNIST and Fashion-MNIST.",
)
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
# C0 controls, DEL, C1 controls, and the surrogates Python decodes a file name's undecodable bytes to
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # glibc's mallopt parameter numbers

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
ModelArg = Annotated[Path, typer.Argument(help="A .keras file or a bundled model's name (see `models`).")]
InferenceModelArg = Annotated[
    Path, typer.Argument(help="A .keras or .onnx file, or a bundled model's name (see `models`).")
]
RuntimeOpt = Annotated[
    Optional[str],
    typer.Option(help="keras or onnx (onnxruntime; a .keras model is exported once, cached). Default: by file type."),
]
NormalizeOpt = Annotated[
    Optional[str],
    typer.Option(help="scale, l2 or standardize: for models not written by this tool (e.g. the notebook's: l2)."),
]


def _shown(value: object) -> str:
    """``value`` as text to print inside Rich markup, as it is and on one line.

    Control characters and undecodable bytes are written as Python writes them in
    a string's repr (``evil\\x1b[31m.png``, ``new\\nline.png``), so that a file
    name can neither colour the terminal nor forge a line of output; markup is
    escaped, so that ``[bold]`` in a name is printed as it is.
    """
    return escape(_UNPRINTABLE.sub(lambda char: repr(char.group())[1:-1], str(value)))


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """Train, evaluate and inspect Keras classifiers for MNIST and Fashion-MNIST."""
    if ctx.invoked_subcommand is None:
        out.print(ctx.get_help())


@app.command()
def info(
    dataset: DatasetOpt = "mnist",
    data: DataOpt = None,
    as_json: JsonOpt = False,
    show: Annotated[Optional[int], typer.Option(min=1, max=50, help="Draw N sample images per class into a PNG.")] = None,
    grid: Annotated[Optional[Path], typer.Option("--out", help="Where --show draws (default: samples-DATASET.png).")] = None,
) -> None:
    """Where the data came from, shapes, dtypes, class counts and pixel statistics."""
    from mnist_classifier.data.sources import read_dataset, summarize

    with _DownloadBars() as bars:
        loaded = read_dataset(dataset or "mnist", data, progress=bars)
    if show is not None:
        from mnist_classifier.report import sample_grid

        err.print(f"samples: {_shown(sample_grid(loaded, show, grid or Path(f'samples-{loaded.name}.png')))}")
    summary = summarize(loaded)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"[bold]{loaded.name}[/] from {_shown(loaded.source)}")
    for name, split in summary["splits"].items():
        out.print(
            f"{name}: x {split['x_shape']} {split['x_dtype']}, y {split['y_shape']} {split['y_dtype']}\n"
            f"  pixels min {split['pixels']['min']} max {split['pixels']['max']} "
            f"mean {split['pixels']['mean']:.2f} std {split['pixels']['std']:.2f}"
        )
    table = Table("label", "class", "train", "test", title="Images per class")
    for label, name in enumerate(loaded.classes):
        table.add_row(str(label), name, *(str(split["class_counts"][label]) for split in summary["splits"].values()))
    out.print(table)


@app.command()
def train(
    preset: Annotated[
        Optional[str], typer.Option(help="notebook, mlp (the default), cnn or cnn-augmented.")
    ] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML config file.")] = None,
    set_: SetOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Number of epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (same seed, same weights).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for run directories.")] = Path("runs"),
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue an interrupted run directory from its last finished epoch (--epochs: new total).")
    ] = None,
    report: Annotated[bool, typer.Option(help="Write the run's report (figures, HTML, Markdown) at the end.")] = True,
    distribute: Annotated[
        Optional[str],
        typer.Option(help="data-parallel: split each batch over all local devices (GPUs, or the CPU's cores)."),
    ] = None,
    coordinator: Annotated[
        Optional[str], typer.Option(help="Multi-host data-parallel: HOST:PORT of process 0, the same for every process.")
    ] = None,
    num_processes: Annotated[Optional[int], typer.Option(help="Multi-host: how many processes (hosts) take part.")] = None,
    process_id: Annotated[Optional[int], typer.Option(help="Multi-host: this process's number, 0 to N-1.")] = None,
) -> None:
    """Train a model and record the run (config, history, checkpoints, metrics, report)."""
    from mnist_classifier.pipeline import resume_run, train_run

    if resume is not None and (preset or config or set_ or dataset or data or seed is not None or distribute):
        raise ConfigError("--resume continues a run with its own config.toml: only --epochs may be given with it")
    cluster = _cluster(coordinator, num_processes, process_id, distribute)
    enable_compilation_cache()
    reporter = _EpochReporter()
    try:
        with _DownloadBars() as bars, _host_out_dir(cluster, out_dir) as out_dir:
            if resume is not None:
                result = resume_run(resume, [reporter.callback()], reporter.start, epochs, bars)
            else:
                flags = {"training.seed": seed, "training.distribute": distribute}
                settings = _settings(preset, config, set_, dataset, data, epochs, flags)
                result = train_run(settings, out_dir, [reporter.callback()], reporter.start, bars)
    except KeyboardInterrupt:
        if reporter.run_dir is not None:
            err.print(
                f"interrupted; best checkpoint and history kept in {_shown(reporter.run_dir)}. "
                f"Continue with: mnist-classifier train --resume {_shown(reporter.run_dir)}"
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
        f"after {metrics['epochs']} epochs (best {metrics['best_epoch']}) "
        f"in {metrics['timings']['total_s']:.1f} s; run saved in {_shown(result.run_dir)}"
    )
    if report:
        from mnist_classifier.report import write_report

        out.print(f"report: {_shown(write_report(result.run_dir))}")


@app.command()
def tune(
    preset: Annotated[Optional[str], typer.Option(help="The preset to search around (default: mlp).")] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="TOML config file (its tune.space table sets the search space).")
    ] = None,
    set_: SetOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per trial (and for the retrained best).")] = None,
    trials: Annotated[int, typer.Option(help="Trials to run now (0: only retrain the study's best).")] = 20,
    timeout: Annotated[Optional[float], typer.Option(help="Start no trial after this many seconds.")] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(help="Where the study lives: an SQLAlchemy URL, e.g. postgresql://user:pw@host/db (default: SQLite in --out)."),
    ] = None,
    study: Annotated[
        Optional[str], typer.Option(help="Study name; the same storage and name continue a search (default: PRESET-DATASET).")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the run directory (and the default SQLite study).")
    ] = Path("runs"),
    retrain: Annotated[bool, typer.Option(help="Retrain the best trial's settings as a normal run at the end.")] = True,
    report: Annotated[bool, typer.Option(help="Write the retrained run's report, with the search's plots.")] = True,
) -> None:
    """Search hyperparameters with Optuna on held-out validation images; retrain and save the best."""
    from mnist_classifier.pipeline import train_run
    from mnist_classifier.runs import check_output_dir
    from mnist_classifier.tune import Search, best_config, default_storage, record_search, redact, run_search

    settings = _settings(preset, config, set_, dataset, data, epochs)
    check_output_dir(out_dir)
    name = study or f"{settings.preset}-{settings.data.dataset}"
    plan = Search(storage or default_storage(out_dir), name, trials, timeout, jobs)
    enable_compilation_cache()
    out.print(f"study {_shown(repr(plan.study))} in {_shown(redact(plan.storage))}: {trials} more trial(s), {jobs} worker(s)")
    try:
        with _DownloadBars() as bars:
            found = run_search(settings, plan, _print_trial, bars)
            out.print(f"study {_shown(repr(plan.study))}: {_states(found)}")
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
    out.print(f"trial {trial.number} {trial.state.name.lower()}: val_acc {value_text(trial.value)}  {_shown(params)}")


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


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: DataOpt = None,
) -> None:
    """Learning curves, confusion matrix, misclassified digits and per-class scores as PNGs, HTML and Markdown."""
    from mnist_classifier.report import write_report

    enable_compilation_cache()
    with _DownloadBars():
        out.print(f"report: {_shown(write_report(run_dir, data))}")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Finished run directories.")],
    plot: Annotated[Path, typer.Option("--out", help="Where to draw the validation curves.")] = Path("compare.png"),
) -> None:
    """Runs side by side: the settings that differ, accuracy, loss, epochs, time; and their validation curves."""
    from mnist_classifier.report import compare_runs

    header, rows = compare_runs(run_dirs, plot)
    table = Table(*map(_shown, header), title="Runs side by side")
    for row in rows:
        table.add_row(*map(_shown, row))
    out.print(table)
    out.print(f"validation curves: {_shown(plot)}")


class _EpochReporter:
    """Prints where a run goes and one line per finished epoch."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.epochs = 0

    def start(self, run_dir: Path, data: PreparedData, config: Config) -> None:
        """Announce the run."""
        self.run_dir, self.epochs = run_dir, config.training.epochs
        val = "none" if data.validation is None else str(len(data.validation[1]))
        out.print(f"data: {_shown(data.source)}")
        out.print(f"train {len(data.train[1])}, validation {val}, test {len(data.test[1])}; run directory {_shown(run_dir)}")
        if config.training.distribute != "none":
            from mnist_classifier.accel.distribute import device_count

            out.print(f"{config.training.distribute}: each batch split over {device_count()} devices")
        if config.model.architecture == "cnn" and config.training.engine == "auto":
            from mnist_classifier.accel.fast_ops import convolutions_note

            note = convolutions_note(config.model.precision)
            if note:
                out.print(f"convolutions: {note}")

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback printing each epoch's figures."""
        import keras

        return keras.callbacks.LambdaCallback(on_epoch_end=self.epoch)

    def epoch(self, epoch: int, logs: dict | None) -> None:
        """One line of figures for a finished epoch."""
        names = [("loss", "loss {:.4f}"), ("accuracy", "acc {:.4f}"), ("val_loss", "val_loss {:.4f}"),
                 ("val_accuracy", "val_acc {:.4f}"), ("learning_rate", "lr {:.2e}")]  # fmt: skip
        figures = "  ".join(fmt.format(logs[key]) for key, fmt in names if key in (logs or {}))
        out.print(f"epoch {epoch + 1}/{self.epochs}  {figures}")


@app.command()
def evaluate(
    model: ModelArg,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    normalize: NormalizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix on the test set."""
    from mnist_classifier.pipeline import evaluate_file

    with _DownloadBars() as bars:
        enable_compilation_cache()
        result, record = evaluate_file(model, dataset, data, normalize, progress=bars)
    if as_json:
        out.print_json(json.dumps({"model": str(model), "dataset": record.dataset, **result.to_dict()}))
        return
    out.print(f"[bold]{_shown(model)}[/] on {_shown(record.dataset)} test set ({record.normalization.mode} normalization)")
    out.print(f"loss {result.loss:.4f}  accuracy {result.accuracy:.4f}")
    scores = Table("class", "precision", "recall", "f1", "support", title="Per class")
    for row in result.to_dict()["per_class"]:
        scores.add_row(_shown(row["class"]), f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    out.print(scores)
    confusion = Table("true \\ predicted", *[str(i) for i in range(len(result.classes))], title="Confusion matrix")
    for label, row in enumerate(result.confusion):
        confusion.add_row(f"{label} {_shown(result.classes[label])}", *(str(n) for n in row))
    out.print(confusion)


class _DownloadBars:
    """Rich progress bars for data set downloads, one per file, shown only if one starts."""

    def __init__(self) -> None:
        self.bars: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _DownloadBars:
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


RejectOpt = Annotated[
    Optional[float],
    typer.Option(
        "--reject-below", min=0.0, max=1.0,
        help="Reject a picture whose digit score (calibrated top probability) is under this. Default: the model's own threshold.",
    ),
]  # fmt: skip


@app.command()
def predict(
    model: InferenceModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, WebP) or folders of them.", readable=False)
    ],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many classes to list per image.")] = 3,
    dataset: DatasetOpt = None,
    normalize: NormalizeOpt = None,
    runtime: RuntimeOpt = None,
    reject_below: RejectOpt = None,
    show_input: Annotated[
        Optional[Path], typer.Option("--show-input", help="Write each 28×28 input the model is given as a PNG into this folder.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read pictures: every digit of a number left to right (photos, uneven light, any size), or one item."""
    from mnist_classifier.inference.images import SUFFIXES, image_paths
    from mnist_classifier.inference.predict import Classifier

    enable_compilation_cache()
    classifier = Classifier.load(model, dataset, normalize, runtime, reject_below=reject_below)
    records: list[dict] = []
    readings = []
    for path in images:  # a file that cannot be read is one error among the answers, as a bad picture is
        try:
            files = image_paths(path)
        except MnistClassifierError as exc:
            files = []
            records.append({"file": str(path), "error": str(exc)})
        else:
            if not files:
                records.append({"file": str(path), "error": f"{path}: no {', '.join(SUFFIXES)} files in this folder"})
        for file in files:
            try:
                readings.append((len(records), classifier.read(file, str(file))))
                records.append({"file": str(file)})
            except MnistClassifierError as exc:
                records.append({"file": str(file), "error": str(exc)})
    if readings:
        slots, found = zip(*readings)
        answers = classifier.answer(found, [records[i]["file"] for i in slots], top_k)
        for slot, answer in zip(slots, answers):
            records[slot] = answer.to_dict()
        if show_input is not None:
            _write_inputs(answers, show_input)
    failed = [record["error"] for record in records if "error" in record]
    for message in failed:
        err.print(f"error: {_shown(message)}")
    if as_json:
        out.print_json(json.dumps(records))
    else:
        for record in (r for r in records if "error" not in r):  # one line per file: easy to grep
            out.print(_answer_line(record, top_k))
    if failed:
        raise typer.Exit(1)


def _answer_line(record: dict, top_k: int) -> str:
    """``photo.jpg: 2026 (0.97)``, with the top k for one digit, or why the picture was rejected."""
    name = _shown(record["file"])
    if record["rejected"]:
        return f"{name}: [bold]not read[/]: {_shown(record['reason'])}"
    line = f"{name}: [bold]{_shown(record['name'])}[/] ({record['probability']:.4f})"
    if record["top"]:
        top = ", ".join(f"{t['name']} {t['probability']:.3f}" for t in record["top"])
        line += f"  top {top_k}: {_shown(top)}"
    return line


def _write_inputs(answers, folder: Path) -> None:
    """Each digit's 28×28 input as ``<picture>-<n>.png`` in ``folder`` (created if missing)."""
    from PIL import Image

    from mnist_classifier.system.files import atomic_path

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--show-input {folder}: cannot create the folder ({exc.strerror or exc})") from None
    for answer in answers:
        for index, digit in enumerate(answer.digits, 1):
            with atomic_path(folder / f"{Path(answer.source).stem}-{index}.png", ".png") as temp:
                Image.fromarray(digit.image).save(temp, "PNG")


@app.command()
def serve(
    model: Annotated[
        Path, typer.Argument(help="A .keras or .onnx file, or a bundled model's name (see `models`).")
    ] = Path(DEFAULT_MODEL),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    runtime: RuntimeOpt = None,
    reject_below: RejectOpt = None,
) -> None:
    """Serve the model over HTTP: POST /predict, /predict/batch; GET /model, /health, /docs; a drawing page at /."""
    from mnist_classifier.inference.predict import Classifier
    from mnist_classifier.serving.app import serve as run_service

    enable_compilation_cache()
    classifier = Classifier.load(model, runtime=runtime, reject_below=reject_below)
    err.print(f"serving {_shown(model)} on http://{host}:{port}/ (drawing page), API docs at /docs; Ctrl-C stops")
    run_service(classifier, host, port)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """The trained models shipped with the package: usable by name wherever a model file is accepted."""
    from mnist_classifier.inference.bundled import bundled_models

    rows = bundled_models()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("name", "dataset", "preset", "accuracy", "epochs", "size", box=box.SIMPLE_HEAD)
    for row in rows:
        accuracy = "missing" if row["test_accuracy"] is None else f"{row['test_accuracy']:.2%}"
        size = "" if row["size_bytes"] is None else f"{row['size_bytes'] / 2**20:.1f} MB"
        table.add_row(row["name"], row["dataset"], row["preset"], accuracy, str(row["epochs"] or ""), size)
    out.print(table)
    for row in rows:  # below the table, so that an 80-column terminal squeezes nothing
        out.print(f"[bold]{row['name']}[/]: {row['summary']}", highlight=False)


@app.command()
def export(
    model: ModelArg,
    fmt: Annotated[str, typer.Option("--format", help="Only onnx for now.")] = "onnx",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Where to write (default: MODEL with .onnx).")] = None,
) -> None:
    """Export a model to ONNX through Keras's exporter, checked against Keras on onnxruntime before it is kept."""
    from mnist_classifier.inference.bundled import model_path
    from mnist_classifier.system.files import check_output
    from mnist_classifier.inference.onnx_export import check_target, export_onnx
    from mnist_classifier.inference.predict import open_model

    if fmt != "onnx":
        raise ConfigError(f"--format {fmt}: expected onnx")
    path = model_path(model)
    target = out_file or (path.with_suffix(".onnx") if path == model else Path(f"{model}.onnx"))
    network, _, info = open_model(path, runtime="keras")
    check_output(check_target(target))
    err.print(f"exporting {_shown(model)} to {_shown(target)} ...")
    export_onnx(network, target, info)
    out.print(f"{_shown(target)} ({target.stat().st_size / 2**20:.1f} MB), checked against Keras on onnxruntime")


def _tune_malloc(arenas: int = 2, mmap_threshold: int = 4 << 20) -> None:
    """Keep glibc's malloc from holding memory it no longer needs.

    XLA compiles on many threads, and each arena keeps its peak: cap the arenas. And
    glibc raises its mmap threshold after each large free, so the large buffers
    that come and go (checkpoints, XLA's temporaries) stay in the heap and fragment
    it, growing the process epoch after epoch: a fixed threshold returns them to the
    system (measured: peak RSS of 5 epochs of mlp 667 MB -> 513 MB, the same speed).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def main() -> None:
    """Entry point: errors become one line on stderr (exit 1; 2 for command-line usage)."""
    _tune_malloc()
    try:
        code = app(standalone_mode=False)
    except MnistClassifierError as exc:
        err.print(f"error: {_shown(exc)}")
        sys.exit(1)
    except typer.TyperException as exc:  # bad flags or values on the command line
        err.print(f"error: {_shown(exc.format_message())} (see --help)")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
