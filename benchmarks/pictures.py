"""Accuracy on people's pictures, kind by kind: our own generated cases (tests/scenes) read by a bundled model.

Usage (from the project root):

    .venv/bin/python benchmarks/pictures.py                       # mnist-cnn on onnx, 50 cases a kind
    .venv/bin/python benchmarks/pictures.py --count 400 --kind "digit photos"
    .venv/bin/python benchmarks/pictures.py --json > pictures.json
    .venv/bin/python benchmarks/pictures.py --sheet /tmp/cases.png  # look at the cases, no model

Each picture goes alone through ``predict_images``, as a person's upload does.
A digit photo is right when it is not rejected and reads as its digit; a number
when it is not rejected and reads exactly; a picture with no digit when it is
rejected; a clean digit when it reads as its digit. A picture that the reader
raises an error on, takes over --limit seconds for, or runs out of memory on
(the process may take --memory-gb of address space) is wrong and counted under
errors. Cases are the same for the same --seed (and the same installed fonts
and packages). scikit-learn's 8×8 digits are skipped when it is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import resource
import signal
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.scenes

from mnist_classifier.errors import MnistClassifierError, first_line  # noqa: E402
from mnist_classifier.inference.predict import Classifier, predict_images  # noqa: E402
from tests.scenes import (  # noqa: E402
    NON_DIGIT_KINDS,
    drawn_number,
    fonts_with_digits,
    non_digit,
    photo_of_digit,
    photo_of_number,
    redrawn_mnist,
    sklearn_digit,
    typed_digit,
)

Maker = Callable[[np.random.Generator, int], tuple[bytes, str]]  # (rng, case index) -> picture, truth ("" for none)


@dataclass(frozen=True)
class Kind:
    """One row of the table: how its cases are made and scored."""

    name: str
    group: str  # "photo" (one digit), "number", "none" (must be rejected) or "clean"
    make: Maker


def _with_truth(make: Callable) -> Maker:
    """A maker of (picture, digit or digits) cases as a :data:`Maker` of (picture, truth string)."""

    def case(rng: np.random.Generator, index: int) -> tuple[bytes, str]:
        picture, truth = make(rng)
        return picture, str(truth)

    return case


def _typed(rng: np.random.Generator, index: int) -> tuple[bytes, str]:
    """Case ``index`` is typed in the ``index``-th font (cycling), so every font takes its turn."""
    fonts = fonts_with_digits()
    picture, digit = typed_digit(rng, fonts[index % len(fonts)])
    return picture, str(digit)


KINDS = (
    Kind("digit photos", "photo", _with_truth(photo_of_digit)),
    Kind("number photos", "number", _with_truth(photo_of_number)),
    Kind("drawn numbers", "number", _with_truth(drawn_number)),
    *(Kind(f"no digit: {kind}", "none", lambda rng, index, kind=kind: (non_digit(rng, kind), "")) for kind in NON_DIGIT_KINDS),
    Kind("redrawn MNIST", "clean", _with_truth(redrawn_mnist)),
    Kind("typed digits", "clean", _typed),
    Kind("sklearn 8x8", "clean", _with_truth(sklearn_digit)),
)
GROUPS = {"photo": "single-digit photos", "number": "numbers", "none": "no digit", "clean": "clean sets"}


@dataclass(frozen=True)
class Answer:
    """What the reader said about one picture, and how long it took."""

    number: str
    rejected: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class Row:
    """One kind's figures."""

    kind: str
    group: str
    cases: int
    right: float
    rejected: float
    length: float | None  # numbers: share read with the right count of digits
    errors: int
    mean_s: float
    p50_s: float


def cases(kind: Kind, count: int, seed: int) -> Iterator[tuple[bytes, str]]:
    """The ``count`` cases of ``kind`` for ``seed``, made one at a time: case i depends only on (seed, kind name, i)."""
    stream = zlib.crc32(kind.name.encode())
    return (kind.make(np.random.default_rng([seed, stream, index]), index) for index in range(count))


