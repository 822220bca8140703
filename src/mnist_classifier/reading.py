"""Find the handwritten digits in a picture, left to right, as MNIST-style 28×28 images.

What the best document readers do, in order:

1. **Paper and ink.** The paper's brightness is estimated locally, on a small copy
   of the picture (a morphological closing wipes out strokes and keeps the light,
   however unevenly it falls, and keeps a shadow's edge sharp); ink is what is
   darker than the paper around it, relative to it. Light ink on dark paper is
   inverted first.
2. **Marks.** Ink is thresholded with hysteresis (faint stroke ends join strong
   ink; faint marks alone do not count) and labelled into connected components
   on a reduced copy (at most ``ANALYSIS_SIDE`` pixels long). Ruled lines and
   squared paper are found and taken out (the strokes that cross them stay);
   specks and the page's edge are dropped.
3. **Digits.** Components that share columns are one digit (a 5 whose bar is
   apart, a 4 in two strokes); a group much wider than a digit is split where
   its ink is thinnest (digits that touch). Digits are ordered left to right.
4. **The MNIST recipe.** Each digit is cut from the picture at its working
   resolution, its ink normalized to full strength, thin pen strokes thickened
   towards MNIST's, then framed: the box scaled to 20 pixels, the centre of
   mass at the centre of 28×28.

A picture that shows nothing like a row of written digits comes back with no
marks and a ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_classifier.images import Picture, frame_digit

ANALYSIS_SIDE = 768  # longest side of the copy that marks are found on
COARSE_SIDE = 160  # longest side of the copy that the paper is estimated on
PAPER_WINDOW = 1 / 7  # closing window, as a share of the coarse copy's longest side
MAX_MARKS = 16  # more separate marks than that is texture, text or a photo, not a number
MAX_INK_SHARE = 0.3  # ink over more of the picture than that is not writing on paper
MIN_CONTRAST = 0.1  # ink at least this much darker than its paper (a share of the paper's brightness)
SPECK = 0.22  # marks whose longer side is under this share of the tallest mark's height are specks
LINE_SPAN = 0.45  # a ruled line runs across at least this share of the picture
FILLED = 0.5  # a mark whose widest inscribed disc is over this share of its height is a filled shape
MNIST_STROKE = 2.6  # typical stroke width of an MNIST digit in its 20-pixel box
THIN_STROKE = 0.55  # strokes under this share of MNIST's are thickened


@dataclass(frozen=True)
class Mark:
    """One digit found in a picture: its 28×28 MNIST-style image and its box in the original pixels."""

    image: np.ndarray
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in the original picture's pixels


@dataclass(frozen=True)
class Reading:
    """The digits found in a picture, left to right; ``reason`` says why there are none."""

    marks: tuple[Mark, ...]
    reason: str | None = None


@dataclass(frozen=True)
class _Ink:
    """Ink strength (0 paper, 1 black) of the working picture, and the mask of marks on the analysis copy."""

    strength: np.ndarray  # working resolution, float32
    mask: np.ndarray  # analysis resolution, bool, lines and specks removed
    factor: float  # working pixels per analysis pixel
    threshold: float  # ink strength that counts as ink


def read_digits(picture: Picture) -> Reading:
    """The handwritten digits in ``picture``, left to right, each framed as MNIST frames its digits.

    Returns a Reading with no marks and a reason when the picture is blank, or
    shows texture, a photograph or a filled shape rather than written digits.
    """
    ink = _find_ink(picture.grey)
    if ink is None:
        return Reading((), "no ink found: a blank or nearly uniform picture")
    labels, count = ndimage.label(ink.mask, np.ones((3, 3), bool))
    if count == 0:
        return Reading((), "no ink found: only specks or lines")
    if ink.mask.mean() > MAX_INK_SHARE:
        return Reading((), f"ink covers {ink.mask.mean():.0%} of the picture: not writing on paper")
    groups = _keep_marks(labels, ink.mask.shape)
    if not groups:
        return Reading((), "no ink found: only specks, lines or the page's edge")
    groups = _split_wide(groups, labels)
    if len(groups) > MAX_MARKS:
        return Reading((), f"{len(groups)} separate marks: texture, text or a photo, not a number")
    marks = []
    for group in groups:
        filled = _filled_share(labels, group)
        if filled > FILLED:
            return Reading((), "a filled shape, not a written digit")
        marks.append(_cut(picture, ink, labels, group))
    return Reading(tuple(marks))


# --- 1. paper and ink -----------------------------------------------------------------


def _find_ink(grey: np.ndarray) -> _Ink | None:
    """Ink strength relative to the local paper, or None when the picture has no ink."""
    grey = grey.astype(np.float32)
    if not _dark_on_light(grey):
        grey = 255 - grey
    factor = max(1.0, max(grey.shape) / ANALYSIS_SIDE)
    small = _resized(grey, factor)
    paper = _paper(small)
    strength_small = np.clip((paper - small) / np.maximum(paper, 8), 0, 1)
    strongest = float(np.percentile(strength_small, 99.95))
    if strongest < MIN_CONTRAST:
        return None
    low, high = _thresholds(strength_small, strongest)
    mask = _hysteresis(strength_small, low, high)
    mask = _without_lines(mask)
    full_paper = paper if factor == 1 else _resized_to(paper, grey.shape)
    strength = np.clip((full_paper - grey) / np.maximum(full_paper, 8), 0, 1)
    return _Ink(strength, mask, factor, low)


def _dark_on_light(grey: np.ndarray) -> bool:
    """Whether the ink is darker than the paper.

    Light ink is taken only on an even, dark ground (a digit drawn on a screen,
    MNIST's own pictures); paper, however unevenly lit, is lighter than its ink.
    """
    floor, ground, common, top = np.percentile(grey, (5, 50, 60, 99.5))
    return not (ground < 110 and common - floor < 40 and top > ground + 60)


def _resized(grey: np.ndarray, factor: float) -> np.ndarray:
    """``grey`` shrunk by ``factor`` with area averaging (unchanged for factor 1)."""
    if factor <= 1:
        return grey
    size = (max(1, round(grey.shape[1] / factor)), max(1, round(grey.shape[0] / factor)))
    return np.asarray(Image.fromarray(grey, "F").resize(size, Image.Resampling.BOX), np.float32)


def _resized_to(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A float map resized (bilinear) to ``shape``."""
    size = (shape[1], shape[0])
    return np.asarray(Image.fromarray(values, "F").resize(size, Image.Resampling.BILINEAR), np.float32)


def _paper(small: np.ndarray) -> np.ndarray:
    """The paper's brightness under each pixel of the analysis copy.

    Estimated on a coarse copy, where strokes are thin: a closing (max, then min
    filter) removes everything darker and narrower than its window and keeps
    gradients and the edges of shadows. Paper lit evenly is taken as one level.
    """
    factor = max(1.0, max(small.shape) / COARSE_SIDE)
    coarse = _resized(small, factor)
    window = max(3, round(max(coarse.shape) * PAPER_WINDOW)) | 1
    # Past the border the picture goes on as at its edge: a strip of table along it stays dark.
    padded = np.pad(ndimage.median_filter(coarse, 3), window, mode="edge")
    closed = ndimage.grey_closing(padded, size=(window, window))[window:-window, window:-window]
    low, middle, high = np.percentile(closed, (5, 50, 95))
    if high - low < 0.06 * middle:
        return np.full(small.shape, max(middle, float(np.percentile(small, 60))), np.float32)
    paper = _resized_to(ndimage.uniform_filter(closed, 3), small.shape)
    return np.maximum(paper, small)  # nothing is lighter than its paper


def _thresholds(strength: np.ndarray, strongest: float) -> tuple[float, float]:
    """Hysteresis thresholds: weak ink joins strong ink; strong is at least half the strongest ink."""
    paper = strength[strength < 0.5 * strongest]
    noise = float(np.median(paper) + 6 * 1.4826 * np.median(np.abs(paper - np.median(paper)))) if paper.size else 0
    low = max(MIN_CONTRAST * 0.8, noise, 0.2 * strongest)
    return low, max(low, 0.5 * strongest)


def _hysteresis(strength: np.ndarray, low: float, high: float) -> np.ndarray:
    """Pixels over ``low`` that are connected to a pixel over ``high``."""
    weak = strength > low
    labels, count = ndimage.label(weak, np.ones((3, 3), bool))
    if count == 0:
        return weak
    strong = np.zeros(count + 1, bool)
    strong[np.unique(labels[strength > high])] = True
    strong[0] = False
    return strong[labels]


# --- 2. marks: ruled lines, specks, the page's edge ----------------------------------


def _without_lines(mask: np.ndarray) -> np.ndarray:
    """``mask`` without ruled lines or grid lines (tilted up to 15°); strokes that cross a line stay whole."""
    for axis in (0, 1):
        oriented = mask if axis == 0 else mask.T
        angle = _line_angle(oriented)
        if angle is None:
            continue
        sheared = _shear(oriented, angle)
        lines = _long_runs(sheared, LINE_SPAN * sheared.shape[1])
        if not lines.any():
            continue
        rest = sheared & ~lines
        reach = max(3, int(np.median(lines.sum(axis=0)[lines.any(axis=0)]) or 1) + 3)
        crossing = lines & ndimage.binary_closing(rest, np.ones((reach, 1), bool))
        cleaned = _shear(rest | crossing, angle, inverse=True)
        mask = cleaned if axis == 0 else cleaned.T
    return mask


def _line_angle(mask: np.ndarray) -> float | None:
    """The tilt (slope) at which ink rows line up as ruled lines, or None when none runs across."""
    step = max(1, mask.shape[1] // 256)
    small = mask[::step, ::step]
    best, best_slope = 0.0, None
    for slope in np.tan(np.radians(np.arange(-15, 15.5, 1.0))):
        rows = _shear(small, slope).sum(axis=1)
        peak = rows.max() / small.shape[1]
        if peak > best:
            best, best_slope = peak, slope
    return best_slope if best >= LINE_SPAN else None


def _shear(mask: np.ndarray, slope: float, inverse: bool = False) -> np.ndarray:
    """Each column shifted up by ``slope`` × its index (down when ``inverse``): lines of that slope become rows."""
    shifts = np.round(np.arange(mask.shape[1]) * slope).astype(int)
    shifts -= shifts.min() if slope > 0 else shifts.max()
    if inverse:
        shifts = -shifts
    rows = (np.arange(mask.shape[0])[:, None] + shifts[None, :]) % mask.shape[0]
    return mask[rows, np.arange(mask.shape[1])[None, :]]


def _long_runs(mask: np.ndarray, length: float) -> np.ndarray:
    """The pixels of horizontal runs of ink at least ``length`` long (gaps of 2 pixels bridged)."""
    bridged = ndimage.binary_closing(mask, np.ones((1, 5), bool)) | mask
    labels, count = ndimage.label(bridged, np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool))
    if count == 0:
        return np.zeros_like(mask)
    lengths = np.bincount(labels.ravel(), minlength=count + 1)
    long = lengths >= length
    long[0] = False
    return long[labels] & mask


def _keep_marks(labels: np.ndarray, shape: tuple[int, int]) -> list[tuple[slice, slice, list[int]]]:
    """Boxes (with their labels) of the components that make up digits, grouped, left to right.

    The page's edge and lines along the border go; pieces much smaller than a
    digit join the digit they touch or nearly touch (a 5's bar, the dot of a
    stroke's end) and are otherwise specks. Small pieces at the border go.
    """
    areas = np.bincount(labels.ravel())
    found = [(box, index + 1) for index, box in enumerate(ndimage.find_objects(labels)) if box is not None]
    found = [(box, label) for box, label in found if not _page_edge(box, int(areas[label]), shape)]
    if not found:
        return []
    tallest = max(box[0].stop - box[0].start for box, _ in found)
    big = [(box[0], box[1], [label]) for box, label in found if _side(box) >= SPECK * tallest and _side(box) >= 3]
    digit = float(np.median([rows.stop - rows.start for rows, _, _ in big if rows.stop - rows.start >= 0.5 * tallest]))
    pieces = [piece for piece in big if piece[0].stop - piece[0].start >= 0.45 * digit]  # digits are never flat
    slivers = [p for p in pieces if _at_border(p[:2], shape) and min(p[0].stop - p[0].start, p[1].stop - p[1].start) < 0.2 * digit]
    pieces = [p for p in pieces if p not in slivers] or pieces  # the page's edge in pieces
    small = [piece for piece in big if piece not in pieces and not _at_border(piece[:2], shape)]
    groups = _group(pieces)
    for piece in small:
        near = min(groups, key=lambda group: _gap(group, piece), default=None)
        if near is not None and _gap(near, piece) <= 0.3 * digit:
            groups[groups.index(near)] = _union(near, piece)
    return sorted(groups, key=lambda group: group[1].start)


def _side(box: tuple[slice, slice]) -> int:
    """A box's longer side."""
    return max(box[0].stop - box[0].start, box[1].stop - box[1].start)


def _at_border(box: tuple[slice, slice], shape: tuple[int, int]) -> bool:
    """Whether a box touches the picture's border."""
    return box[0].start == 0 or box[1].start == 0 or box[0].stop == shape[0] or box[1].stop == shape[1]


def _gap(a: tuple[slice, slice, list[int]], b: tuple[slice, slice, list[int]]) -> float:
    """The distance between two boxes (0 when they overlap)."""
    rows = max(0, max(a[0].start, b[0].start) - min(a[0].stop, b[0].stop))
    cols = max(0, max(a[1].start, b[1].start) - min(a[1].stop, b[1].stop))
    return float(np.hypot(rows, cols))


def _page_edge(box: tuple[slice, slice], area: int, shape: tuple[int, int]) -> bool:
    """Whether a component is the edge of the page, a shadow's or a ruled line's: long, thin, at the border."""
    rows, cols = box
    height, width = rows.stop - rows.start, cols.stop - cols.start
    margin = 0.02 * max(shape)
    at_top_or_bottom = rows.start <= margin or rows.stop >= shape[0] - margin
    at_left_or_right = cols.start <= margin or cols.stop >= shape[1] - margin
    if (at_left_or_right and height > 0.6 * shape[0]) or (at_top_or_bottom and width > 0.6 * shape[1]):
        return True
    length = np.hypot(height, width)
    thin = area / length < 0.08 * length
    long = height > 0.3 * shape[0] or width > 0.3 * shape[1]
    return thin and long and (at_top_or_bottom or at_left_or_right)


# --- 3. digits: grouping and splitting ----------------------------------------------


def _group(boxes: list[tuple[slice, slice, list[int]]]) -> list[tuple[slice, slice, list[int]]]:
    """Components that share most of their columns merged into one digit; the digits left to right."""
    groups = sorted(boxes, key=lambda box: box[1].start)
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _same_digit(groups[i], groups[j]):
                    groups[i] = _union(groups[i], groups[j])
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(groups, key=lambda box: box[1].start)


def _same_digit(a: tuple[slice, slice, list[int]], b: tuple[slice, slice, list[int]]) -> bool:
    """Whether two pieces belong to one digit: they share half the narrower one's columns and are close in height."""
    overlap = min(a[1].stop, b[1].stop) - max(a[1].start, b[1].start)
    narrower = min(a[1].stop - a[1].start, b[1].stop - b[1].start)
    gap = max(a[0].start, b[0].start) - min(a[0].stop, b[0].stop)
    taller = max(a[0].stop - a[0].start, b[0].stop - b[0].start)
    return overlap >= 0.5 * narrower and gap < 0.6 * taller


def _union(a: tuple[slice, slice, list[int]], b: tuple[slice, slice, list[int]]) -> tuple[slice, slice, list[int]]:
    """The box around two pieces, with both pieces' labels."""
    rows = slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop))
    cols = slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop))
    return rows, cols, a[2] + b[2]


