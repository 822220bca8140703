"""Trained models shipped with the package, usable by name wherever a model file is accepted.

Each lives in ``weights/NAME/``: ``model.keras`` (weights and our record, no
optimizer state), ``model.onnx`` (its graph for onnxruntime, checked against it,
so that ``--runtime onnx`` never exports a bundled model), the training run's
``metrics.json`` and a ``MODEL_CARD.md``. ``scripts/make_models.py`` (``make
models``) trains them with their presets and writes them here with
:func:`bundle_run`; :func:`refresh_bundle` redoes the graph and the card's network
section of a bundled model as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnist_classifier.errors import ModelFileError, closest, unknown_name

WEIGHTS = Path(str(resources.files("mnist_classifier.inference") / "weights"))
MODEL_SUFFIXES = (".keras", ".onnx")


BASE_RUN = "BASE_RUN"  # in a fine-tuning command: the directory of the run it starts from
RUNS_DIR = "RUNS_DIR"  # in a command: the folder every run is written to (files kept between runs)


@dataclass(frozen=True)
class Tune:
    """One fine-tune more of a bundle, from the run before it, on the reader's crops: its ``settings`` (``key=value``).

    With ``crops`` (arguments of ``scripts/reader_crops.py``, such as ``--photos 800``),
    fresh crops are cut first with the model before it, and this tune and those after it
    train on them; without, on the latest crops.
    """

    settings: tuple[str, ...]
    crops: str | None = None


@dataclass(frozen=True)
class Bundle:
    """A shipped model: its name, the preset and data set it was trained with, one line about it.

    ``base`` names the preset of a first run whose model the preset fine-tunes
    (None: one run from random weights). With ``reader_crops``, the fine-tuned model
    then reads generated photos of MNIST training digits (``scripts/reader_crops.py``)
    and is fine-tuned once more on the 28×28 inputs the reader cut from them.
    ``tunes`` are fine-tunes more after that, in order (:class:`Tune`).
    """

    name: str
    preset: str
    dataset: str
    summary: str
    limitations: tuple[str, ...]
    base: str | None = None
    reader_crops: bool = False
    tunes: tuple[Tune, ...] = ()

    @property
    def commands(self) -> tuple[str, ...]:
        """The commands that make it, in order; ``BASE_RUN`` stands for the latest run's directory."""
        if self.base is None:
            return (self._train(self.preset),)
        tuned = f"{self._train(self.preset)} --set training.init_from={BASE_RUN}/model.keras"
        if not self.reader_crops:
            return self._train(self.base), tuned
        crops = f"{RUNS_DIR}/reader-crops.npz"
        commands = (
            self._train(self.base), tuned,
            f"python scripts/reader_crops.py --model {BASE_RUN}/model.keras --out {crops}",
            f"{tuned} --set data.extra={crops}",
        )  # fmt: skip
        cut = 1
        for tune in self.tunes:
            if tune.crops is not None:
                cut += 1
                crops = f"{RUNS_DIR}/reader-crops-{cut}.npz"
                commands += (f"python scripts/reader_crops.py --model {BASE_RUN}/model.keras {tune.crops} --out {crops}",)
            commands += (" --set ".join((f"{tuned} --set data.extra={crops}", *tune.settings)),)
        return commands

    @property
    def command(self) -> str:
        """The training commands that make it, as one line of text."""
        return " then ".join(f"`{command}`" for command in self.commands)

    def _train(self, preset: str) -> str:
        """The command that trains ``preset`` on the bundle's data set."""
        parallel = " --distribute data-parallel" if preset.startswith("cnn") else ""
        return f"mnist-classifier train --preset {preset} --dataset {self.dataset}{parallel}"

    @property
    def folder(self) -> Path:
        """Where its files are installed."""
        return WEIGHTS / self.name

    @property
    def path(self) -> Path:
        """Its ``.keras`` file."""
        return self.folder / "model.keras"

    def metrics(self) -> dict[str, Any]:
        """The training run's ``metrics.json``."""
        return json.loads((self.folder / "metrics.json").read_text())


