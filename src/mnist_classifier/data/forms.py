"""Digits as people write them where MNIST's writers did not, and as small pictures hold them, made from
MNIST's own digits.

MNIST's writers (American Census employees and students) wrote a 1 as a bare stroke.
Much of the world, and most type, gives it a flag from the top of the stem down to the
left, and often a foot; a model that has seen only bare strokes reads such a 1 as a 7.
:func:`flagged_ones` draws that flag (and the foot) onto MNIST's own 1s, in their own
pen, so that the model learns the form without learning a font.

A digit scanned or photographed at a few pixels (an 8×8 scan, a thumbnail) and enlarged
again has soft, uneven strokes that MNIST's 20-pixel digits never show:
:func:`low_resolution` makes such pictures of MNIST's digits and reads them as a user's
upload is read.

Example:
    >>> ones = flagged_ones(x_train, y_train, 4000, seed=0)   # 4000×28×28 uint8, all 1s
    >>> small, digits = low_resolution(x_train, y_train, 4000, seed=0)   # 4000×28×28 uint8 and their labels
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from mnist_classifier.data.outliers import ink_box, to_height
from mnist_classifier.errors import ConfigError

HEIGHT = 80  # pixels: each 1 is drawn on at this height, then framed down to 28×28
FLAG_SLOPE = (25.0, 70.0)  # degrees under the horizontal: a 7's bar is near level
FLAG_TURN = 20.0  # degrees at least between the flag and the stem
FLAG_LENGTH = (0.15, 0.4)  # of the 1's height: a 7's bar is longer
UPSTROKE = (45.0, 0.7)  # flags this steep (degrees) or steeper may run this share of the height: a long upstroke
SLANT = 20.0  # degrees from the vertical: 1s slanted further are not used (a slanted stem under a flag is a 7)
FOOT_SHARE = 1 / 3  # of the 1s get a foot across the bottom of the stem
FOOT_HALF = (0.12, 0.25)  # of the height, each side of the stem
BOLD_SHARE = 1 / 3  # of the 1s are made bold first, as a marker or a bold typeface writes them
BOLD = (0.03, 0.07)  # of the height: the pen widened by this much each side
BOLD_SLANT = 10.0  # degrees from the vertical: only 1s standing this straight are made bold (as type stands)
SMALL_SIDE = (6, 14)  # pixels: the longer side of a digit's box at low resolution
SMALL_MARGIN = (0.0, 0.25)  # of that side: the paper around it in the small picture
TONES = (17, 256)  # grey levels of the small picture (an 8x8 scan's counts 0-16, or 8-bit)
ENLARGED = (64, 256)  # pixels: the longer side it is enlarged to again
WHOLE = 0.8  # of the enlarged digit's ink box, each way: the reader's mark spans at least this much of it
ENLARGE = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.LANCZOS, Image.Resampling.NEAREST)


def flagged_ones(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` 1s with a flag, a third of them with a foot, N×28×28 uint8, made from the 1s among ``images``.

    Each is a random 1 of ``images`` (digits, ink bright on black, ``labels`` their
    digits) standing within 20° of the vertical, drawn at 80 px high. From the top of
    its stem a straight stroke of the stem's own width and ink runs down to the left,
    25–70° under the horizontal and at least 20° from the stem: 15–40% of the height
    long, or up to 70% for a stroke steeper than 45° (the long upstroke of a
    continental 1). A 7's bar is longer, near level, over a slanted stem; these stay
    1s. A third are made bold first (the pen widened by 3–7% of the height each side,
    the flag then as wide: a marker's or a bold typeface's 1, its beak short and heavy),
    and a third get a foot across the bottom of the stem. Each is framed as the reader frames a
    digit (:func:`mnist_classifier.inference.images.frame_digit`). The same arguments
    give the same pictures.
    """
    from mnist_classifier.inference.images import frame_digit

    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count={count!r}: expected a whole number >= 0")
    ones = images[np.asarray(labels) == 1]
    if count and not len(ones):
        raise ConfigError("flagged ones need 1s among the training digits; there are none")
    rng = np.random.default_rng([seed, 13])
    made = []
    while len(made) < count:
        box = ink_box(ones[rng.integers(len(ones))])
        flagged = None if box is None else _with_flag(to_height(box, HEIGHT), rng)
        if flagged is not None:
            made.append(frame_digit(flagged))
    return np.stack(made) if count else np.zeros((0, 28, 28), np.uint8)


def _ends(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) of the top and of the bottom of a 1's stem: the middle of its ink in its top and bottom rows."""
    rows, cols = np.nonzero(ink)
    end = 0.04 * HEIGHT  # the rows that make a stroke's end
    top = np.array([cols[rows <= rows.min() + end].mean(), rows.min()])
    bottom = np.array([cols[rows >= rows.max() - end].mean(), rows.max()])
    return top, bottom


def _slant(top: np.ndarray, bottom: np.ndarray) -> float:
    """How far a 1's stem from ``top`` to ``bottom`` (:func:`_ends`) leans from the vertical, in degrees
    (> 0: leaning right, as "/")."""
    return float(np.degrees(np.arctan2(top[0] - bottom[0], bottom[1] - top[1])))


