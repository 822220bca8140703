"""Ink shapes: digits from MNIST's test set, fonts and drawn strokes, letters, shapes, scribbles.

Every function here returns a greyscale ``L`` mask, 255 where ink covers the
paper, cropped to its ink and scaled to the ``height`` asked for (in pixels).
Handwritten digits come from three independent sources: MNIST *test* images
upscaled and turned into pen strokes, handwriting fonts, and strokes drawn as
jittered splines through hand-placed control points.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from mnist_classifier.data.sources import load_dataset

ROOT = Path(__file__).resolve().parents[2]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGITS = "0123456789"
FONT_DIRS = (Path("/usr/share/fonts"), Path(matplotlib.get_data_path()) / "fonts" / "ttf")
# Path parts of the fonts that imitate handwriting (Debian's fonts-* packages named in the README).
HANDWRITING = ("breip", "femkeklaver", "fifthhorseman", "rufscript", "sjfonts", "humor-sans")
# Fonts whose digit code points hold other symbols (dingbats, math extension pieces) or a last-resort box.
SYMBOL_FONTS = ("D050000L", "StandardSymbols", "cmex10", "cmsy10", "STIXSiz", "STIXNonUni", "LastResort", "DroidSansFallback")

# --- MNIST and Fashion-MNIST test images -----------------------------------------------------


@functools.lru_cache(maxsize=4)
def test_images(dataset: str = "mnist", path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The *test* split of MNIST or Fashion-MNIST (images N×28×28, labels N); training images are never used.

    ``path`` defaults to ``$MNIST_CLASSIFIER_DATA`` for MNIST, then ``../shared/data/mnist``
    beside the repository; Fashion-MNIST defaults to Debian's ``/usr/share/datasets/fashion-mnist``.
    """
    if path is None:
        path = (os.environ.get("MNIST_CLASSIFIER_DATA") or MNIST_DIR) if dataset == "mnist" else FASHION_DIR
    _, test = load_dataset(dataset, path, download=False)
    return test


def mnist_glyph(
    rng: np.random.Generator, digit: int, height: int, path: str | os.PathLike | None = None,
    source: tuple[np.ndarray, np.ndarray] | None = None,
) -> Image.Image:
    """A random MNIST test image of ``digit`` (or one of ``source``'s images and labels) as a pen stroke ``height`` pixels tall.

    ``source`` is for building training data (``scripts/reader_crops.py`` passes
    the training split); the tests and benchmarks leave it unset.

    The 28×28 image is upscaled smoothly (bicubic, ×8 at least) and cut at a random
    grey level with a soft edge: a low cut gives a broad felt pen, a high one a fine
    ballpoint.
    """
    images, labels = source if source is not None else test_images("mnist", path)
    image = Image.fromarray(images[rng.choice(np.flatnonzero(labels == digit))])
    image = ImageOps.expand(image.crop(image.getbbox()), 2)  # room for the blur at the ink's edges
    # Bicubic ×4 then a blur gives smooth level curves; the second scaling keeps them smooth.
    smooth = image.resize((image.width * 4, image.height * 4), Image.BICUBIC).filter(ImageFilter.GaussianBlur(1.4))
    factor = max(8.0, height / image.height)
    big = smooth.resize((max(1, round(image.width * factor)), round(image.height * factor)), Image.BICUBIC)
    cut, edge = rng.uniform(60, 180), rng.uniform(6, 40)
    ink = big.point(lambda v: int(np.clip((v - cut) / edge, 0, 1) * 255))
    return fit_height(ink.crop(ink.getbbox()), height)


def fashion_item(rng: np.random.Generator, height: int) -> tuple[Image.Image, int]:
    """A random Fashion-MNIST test item upscaled smoothly to ``height`` pixels (L, light item on black) and its label."""
    images, labels = test_images("fashion_mnist")
    index = int(rng.integers(len(labels)))
    item = Image.fromarray(images[index])
    item = item.crop(item.getbbox())
    width = max(1, round(item.width * height / item.height))
    return item.resize((width, height), Image.BICUBIC), int(labels[index])


# --- fonts -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """TrueType and OpenType fonts on this machine and in matplotlib, one per file name, sorted."""
    found = {}
    for folder in FONT_DIRS:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in (".ttf", ".otf") and not any(s in path.name for s in SYMBOL_FONTS):
                found.setdefault(path.name.lower(), path)
    return tuple(sorted(found.values()))