_DIGITS = (
    "Expects one handwritten digit per image. Anything else (letters, several digits, a blank page) still gets "
    "a digit as its answer, often with high probability: the probabilities are not a test of whether the image is a digit.",
    "Trained on MNIST's writers (US Census employees and high-school students); other handwriting styles, such as "
    "a continental 1 with a long upstroke or a crossed 7, are rarer in it.",
)
_READS_DIGITS = (
    "Reads one handwritten digit at a time. A picture whose top calibrated probability is under the threshold in "
    "its record is answered \"not a digit\"; pictures unlike anything in its training (see the table above) "
    "can still pass as a digit, and a few real digits (the share above) are rejected.",
    "Trained on MNIST's writers (US Census employees and high-school students), and on their 1s with a flag "
    "drawn on: other forms, such as a crossed 7, a closed 4 or a type designer's 1 with a long beak, are "
    "rarer in it; a 1 in a light or bold sans-serif typeface is still read as a 7, or not as a digit, "
    "one time in ten.",
)
_ARTICLES = (
    "Expects one article of clothing, centred on a plain background and seen from the front, as in Zalando's "
    "catalogue photographs that Fashion-MNIST is made from; photographs of worn clothes or cluttered scenes are "
    "outside what it has seen.",
    "Shirts, T-shirts/tops, pullovers and coats look alike at 28x28 pixels: most of its mistakes are between them.",
)
BUNDLES = {
    bundle.name: bundle
    for bundle in (
        Bundle("mnist-mlp", "mlp", "mnist", "Multilayer perceptron (the notebook's model, wider and regularized).", _DIGITS),
        Bundle(
            "mnist-cnn", "cnn-real", "mnist",
            "Convolutional network for people's pictures: trained with random shifts, rotations and zoom, then "
            "fine-tuned with pen width, elastic distortion, blur, contrast, non-digit pictures and pairs of "
            "touching digits, then once more with the digits the reader cut from generated photos of MNIST's "
            "training digits, then once more, gently, with 1s given a flag and a foot as much of the world "
            "writes them (`data.flagged_ones`), then once more with bold 1s too and digits shown at a few pixels "
            "and enlarged again (`data.low_resolution`: small scans, thumbnails), each fine-tune averaged weight "
            "by weight with the model it started from (`training.base_share`); calibrated, and answers "
            "\"not a digit\" below its threshold.",
            _READS_DIGITS, base="cnn-augmented", reader_crops=True,
            tunes=(
                Tune(("data.flagged_ones=15000", "optimizer.alpha=0.0001", "training.epochs=2", "training.base_share=0.6")),
                Tune(
                    (
                        "data.flagged_ones=15000", "data.low_resolution=10000", "optimizer.alpha=0.0001",
                        "training.epochs=2", "training.base_share=0.7",
                    ),
                    crops="--photos 800 --numbers 600 --drawn 600",
                ),
            ),
        ),
        Bundle(
            "fashion-cnn", "cnn", "fashion_mnist", "Convolutional network for Fashion-MNIST's ten kinds of clothing.",
            _ARTICLES,
        ),
    )
}
DEFAULT_MODEL = "mnist-cnn"


def model_path(model: str | os.PathLike) -> Path:
    """A model argument as a file: an existing path as it is, else a bundled model's file.

    Raises ModelFileError for a name that is neither a file nor a bundled model
    (a path with a model suffix is left for the loader to report as missing).
    """
    path = Path(model)
    if path.exists() or path.suffix in MODEL_SUFFIXES:
        return path
    if str(model) in BUNDLES:
        return BUNDLES[str(model)].path
    if closest(str(model), list(BUNDLES)):
        raise ModelFileError(unknown_name("model", str(model), list(BUNDLES)))
    raise ModelFileError(f"{model}: no such model file, and not a bundled model ({', '.join(BUNDLES)})")


def bundled_models() -> list[dict[str, Any]]:
    """What ``mnist-classifier models`` lists: each bundled model's name, data set, accuracy, size and file."""
    rows = []
    for bundle in BUNDLES.values():
        metrics = bundle.metrics() if bundle.path.exists() else {}
        rows.append({
            "name": bundle.name,
            "dataset": bundle.dataset,
            "preset": bundle.preset,
            "test_accuracy": metrics.get("test_accuracy"),
            "epochs": metrics.get("epochs"),
            "size_bytes": bundle.path.stat().st_size if bundle.path.exists() else None,
            "file": str(bundle.path),
            "summary": bundle.summary,
        })  # fmt: skip
    return rows