def read(classifier: Classifier, picture: bytes, limit: float) -> Answer:
    """The reader's answer to one picture.

    A picture it raised an error on, ran out of memory on or took over ``limit``
    seconds for counts as neither read nor rejected.

    For a reader older than ``number`` and ``rejected`` (to measure it against
    today's), the single digit's label stands for the number and nothing is rejected.
    """
    started = time.perf_counter()
    try:
        with _time_limit(limit):
            [prediction] = predict_images(classifier, [picture])
    except MnistClassifierError as exc:
        return Answer("", False, time.perf_counter() - started, first_line(exc))
    except _TimeLimitError:
        return Answer("", False, time.perf_counter() - started, f"took over {limit:g} s")
    except MemoryError:  # under --memory-gb: one greedy picture must not take the machine down
        return Answer("", False, time.perf_counter() - started, "ran out of memory")
    seconds = time.perf_counter() - started
    number = getattr(prediction, "number", None)
    return Answer(str(prediction.label) if number is None else number, bool(getattr(prediction, "rejected", False)), seconds)


class _TimeLimitError(Exception):
    """A picture took longer than the benchmark's limit."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _TimeLimitError in the block once ``seconds`` have passed (a pathological picture must not stall the run)."""

    def expire(signum, frame):
        raise _TimeLimitError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def is_right(group: str, truth: str, answer: Answer) -> bool:
    """Whether ``answer`` is right for a case of ``group`` whose truth is ``truth``."""
    if answer.error:
        return False
    if group == "none":
        return answer.rejected
    if group == "clean":
        return answer.number == truth
    return not answer.rejected and answer.number == truth


def score(kind: Kind, truths: list[str], answers: list[Answer]) -> Row:
    """One kind's row from its truths and answers."""
    n = len(answers)
    seconds = [a.seconds for a in answers]
    length = None
    if kind.group == "number":
        length = sum(not a.rejected and len(a.number) == len(t) for t, a in zip(truths, answers)) / n
    return Row(
        kind.name,
        kind.group,
        n,
        sum(is_right(kind.group, t, a) for t, a in zip(truths, answers)) / n,
        sum(a.rejected for a in answers) / n,
        length,
        sum(a.error is not None for a in answers),
        statistics.fmean(seconds),
        statistics.median(seconds),
    )


def save_failure(folder: Path, kind: Kind, index: int, picture: bytes, truth: str, answer: Answer) -> None:
    """Write a case the reader got wrong, named by its kind, index, truth and answer."""
    folder.mkdir(parents=True, exist_ok=True)
    said = "rejected" if answer.rejected else ("error" if answer.error else f"read-{answer.number or 'nothing'}")
    suffix = ".jpg" if picture[:2] == b"\xff\xd8" else ".png"
    name = f"{kind.name.replace(':', '').replace(' ', '-')}-{index:03d}-truth-{truth or 'none'}-{said}{suffix}"
    (folder / name).write_bytes(picture)


def contact_sheet(path: Path, kinds: list[Kind], count: int, seed: int, side: int = 200) -> None:
    """A PNG of the first ``count`` cases of each kind (one row a kind, upright, captioned with the truth)."""
    import io

    from PIL import Image, ImageDraw, ImageOps

    sheet = Image.new("RGB", (side * count, (side + 16) * len(kinds)), (96, 96, 96))
    draw = ImageDraw.Draw(sheet)
    for row, kind in enumerate(kinds):
        for column, (picture, truth) in enumerate(cases(kind, count, seed)):
            image = ImageOps.exif_transpose(Image.open(io.BytesIO(picture))).convert("RGB")
            caption = f"{kind.name[:22]} {truth} {image.width}x{image.height}"
            image.thumbnail((side - 4, side - 4))
            sheet.paste(image, (column * side + 2, row * (side + 16) + 16))
            draw.text((column * side + 2, row * (side + 16) + 2), caption, fill=(255, 255, 0))
    sheet.save(path)


