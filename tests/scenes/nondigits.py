"""Pictures with no digit at all, which a digit reader must reject: each kind clean or photographed."""

from __future__ import annotations

import functools
import importlib.util
import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from tests.scenes.camera import clean_picture, encode, encode_jpeg, ink, photograph, sensor_noise
from tests.scenes.digits import Seed
from tests.scenes.glyphs import SHAPES, fashion_item, filled_shape, font_glyph, fonts_with, handwriting_fonts, scribble, smiley_strokes

# Letters that a fair reader may take for a digit, and so are never drawn: letter -> the digit it passes for.
LOOKALIKES = {
    "O": "0", "o": "0", "Q": "0", "D": "0",
    "I": "1", "i": "1", "l": "1", "j": "1",
    "Z": "2", "z": "2", "S": "5", "s": "5",
    "B": "8", "b": "6", "G": "6", "g": "9", "q": "9",
}  # fmt: skip
LETTERS = "".join(c for c in string.ascii_letters if c not in LOOKALIKES)
WORDS = (
    "we", "up", "he", "me", "at", "an", "cat", "pen", "new", "fun", "run", "why", "few", "yet", "tea",
    "hand", "care", "race", "near", "very", "yard", "tray", "when", "here", "make", "take", "park", "mark",
    "fact", "hunt", "wave", "water", "after", "never", "trunk", "react", "there", "where", "dream", "paper",
    "camera", "market", "nature", "reward", "nectar", "cherry", "turkey", "feather", "weather", "partner",
)  # fmt: skip
assert all(c in LETTERS for word in WORDS for c in word), "a word holds a digit look-alike"

NON_DIGIT_KINDS = ("letters", "words", "clothing", "noise", "shapes", "smiley", "photos", "scribbles", "blank")
# scikit-image's colour photographs (its others hold text, a clock face or test charts).
PHOTOS_SHIPPED = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
    "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
)  # fmt: skip


def non_digit(rng: Seed = None, kind: str | None = None) -> bytes:
    """A picture (PNG or JPEG bytes) of ``kind`` (one of :data:`NON_DIGIT_KINDS`; default: random) with no digit in it.

    About half of each kind is a clean picture and half a phone photo of it on
    paper (noise is always a plain picture; colour photos are mostly themselves).
    """
    rng = np.random.default_rng(rng)
    kind = kind or str(rng.choice(NON_DIGIT_KINDS))
    if kind not in NON_DIGIT_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(NON_DIGIT_KINDS)}")
    return _MAKERS[kind](rng)


def _clean_or_photo(rng: np.random.Generator, mark: Callable[[int], Image.Image], heights: tuple[float, float]) -> bytes:
    """``mark(height)`` as a clean PNG (half the time, 28-400 px) or a phone photo (``heights`` of the picture)."""
    if rng.random() < 0.5:
        return clean_picture(rng, mark(int(np.exp(rng.uniform(np.log(28), np.log(400))))))
    return photograph(rng, mark, heights)


def _letters(rng: np.random.Generator) -> bytes:
    """One letter (no digit look-alike), typed or handwriting font, thickened and slanted at random."""
    return _clean_or_photo(rng, _lettering(rng, LETTERS[rng.integers(len(LETTERS))]), (0.04, 0.5))


def _words(rng: np.random.Generator) -> bytes:
    """A word of 2-8 letters (lower case, capitalised or upper case; a fifth are random letters)."""
    if rng.random() < 0.2:
        text = "".join(rng.choice(list(LETTERS), int(rng.integers(2, 9))))
    else:
        text = WORDS[rng.integers(len(WORDS))]
        text = [text, text.capitalize(), text.upper()][rng.integers(3)]
    return _clean_or_photo(rng, _lettering(rng, text), (0.03, 0.25))


def _lettering(rng: np.random.Generator, text: str) -> Callable[[int], Image.Image]:
    """``text`` in a random font (half the time a handwriting one) as a function of height."""
    fonts = (handwriting_fonts(LETTERS) if rng.random() < 0.5 else ()) or fonts_with(LETTERS)
    font, weight, slant = fonts[rng.integers(len(fonts))], rng.uniform(0, 0.03), rng.uniform(-0.1, 0.2)
    return lambda height: font_glyph(text, font, height, weight, slant)


def _clothing(rng: np.random.Generator) -> bytes:
    """A Fashion-MNIST test item: as the data set shows it, inverted, or coloured on white; or printed and photographed."""
    if rng.random() < 0.4:
        return photograph(rng, lambda height: _garment(rng, fashion_item(rng, height)[0]), (0.15, 0.6))
    item, _ = fashion_item(rng, int(rng.integers(84, 600)))
    style = rng.integers(3)
    if style == 2:
        return clean_picture(rng, _garment(rng, item))
    picture = ImageOps.expand(item, round(item.height * rng.uniform(0.05, 0.2)))
    return encode(ImageOps.invert(picture) if style == 1 else picture)