def bundle_run(
    run_dir: Path, name: str, root: Path = WEIGHTS, pictures: dict[str, Any] | None = None, data: str | None = None
) -> Path:
    """Copy a finished run's model into ``root/name`` without its optimizer state, with metrics, a card and its graph.

    ``pictures`` (``benchmarks/pictures.py --json`` of the model) adds its figures
    on people's pictures to the card; ``data`` is where the test set that checks
    the graph is (as for ``load_dataset``; default: the usual places, no download).
    Raises ModelFileError when the run is not of the bundle's preset and data set.
    """
    from mnist_classifier.data.augmentation import inference_model
    from mnist_classifier.inference.model_info import read_model_info
    from mnist_classifier.models import network_summary
    from mnist_classifier.persistence import load_model, save_model

    bundle = BUNDLES[name]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if (metrics.get("preset"), metrics.get("dataset")) != (bundle.preset, bundle.dataset):
        raise ModelFileError(
            f"{run_dir}: a {metrics.get('preset')} run on {metrics.get('dataset')}; "
            f"{name} is the {bundle.preset} preset on {bundle.dataset}"
        )
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    source = run_dir / "model.keras"
    info = read_model_info(source)
    network = inference_model(load_model(source, compile=False))  # loads with plain Keras: no layer of ours left
    save_model(network, folder / "model.keras", info)
    ship_onnx(folder, network, info, data)
    shutil.copyfile(run_dir / "metrics.json", folder / "metrics.json")
    rejection = non_digits_rejected(network, info) if info.reject_below is not None else None
    config_toml = (run_dir / "config.toml").read_text()
    card = model_card(bundle, metrics, info.normalization.mode, config_toml, rejection, pictures, network_summary(network))
    (folder / "MODEL_CARD.md").write_text(card)
    return folder


def ship_onnx(folder: Path, network, info, data: str | None = None, count: int = 256) -> Path:
    """Export ``folder/model.keras`` (``network``, with its record ``info``) to ``folder/model.onnx``.

    The graph records the ``.keras`` file's source digest, and is checked against
    Keras on the first ``count`` test images of the model's data set, found in
    ``data`` or the usual places without downloading (see
    :func:`~mnist_classifier.inference.onnx_export.export_onnx`, which raises
    ModelFileError when they differ; it needs the ``export`` extra).
    """
    from mnist_classifier.data.preprocessing import preprocess
    from mnist_classifier.data.sources import load_dataset
    from mnist_classifier.inference.onnx_export import export_onnx
    from mnist_classifier.inference.onnx_runtime import source_digest

    _, (x_test, _) = load_dataset(info.dataset, data, download=False)
    inputs = preprocess(x_test[:count], info.normalization, info.input_shape)
    source = source_digest(folder / "model.keras")
    return export_onnx(network, folder / "model.onnx", info, source, inputs)


def refresh_bundle(name: str, root: Path = WEIGHTS, data: str | None = None) -> Path:
    """Re-export a bundled model's ``model.onnx`` and rewrite its card's network section, without training.

    The rest of the card is kept as it is. Returns the model's folder.
    """
    from mnist_classifier.inference.model_info import read_model_info
    from mnist_classifier.models import network_summary
    from mnist_classifier.persistence import load_model

    folder = root / name
    network = load_model(folder / "model.keras", compile=False)
    ship_onnx(folder, network, read_model_info(folder / "model.keras"), data)
    card = folder / "MODEL_CARD.md"
    card.write_text(with_network_section(card.read_text(), network_summary(network)))
    return folder


def non_digits_rejected(network, info, count: int = 500) -> dict[str, float]:
    """Share of held-out non-digit pictures of each kind (:mod:`mnist_classifier.data.outliers`, test split)
    that ``network`` rejects at the threshold in its record ``info``."""
    from mnist_classifier.calibration import calibrated, digit_score
    from mnist_classifier.data.outliers import KINDS, non_digit_kind
    from mnist_classifier.data.preprocessing import preprocess
    from mnist_classifier.evaluation import predict_probabilities

    shares = {}
    for kind in KINDS:
        images = non_digit_kind(kind, count, split="test")
        probabilities = predict_probabilities(network, preprocess(images, info.normalization, info.input_shape))
        shares[kind] = float(np.mean(digit_score(calibrated(probabilities, info.temperature)) < info.reject_below))
    return shares