@functools.lru_cache(maxsize=8)
def fonts_with(characters: str) -> tuple[Path, ...]:
    """The fonts among :func:`font_files` that draw every one of ``characters`` as its own visible glyph.

    A character the font lacks is drawn as the font's missing-glyph box (or nothing),
    so a font is kept only when no character draws empty or like that box.
    """
    return tuple(path for path in font_files() if _draws_all(path, characters))


def _draws_all(path: Path, characters: str) -> bool:
    """Whether the font at ``path`` has a visible glyph, distinct from its missing-glyph one, for each character."""
    try:
        font = ImageFont.truetype(str(path), 40)
    except OSError:
        return False
    missing = _glyph_bytes(font, "\U0010fffd")
    drawn = [_glyph_bytes(font, c) for c in characters]
    return all(glyph and glyph != missing for glyph in drawn) and len(set(drawn)) == len(set(characters))


def _glyph_bytes(font: ImageFont.FreeTypeFont, character: str) -> bytes:
    """The pixels of one character's ink, tightly cropped (empty when it draws nothing)."""
    mask = font.getmask(character)
    image = Image.frombytes("L", mask.size, bytes(mask)) if mask.size[0] and mask.size[1] else None
    box = image.getbbox() if image else None
    return image.crop(box).tobytes() if box else b""


def fonts_with_digits() -> tuple[Path, ...]:
    """Every installed font (system and matplotlib's) that draws the ten digits."""
    return fonts_with(DIGITS)


def handwriting_fonts(characters: str = DIGITS) -> tuple[Path, ...]:
    """The handwriting-like fonts (Debian's fonts-breip, -dkg-handwriting, -femkeklaver, ...) that draw ``characters``."""
    return tuple(path for path in fonts_with(characters) if any(part in str(path).lower() for part in HANDWRITING))


@functools.lru_cache(maxsize=64)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def font_glyph(text: str, font: Path, height: int, weight: float = 0.0, slant: float = 0.0) -> Image.Image:
    """``text`` written in ``font``, its ink ``height`` pixels tall.

    ``weight`` thickens the strokes by that fraction of the height (an outline
    drawn around them); ``slant`` leans the top to the right by that fraction of
    the height (negative: to the left).
    """
    size = int(np.clip(height * 1.3, 24, 480))  # drawn at most 480 px high, then scaled
    canvas = Image.new("L", (int(size * (1.2 * len(text) + 1)), size * 2))
    outline = round(weight * size)
    ImageDraw.Draw(canvas).text((size // 2, size // 2), text, fill=255, font=_font(font, size), stroke_width=outline, stroke_fill=255)
    ink = canvas.crop(canvas.getbbox())
    return fit_height(lean(ink, slant), height)


# --- strokes ---------------------------------------------------------------------------------


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, n: int = 9) -> list[tuple[float, float]]:
    """Control points on an ellipse from angle ``start`` to ``stop`` (degrees, clockwise from 3 o'clock, y down)."""
    angles = np.radians(np.linspace(start, stop, n))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))