def _split_wide(groups: list[tuple[slice, slice, list[int]]], labels: np.ndarray) -> list[tuple[slice, slice, list[int]]]:
    """Groups much wider than a digit cut where the ink is thinnest (touching digits), best effort."""
    typical = float(np.median([rows.stop - rows.start for rows, _, _ in groups]))
    result = []
    for group in groups:
        result.extend(_split(group, labels, typical))
    return result


def _split(group: tuple[slice, slice, list[int]], labels: np.ndarray, typical: float, depth: int = 0) -> list:
    """``group`` cut in two at its thinnest column near the middle, again for each part still too wide.

    Too wide is wider than 1.25 times the taller of its own height and the
    picture's ``typical`` digit height.
    A cut is kept only when both parts stand as tall as digits do; a flat part is
    a stroke of one digit (a 5's bar, a 7's top), not a digit.
    """
    rows, cols, members = group
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if width <= 1.25 * max(height, typical) or depth > 4:
        return [group]
    ink = np.isin(labels[rows, cols], members)
    profile = ink.sum(axis=0).astype(float)
    lo, hi = max(1, round(0.2 * width)), min(width - 1, round(0.8 * width))
    centre = width / 2
    cost = profile[lo:hi] + 0.15 * np.abs(np.arange(lo, hi) - centre) * profile.max() / width
    cut = lo + int(np.argmin(cost))
    parts = []
    for start, stop in ((0, cut), (cut, width)):
        filled = np.nonzero(ink[:, start:stop].any(axis=1))[0]
        if filled.size == 0 or filled[-1] + 1 - filled[0] < 0.6 * height:
            return [group]
        part = (slice(rows.start + filled[0], rows.start + filled[-1] + 1), slice(cols.start + start, cols.start + stop), members)
        parts.append(part)
    return [piece for part in parts for piece in _split(part, labels, typical, depth + 1)]


