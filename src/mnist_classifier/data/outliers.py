"""Pictures that are not digits, framed as the product frames people's pictures.

Outlier exposure (Hendrycks et al., 2019, "Deep Anomaly Detection with Outlier
Exposure") trains a classifier to answer such pictures with the uniform
distribution, so that its top probability falls on what it has never been meant to
read. The kinds made here: Fashion-MNIST items, letters and short words rendered in
the fonts found on the machine (matplotlib's own DejaVu, STIX and Computer Modern
fonts are always there; handwriting fonts are used when installed), random
scribbles, filled shapes and faces, and noise. Letters that people's digits resemble
(O, I, l, S, Z, B, g, q...) are left out of the single letters.

Every picture goes through :func:`mnist_classifier.images.to_digit`, as a user's
photo does. ``split="train"`` and ``split="test"`` never share a font, a Fashion-MNIST
image or a random stream: the test split is for benchmarks.

Example:
    >>> images = non_digits(1000, seed=0)          # 1000×28×28 uint8, mixed kinds
    >>> letters = non_digit_kind("letters", 200, split="test")
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnist_classifier.errors import ConfigError, ImageError
from mnist_classifier.data.formats import IMAGE_SIZE

SPLITS = ("train", "test")
# Share of each kind in a mixed set (they add up to 1).
MIX = {"fashion": 0.4, "letters": 0.25, "words": 0.1, "scribbles": 0.1, "shapes": 0.08, "noise": 0.07}
KINDS = tuple(MIX)
# Letters that look like a digit (0, 1, 2, 5, 6, 8, 9) in some hand or font.
LOOKALIKES = "DGIJOQSZBbgijlooqsz"
LETTERS = "".join(c for c in string.ascii_letters if c not in LOOKALIKES)
CANVAS = 96  # pixels: drawings are made this large, then framed down to 28×28
TEST_FONT_EVERY = 4  # one font in four is kept for the test split


def non_digits(count: int, seed: int = 0, split: str = "train", fashion_path: str | None = None) -> np.ndarray:
    """``count`` non-digit pictures of every kind in MIX, shuffled, as N×28×28 uint8 (ink bright on black).

    The same ``count``, ``seed`` and ``split`` give the same pictures.
    """
    _check(count, split)
    shares = np.array(list(MIX.values()))
    counts = np.floor(shares * count).astype(int)
    counts[: count - counts.sum()] += 1
    parts = [non_digit_kind(kind, int(n), seed, split, fashion_path) for kind, n in zip(KINDS, counts) if n]
    images = np.concatenate(parts) if parts else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return images[np.random.default_rng([seed, SPLITS.index(split), 99]).permutation(len(images))]


def non_digit_kind(kind: str, count: int, seed: int = 0, split: str = "train", fashion_path: str | None = None) -> np.ndarray:
    """``count`` pictures of one kind (one of KINDS) as N×28×28 uint8, framed by ``to_digit``."""
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
    _check(count, split)
    rng = np.random.default_rng([seed, SPLITS.index(split), KINDS.index(kind)])
    if kind == "fashion":
        return _fashion(count, rng, split, fashion_path)
    draw = {"letters": _letter, "words": _word, "scribbles": _scribble, "shapes": _shape, "noise": _noise}[kind]
    fonts = font_files(split)
    return np.stack([_framed(lambda: draw(rng, fonts), rng) for _ in range(count)]) if count else _empty()


@functools.cache
def font_files(split: str = "train") -> tuple[Path, ...]:
    """The font files with every Latin letter, of ``split``: matplotlib's, then the system's.

    Fonts are sorted by file name and every TEST_FONT_EVERY-th one is the test split's.
    """
    import matplotlib
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    candidates = {Path(p).name: Path(p) for p in font_manager.findSystemFonts()}
    candidates |= {p.name: p for p in Path(matplotlib.get_data_path(), "fonts", "ttf").glob("*.ttf")}
    usable = []
    for name in sorted(candidates):
        try:
            charmap = FT2Font(str(candidates[name])).get_charmap()
        except (OSError, RuntimeError, ValueError):
            continue
        if all(ord(c) in charmap for c in string.ascii_letters):
            usable.append(candidates[name])
    chosen = tuple(p for i, p in enumerate(usable) if (i % TEST_FONT_EVERY == TEST_FONT_EVERY - 1) == (split == "test"))
    if not chosen:
        raise ConfigError("no font with the Latin letters found (matplotlib's own fonts are missing?)")
    return chosen


def _check(count: int, split: str) -> None:
    """A count of pictures and a split name, or a ConfigError."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count={count!r}: expected an integer >= 0")
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: expected one of {', '.join(SPLITS)}")


