"""Train the bundled models with their presets and write them into the package: ``make models``.

Usage (from the project root; the data sets are found as for ``train``):

    .venv/bin/python scripts/make_models.py [--only NAME ...] [--out runs/models] [--from-run NAME=RUN_DIR ...]

Each model is ``Bundle.command``: ``mnist-classifier train --preset P --dataset D``
(the CNNs with ``--distribute data-parallel``: the same model, about twice as fast
on a CPU),
then :func:`mnist_classifier.bundled.bundle_run` copies the run's model without
its optimizer state into ``src/mnist_classifier/weights/NAME/`` with its
``metrics.json`` and a model card. ``--from-run`` bundles a finished run of the
same preset instead of training again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from mnist_classifier.bundled import BUNDLES, bundle_run


def train(name: str, out: Path) -> Path:
    """Train one bundled model's preset with the CLI; returns its run directory."""
    bundle = BUNDLES[name]
    command = [Path(sys.executable).with_name("mnist-classifier"), *bundle.command.split()[1:], "--out", out]
    before = set(out.glob("*")) if out.exists() else set()
    subprocess.run([str(part) for part in command], check=True)
    (run_dir,) = set(out.glob(f"*-{bundle.preset}-{bundle.dataset}")) - before
    return run_dir


def main() -> None:
    """Train (or take) each chosen model's run and bundle it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=list(BUNDLES), help="Make only these models.")
    parser.add_argument("--out", type=Path, default=Path("runs/models"), help="Folder for the training runs.")
    parser.add_argument("--from-run", action="append", default=[], metavar="NAME=RUN_DIR", help="Bundle this finished run.")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.from_run)
    for name in args.only or list(BUNDLES):
        run_dir = Path(given[name]) if name in given else train(name, args.out)
        folder = bundle_run(run_dir, name)
        size = (folder / "model.keras").stat().st_size / 2**20
        print(f"{name}: {folder} ({size:.1f} MB) from {run_dir}")


if __name__ == "__main__":
    main()