def model_card(
    bundle: Bundle,
    metrics: dict[str, Any],
    normalization: str,
    config_toml: str,
    rejection: dict[str, float] | None = None,
    pictures: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
) -> str:
    """A short model card: what it is, its data, preprocessing and network, per-class results, calibration, limitations.

    ``rejection`` is the share of held-out non-digit pictures of each kind rejected;
    ``pictures`` the figures ``benchmarks/pictures.py --json`` printed for the model;
    ``summary`` its :func:`~mnist_classifier.models.network_summary` (no network section without it).
    """
    evaluation = metrics["evaluation"]
    rows = "\n".join(
        f"| {row['class']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
        for row in evaluation["per_class"]
    )
    confusions = _top_confusions(evaluation["confusion_matrix"], [row["class"] for row in evaluation["per_class"]])
    timings = metrics.get("timings", {})
    versions = ", ".join(f"{key} {value}" for key, value in metrics.get("versions", {}).items())
    limitations = "\n".join(f"- {line}" for line in (*bundle.limitations, f"Most frequent mistakes on the test set: {confusions}."))
    best = f" (best validation loss at epoch {metrics['best_epoch']})" if metrics.get("best_epoch") else ""
    return f"""# {bundle.name}

{bundle.summary}

- Use: `mnist-classifier predict {bundle.name} IMAGE`, `mnist-classifier serve {bundle.name}`,
  or `Classifier.load("{bundle.name}")` in Python.
- Made by `make models` (`scripts/make_models.py`): {bundle.command},
  then the run's model without its optimizer state{" or its training-only layers" if bundle.base else ""}.

## Data
{bundle.dataset} as distributed: {_training_images(tomllib.loads(config_toml)["data"])}.{_base_note(bundle)}
The 10,000 test images were used only for the results here.

## Preprocessing
28×28 greyscale images, `{normalization}` normalization, as recorded inside the model file.
Pictures given to `predict` or the service are first framed the way the data set frames
its images (inverted if dark on light, cropped, scaled into the centre of a 28×28 frame).
{_network_section(summary)}
## Results on the test set
Test accuracy **{metrics["test_accuracy"]:.4f}**, loss {metrics["test_loss"]:.4f}, after {metrics["epochs"]} epochs{best}.
The run took {timings.get("total_s", 0) / 60:.1f} minutes ({metrics.get("devices", 1)} device(s)).
Versions: {versions}.

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

{_calibration_section(metrics.get("calibration"), rejection)}{_pictures_section(pictures)}
## Known limitations
{limitations}

## Configuration
```toml
{config_toml.strip()}
```
"""


NETWORK_HEADING = "## Network"


def _network_section(summary: dict[str, Any] | None) -> str:
    """The card's section listing the network's layers, output shapes and parameters (empty without a summary)."""
    if summary is None:
        return ""
    rows = "\n".join(
        f"| {layer['name']} | {layer['type']} | {_shape(layer['output_shape'])} | {layer['params']:,} |"
        for layer in summary["layers"]
    )
    fixed = summary["non_trainable"]
    untrained = f", {fixed:,} of them not trained (batch normalization's running statistics)" if fixed else ""
    return f"""
{NETWORK_HEADING}
What Keras's `model.summary()` shows: **{summary["total"]:,}** parameters{untrained}.

| layer | type | output shape | parameters |
|---|---|---|---:|
{rows}
"""


def _shape(shape: list) -> str:
    """An output shape as Keras prints it: ``(None, 28, 28, 32)``."""
    return "(" + ", ".join(str(side) for side in shape) + ")"


def with_network_section(card: str, summary: dict[str, Any]) -> str:
    """A model card's text with its network section replaced by (or, when it has none, given) ``summary``'s."""
    section = _network_section(summary)
    start = card.find(f"\n{NETWORK_HEADING}\n")
    if start < 0:
        start = end = card.index("\n## Results on the test set")
    else:
        end = card.index("\n## ", start + 1)
    return card[:start] + section.rstrip("\n") + "\n" + card[end:]