def _empty() -> np.ndarray:
    return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def _framed(draw: Callable[[], Image.Image], rng: np.random.Generator) -> np.ndarray:
    """A drawing (dark on light, or light on dark half of the time), framed as a user's picture."""
    from mnist_classifier.inference.images import to_digit

    while True:
        grey = np.asarray(draw().convert("L"), np.uint8)
        if rng.random() < 0.5:
            grey = 255 - grey
        try:
            return to_digit(grey)
        except ImageError:  # a drawing with no visible ink: draw another
            continue


def _fashion(count: int, rng: np.random.Generator, split: str, path: str | None) -> np.ndarray:
    """Fashion-MNIST items of the split (train images for training, test images for tests), re-framed."""
    from mnist_classifier.data.sources import read_dataset
    from mnist_classifier.inference.images import to_digit

    dataset = read_dataset("fashion_mnist", path)
    images = dataset.train[0] if split == "train" else dataset.test[0]
    framed = []
    while len(framed) < count:
        for index in rng.permutation(len(images)):
            try:
                framed.append(to_digit(images[index]))
            except ImageError:  # an item filling its whole frame leaves no paper to tell ink from
                continue
            if len(framed) == count:
                break
    return np.stack(framed) if count else _empty()


def _font(rng: np.random.Generator, fonts: tuple[Path, ...], size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), size)


def _text(rng: np.random.Generator, fonts: tuple[Path, ...], text: str, size: int) -> Image.Image:
    """``text`` in a random font, black on white, tilted up to 15 degrees."""
    font = _font(rng, fonts, size)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + size, bottom - top + size), 255)
    ImageDraw.Draw(canvas).text((size // 2 - left, size // 2 - top), text, fill=0, font=font)
    return canvas.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR, expand=True, fillcolor=255)


def _letter(rng: np.random.Generator, fonts: tuple[Path, ...]) -> Image.Image:
    return _text(rng, fonts, LETTERS[rng.integers(len(LETTERS))], int(rng.integers(40, 72)))


def _word(rng: np.random.Generator, fonts: tuple[Path, ...]) -> Image.Image:
    letters = rng.choice(list(string.ascii_letters), size=int(rng.integers(2, 7)))
    return _text(rng, fonts, "".join(letters), int(rng.integers(28, 48)))


def _scribble(rng: np.random.Generator, fonts: tuple[Path, ...]) -> Image.Image:
    """Two to five random strokes, each a curve through four to nine points."""
    canvas = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 6))):
        points = rng.uniform(8, CANVAS - 8, size=(int(rng.integers(4, 10)), 2))
        pen.line([tuple(p) for p in points], fill=0, width=int(rng.integers(3, 10)), joint="curve")
    return canvas


