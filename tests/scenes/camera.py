"""Paper, light and a phone camera: ink marks turned into JPEG photos, or into clean PNG drawings.

A photo's scene (paper, ruling, marks, table) is drawn at full resolution; the
camera then scales it down for defocus, lights it with a field computed on a
grid a sixth as fine, adds noise and scales it back up. Each step is one
C-level Pillow operation, so a 12-Mpixel photo takes about half a second.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

Content = Callable[[int], Image.Image]  # height in pixels -> L ink mask or RGBA picture

PAPERS = {"white": (246, 246, 243), "cream": (241, 233, 212), "yellowish": (246, 238, 182), "bluish": (226, 234, 246), "grey": (214, 214, 211)}
PENS = {"blue": (32, 52, 150), "black": (28, 28, 32), "dark grey": (70, 70, 74), "pencil": (105, 105, 110)}
TABLES = ((38, 36, 34), (62, 60, 58), (130, 92, 58), (165, 120, 78), (96, 64, 40))  # dark desks and woods
LIGHTS = ((1.0, 0.96, 0.88), (0.92, 0.97, 1.0), (1.0, 1.0, 1.0))  # warm lamp, cool daylight, neutral
ORIENTATIONS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Frame:
    """Where a photo's content may go, and where the table shows."""

    free: tuple[int, int, int, int]  # x0, y0, x1, y1 on the page, clear of the table
    edges: dict[str, float]  # side where a table shows -> its depth, a fraction of the picture's side


def photograph(rng: np.random.Generator, content: Content, heights: tuple[float, float] = (0.04, 0.5), *, exif: bool = True) -> bytes:
    """A phone's JPEG of ``content`` on a sheet of paper.

    The content is drawn ``heights`` (fractions of the picture height, log-uniform)
    tall, seen a little askew, tilted up to ±12° and put anywhere on the page; an
    ``L`` mask is inked in a random pen. The picture is 1-12 Mpixel, its paper tinted and sometimes ruled
    or squared, the page sometimes short of one or two edges (a table shows), lit
    unevenly (up to about half darker), with a soft or hard shadow, defocus, sensor
    noise and JPEG quality 70-95. With ``exif``, a quarter of the photos are stored
    turned, with the EXIF orientation (6, 8 or 3) that turns them upright.
    """
    width, height = _picture_size(rng)
    target = max(8, round(height * np.exp(rng.uniform(*np.log(heights)))))
    page_angle = rng.uniform(-9, 9)
    picture, frame = _paper(rng, width, height, page_angle, target)
    mark = _fitted(content(target), frame.free, 0.85)  # shrunk before the costly steps, with room to turn
    mark = _colour(rng, _askew(rng, mark, np.clip(page_angle + rng.uniform(-3, 3), -12, 12)))
    _place(rng, picture, mark, frame.free)
    _table(rng, picture, frame, page_angle)
    return encode_jpeg(rng, _camera(rng, picture), exif=exif)


def clean_picture(rng: np.random.Generator, mark: Image.Image, side: int | None = None, fmt: str = "PNG") -> bytes:
    """``mark`` drawn cleanly (see :func:`clean_canvas`), encoded as ``fmt``."""
    return encode(clean_canvas(rng, mark, side)[0], fmt)


def clean_canvas(rng: np.random.Generator, mark: Image.Image, side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """``mark`` drawn cleanly: dark ink (black, a fifth blue) on white or near-white paper; and where its corner is.

    With ``side``, the canvas is that square and the mark sits near its centre
    (shifted up to 5%); without, margins of 10-35% of the mark's size surround it.
    An RGBA mark keeps its own colours.
    """
    if mark.mode == "L":
        mark = ink(mark, PENS["blue"] if rng.random() < 0.2 else PENS["black"], 1.0)
    paper = (255, 255, 255) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(232, 256, 3))
    if side is None:
        pad = round(max(mark.size) * rng.uniform(0.1, 0.35))
        size, corner = (mark.width + 2 * pad, mark.height + 2 * pad), (pad, pad)
    else:
        size, shift = (side, side), rng.uniform(-0.05, 0.05, 2) * side
        corner = (round((side - mark.width) / 2 + shift[0]), round((side - mark.height) / 2 + shift[1]))
    canvas = Image.new("RGB", size, paper)
    canvas.paste(mark, corner, mark)
    return canvas, corner


