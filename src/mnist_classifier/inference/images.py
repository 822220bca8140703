"""People's pictures as data-set images: read safely, then the MNIST authors' recipe.

MNIST digits are white ink on black, the ink's bounding box scaled so that its
longer side is 20 pixels, placed in a 28×28 frame with its centre of mass at the
centre. Fashion-MNIST items are scaled so that their longer side fills the 28
pixels and centred by their bounding box. A photo of dark ink on light paper,
anywhere on a large canvas, comes out the same way.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_classifier.errors import ImageError
from mnist_classifier.system.files import read_input
from mnist_classifier.data.formats import IMAGE_SIZE

# Phones write JPEGs with a second, smaller picture inside; Pillow opens those as MPO.
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "GIF": "GIF", "WEBP": "WebP"}
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_FILE_BYTES = 20 * 2**20
MAX_PIXELS = 40_000_000
DIGIT_BOX = 20  # MNIST: the ink's longer side, in pixels
FRAMED_SLACK = 2  # pixels: a 28×28 digit whose ink box is this close to DIGIT_BOX is framed already
DARK_RING = 0.2  # a framed digit's outermost pixels average under this share of full ink (MNIST's: 0.04 at most)
INK_FLOOR = 0.15  # after stretching the ink to 0-255, fainter pixels are background
MIN_INK_CONTRAST = 24  # grey levels between paper and the darkest ink, at least
ORIENTATION = 0x0112  # the EXIF tag a camera records its orientation in
WORKING_SIDE = 1600  # a JPEG is decoded at the smallest scale whose longer side keeps at least this
CELL_LINES = 512  # rows (and columns) sampled for the edges of an enlarged picture's cells
MIN_CELL = 3  # pixels: a picture enlarged less than this is left as it is
CELL_FIT = 1.5  # pixels: every edge within this of the grid of cells
BLOCKY_ERROR = 0.03  # mean difference from its cells repeated, as a share of the picture's tonal range
FLAT_CELLS = 0.1  # tone changes within cells, on average, under this share of those across the cells' edges


@dataclass(frozen=True)
class Picture:
    """A picture as greyscale, upright, at its working resolution.

    ``scale`` is the original picture's pixels per working pixel (1 unless a large
    JPEG was decoded at a reduced scale); ``size`` is the upright original's
    (width, height).
    """

    grey: np.ndarray
    scale: float
    size: tuple[int, int]


def read_picture(
    source: str | Path | bytes, name: str | None = None, max_pixels: int | None = None, working_side: int | None = WORKING_SIDE
) -> Picture:
    """A picture file (or its bytes) as a :class:`Picture`: upright as its EXIF orientation says, greyscale.

    A JPEG larger than ``working_side`` is decoded at a reduced scale by the JPEG
    decoder itself (its longer side kept at least ``working_side``; ``None``:
    full size). Errors are as for :func:`read_image`.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    data = source if isinstance(source, bytes) else read_input(Path(source), MAX_FILE_BYTES, ImageError, "image file", label)
    image, (width, height) = _decode(data, label, max_pixels, working_side)
    turned = image.getexif().get(ORIENTATION, 1) != 1
    upright = ImageOps.exif_transpose(image) if turned else image  # without a tag it would only copy
    if upright.size != image.size:  # turned a quarter: the original's sides swap too
        width, height = height, width
    return Picture(_to_grey(upright), width / upright.size[0], (width, height))