def _garment(rng: np.random.Generator, item: Image.Image) -> Image.Image:
    """A light-on-black item as an RGBA garment of a random colour, shaded by its pixels."""
    colour = rng.integers(20, 236, 3)
    shade = np.asarray(item, dtype=float)[..., None] / 255
    rgb = np.clip(colour * (0.35 + 0.65 * shade), 0, 255).astype(np.uint8)
    alpha = np.clip(np.asarray(item, dtype=float) * 4, 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _noise(rng: np.random.Generator) -> bytes:
    """Noise 28-1200 px high, half to twice as wide: uniform, gaussian, salt-and-pepper or blotchy, grey or colour; PNG or JPEG."""
    height = int(np.exp(rng.uniform(np.log(28), np.log(1200))))
    width = round(height * np.exp(rng.uniform(np.log(0.5), np.log(2))))
    channels = 3 if rng.random() < 0.5 else 1
    shape = (height, width, channels)
    kind = rng.integers(4)
    if kind == 0:
        pixels = rng.uniform(0, 255, shape)
    elif kind == 1:
        pixels = rng.normal(rng.uniform(60, 200), rng.uniform(20, 80), shape)
    elif kind == 2:
        pixels = np.full(shape, rng.choice([255.0, 200.0, 0.0]))
        spots = rng.random((height, width)) < rng.uniform(0.01, 0.3)
        pixels[spots] = rng.choice([0.0, 255.0], (int(spots.sum()), 1))
    else:
        cells = rng.normal(0, 1, (int(rng.integers(3, 30)), int(rng.integers(3, 30)))).astype(np.float32)
        field = np.asarray(Image.fromarray(cells).resize((width, height), Image.BICUBIC))
        pixels = np.where((field > rng.uniform(-0.5, 0.5))[..., None], 235.0, rng.uniform(0, 120, channels))
    picture = Image.fromarray(np.squeeze(np.clip(pixels, 0, 255).astype(np.uint8)))
    return encode(picture, "JPEG" if rng.random() < 0.3 else "PNG")


def _shapes(rng: np.random.Generator) -> bytes:
    """One filled shape (circle, square, triangle, star, heart), or two to four of them, in colour; or drawn in marker and photographed."""
    if rng.random() < 0.4:
        return photograph(rng, lambda height: filled_shape(rng, SHAPES[rng.integers(len(SHAPES))], height), (0.05, 0.5))
    side = int(rng.integers(64, 640))
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in (rng.integers(200, 256, 3) if rng.random() < 0.7 else rng.integers(0, 256, 3))))
    for _ in range(1 if rng.random() < 0.6 else int(rng.integers(2, 5))):
        mask = filled_shape(rng, SHAPES[rng.integers(len(SHAPES))], int(side * rng.uniform(0.2, 0.7)))
        mark = ink(mask, tuple(int(v) for v in rng.integers(0, 256, 3)), 1.0)
        canvas.paste(mark, tuple(int(v) for v in rng.integers(0, max(1, side - max(mark.size)), 2)), mark)
    return encode(canvas)


def _smiley(rng: np.random.Generator) -> bytes:
    """A smiley: drawn in strokes (clean or photographed), or a yellow emoji face."""
    if rng.random() < 0.3:
        return clean_picture(rng, _emoji(int(rng.integers(48, 500))))
    return _clean_or_photo(rng, lambda height: smiley_strokes(rng, height), (0.05, 0.5))