def run(args: argparse.Namespace, kinds: list[Kind]) -> list[Row]:
    """Make and read every kind's cases, one picture at a time; one row each (progress on stderr)."""
    classifier = Classifier.load(args.model, runtime=args.runtime)
    rows = []
    for kind in kinds:
        truths, answers, making = [], [], 0.0
        started = time.perf_counter()
        for index, (picture, truth) in enumerate(cases(kind, args.count, args.seed)):
            making += time.perf_counter() - started
            answer = read(classifier, picture, args.limit)
            truths.append(truth)
            answers.append(answer)
            if args.failures and not is_right(kind.group, truth, answer):
                save_failure(Path(args.failures), kind, index, picture, truth, answer)
            started = time.perf_counter()
        rows.append(score(kind, truths, answers))
        print(f"  {kind.name}: made in {making:.1f} s, read in {sum(a.seconds for a in answers):.1f} s", file=sys.stderr, flush=True)
        for error, times in Counter(a.error for a in answers if a.error).most_common():
            print(f"    {times} raised: {error}", file=sys.stderr)
    return rows


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    """The rows as a table, then each group's and every picture's figures."""
    print(f"\n{args.model} on {args.runtime}, {args.count} cases a kind, seed {args.seed}\n")
    print(f"{'kind':24} {'cases':>5} {'right':>7} {'rejected':>8} {'length':>7} {'errors':>6} {'mean s':>7} {'p50 s':>6}")
    for row in rows:
        length = f"{row.length:7.1%}" if row.length is not None else f"{'':7}"
        print(f"{row.kind:24} {row.cases:>5} {row.right:7.1%} {row.rejected:8.1%} {length} {row.errors:>6} {row.mean_s:7.3f} {row.p50_s:6.3f}")
    print()
    for group, words in [*GROUPS.items(), (None, "all pictures")]:
        chosen = [row for row in rows if group is None or row.group == group]
        if chosen:
            n = sum(row.cases for row in chosen)
            right = sum(row.right * row.cases for row in chosen) / n
            mean = sum(row.mean_s * row.cases for row in chosen) / n
            print(f"{words:24} {n:>5} {right:7.1%}  mean {mean:.3f} s a picture")


def main() -> None:
    """Parse the flags, then print the table (or JSON), or write a contact sheet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-cnn", help="bundled model name or model file (default: mnist-cnn)")
    parser.add_argument("--runtime", default="onnx", choices=["onnx", "keras"], help="what runs the model (default: onnx)")
    parser.add_argument("--count", type=int, help="cases of each kind (default: 50; 8 for --sheet)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cases (default: 0)")
    parser.add_argument("--kind", action="append", choices=[kind.name for kind in KINDS], help="repeatable; default: every kind")
    parser.add_argument("--limit", type=float, default=30.0, help="seconds a picture may take before it counts as an error (default: 30)")
    parser.add_argument("--memory-gb", type=float, default=8.0, help="address space the process may take, in GB; 0: no limit (default: 8)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--failures", metavar="DIR", help="write every case read wrong into DIR, named by truth and answer")
    parser.add_argument("--sheet", metavar="PNG", help="write a contact sheet of the cases (8 a kind, or --count) and stop")
    args = parser.parse_args()
    if args.count is None:
        args.count = 8 if args.sheet else 50
    if args.count < 1:
        parser.error(f"--count {args.count}: expected at least 1")
    kinds = [kind for kind in KINDS if args.kind is None or kind.name in args.kind]
    if importlib.util.find_spec("sklearn") is None:
        print("scikit-learn is not installed: skipping sklearn 8x8", file=sys.stderr)
        kinds = [kind for kind in kinds if kind.name != "sklearn 8x8"]
    if args.sheet:
        contact_sheet(Path(args.sheet), kinds, args.count, args.seed)
        return
    if args.memory_gb > 0:
        limit = int(args.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    rows = run(args, kinds)
    if args.json:
        print(json.dumps({"model": args.model, "runtime": args.runtime, "count": args.count, "seed": args.seed, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