def encode(picture: Image.Image, fmt: str = "PNG", quality: int = 92) -> bytes:
    """``picture`` as PNG or JPEG bytes."""
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def encode_jpeg(rng: np.random.Generator, picture: Image.Image, *, exif: bool = True) -> bytes:
    """``picture`` as a JPEG of quality 70-95; with ``exif``, a quarter stored turned with the orientation tag that undoes it.

    Orientation 6 (the phone's portrait shot) is stored turned a quarter
    counter-clockwise, 8 a quarter clockwise, 3 upside down, so that
    ``ImageOps.exif_transpose`` gives ``picture`` back.
    """
    buffer, extra = io.BytesIO(), {}
    if exif and rng.random() < 0.25:
        orientation = int(rng.choice([6, 8, 3], p=[0.5, 0.3, 0.2]))
        picture = picture.transpose(ORIENTATIONS[orientation])
        tags = Image.Exif()
        tags[EXIF_ORIENTATION] = orientation
        extra["exif"] = tags.tobytes()
    picture.save(buffer, "JPEG", quality=int(rng.integers(70, 96)), **extra)
    return buffer.getvalue()


# --- the page --------------------------------------------------------------------------------


def _picture_size(rng: np.random.Generator) -> tuple[int, int]:
    """A phone picture's (width, height): 1-12 Mpixel (log-uniform), 4:3 mostly, else 3:2, 16:9 or square; half portrait."""
    pixels = np.exp(rng.uniform(np.log(1.0e6), np.log(12.0e6)))
    aspect = rng.choice([4 / 3, 3 / 2, 16 / 9, 1.0], p=[0.6, 0.15, 0.15, 0.1])
    long, short = round(np.sqrt(pixels * aspect)), round(np.sqrt(pixels / aspect))
    return (short, long) if rng.random() < 0.5 else (long, short)


def _paper(rng: np.random.Generator, width: int, height: int, angle: float, target: int) -> tuple[Image.Image, Frame]:
    """Tinted paper filling the picture, plain, ruled or squared at the page's ``angle`` (its grain comes with the light).

    Ruling is spaced for writing ``target`` pixels tall; the frame's free rectangle
    leaves room for a table at the edges (see :func:`_table`).
    """
    tint = np.array(list(PAPERS.values())[rng.integers(len(PAPERS))]) + rng.integers(-6, 7, 3)
    picture = Image.new("RGB", (width, height), tuple(int(v) for v in np.clip(tint, 0, 255)))
    ruling = rng.choice(["plain", "ruled", "squared"], p=[0.5, 0.35, 0.15])
    if ruling != "plain":
        _rule(rng, picture, angle, target, squared=ruling == "squared")
    edges = _table_edges(rng)
    slope = abs(np.tan(np.radians(angle)))  # the page's edge leans: the table reaches further at one end
    sides = (("left", width, height), ("top", height, width), ("right", width, height), ("bottom", height, width))
    insets = [round(edges[side] * size + slope * across / 2) if side in edges else 0 for side, size, across in sides]
    margin = round(0.02 * min(width, height))
    free = (insets[0] + margin, insets[1] + margin, width - insets[2] - margin, height - insets[3] - margin)
    return picture, Frame(free, edges)


def _rule(rng: np.random.Generator, picture: Image.Image, angle: float, target: int, *, squared: bool) -> None:
    """Ruled lines (blue or grey, sometimes a red margin) or a squared grid across the picture, tilted by ``angle``°."""
    width, height = picture.size
    spacing = max(6.0, target * (rng.uniform(0.3, 0.9) if squared else rng.uniform(0.6, 1.6)), 0.015 * height)
    colour = (150, 178, 222) if rng.random() < 0.6 else (172, 172, 176)
    line = max(1, round(spacing * rng.uniform(0.02, 0.05)))
    draw, reach = ImageDraw.Draw(picture), width + height
    directions = [angle, angle + 90] if squared else [angle]
    for theta in directions:
        c, s = np.cos(np.radians(theta)), np.sin(np.radians(theta))
        for offset in np.arange(-reach, reach, spacing) + rng.uniform(0, spacing):
            cx, cy = width / 2 - s * offset, height / 2 + c * offset
            draw.line([(cx - c * reach, cy - s * reach), (cx + c * reach, cy + s * reach)], fill=colour, width=line)
    if not squared and rng.random() < 0.4:
        x = width * rng.uniform(0.06, 0.25)
        c, s = np.cos(np.radians(angle + 90)), np.sin(np.radians(angle + 90))
        draw.line([(x - c * reach, height / 2 - s * reach), (x + c * reach, height / 2 + s * reach)], fill=(222, 120, 124), width=line + 1)


def _table_edges(rng: np.random.Generator) -> dict:
    """The sides where the page stops short of the picture, and how far (3-18% of that side); none for 70% of photos."""
    if rng.random() < 0.7:
        return {}
    sides = ["left", "top", "right", "bottom"]
    first = int(rng.integers(4))
    chosen = [sides[first]] + ([sides[(first + 1) % 4]] if rng.random() < 0.4 else [])
    return {side: rng.uniform(0.03, 0.18) for side in chosen}