def _calibration_section(calibration: dict[str, Any] | None, rejection: dict[str, float] | None) -> str:
    """The card's section on calibrated probabilities and "not a digit" (empty for a run without them)."""
    if calibration is None or calibration.get("reject_below") is None:
        return ""
    rows = "\n".join(f"| {kind} | {share:.1%} |" for kind, share in (rejection or {}).items())
    kinds = f"""
Share of held-out pictures that are no digit (fonts, Fashion-MNIST images and random
streams never trained on), framed as a user's picture, that it rejects:

| pictures | rejected |
|---|---|
{rows}
""" if rows else ""
    return f"""## Calibration and "not a digit"
Probabilities are divided by a temperature of **{calibration["temperature"]:.3f}** (softmax(log p / T)),
fitted on the {calibration["fitted_on"]}: the expected calibration error on the test set
(15 bins) goes from {calibration["ece_before"]:.2%} to **{calibration["ece_after"]:.2%}**. A picture whose top
calibrated probability is under **{calibration["reject_below"]:.4f}** is answered "not a digit"; that threshold,
set on the validation digits, rejects {calibration["test_rejected"]:.2%} of the MNIST test digits.
{kinds}"""


def _pictures_section(pictures: dict[str, Any] | None) -> str:
    """The card's section on people's pictures read whole (photos, numbers, non-digits), from pictures.py's JSON."""
    if not pictures:
        return ""
    rows = "\n".join(
        f"| {row['kind']} | {row['cases']} | {row['right']:.1%} | {row['rejected']:.1%} |" for row in pictures["rows"]
    )
    return f"""## People's pictures
Whole pictures read by `predict` ({pictures["runtime"]}): the project's own generated cases
(`tests/scenes`, seed {pictures["seed"]}), scored by `benchmarks/pictures.py`. A digit photo or a
number is right when it is read exactly and not rejected; a picture with no digit when it is rejected.

| pictures | cases | right | rejected |
|---|---|---|---|
{rows}
"""


def _base_note(bundle: Bundle) -> str:
    """For a fine-tuned model: what its starting point was trained on."""
    if bundle.base is None:
        return ""
    return (
        f"\nIt fine-tunes a `{bundle.base}` run's model, which trained on all 60,000 training images: "
        "the validation images that set the temperature and threshold were seen by that first run."
    )


def _training_images(data: dict[str, Any]) -> str:
    """How the run used the 60,000 training images, and what it trained on besides, from its ``[data]`` settings."""
    if data["validation"] == "holdout":
        text = f"the 60,000 training images, {data['validation_size']:,} of them held out for validation"
    else:
        text = "all 60,000 training images for training, for the preset's fixed number of epochs"
    extra = [
        f"{data['outliers']:,} pictures of no digit" if data.get("outliers") else "",
        f"{data['pairs']:,} pairs of touching training digits framed as one" if data.get("pairs") else "",
    ]
    if any(extra):
        text += "; besides, trained towards the uniform distribution: " + " and ".join(filter(None, extra))
    if data.get("flagged_ones"):
        text += f"; {data['flagged_ones']:,} of its 1s with a flag (a third made bold, a third with a foot) drawn on, added as 1s"
    if data.get("low_resolution"):
        text += f"; {data['low_resolution']:,} of its digits shown at 6-14 pixels and enlarged again, as the reader reads them"
    if data.get("extra"):
        text += (
            f"; and the labelled images of `{Path(data['extra']).name}` (`data.extra`) added to the training part, "
            "its outliers (`x_outliers`, where it has them) trained towards the uniform distribution too"
        )
    return text


def _top_confusions(confusion: list[list[int]], classes: list[str], count: int = 3) -> str:
    """The most frequent (true, predicted) mistakes, as text."""
    pairs = [(n, t, p) for t, row in enumerate(confusion) for p, n in enumerate(row) if t != p and n]
    top = sorted(pairs, reverse=True)[:count]
    return "; ".join(f"{classes[t]} taken for {classes[p]} {n} times" for n, t, p in top) or "none"