def _with_flag(stem: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A 1's ink levels (float32, cut to its ink) on a larger canvas, made bold a third of the time, with a flag
    drawn on, and a foot a third of the time; None for a 1 slanted more than ``SLANT``."""
    pad = HEIGHT
    canvas = np.zeros((stem.shape[0] + 2 * pad, stem.shape[1] + 2 * pad), np.float32)
    canvas[pad : pad + stem.shape[0], pad : pad + stem.shape[1]] = stem
    if rng.random() < BOLD_SHARE and abs(_slant(*_ends(canvas > 0.5 * canvas.max()))) <= BOLD_SLANT:
        radius = HEIGHT * rng.uniform(*BOLD)
        size = 2 * int(radius) + 1
        disc = np.hypot(*np.mgrid[-(size // 2) : size // 2 + 1, -(size // 2) : size // 2 + 1]) <= radius
        canvas = ndimage.grey_dilation(canvas, footprint=disc)
    ink = canvas > 0.5 * canvas.max()
    top, bottom = _ends(ink)
    width = max(2.0, ink.sum() / HEIGHT * rng.uniform(0.8, 1.1))  # a stroke's area over its length
    level = int(np.percentile(canvas[ink], 90))
    slant = _slant(top, bottom)
    if abs(slant) > SLANT:
        return None
    degrees = rng.uniform(FLAG_SLOPE[0], min(FLAG_SLOPE[1], 90 - FLAG_TURN - slant))
    longest = FLAG_LENGTH[1] if degrees < UPSTROKE[0] else UPSTROKE[1]
    slope = np.radians(degrees)
    strokes = [(top, top + HEIGHT * rng.uniform(FLAG_LENGTH[0], longest) * np.array([-np.cos(slope), np.sin(slope)]))]
    down = np.arctan2(*(bottom - top)[::-1])
    if rng.random() < FOOT_SHARE:
        across = np.array([np.cos(down + np.pi / 2), np.sin(down + np.pi / 2)])
        strokes.append((bottom - HEIGHT * rng.uniform(*FOOT_HALF) * across, bottom + HEIGHT * rng.uniform(*FOOT_HALF) * across))
    pen = Image.new("L", (canvas.shape[1], canvas.shape[0]))
    draw = ImageDraw.Draw(pen)
    radius = width / 2
    for start, stop in strokes:
        draw.line([tuple(start), tuple(stop)], fill=level, width=round(width))
        for x, y in (start, stop):  # round ends, as a pen leaves them
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=level)
    return np.maximum(canvas, np.asarray(pen, np.float32))


def low_resolution(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random digits of ``images`` as the reader reads them from a small picture enlarged again:
    N×28×28 uint8 and their ``labels``.

    Each digit (ink bright on black), half the time made black and white first (an
    old scanner's bitmap), is reduced by area averaging until its box's longer side
    is 6–14 pixels, with up to a quarter of that side of paper around it, its tones
    quantized to 17 levels (an 8×8 scan's counts 0–16) or 256; that small picture is
    enlarged to 64–256 pixels bicubically, bilinearly, with Lanczos's filter or by
    repeating pixels, shown dark on light or light on dark, and read as an upload is
    (:func:`mnist_classifier.inference.reading.read_digits`). A digit it does not
    read as one mark spanning most of its ink (``WHOLE``) is drawn again. The same
    arguments give the same pictures.
    """
    from mnist_classifier.inference.images import Picture
    from mnist_classifier.inference.reading import read_digits

    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count={count!r}: expected a whole number >= 0")
    if count and not len(images):
        raise ConfigError("low-resolution digits need training digits; there are none")
    if not count:
        return np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.asarray(labels).dtype)
    rng = np.random.default_rng([seed, 14])
    made, digits = [], []
    while len(made) < count:
        index = int(rng.integers(len(images)))
        small = _small_picture(images[index], rng)
        if small is None:
            continue
        side = int(rng.integers(ENLARGED[0], ENLARGED[1] + 1))
        enlarged = _to_side(Image.fromarray(small), side, ENLARGE[int(rng.integers(len(ENLARGE)))])
        grey = enlarged if rng.random() < 0.5 else 255 - enlarged
        reading = read_digits(Picture(grey, 1.0, (grey.shape[1], grey.shape[0])))
        if len(reading.marks) == 1 and _whole(reading.marks[0].box, enlarged):
            made.append(reading.marks[0].image)
            digits.append(labels[index])
    return np.stack(made), np.asarray(digits, np.asarray(labels).dtype)


def _to_side(image: Image.Image, side: int, resample: Image.Resampling) -> np.ndarray:
    """``image`` resized with ``resample`` so that its longer side is ``side`` pixels, its aspect kept, as an array."""
    scale = side / max(image.size)
    return np.asarray(image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample))


def _whole(box: tuple[int, int, int, int], enlarged: np.ndarray) -> bool:
    """Whether a mark's ``box`` (x0, y0, x1, y1) spans ``WHOLE`` of the box of ``enlarged``'s ink (bright on black) each way."""
    rows, cols = np.nonzero(enlarged > 64)
    if rows.size == 0:
        return False
    x0, y0, x1, y1 = box
    return x1 - x0 >= WHOLE * (cols.max() - cols.min() + 1) and y1 - y0 >= WHOLE * (rows.max() - rows.min() + 1)


def _small_picture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """One digit (28×28, bright on black) as a small uint8 picture, bright on black: see :func:`low_resolution`."""
    box = ink_box(image)
    if box is None:
        return None
    box = box.astype(np.float32)
    if rng.random() < 0.5:
        box = np.where(box > 127, 255, 0).astype(np.float32)
    side = int(rng.integers(SMALL_SIDE[0], SMALL_SIDE[1] + 1))
    small = _to_side(Image.fromarray(box, "F"), side, Image.Resampling.BOX)
    margin = round(side * rng.uniform(*SMALL_MARGIN))
    small = np.pad(small, margin)
    tones = TONES[int(rng.integers(len(TONES)))] - 1
    quantized = np.round(np.clip(small, 0, 255) * tones / 255) * (255 / tones)
    return np.round(quantized).astype(np.uint8)
