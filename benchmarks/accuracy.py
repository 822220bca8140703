"""Train presets on the full data set and print test accuracy, epochs and wall time.

Usage (from the project root):

    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python benchmarks/accuracy.py
    .venv/bin/python benchmarks/accuracy.py --preset notebook --dataset mnist

Each row is compared with the published reference it must beat or reproduce.
"""

import argparse
import tempfile
import time
from pathlib import Path

import mnist_classifier  # noqa: F401  (selects the JAX backend)
from mnist_classifier.config import PRESETS, apply_overrides
from mnist_classifier.pipeline import train_run

# (preset, dataset) -> (reference accuracy, where it comes from, rule)
REFERENCES = {
    ("notebook", "mnist"): (0.8632, "the notebook's published run", "within ±1 point"),
    ("mlp", "mnist"): (0.9840, "Keras example mnist_mlp (784-512-512-10)", "at least 98.5%"),
}
TARGETS = {("notebook", "mnist"): lambda acc: abs(acc - 0.8632) <= 0.01, ("mlp", "mnist"): lambda acc: acc >= 0.985}


def main() -> None:
    """Run the chosen presets one after another and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), help="repeatable; default: notebook and mlp")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
    parser.add_argument("--data", help="data path (default: $MNIST_CLASSIFIER_DATA, caches, download)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in args.preset or ["notebook", "mlp"]:
            overrides = {"data.dataset": args.dataset, "training.seed": args.seed}
            if args.data:
                overrides["data.path"] = args.data
            started = time.perf_counter()
            result = train_run(apply_overrides(PRESETS[name], overrides), Path(out))
            rows.append((name, result.metrics, time.perf_counter() - started))
    print(f"\n{'preset':10} {'dataset':14} {'test acc':>9} {'epochs':>6} {'wall s':>7}  reference")
    for name, metrics, wall in rows:
        ref = REFERENCES.get((name, args.dataset))
        verdict = ""
        if ref:
            ok = TARGETS[(name, args.dataset)](metrics["test_accuracy"])
            verdict = f"{ref[0]:.2%} ({ref[1]}); target {ref[2]}: {'met' if ok else 'NOT met'}"
        print(f"{name:10} {args.dataset:14} {metrics['test_accuracy']:>9.2%} {metrics['epochs']:>6} {wall:>7.1f}  {verdict}")


if __name__ == "__main__":
    main()
