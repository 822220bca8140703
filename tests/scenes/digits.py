"""Pictures that show digits, with their truth: phone photos, numbers, and the clean sets."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from tests.scenes.camera import clean_picture, encode, photograph
from tests.scenes.glyphs import DIGITS, font_glyph, fonts_with_digits, mnist_glyph, write_number, writer

Seed = np.random.Generator | int | None


def photo_of_digit(rng: Seed = None, digit: int | None = None) -> tuple[bytes, int]:
    """A phone's JPEG of one handwritten ``digit`` (default: random) and that digit.

    The digit is 4-50% of the picture's height, anywhere on the page; see
    :func:`tests.scenes.camera.photograph` for the paper, light and camera.
    """
    rng = np.random.default_rng(rng)
    digit = int(rng.integers(10)) if digit is None else digit
    hand = writer(rng)
    return photograph(rng, lambda height: hand(digit, height)), digit


def photo_of_number(rng: Seed = None, digits: str | None = None) -> tuple[bytes, str]:
    """A phone's JPEG of a handwritten number (default: 2-6 random digits) and its digits as a string.

    One writer writes the whole number; digits are 4-30% of the picture's height
    (less when the row would not fit), sometimes touching.
    """
    rng = np.random.default_rng(rng)
    digits = digits or random_digits(rng)
    hand = writer(rng)
    return photograph(rng, lambda height: write_number(rng, digits, height, hand), heights=(0.04, 0.3)), digits


def drawn_number(rng: Seed = None, digits: str | None = None) -> tuple[bytes, str]:
    """A clean PNG of a handwritten number (default: 2-6 random digits), 28-200 px tall, and its digits."""
    rng = np.random.default_rng(rng)
    digits = digits or random_digits(rng)
    height = int(np.exp(rng.uniform(np.log(28), np.log(200))))
    return clean_picture(rng, write_number(rng, digits, height, writer(rng))), digits


def random_digits(rng: np.random.Generator) -> str:
    """2-6 random digits, as a string (a leading zero is allowed: the reader reads what is written)."""
    return "".join(rng.choice(list(DIGITS), int(rng.integers(2, 7))))


def redrawn_mnist(rng: Seed = None) -> tuple[bytes, int]:
    """An MNIST test digit redrawn cleanly: dark ink on a white PNG of 140-560 px a side, and its label."""
    rng = np.random.default_rng(rng)
    side, digit = int(rng.integers(140, 561)), int(rng.integers(10))
    mark = mnist_glyph(rng, digit, round(side * rng.uniform(0.5, 0.8)))
    return clean_picture(rng, mark, side), digit


def typed_digit(rng: Seed = None, font: str | Path | None = None) -> tuple[bytes, int]:
    """A random digit typed in ``font`` (default: any of :func:`fonts_with_digits`) on a PNG of 48-400 px, and the digit."""
    rng = np.random.default_rng(rng)
    fonts = fonts_with_digits()
    font = Path(font) if font is not None else fonts[rng.integers(len(fonts))]
    side, digit = int(rng.integers(48, 401)), int(rng.integers(10))
    return clean_picture(rng, font_glyph(str(digit), font, round(side * rng.uniform(0.45, 0.8))), side), digit


@functools.lru_cache(maxsize=1)
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8×8 digits (values 0-16) and labels; ImportError without scikit-learn."""
    from sklearn.datasets import load_digits  # optional: only this clean set needs it

    digits = load_digits()
    return digits.images, digits.target


def sklearn_digit(rng: Seed = None, index: int | None = None) -> tuple[bytes, int]:
    """One of scikit-learn's 8×8 digits (default: random) as a PNG of 64-256 px and its label.

    Upscaled blocky (nearest) or smooth (bicubic), white-on-black or black-on-white,
    as the set's own pictures fill their frame.
    """
    rng = np.random.default_rng(rng)
    images, labels = sklearn_digits()
    index = int(rng.integers(len(labels))) if index is None else index
    pixels = Image.fromarray((images[index] * (255 / 16)).astype(np.uint8))
    side = int(rng.integers(64, 257))
    picture = pixels.resize((side, side), Image.NEAREST if rng.random() < 0.5 else Image.BICUBIC)
    if rng.random() < 0.5:
        picture = Image.eval(picture, lambda v: 255 - v)
    return encode(picture), int(labels[index])
