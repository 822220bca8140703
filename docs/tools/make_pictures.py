"""Draw the figures of docs/reading-pictures.md: generated photos, what the reader found, what the model saw.

    python docs/tools/make_pictures.py [--model mnist-cnn] [--out docs/images]

Each case is a picture from the tests' own generator (``tests/scenes``, by seed). It is
read by ``mnist-classifier predict MODEL --json --show-input DIR``, as a user would; the
figure shows the picture upright with a box over each digit found, the answer, and the
28×28 inputs the model was given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.scenes import non_digit, photo_of_digit, photo_of_number  # noqa: E402

# figure name -> (what it shows, how the picture is made)
CASES = {
    "reading-shadow": ("a number half in shadow", lambda: photo_of_number(2)[0]),
    "reading-squared": ("squared paper, a portrait photo (EXIF orientation)", lambda: photo_of_number(0)[0]),
    "reading-page-edge": ("one digit, the page's edge and a shadow", lambda: photo_of_digit(1)[0]),
    "reading-noise": ("no digit: noise", lambda: non_digit(0, "noise")),
    "reading-false-rejection": ("a digit under a hard shadow, rejected", lambda: photo_of_digit(5)[0]),
    "reading-false-digit": ("no digit: a photo of a thing, read as a digit", lambda: non_digit(8, "photos")),
}
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ORANGE = (208, 88, 42)
WIDTH = 480  # of the picture in the figure
INPUT_SIDE = 84  # a 28×28 input drawn 3 times as large (smaller when many do not fit)
MARGIN = 10


def _answer(record: dict) -> str:
    """The text line predict prints for one picture."""
    if record["rejected"]:
        return f"not read: {record['reason']}"
    return f"{record['name']} ({record['probability']:.4f})"


def _figure(jpeg: Path, record: dict, inputs: list[Path]) -> Image.Image:
    """The picture with its boxes, the answer, and the inputs in a row."""
    picture = ImageOps.exif_transpose(Image.open(jpeg)).convert("RGB")
    scale = WIDTH / picture.width
    picture = picture.resize((WIDTH, round(picture.height * scale)), Image.Resampling.LANCZOS)
    pen = ImageDraw.Draw(picture)
    for digit in record.get("digits", []):
        x0, y0, x1, y1 = (round(v * scale) for v in digit["box"])
        pen.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), outline=ORANGE, width=3)
    font = ImageFont.truetype(FONT, 18)
    text = _answer(record)
    line_height = 28
    lines = _wrapped(text, font, WIDTH)
    side = min(INPUT_SIDE, (WIDTH - 8 * (len(inputs) - 1)) // max(len(inputs), 1))
    inputs_height = side + 8 if inputs else 0
    size = (WIDTH + 2 * MARGIN, picture.height + 2 * MARGIN + 8 + line_height * len(lines) + inputs_height)
    figure = Image.new("RGB", size, "white")
    figure.paste(picture, (MARGIN, MARGIN))
    pen = ImageDraw.Draw(figure)
    y = MARGIN + picture.height + 8
    for line in lines:
        pen.text((MARGIN, y), line, fill="black", font=font)
        y += line_height
    for index, path in enumerate(inputs):
        digit = Image.open(path).resize((side, side), Image.Resampling.NEAREST)
        figure.paste(digit, (MARGIN + index * (side + 8), y))
    return figure


def _wrapped(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` in lines no wider than ``width``."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) > width and line:
            lines.append(line)
            candidate = word
        line = candidate
    return [*lines, line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-cnn")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        jpegs = []
        for name, (_, make) in CASES.items():
            jpegs.append(folder / f"{name}.jpg")
            jpegs[-1].write_bytes(make())
        shown = folder / "inputs"
        command = [sys.executable, "-c", "from mnist_classifier.cli import main; main()", "predict", args.model,
                   *map(str, jpegs), "--json", "--show-input", str(shown)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        records = json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)
        args.out.mkdir(parents=True, exist_ok=True)
        for jpeg, record in zip(jpegs, records):
            inputs = sorted(shown.glob(f"{jpeg.stem}-*.png"), key=lambda path: int(path.stem.rsplit("-", 1)[1]))
            target = args.out / f"{jpeg.stem}.jpg"
            _figure(jpeg, record, inputs).save(target, quality=85, optimize=True)
            print(f"{target}: {_answer(record)}")


if __name__ == "__main__":
    main()