# Each digit: variants; each variant: strokes of (control points in a unit box, y down; smooth?).
DIGIT_STROKES = {
    0: [[(_arc(0.5, 0.5, 0.48, 0.5, -100, 275), True)], [(_arc(0.5, 0.5, 0.42, 0.5, -80, 290), True)]],
    1: [[([(0.5, 0), (0.5, 1)], False)], [([(0.15, 0.25), (0.6, 0), (0.6, 1)], False)],
        [([(0.2, 0.22), (0.55, 0), (0.55, 1)], False), ([(0.2, 1), (0.9, 1)], False)]],
    2: [[([(0.08, 0.25), (0.4, 0.02), (0.8, 0.1), (0.85, 0.38), (0.45, 0.72), (0.05, 1)], True), ([(0.05, 1), (0.95, 0.97)], False)],
        [([(0.1, 0.2), (0.5, 0), (0.9, 0.25), (0.6, 0.6), (0.1, 0.95), (0.3, 0.85), (0.95, 1)], True)]],
    3: [[([(0.1, 0.15), (0.5, 0), (0.85, 0.2), (0.75, 0.42), (0.4, 0.5)], True), ([(0.4, 0.5), (0.82, 0.6), (0.9, 0.82), (0.55, 1), (0.08, 0.88)], True)],
        [([(0.05, 0), (0.9, 0), (0.4, 0.4)], False), ([(0.4, 0.4), (0.85, 0.6), (0.85, 0.85), (0.5, 1), (0.05, 0.9)], True)]],
    4: [[([(0.65, 0), (0.05, 0.65), (0.95, 0.65)], False), ([(0.7, 0.3), (0.7, 1)], False)],
        [([(0.12, 0), (0.05, 0.6), (0.95, 0.6)], False), ([(0.72, 0.08), (0.72, 1)], False)],
        [([(0.7, 1), (0.7, 0), (0.02, 0.68), (0.98, 0.68)], False)]],
    5: [[([(0.88, 0), (0.2, 0), (0.15, 0.45)], False), ([(0.15, 0.45), (0.5, 0.36), (0.86, 0.55), (0.88, 0.8), (0.55, 1), (0.08, 0.9)], True)],
        [([(0.2, 0), (0.12, 0.45)], False), ([(0.12, 0.45), (0.5, 0.38), (0.9, 0.6), (0.8, 0.92), (0.4, 1), (0.08, 0.85)], True), ([(0.2, 0), (0.9, 0.02)], False)]],
    6: [[([(0.8, 0), (0.4, 0.15), (0.12, 0.55), (0.2, 0.9), (0.5, 1), (0.85, 0.82), (0.8, 0.55), (0.45, 0.5), (0.15, 0.7)], True)],
        [([(0.7, 0), (0.25, 0.4), (0.1, 0.75), (0.4, 1), (0.85, 0.8), (0.6, 0.52), (0.15, 0.72)], True)]],
    7: [[([(0.05, 0), (0.95, 0), (0.35, 1)], False)], [([(0.05, 0.08), (0.95, 0), (0.4, 1)], False), ([(0.3, 0.5), (0.85, 0.5)], False)],
        [([(0.02, 0.15), (0.1, 0), (0.95, 0), (0.55, 0.5), (0.45, 1)], True)]],
    8: [[([(0.5, 0.47), (0.85, 0.25), (0.55, 0), (0.15, 0.2), (0.5, 0.47), (0.9, 0.72), (0.55, 1), (0.1, 0.75), (0.5, 0.47)], True)],
        [(_arc(0.5, 0.25, 0.32, 0.25, 0, 360), True), (_arc(0.5, 0.73, 0.42, 0.27, 0, 360), True)]],
    9: [[([(0.85, 0.25), (0.5, 0), (0.12, 0.2), (0.2, 0.45), (0.55, 0.48), (0.85, 0.25), (0.8, 0.6), (0.7, 1)], True)],
        [(_arc(0.48, 0.27, 0.4, 0.27, 0, 360), True), ([(0.88, 0.2), (0.88, 1)], False)]],
}  # fmt: skip


def spline(points: Sequence[tuple[float, float]], steps: int = 10) -> np.ndarray:
    """A Catmull-Rom curve through ``points`` (N×2), ``steps`` samples between each pair."""
    p = np.asarray(points, dtype=float)
    if len(p) < 3:
        return p
    q = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, steps, endpoint=False)[:, None]
    pieces = [
        0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
        for p0, p1, p2, p3 in zip(q, q[1:], q[2:], q[3:])
    ]
    return np.vstack([*pieces, p[-1:]])