def read_image(source: str | Path | bytes, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """A PNG, JPEG, BMP, GIF or WebP file (or its bytes) as uint8 greyscale, H×W, upright.

    The EXIF orientation a camera records is applied; transparent pixels are
    composited onto white paper. Anything but a regular file (a folder, FIFO or
    device) is refused unread, and no more than ``MAX_FILE_BYTES`` + 1 bytes of a
    file are read. Files over ``MAX_FILE_BYTES``, images over
    ``MAX_PIXELS`` pixels (decompression bombs), other formats and undecodable
    data raise ImageError naming ``name`` (default: the path). ``max_pixels``
    lowers the pixel limit (a service may want less).
    """
    return read_picture(source, name, max_pixels, working_side=None).grey


def _decode(data: bytes, label: str, max_pixels: int | None, working_side: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded first frame of an image file's bytes and its full (width, height), checked before any pixel is decoded."""
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: {len(data):,} bytes is over the {MAX_FILE_BYTES:,}-byte limit")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            _check_header(image, label, min(max_pixels or MAX_PIXELS, MAX_PIXELS))
            image.seek(0)  # an animated GIF or WebP, or a phone's MPO: its first frame
            full_size = image.size
            factor = max(image.size) // working_side if working_side else 1
            if image.format in ("JPEG", "MPO") and factor >= 2:
                image.draft(image.mode, (image.size[0] // factor, image.size[1] // factor))
            image.load()
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{label}: not an image ({_accepted()} expected)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            claimed = re.search(r"\((\d+) pixels\)", str(exc))
            count = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
            raise ImageError(f"{label}: {count} is over the {MAX_PIXELS:,}-pixel limit (decompression bomb?)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{label}: cannot decode the image, truncated or corrupt ({exc})") from None
    return image, full_size


def _check_header(image: Image.Image, label: str, max_pixels: int) -> None:
    """Refuse other formats and absurd sizes before any pixel is decoded."""
    if image.format not in FORMATS:
        raise ImageError(f"{label}: {image.format} image, expected {_accepted()}")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{label}: {width}×{height} pixels is over the {max_pixels:,}-pixel limit")
    if width == 0 or height == 0:
        raise ImageError(f"{label}: empty image ({width}×{height})")


def _accepted() -> str:
    """The accepted formats, in words."""
    names = list(dict.fromkeys(FORMATS.values()))
    return ", ".join(names[:-1]) + " or " + names[-1]


def _to_grey(image: Image.Image) -> np.ndarray:
    """Greyscale uint8, transparency composited onto white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def ink(grey: np.ndarray, label: str = "image") -> np.ndarray:
    """Ink as white on black, background at 0 and the strongest ink at 255.

    The paper is the commonest tone: where the border is lighter than the middle
    of the tonal range, the picture is dark ink on light paper and is inverted.
    """
    grey = np.asarray(grey, dtype=np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:
        grey = 255 - grey
    ink_level = np.clip(grey - np.median(grey), 0, None)
    strongest = float(ink_level.max())
    if strongest < MIN_INK_CONTRAST:
        raise ImageError(f"{label}: no ink found (a blank or nearly uniform image)")
    ink_level *= 255 / strongest
    ink_level[ink_level < INK_FLOOR * 255] = 0
    return ink_level


def to_digit(grey: np.ndarray, label: str = "image") -> np.ndarray:
    """An MNIST-style 28×28 uint8 digit: ink box scaled to 20 px, centre of mass at the centre."""
    return frame_digit(ink(grey, label))


def frame_digit(ink_level: np.ndarray) -> np.ndarray:
    """Ink levels (0 paper to 255) framed as MNIST frames a digit: box scaled to 20 px, centre of mass at the centre."""
    patch = _scaled_box(np.asarray(ink_level, np.float32), DIGIT_BOX)
    rows, cols = np.indices(patch.shape)
    total = patch.sum()
    centre = np.array([(rows * patch).sum() / total, (cols * patch).sum() / total])
    offset = np.round(IMAGE_SIZE / 2 - 0.5 - centre).astype(int)
    return _place(patch, offset)


def is_framed(image: np.ndarray) -> bool:
    """Whether a 28×28 uint8 image is a digit as MNIST frames one: light ink on a dark ground (its outermost
    pixels dark on average), the ink's box ``DIGIT_BOX`` pixels on its longer side, give or take ``FRAMED_SLACK``.

    Every MNIST digit is; a picture of a digit that fills its 28 pixels, or dark on
    light, is not (the reader frames it first).
    """
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        return False
    ring = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    rows, cols = np.flatnonzero(image.max(axis=1)), np.flatnonzero(image.max(axis=0))
    if ring.mean() > DARK_RING * 255 or not rows.size:
        return False
    side = max(np.ptp(rows), np.ptp(cols)) + 1
    return abs(int(side) - DIGIT_BOX) <= FRAMED_SLACK


def to_item(grey: np.ndarray, label: str = "image") -> np.ndarray:
    """A Fashion-MNIST-style 28×28 uint8 item: longer side 28 px, centred by its box."""
    patch = _scaled_box(ink(grey, label), IMAGE_SIZE)
    offset = (np.array([IMAGE_SIZE, IMAGE_SIZE]) - patch.shape) // 2
    return _place(patch, offset)


def _scaled_box(ink_level: np.ndarray, side: int) -> np.ndarray:
    """The ink's bounding box, resized (antialiased) so that its longer side is ``side``."""
    rows, cols = np.nonzero(ink_level)
    box = ink_level[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = box.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(box).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0, 255)


def _place(patch: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``patch`` pasted at ``offset`` (row, col) in a black 28×28 frame, clipped at the edges."""
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    top, left = int(offset[0]), int(offset[1])
    rows = slice(max(top, 0), min(top + patch.shape[0], IMAGE_SIZE))
    cols = slice(max(left, 0), min(left + patch.shape[1], IMAGE_SIZE))
    frame[rows, cols] = patch[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
    return np.round(frame).astype(np.uint8)


def unpixelated(grey: np.ndarray) -> np.ndarray:
    """``grey`` (uint8) as it was before it was enlarged by repeating pixels, enlarged smoothly instead.

    A small picture blown up by nearest neighbour (a thumbnail, an 8×8 scan, pixel
    art; JPEG-compressed too) is a grid of flat cells whose stair-stepped edges a
    model trained on smooth strokes has never seen. Such a picture is found by its
    edges: the columns (and rows) where its tone jumps by a quarter of its range
    or more fall on a regular grid of cells ``MIN_CELL`` pixels or more apart, and
    the picture differs from its cells' centres repeated by under ``BLOCKY_ERROR``
    of its range, and its tone hardly changes within the cells (``FLAT_CELLS``)
    beside how it changes across their edges: a photo's or a drawing's paper
    changes as much anywhere, a page's few strokes have edges anywhere. It comes
    back the same size, its cells enlarged bicubically; any other picture comes
    back unchanged.
    """
    height, width = grey.shape
    spread = int(grey.max()) - int(grey.min())
    if min(height, width) < 2 * MIN_CELL or spread == 0:
        return grey
    jumps = _jumps(grey)
    across = [cell for cell in _cells(_edges(jumps, spread), width) if _flat_cells(jumps, cell)]  # cheap: sampled rows
    if not across:
        return grey
    jumps = _jumps(grey.T)
    down = [cell for cell in _cells(_edges(jumps, spread), height) if _flat_cells(jumps, cell)]
    for cell_x in across:
        for cell_y in down:
            xs, ys = _centres(*cell_x, width), _centres(*cell_y, height)
            small = grey[np.ix_(ys, xs)]
            nearest_x = np.searchsorted((xs[:-1] + xs[1:]) / 2, np.arange(width))
            nearest_y = np.searchsorted((ys[:-1] + ys[1:]) / 2, np.arange(height))
            error = np.abs(small[np.ix_(nearest_y, nearest_x)].astype(np.int16) - grey).mean()
            if error <= BLOCKY_ERROR * spread:
                return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))
    return grey


def _jumps(grey: np.ndarray) -> np.ndarray:
    """How much the tone changes between each column of ``grey`` and the next, in ``CELL_LINES`` sampled rows."""
    rows = grey[:: max(1, grey.shape[0] // CELL_LINES)].astype(np.int16)
    return np.abs(np.diff(rows, axis=1))


def _edges(jumps: np.ndarray, spread: int) -> np.ndarray:
    """The columns where the tone jumps (``_jumps``) by a quarter of ``spread`` in any sampled row: each run of
    neighbouring such columns (a JPEG's ringing) as one edge, at its strongest jump."""
    strongest = jumps.max(axis=0)
    columns = np.flatnonzero(strongest > spread / 4)
    if columns.size == 0:
        return columns
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    return np.array([run[np.argmax(strongest[run])] + 1 for run in runs])


def _flat_cells(jumps: np.ndarray, cell: tuple[float, float]) -> bool:
    """Whether the tone changes (``_jumps``) within the cells of the grid ``cell`` (size, offset), two pixels or
    more from their edges (a JPEG's ringing), are under ``FLAT_CELLS`` of those across them, on average."""
    size, offset = cell
    position = np.arange(1, jumps.shape[1] + 1) - offset  # jump j is between columns j and j + 1
    distance = np.abs(position - np.round(position / size) * size)  # to the nearest edge of a cell
    mean = jumps.mean(axis=0)
    across, within = mean[distance <= 1], mean[distance >= 2.5]
    if across.size == 0 or within.size == 0:
        return False
    return float(within.mean()) <= FLAT_CELLS * float(across.mean())


def _cells(edges: np.ndarray, length: int) -> list[tuple[float, float]]:
    """Up to three grids (cell size, offset) that put every one of ``edges`` within ``CELL_FIT`` of a cell's
    edge, the closest fit first: cell sizes near the smallest gaps between edges (a cell's, or a run of cells')."""
    if edges.size < 3 or edges.size > length / MIN_CELL:
        return []
    fits = []
    for gap in sorted({int(gap) for gap in np.diff(edges) if gap >= MIN_CELL})[:3]:
        for size in np.linspace(max(gap - 0.5, MIN_CELL), gap + 1, 31):
            steps = np.round((edges - edges[0]) / size)
            offset = float(np.mean(edges - steps * size))
            misfit = float(np.abs(edges - offset - steps * size).max())
            if misfit <= CELL_FIT:
                fits.append((misfit, float(size), offset))
    return [(size, offset) for _, size, offset in sorted(fits)[:3]]


def _centres(size: float, offset: float, length: int) -> np.ndarray:
    """The pixel at the centre of each cell of the grid (``size``, ``offset``) that lies at least half inside ``length``."""
    first = offset - np.floor(offset / size) * size
    edges = np.unique(np.clip(np.concatenate([[0.0], np.arange(first, length, size), [length]]), 0, length))
    low, high = edges[:-1], edges[1:]
    inside = high - low >= size / 2
    return np.floor((low + high)[inside] / 2).astype(int)


def image_paths(path: Path) -> list[Path]:
    """``path`` itself, or for a folder the image files in it (by suffix, sorted).

    A folder that cannot be listed (no permission) raises ImageError naming it.
    """
    try:
        if not path.is_dir():
            return [path]
        return sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