def _filled_share(labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> float:
    """The widest disc that fits inside the group's ink, as a share of its height (digits are strokes)."""
    rows, cols, members = group
    ink = np.pad(np.isin(labels[rows, cols], members), 1)
    height = rows.stop - rows.start
    if height < 8:
        return 0.0
    return 2 * float(ndimage.distance_transform_edt(ink).max()) / height


# --- 4. the MNIST recipe --------------------------------------------------------------


def _cut(picture: Picture, ink: _Ink, labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> Mark:
    """One digit cut from the working picture, its ink normalized and its strokes MNIST-like, framed 28×28."""
    rows, cols, members = group
    f = ink.factor
    shape = ink.strength.shape
    top, bottom = int(rows.start * f), min(shape[0], int(np.ceil(rows.stop * f)))
    left, right = int(cols.start * f), min(shape[1], int(np.ceil(cols.stop * f)))
    own = np.isin(labels[rows, cols], members)
    own = ndimage.binary_dilation(own, np.ones((3, 3), bool))
    region = ink.strength[top:bottom, left:right]
    own = np.asarray(Image.fromarray(own).resize((region.shape[1], region.shape[0]), Image.Resampling.NEAREST))
    levels = np.where(own, region, 0)
    levels = _normalized(levels, ink.threshold)
    levels = _mnist_strokes(levels)
    scale = picture.scale
    box = (round(left * scale), round(top * scale), round(right * scale), round(bottom * scale))
    return Mark(frame_digit(levels), box)


def _normalized(levels: np.ndarray, threshold: float) -> np.ndarray:
    """Ink levels 0-255: paper and noise at 0, the stroke's core at full strength."""
    inked = levels[levels > threshold]
    if inked.size == 0:
        return np.zeros_like(levels)
    core = float(np.percentile(inked, 90))
    floor = 0.6 * threshold
    return np.clip((levels - floor) / max(core - floor, 1e-3), 0, 1) * 255


def _mnist_strokes(levels: np.ndarray) -> np.ndarray:
    """Thin pen strokes thickened so that, once framed, they are close to MNIST's stroke width."""
    inked = levels > 127
    if inked.sum() < 4:
        return levels
    width = 4 * float(ndimage.distance_transform_edt(inked)[inked].mean())
    rows, cols = np.nonzero(levels)
    side = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    framed = width * 20 / side
    if framed >= THIN_STROKE * MNIST_STROKE:
        return levels
    radius = (0.8 * MNIST_STROKE * side / 20 - width) / 2
    if radius < 0.5:
        return levels
    size = 2 * int(round(radius)) + 1
    disc = np.hypot(*np.mgrid[-(size // 2) : size // 2 + 1, -(size // 2) : size // 2 + 1]) <= radius + 0.3
    return ndimage.grey_dilation(levels, footprint=disc)