def _table(rng: np.random.Generator, picture: Image.Image, frame: Frame, angle: float) -> None:
    """The desk under the page, streaked like wood or dark, beyond the page's edges (tilted by ``angle``°)."""
    width, height = picture.size
    slope = np.tan(np.radians(angle))
    mask = Image.new("L", picture.size)
    draw = ImageDraw.Draw(mask)
    for side, depth in frame.edges.items():
        if side in ("left", "right"):
            x = depth * width if side == "left" else width * (1 - depth)
            edge = [(x + slope * (y - height / 2), y) for y in (0, height)]
            corner = 0 if side == "left" else width
            draw.polygon([*edge, (corner, height), (corner, 0)], fill=255)
        else:
            y = depth * height if side == "top" else height * (1 - depth)
            edge = [(x, y - slope * (x - width / 2)) for x in (0, width)]
            corner = 0 if side == "top" else height
            draw.polygon([*edge, (width, corner), (0, corner)], fill=255)
    if frame.edges:
        colour = np.array(TABLES[rng.integers(len(TABLES))])
        streaks = _stretched(rng.normal(1.0, 0.08, (max(2, height // 4), max(2, width // 64))), width, height)
        wood = ImageChops.multiply(Image.new("RGB", picture.size, tuple(int(v) for v in colour)), streaks)
        picture.paste(wood, (0, 0), mask)


# --- marks -----------------------------------------------------------------------------------


def _colour(rng: np.random.Generator, mark: Image.Image) -> Image.Image:
    """An ``L`` ink mask inked in a random pen, its flow uneven (pencil fainter and grainy); an RGBA picture as it is."""
    if mark.mode == "RGBA":
        return mark
    pen = list(PENS)[rng.choice(len(PENS), p=[0.4, 0.35, 0.1, 0.15])]
    colour = np.clip(np.array(PENS[pen]) + rng.integers(-15, 16, 3), 0, 255)
    flow = rng.uniform(0.75, 1.0, (max(1, mark.height // 8), max(1, mark.width // 8))).astype(np.float32)
    flow = np.asarray(Image.fromarray(flow).resize(mark.size, Image.BILINEAR))
    if pen == "pencil":
        flow = flow * rng.uniform(0.55, 1.0, flow.shape)
    mark = Image.fromarray((np.asarray(mark) * flow).astype(np.uint8))
    return ink(mark, tuple(int(v) for v in colour), rng.uniform(0.55, 0.8) if pen == "pencil" else rng.uniform(0.9, 1.0))


def ink(mask: Image.Image, colour: tuple[int, int, int], opacity: float) -> Image.Image:
    """An RGBA mark of one ``colour``, its alpha ``mask`` × ``opacity``."""
    mark = Image.new("RGBA", mask.size, (*colour, 0))
    mark.putalpha(mask.point(lambda v: round(v * opacity)))
    return mark


def _askew(rng: np.random.Generator, mark: Image.Image, angle: float) -> Image.Image:
    """``mark`` seen a little askew and turned ``angle``° counter-clockwise, in one resampling.

    Each corner moves up to 6% of the mark's size (the phone not square to the
    page): a perspective transform, then the turn, both computed as one.
    """
    width, height = mark.size
    source = np.array([(0, 0), (width, 0), (width, height), (0, height)], dtype=float)
    moved = source + rng.uniform(-0.06, 0.06, (4, 2)) * (width, height)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    target = moved @ np.array([[c, -s], [s, c]])  # (x, y) -> (x c + y s, -x s + y c): counter-clockwise with y down
    target -= target.min(axis=0)
    size = tuple(int(v) + 1 for v in np.ceil(target.max(axis=0)))
    turned = mark.transform(size, Image.PERSPECTIVE, _perspective(target, source), Image.BICUBIC)
    return turned.crop(turned.getbbox())


def _perspective(points: np.ndarray, onto: np.ndarray) -> tuple[float, ...]:
    """Pillow's eight perspective coefficients taking four output ``points`` to the input points ``onto``."""
    rows, values = [], []
    for (x, y), (u, v) in zip(points, onto):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    return tuple(np.linalg.solve(np.array(rows), np.array(values)))


def _fitted(mark: Image.Image, free: tuple[int, int, int, int], share: float = 1.0) -> Image.Image:
    """``mark``, shrunk (aspect kept) when larger than ``share`` of the ``free`` rectangle."""
    x0, y0, x1, y1 = free
    scale = min(1.0, share * (x1 - x0) / mark.width, share * (y1 - y0) / mark.height)
    if scale == 1.0:
        return mark
    return mark.resize((max(1, int(mark.width * scale)), max(1, int(mark.height * scale))), Image.LANCZOS)


def _place(rng: np.random.Generator, picture: Image.Image, mark: Image.Image, free: tuple[int, int, int, int]) -> None:
    """Paste ``mark`` anywhere inside ``free`` (shrunk to fit when larger)."""
    mark = _fitted(mark, free)
    x0, y0, x1, y1 = free
    x = int(rng.integers(x0, max(x0, x1 - mark.width) + 1))
    y = int(rng.integers(y0, max(y0, y1 - mark.height) + 1))
    picture.paste(mark, (x, y), mark)


# --- light and camera ------------------------------------------------------------------------


def _camera(rng: np.random.Generator, picture: Image.Image) -> Image.Image:
    """What the phone makes of the scene: uneven light and paper grain, defocus, sensor noise.

    Defocus (for two thirds of the photos) is a scale down and back up; light and
    noise are applied at the reduced scale, which keeps a 12-Mpixel photo fast.
    """
    factor = 1.0 if rng.random() < 0.33 else 1 + rng.uniform(0.3, 1.6) * picture.height / 1000
    small = picture
    if factor > 1:
        small = picture.resize((max(1, round(picture.width / factor)), max(1, round(picture.height / factor))), Image.BILINEAR)
    small = sensor_noise(rng, ImageChops.multiply(small, _stretched(_light(rng, small.size), *small.size)))
    return small.resize(picture.size, Image.BICUBIC) if factor > 1 else small


def _light(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Light falling on a picture of ``size``, on a grid a sixth as fine (h×w×3 factors, 0-1).

    A gradient, a vignette and (70%) a shadow darken by up to about half; the
    colour is warm, cool or neutral; paper grain of 1-3% rides on it.
    """
    h, w = max(8, size[1] // 6), max(8, size[0] // 6)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    direction = rng.uniform(0, 2 * np.pi)
    along = (x - 0.5) * np.cos(direction) + (y - 0.5) * np.sin(direction) + 0.5
    light = 1 - rng.uniform(0, 0.35) * np.clip(along, 0, 1)
    cx, cy = rng.uniform(0.2, 0.8, 2)
    light *= 1 - rng.uniform(0, 0.3) * ((x - cx) ** 2 + (y - cy) ** 2) / 0.5
    if rng.random() < 0.7:
        light *= 1 - rng.uniform(0.15, 0.5) * _shadow(rng, w, h)
    light = np.maximum(light, 0.45) * rng.uniform(0.88, 1.0) * rng.normal(1.0, rng.uniform(0.008, 0.03), (h, w))
    tint = np.array(LIGHTS[rng.integers(len(LIGHTS))]) * rng.uniform(0.97, 1.0, 3)
    return light[..., None] * tint


def _shadow(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A shadow's darkness (0-1) on an h×w grid, soft or (a quarter) hard-edged.

    Either a straight edge across the picture (a wall, a book) or an arm reaching
    in from an edge with a rounded end (a hand, a phone).
    """
    mask = Image.new("L", (w, h))
    draw = ImageDraw.Draw(mask)
    centre = np.array([w, h]) * rng.uniform(0.2, 0.8, 2)
    angle = rng.uniform(0, 2 * np.pi)
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    reach = 2 * (w + h)
    if rng.random() < 0.4:
        corners = [centre + across * reach, centre + (across + along) * reach, centre + (along - across) * reach, centre - across * reach]
        draw.polygon([tuple(corner) for corner in corners], fill=255)
    else:
        width = rng.uniform(0.15, 0.45) * min(w, h)
        draw.line([tuple(centre), tuple(centre + along * reach)], fill=255, width=round(width))
        draw.ellipse((*(centre - width / 2), *(centre + width / 2)), fill=255)
    soft = rng.uniform(0.01, 0.12) * max(w, h) if rng.random() < 0.75 else 1.0
    return np.asarray(mask.filter(ImageFilter.GaussianBlur(soft)), dtype=float) / 255


def sensor_noise(rng: np.random.Generator, picture: Image.Image) -> Image.Image:
    """``picture`` with sensor noise (σ 1.5-7 grey levels, a little coarser than a pixel, as after demosaicking)."""
    width, height = picture.size
    noise = rng.normal(128, rng.uniform(1.5, 7), (max(1, height // 2), max(1, width // 2)))
    grain = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).resize(picture.size, Image.BILINEAR)
    return ImageChops.add(picture, Image.merge("RGB", [grain] * 3), 1.0, -128)


def _stretched(field: np.ndarray, width: int, height: int) -> Image.Image:
    """A small field of factors (0-1, h×w or h×w×3) as an RGB image of ``width``×``height``, for ``ImageChops.multiply``."""
    values = np.clip(field * 255, 0, 255).astype(np.uint8)
    small = Image.fromarray(values, "L" if values.ndim == 2 else "RGB").convert("RGB")
    return small.resize((width, height), Image.BILINEAR)
