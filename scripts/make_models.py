"""Train the bundled models with their presets and write them into the package: ``make models``.

Usage (from the project root; the data sets are found as for ``train``):

    .venv/bin/python scripts/make_models.py [--only NAME ...] [--out runs/models] [--from-run NAME=RUN_DIR ...]
    .venv/bin/python scripts/make_models.py --refresh [--only NAME ...]

Each model is made by ``Bundle.commands``: ``mnist-classifier train --preset P
--dataset D`` (the CNNs with ``--distribute data-parallel``: the same model, about
twice as fast on a CPU). A model that fine-tunes another (``Bundle.base``) takes two
runs: the base preset from random weights, then its own preset starting from that
run's model (``--set training.init_from=BASE_RUN/model.keras``); with
``Bundle.reader_crops``, ``scripts/reader_crops.py`` then cuts digits from generated
photos with that model (into the runs' folder, ``RUNS_DIR``) and a third run
fine-tunes on them (``data.extra``); each of ``Bundle.tunes`` adds one more, with more settings (and, with its ``crops``, fresh crops cut first).
Then :func:`mnist_classifier.bundled.bundle_run` copies the last run's model, without
its optimizer state or training-only layers, into
``src/mnist_classifier/inference/weights/NAME/`` with its ``metrics.json``, a model card and
its ONNX graph ``model.onnx``, checked against Keras on test images (needs the
``export`` extra, which ``make models`` installs with the test extras).
``--from-run`` bundles a finished run of the bundle's preset instead of training again;
``--pictures NAME=JSON`` puts ``benchmarks/pictures.py --json`` figures of that model in
its card (run the benchmark on the bundled model, then bundle again with them).
``--refresh`` trains nothing: it re-exports each bundled model's ``model.onnx`` and
rewrites its card's network section from the model as it is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mnist_classifier.inference.bundled import BASE_RUN, BUNDLES, RUNS_DIR, bundle_run, refresh_bundle


def train(name: str, out: Path) -> Path:
    """Run one bundled model's training commands with the CLI, in order; returns the last run's directory."""
    run_dir: Path | None = None
    for command in BUNDLES[name].commands:
        text = command.replace(BASE_RUN, str(run_dir)) if run_dir is not None else command
        text = text.replace(RUNS_DIR, str(out))
        if text.startswith("python "):  # a script between runs (the reader's crops): it makes no run
            subprocess.run([sys.executable, *text.split()[1:]], check=True)
            continue
        preset = text.split("--preset ")[1].split()[0]
        before = set(out.glob("*")) if out.exists() else set()
        executable = Path(sys.executable).with_name("mnist-classifier")
        subprocess.run([str(executable), *text.split()[1:], "--out", str(out)], check=True)
        (run_dir,) = set(out.glob(f"*-{preset}-{BUNDLES[name].dataset}*")) - before
    assert run_dir is not None
    return run_dir


def main() -> None:
    """Train (or take) each chosen model's run and bundle it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=list(BUNDLES), help="Make only these models.")
    parser.add_argument("--out", type=Path, default=Path("runs/models"), help="Folder for the training runs.")
    parser.add_argument("--from-run", action="append", default=[], metavar="NAME=RUN_DIR", help="Bundle this finished run.")
    parser.add_argument("--pictures", action="append", default=[], metavar="NAME=JSON", help="pictures.py --json figures for the card.")
    parser.add_argument("--refresh", action="store_true", help="Only re-export model.onnx and the card's network section.")
    args = parser.parse_args()
    if args.refresh:
        for name in args.only or list(BUNDLES):
            print(f"{name}: {refresh_bundle(name)} (model.onnx and the card's network section)", flush=True)
        return
    given = dict(item.split("=", 1) for item in args.from_run)
    figures = {name: json.loads(Path(path).read_text()) for name, path in (item.split("=", 1) for item in args.pictures)}
    for name in args.only or list(BUNDLES):
        run_dir = Path(given[name]) if name in given else train(name, args.out)
        folder = bundle_run(run_dir, name, pictures=figures.get(name))
        size = (folder / "model.keras").stat().st_size / 2**20
        print(f"{name}: {folder} ({size:.1f} MB) from {run_dir}")


if __name__ == "__main__":
    main()
