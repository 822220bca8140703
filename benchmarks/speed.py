"""CPU training and inference speed, each figure next to a reference run in the same invocation.

Usage (from the project root; sections with --only, repeatable):

    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python benchmarks/speed.py
    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python benchmarks/speed.py --only notebook --only memory

Sections: notebook (epoch time, with and without its best.keras checkpoint, vs a
hand-written jitted-scan JAX epoch and vs the notebook's own code on TensorFlow),
process (whole ``train --preset notebook`` process vs the notebook script on
TensorFlow, and the compile cache cold vs warm), memory (peak RSS of ``train
--preset mlp`` and ``evaluate``), cnn (the ``cnn`` preset's epoch time on JAX, and
in mixed bfloat16, vs the float32 model on the TensorFlow backend), inference
(predict throughput and single-image latency) and, only when asked for, tta (time
to 98.0/99.0/99.5% test accuracy of ``fast``, ``cnn-small`` and ``mlp``, ``cnn`` with --tta-cnn:
half an hour, and Keras's ``mnist_convnet`` example as the reference).

Each epoch figure is the median of the timed epochs (all but the first, which
compiles; at least five with the default --epochs) with their min–max. The notebook
epoch with and without its checkpoint is timed in alternated runs (without, with,
without, with: ten timed epochs each), so that the machine's drift falls on both.

TensorFlow rows run in ``benchmarks/.tfvenv``, created on first use with
tensorflow-cpu and this package (or pass --tf-python); where it cannot be set up,
those rows say so and are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mnist_classifier  # noqa: F401, I001  (first: keeps KERAS_BACKEND, else selects JAX, before keras loads)
import jax
import jax.numpy as jnp
import keras
import numpy as np

import jax_reference
from mnist_classifier.accel import onednn
from mnist_classifier.config import DISTRIBUTIONS, apply_overrides
from mnist_classifier.accel.distribute import distributed
from mnist_classifier.models import build_from_config
from mnist_classifier.pipeline import prepare_data, train_run
from mnist_classifier.presets import PRESETS
from mnist_classifier.runs import EpochTimer
from mnist_classifier.training import optimize_model, train_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TF_VENV = HERE / ".tfvenv"
TIME = "/usr/bin/time"
SECTIONS = ("notebook", "process", "memory", "cnn", "inference", "tta")
DEFAULT_SECTIONS = SECTIONS[:-1]


@dataclass
class Child:
    """What a finished child process left: its output, wall time and peak resident memory."""

    stdout: str
    stderr: str
    wall_s: float
    peak_mb: float
    returncode: int

    def check(self) -> Child:
        """This child, or a RuntimeError with the end of its stderr if it failed."""
        if self.returncode != 0:
            raise RuntimeError(f"child failed ({self.returncode}): {self.stderr.strip()[-800:]}")
        return self

    def record(self) -> dict:
        """The JSON record the child printed last."""
        return json.loads(self.check().stdout.strip().splitlines()[-1])


def run_child(command: Sequence[str], env: dict[str, str] | None = None) -> Child:
    """Run ``command`` to the end; measure its wall time and its own peak RSS.

    GNU time (``/usr/bin/time``) starts the command from a small process: a child
    forked straight from this (large) one would count this one's pages in its peak.
    """
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        wrapped = [TIME, "-f", "%M", "-o", str(peak_file), *command] if Path(TIME).exists() else list(command)
        started = time.perf_counter()
        done = subprocess.run(wrapped, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
        wall = time.perf_counter() - started
        peak = float(peak_file.read_text().split()[-1]) / 1024 if peak_file.exists() else float("nan")
        return Child(done.stdout, done.stderr, wall, peak, done.returncode)


def steady(times: Sequence[float]) -> float:
    """Median epoch time after the first (which compiles)."""
    return statistics.median(times[1:])


def spread(times: Sequence[float]) -> str:
    """The median of the timed epochs (all but the first) with their min–max and count, e.g. ``0.612 s (0.58–0.70, n=5)``."""
    timed = times[1:]
    return f"{statistics.median(timed):.3f} s ({min(timed):.2f}–{max(timed):.2f}, n={len(timed)})"


def tf_python(chosen: str | None) -> Path | None:
    """A Python with tensorflow-cpu and this package: ``chosen``, or ``benchmarks/.tfvenv`` (set up if missing)."""
    python = Path(chosen) if chosen else TF_VENV / "bin" / "python"
    check = [str(python), "-c", "import tensorflow, mnist_classifier"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if chosen:
        return None
    print("setting up benchmarks/.tfvenv (tensorflow-cpu, a few minutes)", file=sys.stderr, flush=True)
    install = [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[tensorflow]"]
    steps = [[sys.executable, "-m", "venv", str(TF_VENV)], install]
    for step in steps:
        if subprocess.run(step).returncode != 0:
            return None
    return python


def row(name: str, figure: str, reference: str = "", target: str = "", met: bool | None = None) -> None:
    """Print one result line."""
    verdict = "" if met is None else ("met" if met else "NOT met")
    print(f"{name:44} {figure:>16}  {reference:38} {target} {verdict}".rstrip(), flush=True)


def epoch_times(config) -> list[float]:
    """Seconds of each epoch of a run of ``config`` (as recorded in its history)."""
    with tempfile.TemporaryDirectory() as out:
        history = json.loads((train_run(config, Path(out)).run_dir / "history.json").read_text())
    return [entry["time_s"] for entry in history]


def alternated_epoch_times(config, key: str, values: Sequence, rounds: int = 2) -> dict:
    """Epoch seconds of runs of ``config`` with ``key`` at each of ``values``, alternated ``rounds`` times.

    Alternating lets the machine's drift (other work, its clock) fall on every value
    alike. Each value's list is its first run's epochs (the first compiles, as
    :func:`steady` expects), then the later runs' epochs after their first.
    """
    times: dict = {value: [] for value in values}
    for _ in range(rounds):
        for value in values:
            epochs = epoch_times(apply_overrides(config, {key: value}))
            times[value] += epochs[1:] if times[value] else epochs
    return times


def notebook_section(data: str, tf: Path | None, epochs: int) -> None:
    """The notebook preset's epoch time vs a hand-written jitted-scan epoch and vs TensorFlow."""
    config = apply_overrides(PRESETS["notebook"], {"data.path": data, "training.epochs": epochs, "training.early_stopping": False})
    # The reference neither checkpoints nor records: compare epochs of training and
    # validation alone, and show the preset's epoch with its best.keras checkpoint apart.
    times = alternated_epoch_times(config, "training.save_best", (False, True))
    ours, with_checkpoint = times[False], times[True]

    prepared = prepare_data(config.data, (784,))
    (x, labels), (val_x, val_labels) = prepared.train, prepared.validation
    x, val_x = prepared.inputs(x), prepared.inputs(val_x)
    y, val_y = (jnp.asarray(np.eye(10, dtype=np.float32)[v]) for v in (labels, val_labels))
    x, val_x = jnp.asarray(x), jnp.asarray(val_x)
    epoch, evaluate = jax_reference.make_epoch(), jax_reference.make_evaluate()
    state = jax_reference.init_state(jax_reference.init_params((784, 128, 64, 10)))
    batches = jnp.asarray(np.arange(len(x) // 32 * 32, dtype=np.int32).reshape(-1, 32))
    reference = []
    for _ in range(epochs):
        started = time.perf_counter()
        state, _ = epoch(state, x, y, batches)
        jax.block_until_ready(evaluate(state[0], val_x, val_y))
        reference.append(time.perf_counter() - started)
    ratio = steady(ours) / steady(reference)
    row("notebook preset epoch (JAX, batch 32)", spread(ours), f"hand-written scan {spread(reference)}", f"ratio {ratio:.2f} (target <= 1.15)", ratio <= 1.15)
    row("  first epoch (compiles)", f"{ours[0]:.2f} s", f"hand-written {reference[0]:.2f} s")
    checkpoint_ratio = steady(with_checkpoint) / steady(ours)
    row("  with the best.keras checkpoint", spread(with_checkpoint), f"without it: ratio {checkpoint_ratio:.2f}", "(target <= 1.1)", checkpoint_ratio <= 1.1)
    if tf is None:
        row("notebook code on TensorFlow", "skipped", "no TensorFlow environment could be set up")
        return
    with tempfile.TemporaryDirectory() as out:
        record = run_child([str(tf), str(HERE / "notebook_script.py"), data, out], {"KERAS_BACKEND": "tensorflow"}).record()
    speedup = steady(record["epoch_s"]) / steady(with_checkpoint)
    row("notebook code, Keras on TensorFlow", spread(record["epoch_s"]), f"ours (checkpoint included) {speedup:.1f}x faster", "(target >= 6x)", speedup >= 6)


def process_section(data: str, tf: Path | None) -> None:
    """Whole processes from start to saved model, and the compile cache cold and warm."""
    cli = str(Path(sys.executable).parent / "mnist-classifier")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MNIST_CLASSIFIER_COMPILE_CACHE": str(Path(tmp) / "xla"), "MNIST_CLASSIFIER_DATA": data}
        command = [cli, "train", "--preset", "notebook", "--no-report", "--out", str(Path(tmp) / "runs")]
        runs = [run_child(command, env).check() for _ in ("cold", "warm")]
        first_epochs = [json.loads(p.read_text())["timings"]["first_epoch_s"] for p in sorted(Path(tmp, "runs").glob("*/metrics.json"))]
        notebook = run_child([str(tf), str(HERE / "notebook_script.py"), data, tmp], {"KERAS_BACKEND": "tensorflow"}) if tf else None
    row("train --preset notebook, whole process", f"{runs[0].wall_s:.1f} s", f"warm compile cache {runs[1].wall_s:.1f} s")
    row("  first epoch, compile cache cold / warm", f"{first_epochs[0]:.2f} s", f"warm {first_epochs[1]:.2f} s")
    if notebook is None:
        row("notebook script on TensorFlow", "skipped", "no TensorFlow environment could be set up")
        return
    notebook.check()
    speedup = notebook.wall_s / runs[0].wall_s
    row("notebook script on TensorFlow, whole process", f"{notebook.wall_s:.1f} s", f"ours {speedup:.1f}x faster (cold)", "(target >= 3x)", speedup >= 3)


def memory_section(data: str, epochs: int) -> None:
    """Peak resident memory of ``train --preset mlp`` and ``evaluate`` on its model."""
    cli = str(Path(sys.executable).parent / "mnist-classifier")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MNIST_CLASSIFIER_DATA": data}
        train = run_child([cli, "train", "--preset", "mlp", "--epochs", str(epochs), "--no-report", "--out", tmp], env).check()
        model = next(Path(tmp).glob("*/model.keras"))
        evaluate = run_child([cli, "evaluate", str(model)], env).check()
    row(f"peak RSS, train --preset mlp ({epochs} epochs)", f"{train.peak_mb:.0f} MB", "", "(target <= 600 MB)", train.peak_mb <= 600)
    row("peak RSS, evaluate", f"{evaluate.peak_mb:.0f} MB", "", "(target <= 400 MB)", evaluate.peak_mb <= 400)


def cnn_child(steps: int, distribute: str, engine: str, precision: str) -> None:
    """In a child process: seconds per training step of the ``cnn`` preset on this backend, printed as JSON."""
    config = PRESETS["cnn"]
    with distributed(dataclasses.replace(config.training, distribute=distribute), precision) as devices:
        keras.utils.set_random_seed(0)
        model = build_from_config(dataclasses.replace(config.model, precision=precision))
        optimize_model(model, config.optimizer.alpha, config.optimizer.beta1, config.optimizer.beta2)
        batch = config.training.batch_size
        rng = np.random.default_rng(0)
        x = rng.random((batch * steps, 28, 28, 1), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch * steps)]
        timer = EpochTimer()
        train_model(model, x, y, batch, 3, verbose=False, callbacks=[timer], engine=engine)
    times = timer.epoch_seconds
    print(json.dumps({"backend": keras.backend.backend(), "devices": devices, "step_s": steady(times) / steps, "first_s": times[0]}))


def cnn_section(tf: Path | None, steps: int) -> None:
    """The ``cnn`` preset's training epoch vs the same float32 model on Keras's TensorFlow backend.

    On JAX: one device, and data-parallel over the cores, each also with ``engine =
    "keras"`` (Keras's own operations) to show what the faster CPU ops give (oneDNN's
    convolutions on one device, XLA's when split). In mixed bfloat16, on TensorFlow
    and on JAX (oneDNN's bfloat16 convolutions, one device and split), both of which
    multiply bfloat16 natively where the CPU has AVX512_BF16.
    """
    print(f"oneDNN convolutions for JAX: {onednn.unavailable_reason() or f'yes (channel blocks of {onednn.block()})'}")
    steps_per_epoch = -(-55000 // 128)
    command = [str(HERE / "speed.py"), "--cnn-child", str(steps)]

    def epoch(backend: str, *options: str) -> tuple[float, int]:
        """A child's steady epoch time of the cnn preset on ``backend``, and the devices it split the batch over."""
        python = tf if backend == "tensorflow" else sys.executable
        record = run_child([str(python), *command, *options], {"KERAS_BACKEND": backend}).record()
        return record["step_s"] * steps_per_epoch, record["devices"]

    tf_epoch = tf and epoch("tensorflow")[0]

    def versus_tf(name: str, seconds: float) -> None:
        """A row with the ratio to the TensorFlow float32 epoch, when there is one."""
        if tf_epoch:
            ratio = seconds / tf_epoch
            row(name, f"{seconds:.1f} s", f"TensorFlow backend {tf_epoch:.1f} s", f"ratio {ratio:.2f} (target <= 0.8)", ratio <= 0.8)
        else:
            row(name, f"{seconds:.1f} s", "TensorFlow skipped: no environment")

    for distribute in DISTRIBUTIONS:
        options = ("--cnn-distribute", distribute, "--cnn-engine")
        (ours, devices), (plain, _) = (epoch("jax", *options, engine) for engine in ("auto", "keras"))
        versus_tf(f"cnn preset epoch (JAX, {distribute}, {devices} device(s))", ours)
        row("  the same, engine keras (Keras's fit and ops)", f"{plain:.1f} s", f"ratio {ours / plain:.2f}")
    mixed = ("--cnn-precision", "mixed_bfloat16")
    if tf:
        versus_tf("cnn preset epoch (TensorFlow, mixed_bfloat16)", epoch("tensorflow", *mixed)[0])
    for distribute in DISTRIBUTIONS:
        seconds, devices = epoch("jax", "--cnn-distribute", distribute, *mixed)
        versus_tf(f"cnn preset epoch (JAX, {distribute}, {devices} device(s), mixed_bfloat16)", seconds)


def inference_section() -> None:
    """predict throughput at batch 256 and single-image latency of the ``mlp`` and ``cnn`` models."""
    for name in ("mlp", "cnn"):
        model = build_from_config(PRESETS[name].model)
        shape = model.input_shape[1:]
        images = np.random.default_rng(0).random((10240, *shape), dtype=np.float32)
        model.predict(images[:256], batch_size=256, verbose=0)
        started = time.perf_counter()
        model.predict(images, batch_size=256, verbose=0)
        throughput = len(images) / (time.perf_counter() - started)
        one = images[:1]
        call = jax.jit(lambda w, n, x: model.stateless_call(w, n, x)[0])

        def compiled_call():
            weights = [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
            return np.asarray(call(*weights, one))

        latencies = {"model.predict": lambda: model.predict(one, verbose=0), "compiled call": compiled_call}
        figures = []
        for label, infer in latencies.items():
            infer()
            samples = []
            for _ in range(200):
                started = time.perf_counter()
                infer()
                samples.append(time.perf_counter() - started)
            figures.append(f"{label} {statistics.median(samples) * 1e6:.0f} µs")
        row(f"{name} predict, batch 256", f"{throughput:,.0f} img/s", "single image: " + ", ".join(figures))
        keras.backend.clear_session()


class _TestAccuracy(keras.callbacks.Callback):
    """After each epoch, the test accuracy; records when it first reaches each threshold."""

    def __init__(self, thresholds: Sequence[float], started: float) -> None:
        super().__init__()
        self.thresholds, self.started = thresholds, started
        self.reached: dict[str, float] = {}
        self.test: tuple[np.ndarray, np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        x, labels = self.test
        accuracy = float(np.mean(np.argmax(self.model.predict(x, batch_size=1024, verbose=0), -1) == labels))
        for threshold in self.thresholds:
            if accuracy >= threshold:
                self.reached.setdefault(str(threshold), time.time() - self.started)


def tta_child(preset_name: str, thresholds: Sequence[float], started: float) -> None:
    """In a child process: train ``preset_name``; print when the test accuracy first passed each threshold."""
    tracker = _TestAccuracy(thresholds, started)
    config = apply_overrides(PRESETS[preset_name], {"training.early_stopping": False})
    with tempfile.TemporaryDirectory() as out:
        train_run(config, Path(out), [tracker], lambda run_dir, data, config: setattr(tracker, "test", (data.inputs(data.test[0]), data.test[1])))
    print(json.dumps({"reached": tracker.reached, "total_s": time.time() - started}))


TTA_THRESHOLDS = (0.98, 0.99, 0.995)


def convnet_child(thresholds: Sequence[float], started: float, data: str) -> None:
    """In a child process: Keras's ``mnist_convnet`` example (15 epochs, batch 128, Adam); print when its test accuracy passed each threshold."""
    from mnist_classifier import load_dataset

    (x_train, y_train), (x_test, y_test) = load_dataset("mnist", data)
    x_train, x_test = (x[..., None].astype("float32") / 255 for x in (x_train, x_test))
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    tracker = _TestAccuracy(thresholds, started)
    tracker.test = (x_test, y_test)
    model.fit(x_train, np.eye(10, dtype="float32")[y_train], batch_size=128, epochs=15, validation_split=0.1, verbose=0, callbacks=[tracker])
    print(json.dumps({"reached": tracker.reached, "total_s": time.time() - started, "backend": keras.backend.backend()}))


def tta_section(presets: Sequence[str], tf: Path | None, data: str) -> None:
    """Wall seconds from process start until the test accuracy (evaluated after each epoch) first reaches each threshold.

    The reference is Keras's ``mnist_convnet`` example on the TensorFlow backend
    (on JAX, with a note, where no TensorFlow environment could be set up).
    """
    thresholds = [str(t) for t in TTA_THRESHOLDS]

    def report(name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        record = run_child([*command, str(time.time()), *thresholds], env).record()
        reached = ", ".join(f"{float(t):.1%} at {record['reached'].get(t, float('nan')):.0f} s" for t in thresholds)
        row(f"time to accuracy, {name}", f"{record['total_s']:.0f} s total", reached)

    for name in presets:
        if name not in PRESETS:
            row(f"time to accuracy, {name}", "skipped", f"no {name!r} preset in this version")
            continue
        report(name, [sys.executable, str(HERE / "speed.py"), "--tta-child", name])
    backend = "tensorflow" if tf else "jax"
    python = str(tf) if tf else sys.executable
    label = "Keras mnist_convnet example" + ("" if tf else " (on JAX: no TensorFlow environment)")
    report(label, [python, str(HERE / "speed.py"), "--data", data, "--convnet-child"], {"KERAS_BACKEND": backend})


def main() -> None:
    """Run the chosen sections and print one row per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=SECTIONS, help="repeatable; default: all but tta")
    parser.add_argument("--data", default=os.environ.get("MNIST_CLASSIFIER_DATA", str(ROOT.parent / "shared" / "data" / "mnist")))
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the notebook and memory runs (the first compiles; at least 6 for five timed)")
    parser.add_argument("--cnn-steps", type=int, default=30, help="steps per timed pass in the cnn section")
    parser.add_argument("--tf-python", help="a Python with tensorflow-cpu and this package installed")
    parser.add_argument("--tta-cnn", action="store_true", help="also time the cnn preset to 99.4%% (about 30 minutes)")
    parser.add_argument("--cnn-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cnn-distribute", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--cnn-engine", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--cnn-precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--tta-child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--convnet-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cnn_child:
        return cnn_child(args.cnn_child, args.cnn_distribute, args.cnn_engine, args.cnn_precision)
    if args.convnet_child:
        return convnet_child([float(t) for t in args.convnet_child[1:]], float(args.convnet_child[0]), args.data)
    if args.tta_child:
        return tta_child(args.tta_child[0], [float(t) for t in args.tta_child[2:]], float(args.tta_child[1]))
    sections = args.only or DEFAULT_SECTIONS
    data = str(Path(args.data).resolve())
    tf = tf_python(args.tf_python) if {"notebook", "process", "cnn", "tta"} & set(sections) else None
    print(f"{'figure':44} {'value':>16}  {'reference':38} target")
    if "notebook" in sections:
        notebook_section(data, tf, args.epochs)
    if "process" in sections:
        process_section(data, tf)
    if "memory" in sections:
        memory_section(data, args.epochs)
    if "cnn" in sections:
        cnn_section(tf, args.cnn_steps)
    if "inference" in sections:
        inference_section()
    if "tta" in sections:
        tta_section(["fast", "cnn-small", "mlp", *(["cnn"] if args.tta_cnn else [])], tf, data)


if __name__ == "__main__":
    main()