def _emoji(side: int) -> Image.Image:
    """A yellow smiling face, ``side`` px across (RGBA)."""
    face = Image.new("RGBA", (side, side))
    draw = ImageDraw.Draw(face)
    draw.ellipse((0, 0, side - 1, side - 1), fill=(255, 204, 40, 255), outline=(200, 140, 0, 255), width=max(1, side // 40))
    for x in (0.33, 0.67):
        draw.ellipse((side * (x - 0.06), side * 0.28, side * (x + 0.06), side * 0.45), fill=(60, 40, 20, 255))
    draw.arc((side * 0.22, side * 0.3, side * 0.78, side * 0.78), 20, 160, fill=(60, 40, 20, 255), width=max(2, side // 20))
    return face


def _scribbles(rng: np.random.Generator) -> bytes:
    """Scribbles: a long wandering curve, a zigzag hatch, or tangled strokes; clean or photographed."""
    return _clean_or_photo(rng, lambda height: scribble(rng, height), (0.05, 0.5))


def _photos(rng: np.random.Generator) -> bytes:
    """A colour photo (one shipped with matplotlib or scikit-image, or a drawn landscape) as a JPEG.

    Cropped, recoloured and resized to 0.3-12 Mpixel; a fifth are printed on paper and photographed.
    """
    picture = _cropped(rng, _photo_source(rng))
    if rng.random() < 0.2:
        return photograph(rng, lambda height: ImageOps.contain(picture, (height * 4, height)).convert("RGBA"), (0.2, 0.7))
    pixels = np.exp(rng.uniform(np.log(0.3e6), np.log(12e6)))
    scale = np.sqrt(pixels / (picture.width * picture.height))
    picture = picture.resize((max(8, round(picture.width * scale)), max(8, round(picture.height * scale))), Image.BICUBIC)
    return encode_jpeg(rng, sensor_noise(rng, picture))


def _photo_source(rng: np.random.Generator) -> Image.Image:
    """A shipped colour photo (RGB), or, a third of the time or when none ships, a drawn landscape."""
    shipped = photo_files()
    if not shipped or rng.random() < 0.33:
        return _landscape(rng)
    return Image.open(shipped[rng.integers(len(shipped))]).convert("RGB")


@functools.lru_cache(maxsize=1)
def photo_files() -> tuple[Path, ...]:
    """Real colour photographs that installed packages ship: matplotlib's Grace Hopper, scikit-image's sample photos."""
    files = [Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    if importlib.util.find_spec("skimage") is not None:
        folder = Path(importlib.util.find_spec("skimage").origin).parent / "data"
        files += [folder / name for name in PHOTOS_SHIPPED if (folder / name).is_file()]
    return tuple(path for path in files if path.is_file())


def _cropped(rng: np.random.Generator, picture: Image.Image) -> Image.Image:
    """A random crop (40-100% of each side) of ``picture``, sometimes mirrored, its colour and contrast changed a little."""
    width, height = picture.size
    w, h = round(width * rng.uniform(0.4, 1)), round(height * rng.uniform(0.4, 1))
    x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    picture = picture.crop((x, y, x + w, y + h))
    if rng.random() < 0.5:
        picture = ImageOps.mirror(picture)
    picture = ImageEnhance.Color(picture).enhance(rng.uniform(0.6, 1.4))
    return ImageEnhance.Contrast(picture).enhance(rng.uniform(0.7, 1.3))


def _landscape(rng: np.random.Generator) -> Image.Image:
    """A drawn colour landscape, 640×480: sky, sometimes a sun, ridges of hills, trees."""
    width, height = 640, 480
    top, horizon = rng.integers(60, 200, 3), rng.integers(150, 256, 3)
    rows = np.linspace(0, 1, height)[:, None, None]
    picture = Image.fromarray((top * (1 - rows) + horizon * rows).astype(np.uint8).repeat(width, axis=1))
    draw = ImageDraw.Draw(picture)
    if rng.random() < 0.5:
        x, y, r = rng.uniform(0.1, 0.9) * width, rng.uniform(0.05, 0.3) * height, rng.uniform(15, 50)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 236, 150))
    for level in np.sort(rng.uniform(0.35, 0.85, int(rng.integers(1, 4)))):
        xs = np.linspace(0, width, 24)
        ys = level * height + np.cumsum(rng.normal(0, 8, 24))
        draw.polygon([*zip(xs, ys), (width, height), (0, height)], fill=tuple(int(v) for v in rng.integers(20, 160, 3)))
    for _ in range(int(rng.integers(0, 8))):
        x, y, s = rng.uniform(0, width), rng.uniform(0.6, 0.95) * height, rng.uniform(15, 60)
        draw.rectangle((x - s * 0.08, y - s * 0.3, x + s * 0.08, y + s * 0.2), fill=(90, 60, 30))
        draw.polygon([(x, y - s * 1.4), (x + s * 0.45, y - s * 0.2), (x - s * 0.45, y - s * 0.2)], fill=(30, int(rng.integers(80, 150)), 40))
    return picture


def _blank(rng: np.random.Generator) -> bytes:
    """A page with nothing written on it: mostly a phone photo (its tint, ruling, light, shadow and the table
    around it, as :func:`photograph` makes them), otherwise a plain light picture, PNG or JPEG."""
    if rng.random() < 0.8:
        return photograph(rng, lambda height: Image.new("L", (height, height)))
    height = int(np.exp(rng.uniform(np.log(28), np.log(1200))))
    tone = tuple(int(v) for v in rng.integers(225, 256, 3))
    picture = Image.new("RGB", (round(height * rng.uniform(0.7, 1.5)), height), tone)
    return encode(picture, "JPEG" if rng.random() < 0.5 else "PNG")


_MAKERS = {
    "letters": _letters, "words": _words, "clothing": _clothing, "noise": _noise,
    "shapes": _shapes, "smiley": _smiley, "photos": _photos, "scribbles": _scribbles, "blank": _blank,
}  # fmt: skip