def _shape(rng: np.random.Generator, fonts: tuple[Path, ...]) -> Image.Image:
    """A filled ellipse, box, polygon or star about as wide as tall, or a smiley."""
    canvas = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(canvas)
    half_w = rng.uniform(18, 40)
    half_h = half_w * rng.uniform(0.6, 1.6)
    c = CANVAS / 2
    box = (c - half_w, c - min(half_h, 44), c + half_w, c + min(half_h, 44))
    kind = rng.integers(5)
    if kind == 0:
        pen.ellipse(box, fill=0)
    elif kind == 1:
        pen.rectangle(box, fill=0)
    elif kind in (2, 3):
        corners = int(rng.integers(3 if kind == 2 else 4, 9)) * (2 if kind == 3 else 1)
        angles = np.linspace(0, 2 * np.pi, corners, endpoint=False) + rng.uniform(0, 2 * np.pi)
        if kind == 2:  # jittered corners, never so far that the polygon becomes a sliver (a 1)
            angles += rng.uniform(-0.3, 0.3, corners) * np.pi / corners
        radii = np.ones(corners) if kind == 2 else np.where(np.arange(corners) % 2, 0.45, 1.0)
        points = [(c + r * half_w * np.cos(a), c + r * min(half_h, 44) * np.sin(a)) for r, a in zip(radii, angles)]
        pen.polygon(points, fill=0)
    else:
        width = int(rng.integers(3, 7))
        pen.ellipse(box, outline=0, width=width)
        for side in (-1, 1):
            eye = (c + side * half_w * 0.4, c - half_h * 0.3)
            pen.ellipse((eye[0] - 4, eye[1] - 4, eye[0] + 4, eye[1] + 4), fill=0)
        mouth = (c - half_w * 0.55, c - half_h * 0.3, c + half_w * 0.55, c + half_h * 0.6)
        pen.arc(mouth, 20, 160, fill=0, width=width)
    return canvas.rotate(rng.uniform(-30, 30), resample=Image.Resampling.BILINEAR, fillcolor=255)


def _noise(rng: np.random.Generator, fonts: tuple[Path, ...]) -> Image.Image:
    """Pixel noise, smooth blotches, or a textured patch like a cut from a photograph."""
    kind = rng.integers(3)
    if kind == 0:
        pixels = rng.uniform(0, 255, (CANVAS, CANVAS))
    else:
        coarse = rng.uniform(0, 255, (int(rng.integers(3, 12)),) * 2).astype(np.uint8)
        pixels = np.asarray(Image.fromarray(coarse).resize((CANVAS, CANVAS), Image.Resampling.BICUBIC), np.float64)
        if kind == 2:
            pixels += rng.normal(0, 25, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def digit_pairs(images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` pictures of two digits side by side framed as one, N×28×28 uint8: what a reader cuts
    when it fails to split two touching digits, and what a model should not read as one digit.

    Two random ``images`` (digits, ink bright on black) are cut to their ink, scaled
    to heights within 15% of each other, set at baselines up to 10% apart and
    3–25% of the height apart, touching, or overlapping by up to 15%, then framed
    as the reader frames a digit (:func:`mnist_classifier.inference.images.frame_digit`).
    """
    from mnist_classifier.inference.images import frame_digit

    _check(count, "train")
    rng = np.random.default_rng([seed, 7])
    pairs = []
    while len(pairs) < count:
        left, right = (ink_box(images[i]) for i in rng.integers(len(images), size=2))
        if left is None or right is None:
            continue
        height = 40
        parts = [to_height(part, round(height * rng.uniform(0.85, 1.0))) for part in (left, right)]
        gap = round(height * rng.choice([rng.uniform(0.03, 0.25), rng.uniform(-0.15, 0.0)]))
        drop = round(height * rng.uniform(-0.1, 0.1))
        width = parts[0].shape[1] + max(gap, -min(parts[0].shape[1], parts[1].shape[1]) // 2) + parts[1].shape[1]
        canvas = np.zeros((height + 2 * abs(drop) + 2, max(width, parts[0].shape[1]) + 2), np.float32)
        canvas[abs(drop) : abs(drop) + parts[0].shape[0], : parts[0].shape[1]] = parts[0]
        start = canvas.shape[1] - 2 - parts[1].shape[1]
        top = abs(drop) + drop
        region = canvas[top : top + parts[1].shape[0], start : start + parts[1].shape[1]]
        np.maximum(region, parts[1][: region.shape[0]], out=region)
        pairs.append(frame_digit(canvas))
    return np.stack(pairs) if count else _empty()


def ink_box(image: np.ndarray) -> np.ndarray | None:
    """A digit image cut to its ink (None when it has none)."""
    rows, cols = np.nonzero(image)
    if rows.size == 0:
        return None
    return image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def to_height(part: np.ndarray, height: int) -> np.ndarray:
    """``part`` resized (antialiased) to ``height`` rows, its aspect kept, as float32."""
    width = max(1, round(part.shape[1] * height / part.shape[0]))
    return np.asarray(Image.fromarray(part).resize((width, height), Image.Resampling.LANCZOS), np.float32)
