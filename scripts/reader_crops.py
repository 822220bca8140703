"""Training digits as the reader cuts them from photos: MNIST training digits photographed, then read.

Usage (from the project root):

    MNIST_CLASSIFIER_DATA=../shared/data/mnist .venv/bin/python scripts/reader_crops.py \
        --photos 2000 --numbers 1500 --drawn 1500 --touching 6000 --out runs/reader-crops.npz

    mnist-classifier train --preset cnn-real --set data.extra=runs/reader-crops.npz

Each case writes MNIST *training* digits (never the 5,000 that ``validation="holdout"``
keeps for the temperature and threshold, never a test digit) as a pen stroke into a
scene of ``tests/scenes``: a phone photo of one digit, a phone photo of a number of
2–6 digits, a clean drawing of a number, or one of 2–4 digits that all touch. The
picture goes through the product's reader exactly as a user's upload does
(``predict_images`` with the judging model, ``--model``, default the bundled
``mnist-cnn``), and each 28×28 input the model is given becomes a training image
labelled with the digit written there, whether or not the model read it right. A
picture read with a different count of digits than were written gives no labelled
images (its cuts cannot be matched to digits one to one); the share is printed. In a clean drawing, where each digit's box is known, a cut
that takes in most of two written digits or more (touching digits the reader failed
to split, often read with confidence as one: 16 as 6, 45 as 8) becomes an outlier,
``x_outliers``, which training takes towards the uniform distribution.

The benchmarks (``benchmarks/pictures.py``) write MNIST *test* digits, handwriting
fonts and drawn strokes, so what they measure is not what this trained on.

The output is a Keras-layout ``.npz`` with ``x_train`` (N×28×28 uint8),
``y_train`` and ``x_outliers``; the same seed and counts give the same file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.scenes

KINDS = ("photos", "numbers", "drawn", "touching")
MOST_OF = 0.8  # a cut takes in a written digit when it spans this share of its width


_worker: dict = {}


def _start(model: str, data: str | None) -> None:
    """Per process: the judging model and the training digits not held out for validation."""
    from mnist_classifier.data.preprocessing import validation_split
    from mnist_classifier.data.sources import load_dataset
    from mnist_classifier.inference.predict import Classifier

    (x, y), _ = load_dataset("mnist", data, download=False)
    _worker["source"] = validation_split(x, y)[0]  # the default holdout (5,000, seed 0) stays out
    _worker["classifier"] = Classifier.load(model, runtime="onnx" if Path(model).suffix != ".keras" else "keras")


def _case(task: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """One picture's labelled crops, its outliers (cuts of two digits or more), and whether its count of digits was read right."""
    from mnist_classifier.inference.predict import predict_images
    from tests.scenes.camera import clean_canvas, encode, photograph
    from tests.scenes.digits import random_digits
    from tests.scenes.glyphs import mnist_glyph, number_with_boxes, write_number

    kind, seed, index = task
    rng = np.random.default_rng([seed, KINDS.index(kind), index])
    source = _worker["source"]
    boxes = None  # each written digit's box in the picture, where known

    def hand(digit: int, height: int):
        return mnist_glyph(rng, digit, height, source=source)

    if kind == "photos":
        digits = str(int(rng.integers(10)))
        picture = photograph(rng, lambda height: hand(int(digits), height))
    elif kind == "numbers":
        digits = random_digits(rng)
        picture = photograph(rng, lambda height: write_number(rng, digits, height, hand), heights=(0.04, 0.3))
    else:
        digits = random_digits(rng) if kind == "drawn" else "".join(map(str, rng.integers(10, size=rng.integers(2, 5))))
        height = int(np.exp(rng.uniform(np.log(28), np.log(200))))
        mark, written = number_with_boxes(rng, digits, height, hand, touching=1.0 if kind == "touching" else None)
        canvas, (left, top) = clean_canvas(rng, mark)
        picture, boxes = encode(canvas), [(x0 + left, x1 + left) for x0, _, x1, _ in written]
    [prediction] = predict_images(_worker["classifier"], [picture])
    found = prediction.digits or ()
    outliers = [digit.image for digit in found if boxes is not None and _digits_taken_in(digit.box, boxes) >= 2]
    outliers = np.stack(outliers).astype(np.uint8) if outliers else np.zeros((0, 28, 28), np.uint8)
    if len(found) != len(digits):
        return np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), outliers, False
    images = np.stack([digit.image for digit in found]).astype(np.uint8)
    return images, np.array([int(d) for d in digits], np.uint8), outliers, True


def _digits_taken_in(box: tuple[int, int, int, int], written: list[tuple[int, int]]) -> int:
    """How many of the ``written`` digits' column spans ``box`` (x0, y0, x1, y1) takes in ``MOST_OF``."""
    x0, _, x1, _ = box
    return sum(min(x1, b) - max(x0, a) >= MOST_OF * (b - a) for a, b in written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for kind, default in zip(KINDS, (2000, 1500, 1500, 0)):
        parser.add_argument(f"--{kind}", type=int, default=default, help=f"pictures of that kind (default {default})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="mnist-cnn", help="the model that judges the reader's cuts")
    parser.add_argument("--data", default=os.environ.get("MNIST_CLASSIFIER_DATA"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tasks = [(kind, args.seed, i) for kind in KINDS for i in range(getattr(args, kind))]
    started, images, labels, outliers, skipped = time.perf_counter(), [], [], [], {kind: 0 for kind in KINDS}
    with multiprocessing.get_context("spawn").Pool(args.jobs, _start, (args.model, args.data)) as pool:
        for done, ((kind, _, _), (x, y, odd, counted)) in enumerate(zip(tasks, pool.imap(_case, tasks, chunksize=8)), 1):
            images.append(x)
            labels.append(y)
            outliers.append(odd)
            skipped[kind] += not counted
            if done % 200 == 0 or done == len(tasks):
                seconds = time.perf_counter() - started
                print(
                    f"{done}/{len(tasks)} pictures, {sum(map(len, labels))} digits, {sum(map(len, outliers))} outliers, "
                    f"{seconds:.0f} s", file=sys.stderr, flush=True,
                )  # fmt: skip
    x, y, odd = np.concatenate(images), np.concatenate(labels), np.concatenate(outliers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    with open(partial, "wb") as handle:
        np.savez_compressed(handle, x_train=x, y_train=y, x_outliers=odd)
    partial.replace(args.out)
    for kind in KINDS:
        if getattr(args, kind):
            print(f"{kind}: {skipped[kind] / getattr(args, kind):.1%} skipped (count of digits read wrong)")
    print(f"{args.out}: {len(y)} digits, per class {np.bincount(y, minlength=10).tolist()}; {len(odd)} outliers")


if __name__ == "__main__":
    main()
