"""Calibration and "not a digit", per model: ECE, false rejections, AUROC against held-out non-digits.

Usage (from the project root; MNIST found as for ``train``, Fashion-MNIST too):

    .venv/bin/python benchmarks/rejection.py                          # the bundled mnist-cnn and mnist-mlp
    .venv/bin/python benchmarks/rejection.py mnist-cnn runs/models/RUN/model.keras --count 2000

For each model: its temperature and threshold as stored in its record, or, for a
model that stores none, fitted here on the 5,000 validation images the presets
hold out (``validation_split``, seed 0), never on the test set. Then, on MNIST's
10,000 test digits: the expected calibration error (15 bins) before and after, and
the share the threshold rejects; on held-out non-digit pictures
(``mnist_classifier.data.outliers``, test split: Fashion-MNIST test images, fonts never
trained on, fresh random streams): the share rejected, and the AUROC of digits
against each kind for several candidate scores, all computable from the calibrated
probabilities. As a diagnostic only, the temperature a slice of the test set would
give shows how far the validation images' is off (e.g. when the model trained on
them).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from mnist_classifier.inference.bundled import model_path
from mnist_classifier.calibration import (
    calibrated,
    digit_score,
    expected_calibration_error,
    fit_temperature,
    rejection_threshold,
)
from mnist_classifier.data.sources import load_dataset
from mnist_classifier.inference.model_info import read_model_info
from mnist_classifier.data.outliers import KINDS, non_digit_kind
from mnist_classifier.persistence import load_model
from mnist_classifier.data.preprocessing import preprocess, validation_split

VALIDATION = 5000  # the presets' data.validation_size


def _entropy_score(p: np.ndarray) -> np.ndarray:
    return np.sum(p * np.log(np.maximum(p, 1e-12)), axis=1)


def _margin_score(p: np.ndarray) -> np.ndarray:
    top = np.sort(p, axis=1)
    return top[:, -1] - top[:, -2]


# Candidate scores of calibrated probabilities; higher is more digit-like.
SCORES = {
    "max probability (digit_score)": digit_score,
    "negative entropy": _entropy_score,
    "margin top1 - top2": _margin_score,
}


def auroc(digits: np.ndarray, others: np.ndarray) -> float:
    """Probability that a digit scores above a non-digit (ties count half)."""
    return float(mannwhitneyu(digits, others).statistic / (len(digits) * len(others)))


def machine() -> str:
    """The CPU model and core count, in words."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def measure(name: str, mnist: tuple, non_digits: dict[str, np.ndarray]) -> dict:
    """Every figure of one model."""
    path = model_path(name)
    info = read_model_info(path)
    network = load_model(path, compile=False)
    (x_train, y_train), (x_test, y_test) = mnist
    _, (x_val, y_val) = validation_split(x_train, y_train, VALIDATION)

    def predict(images: np.ndarray) -> np.ndarray:
        return network.predict(preprocess(images, info.normalization, info.input_shape), batch_size=1024, verbose=0)

    test_p, val_p = predict(x_test), predict(x_val)
    stored = info.reject_below is not None
    temperature = info.temperature if stored else fit_temperature(val_p, y_val)
    val_scores = digit_score(calibrated(val_p, temperature))
    threshold = info.reject_below if stored else rejection_threshold(val_scores)
    test_cal = calibrated(test_p, temperature)
    others = {kind: calibrated(predict(images), temperature) for kind, images in non_digits.items()}
    half = len(y_test) // 2  # diagnostic: T from the first half of the test set, ECE on the second
    t_test = fit_temperature(test_p[:half], y_test[:half])
    return {
        "model": name,
        "source": "stored in the model" if stored else f"fitted here on {VALIDATION} validation images",
        "temperature": temperature,
        "temperature_from_test_half": t_test,
        "ece_second_half": {
            "T=1": expected_calibration_error(test_p[half:], y_test[half:]),
            "validation T": expected_calibration_error(calibrated(test_p[half:], temperature), y_test[half:]),
            "test-half T": expected_calibration_error(calibrated(test_p[half:], t_test), y_test[half:]),
        },
        "accuracy": float(np.mean(test_p.argmax(1) == y_test)),
        "ece_before": expected_calibration_error(test_p, y_test),
        "ece_after": expected_calibration_error(test_cal, y_test),
        "threshold": threshold,
        "false_rejections": float(np.mean(digit_score(test_cal) < threshold)),
        "rejected": {kind: float(np.mean(digit_score(p) < threshold)) for kind, p in others.items()},
        "auroc": {
            score: {kind: auroc(fn(test_cal), fn(p)) for kind, p in others.items()} for score, fn in SCORES.items()
        },
        "auroc_uncalibrated_max": {kind: auroc(digit_score(test_p), digit_score(p)) for kind, p in others.items()},
    }


def print_tables(results: list[dict], count: int) -> None:
    """The figures as Markdown tables."""
    print(f"{date.today().isoformat()}, {machine()}; {count} held-out pictures of each kind\n")
    print("| model | test accuracy | T (source) | ECE before → after | threshold | MNIST test rejected |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['model']} | {r['accuracy']:.2%} | {r['temperature']:.3f} ({r['source']}) | "
            f"{r['ece_before']:.2%} → {r['ece_after']:.2%} | {r['threshold']:.4f} | {r['false_rejections']:.2%} |"
        )
    print("\nRejected at the threshold, per kind of held-out non-digit picture:\n")
    print("| model | " + " | ".join(KINDS) + " |")
    print("| --- |" + " --- |" * len(KINDS))
    for r in results:
        print(f"| {r['model']} | " + " | ".join(f"{r['rejected'][k]:.1%}" for k in KINDS) + " |")
    print("\nAUROC, MNIST test digits against each kind, per candidate score (calibrated probabilities):\n")
    print("| model | score | " + " | ".join(KINDS) + " | mean |")
    print("| --- | --- |" + " --- |" * (len(KINDS) + 1))
    for r in results:
        rows = {**r["auroc"], "max probability, uncalibrated": r["auroc_uncalibrated_max"]}
        for score, by_kind in rows.items():
            values = [by_kind[k] for k in KINDS]
            print(f"| {r['model']} | {score} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {np.mean(values):.4f} |")
    print("\nDiagnostic (never used to set anything): T fitted on test images 0-4999, ECE on 5000-9999:\n")
    print("| model | validation T | test-half T | ECE at T=1 | at validation T | at test-half T |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        e = r["ece_second_half"]
        print(
            f"| {r['model']} | {r['temperature']:.3f} | {r['temperature_from_test_half']:.3f} | "
            f"{e['T=1']:.2%} | {e['validation T']:.2%} | {e['test-half T']:.2%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["mnist-cnn", "mnist-mlp"], help="Bundled names or .keras files.")
    parser.add_argument("--count", type=int, default=1000, help="Held-out non-digit pictures of each kind.")
    parser.add_argument("--data", help="MNIST folder or .npz (default: as train finds it).")
    args = parser.parse_args()
    mnist = load_dataset("mnist", args.data)
    non_digits = {kind: non_digit_kind(kind, args.count, split="test") for kind in KINDS}
    print_tables([measure(name, mnist, non_digits) for name in args.models], args.count)


if __name__ == "__main__":
    main()