def draw_strokes(strokes: Sequence[tuple[Sequence, bool]], height: int, aspect: float, pen: float) -> Image.Image:
    """Strokes (unit-box control points, smooth or straight) inked ``height`` pixels tall, ``aspect`` wide per high.

    ``pen`` is the stroke width as a fraction of the height; small glyphs are
    drawn four times larger and scaled down, so their edges are smooth.
    """
    scale = 4 if height < 160 else 1
    size, width = height * scale, max(1, round(pen * height * scale))
    pad = width + 2
    canvas = Image.new("L", (round(size * aspect) + 2 * pad + size // 2, size + 2 * pad))
    draw = ImageDraw.Draw(canvas)
    for points, smooth in strokes:
        line = spline(points, max(10, size // 12)) if smooth else np.asarray(points, dtype=float)
        xy = [(pad + x * size * aspect, pad + y * size) for x, y in line]
        draw.line(xy, fill=255, width=width, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round pen tips
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return fit_height(canvas.crop(canvas.getbbox()), height)


def jitter(strokes: Sequence[tuple[Sequence, bool]], rng: np.random.Generator, amount: float, slant: float) -> list:
    """Strokes with every control point moved by N(0, ``amount``) and leaning by ``slant`` (top to the right)."""
    return [
        ([(x + slant * (1 - y) + dx, y + dy) for (x, y), (dx, dy) in zip(points, rng.normal(0, amount, (len(points), 2)))], smooth)
        for points, smooth in strokes
    ]


def stroke_glyph(rng: np.random.Generator, digit: int, height: int) -> Image.Image:
    """``digit`` drawn as one of its hand-placed stroke variants, jittered, slanted, in a random pen width."""
    variants = DIGIT_STROKES[digit]
    strokes = jitter(variants[rng.integers(len(variants))], rng, rng.uniform(0.01, 0.04), rng.uniform(-0.15, 0.3))
    aspect = rng.uniform(0.35, 0.55) if digit == 1 else rng.uniform(0.5, 0.85)
    return draw_strokes(strokes, height, aspect, rng.uniform(0.05, 0.14))


def writer(rng: np.random.Generator, source: str | None = None) -> Callable[[int, int], Image.Image]:
    """One writer's hand: a function of (digit, height) giving that digit's ink mask.

    ``source`` is ``mnist`` (each digit a random MNIST test image), ``font`` (one
    handwriting font at one weight and slant) or ``strokes`` (hand-placed strokes,
    jittered anew for each digit); by default one is drawn at random, 5:3:2
    (strokes instead of a font on a machine without handwriting fonts).
    """
    source = source or str(rng.choice(["mnist", "font", "strokes"], p=[0.5, 0.3, 0.2]))
    if source == "font" and not handwriting_fonts():
        source = "strokes"
    if source == "mnist":
        return lambda digit, height: mnist_glyph(rng, digit, height)
    if source == "strokes":
        return lambda digit, height: stroke_glyph(rng, digit, height)
    fonts = handwriting_fonts()
    font, weight, slant = fonts[rng.integers(len(fonts))], rng.uniform(0, 0.04), rng.uniform(-0.1, 0.25)
    return lambda digit, height: font_glyph(str(digit), font, height, weight, slant)


def write_number(rng: np.random.Generator, digits: str, height: int, glyph: Callable[[int, int], Image.Image]) -> Image.Image:
    """``digits`` written in a row ``height`` pixels tall: each from ``glyph(digit, height)`` (see :func:`number_with_boxes`)."""
    return number_with_boxes(rng, digits, height, glyph)[0]


def number_with_boxes(
    rng: np.random.Generator, digits: str, height: int, glyph: Callable[[int, int], Image.Image], touching: float | None = None
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """``digits`` written in a row ``height`` pixels tall, and each digit's box ``(x0, y0, x1, y1)`` in it.

    Heights vary by ±10% and baselines by ±6%; gaps run from 4% to 35% of the
    height, except that in a third of the numbers each pair of digits touches or
    overlaps slightly (up to 12% of the height) with even odds; ``touching`` sets
    those odds for every number instead (the same ``rng`` draws are made either way).
    """
    odds = 0.5 if rng.random() < 0.35 else 0.0  # that a pair touches
    odds = odds if touching is None else touching
    marks = [glyph(int(d), max(4, round(height * rng.uniform(0.9, 1.1)))) for d in digits]
    gaps = np.where(rng.random(len(marks)) < odds, rng.uniform(-0.12, 0.02, len(marks)), rng.uniform(0.04, 0.35, len(marks)))
    drops = rng.uniform(-0.06, 0.06, len(marks)) * height
    canvas = Image.new("L", (sum(m.width for m in marks) + 2 * height, round(height * 1.5)))
    x, boxes = height // 2, []
    for mark, gap, drop in zip(marks, gaps, drops):
        y = round(height * 1.25 - mark.height + drop)  # bottoms near a common baseline
        canvas.paste(ImageChops.lighter(canvas.crop((x, y, x + mark.width, y + mark.height)), mark), (x, y))
        inked = mark.getbbox() or (0, 0, mark.width, mark.height)
        boxes.append((x + inked[0], y + inked[1], x + inked[2], y + inked[3]))
        x += mark.width + round(gap * height)
    left, top, right, bottom = canvas.getbbox() or (0, 0, canvas.width, canvas.height)
    return canvas.crop((left, top, right, bottom)), [(x0 - left, y0 - top, x1 - left, y1 - top) for x0, y0, x1, y1 in boxes]


# --- things that are not digits ----------------------------------------------------------------


def scribble(rng: np.random.Generator, height: int) -> Image.Image:
    """Scribbles ``height`` pixels tall: a long wandering curve, a zigzag hatch, or a few tangled strokes."""
    kind = rng.integers(3)
    if kind == 0:
        strokes = [(rng.uniform(0, 1, (rng.integers(12, 30), 2)), True)]
    elif kind == 1:
        n = rng.integers(6, 16)
        strokes = [([(i % 2, y) for i, y in enumerate(np.linspace(0, 1, n) + rng.normal(0, 0.02, n))], False)]
    else:
        strokes = [(rng.uniform(0, 1, (rng.integers(5, 10), 2)), True) for _ in range(rng.integers(3, 6))]
    return draw_strokes(strokes, height, rng.uniform(0.8, 2.5), rng.uniform(0.02, 0.07))


def smiley_strokes(rng: np.random.Generator, height: int) -> Image.Image:
    """A hand-drawn smiley ``height`` pixels tall: face, two eyes, a smiling mouth."""
    eye = rng.uniform(0.03, 0.07)
    strokes = [
        (_arc(0.5, 0.5, 0.5, 0.5, -90, 275, 13), True),
        (_arc(0.33, 0.36, eye, eye, 0, 360, 6), True),
        (_arc(0.67, 0.36, eye, eye, 0, 360, 6), True),
        (_arc(0.5, 0.52, rng.uniform(0.2, 0.3), rng.uniform(0.12, 0.25), 20, 160, 7), True),
    ]
    return draw_strokes(jitter(strokes, rng, 0.012, 0.0), height, 1.0, rng.uniform(0.03, 0.07))


SHAPES = ("circle", "square", "triangle", "star", "heart")


def filled_shape(rng: np.random.Generator, shape: str, height: int) -> Image.Image:
    """A filled ``shape`` (one of :data:`SHAPES`) ``height`` pixels tall, squashed or stretched a little."""
    width = round(height * rng.uniform(0.75, 1.3))
    canvas = Image.new("L", (width, height))
    draw = ImageDraw.Draw(canvas)
    unit = _shape_outline(shape)
    draw.polygon([(x * (width - 1), y * (height - 1)) for x, y in unit], fill=255)
    return canvas


def _shape_outline(shape: str) -> list[tuple[float, float]]:
    """The outline of a shape in the unit box (y down)."""
    if shape == "circle":
        return _arc(0.5, 0.5, 0.5, 0.5, 0, 360, 72)
    if shape == "square":
        return [(0, 0), (1, 0), (1, 1), (0, 1)]
    if shape == "triangle":
        return [(0.5, 0), (1, 1), (0, 1)]
    if shape == "star":
        angles = np.radians(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2, 0.2, 0.5)
        return list(zip(0.5 + radii * np.cos(angles), 0.53 + radii * np.sin(angles)))
    t = np.linspace(0, 2 * np.pi, 90)  # heart
    x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return list(zip((x + 17) / 34, (13 - y) / 30))


# --- shared helpers --------------------------------------------------------------------------


def fit_height(mask: Image.Image, height: int) -> Image.Image:
    """``mask`` scaled (aspect kept) to ``height`` pixels tall."""
    if mask.height == height:
        return mask
    width = max(1, round(mask.width * height / mask.height))
    return mask.resize((width, height), Image.LANCZOS if height < mask.height else Image.BICUBIC)


def lean(mask: Image.Image, slant: float) -> Image.Image:
    """``mask`` sheared so its top moves ``slant`` × height to the right (negative: left)."""
    if abs(slant) < 1e-3:
        return mask
    width = mask.width + round(abs(slant) * mask.height)
    # Output (x, y) samples input (x + slant*y - max(slant, 0)*h, y): rows shift in proportion to their height.
    coefficients = (1, slant, -max(slant, 0.0) * mask.height, 0, 1, 0)
    sheared = mask.transform((width, mask.height), Image.AFFINE, coefficients, Image.BICUBIC)
    return sheared.crop(sheared.getbbox())
