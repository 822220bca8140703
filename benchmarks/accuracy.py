"""Train presets on full data sets and print test accuracy, epochs and wall time.

Usage (from the project root):

    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python benchmarks/accuracy.py
    .venv/bin/python benchmarks/accuracy.py --preset cnn --preset cnn-augmented
    .venv/bin/python benchmarks/accuracy.py --preset cnn --dataset fashion_mnist

Each row is compared with the published reference it must reproduce or beat.
Progress (one line per epoch) goes to stderr.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import mnist_classifier  # noqa: F401, I001  (first: selects the JAX backend before keras loads)
import keras
from mnist_classifier.config import apply_overrides
from mnist_classifier.presets import PRESETS
from mnist_classifier.pipeline import train_run

# (preset, dataset) -> (reference accuracy, source, target check, target in words)
REFERENCES = {
    ("notebook", "mnist"): (0.8632, "the notebook's published run", lambda a: abs(a - 0.8632) <= 0.01, "±1 point"),
    ("mlp", "mnist"): (0.9840, "Keras mnist_mlp", lambda a: a >= 0.985, ">= 98.5%"),
    ("cnn", "mnist"): (0.9922, "Keras mnist_convnet", lambda a: a >= 0.994, ">= 99.4%"),
    ("cnn-augmented", "mnist"): (0.9922, "Keras mnist_convnet", lambda a: a >= 0.9965, ">= 99.65%"),
    ("cnn", "fashion_mnist"): (0.926, "Fashion-MNIST benchmark small CNNs", lambda a: a >= 0.93, ">= 93.0%"),
}


class _Progress(keras.callbacks.Callback):
    """One line per epoch on stderr."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(f"  epoch {epoch + 1}: val_accuracy {logs.get('val_accuracy', float('nan')):.4f}", file=sys.stderr, flush=True)


def main() -> None:
    """Run every chosen preset on every chosen data set and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), help="repeatable; default: notebook, mlp")
    parser.add_argument("--dataset", action="append", choices=["mnist", "fashion_mnist"], help="repeatable; default: mnist")
    parser.add_argument("--data", help="data path (default: $MNIST_CLASSIFIER_DATA, caches, download)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for dataset in args.dataset or ["mnist"]:
            for name in args.preset or ["notebook", "mlp"]:
                overrides = {"data.dataset": dataset, "training.seed": args.seed}
                if args.data:
                    overrides["data.path"] = args.data
                print(f"{name} on {dataset}:", file=sys.stderr, flush=True)
                started = time.perf_counter()
                result = train_run(apply_overrides(PRESETS[name], overrides), Path(out), [_Progress()])
                rows.append((name, dataset, result.metrics, time.perf_counter() - started))
    print(f"\n{'preset':14} {'dataset':14} {'test acc':>9} {'epochs':>6} {'wall s':>7}  reference")
    for name, dataset, metrics, wall in rows:
        verdict = ""
        if (name, dataset) in REFERENCES:
            ref, source, check, words = REFERENCES[(name, dataset)]
            verdict = f"{ref:.2%} ({source}); target {words}: {'met' if check(metrics['test_accuracy']) else 'NOT met'}"
        print(f"{name:14} {dataset:14} {metrics['test_accuracy']:>9.2%} {metrics['epochs']:>6} {wall:>7.1f}  {verdict}")


if __name__ == "__main__":
    main()
