"""Find the handwritten digits in a picture, left to right, as MNIST-style 28×28 images.

What the best document readers do, in order:

1. **Paper and ink.** A small picture enlarged by repeating its pixels is enlarged
   smoothly instead (:func:`~mnist_classifier.inference.images.unpixelated`). The
   paper's brightness is estimated locally, on a small copy of the picture (a
   morphological closing wipes out strokes and keeps the light, however unevenly
   it falls, and keeps a shadow's edge sharp); ink is what is darker than the
   paper around it, relative to it. Light ink on dark paper is inverted first.
2. **Marks.** Ink is thresholded with hysteresis (faint stroke ends join strong
   ink; faint marks alone do not count) and labelled into connected components
   on a reduced copy (at most ``ANALYSIS_SIDE`` pixels long). Ruled lines and
   squared paper are found and taken out (the strokes that cross them stay);
   specks and the page's edge are dropped.
3. **Digits.** Components that share columns are one digit (a 5 whose bar is
   apart, a 4 in two strokes); a group much wider than a digit is split along
   the path through its least ink, straight or slanted (digits that touch).
   Digits are ordered left to right; with a model to judge, neighbouring pieces
   that it reads better as one digit are joined (a digit written in pieces).
4. **The MNIST recipe.** Each digit is cut from the picture at its working
   resolution, its ink normalized to full strength, thin pen strokes thickened
   towards MNIST's, then framed: the box scaled to 20 pixels, the centre of
   mass at the centre of 28×28.

A picture that shows nothing like a row of written digits comes back with no
marks and a ``reason``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_classifier.inference.images import INK_FLOOR, Picture, frame_digit, unpixelated

ANALYSIS_SIDE = 768  # longest side of the copy that marks are found on
PAPER_WINDOW = 1 / 7  # closing window, as a share of the coarse copy's longest side
ROW_GAP = 1.5  # a number's digits stand at most this many digit heights apart, edge to edge
MAX_MARKS = 16  # more separate marks than that is texture, text or a photo, not a number
MAX_INK_SHARE = 0.3  # ink over more of a photo than that is not writing on paper
MAX_EVEN_INK_SHARE = 0.7  # a scanned or drawn digit may fill its frame
EVEN_SHARE = 0.2  # paper whose commonest tone holds this share of the pixels is lit evenly
EVEN_BORDER = 0.5  # or this share of the pixels along its border (phone photos: 0.1 at most)
DARKER_THAN_GROUND = 25  # grey levels: light ink on a dark ground has next to nothing darker than the ground
PAGE_SHARE = 0.5  # light over this share of a picture is paper, not light strokes (MNIST's cover a third at most)
DARK_GROUND = 0.35  # paper darker than this share of the page's lightest is a table, not paper in shadow
MIN_WRITING = 30  # pixels of dark ink, apart from lines and shadows, that a pen's width is measured on
MIN_STROKE_WINDOW = 0.03  # the paper is seen at the strokes' scale, but over no less than this share of the side
MIN_CONTRAST = 0.1  # ink at least this much darker than its paper (a share of the paper's brightness)
TINY = 0.02  # in a photo, ink under this share of the picture's longer side is a speck, not a digit
SPECK = 0.22  # marks whose longer side is under this share of the tallest mark's height are specks
LINE_SPAN = 0.4  # a ruled line runs across at least this share of the picture
EVEN_LINE_SPAN = 0.85  # of a scan or a drawing, where nothing hides it: a digit's bar may span half its frame
LINE_GAP = 0.02  # gaps in a line of up to this share of the picture's width are bridged
LINE_THICKNESS = 0.035  # a line is at most this share of its length thick
STEP = 0.12  # paper this much darker on one side of a long thin mark than on the other: an edge, not a stroke
STEP_LENGTH = 8  # pixels: marks this long or longer are checked for being such an edge (a short piece of one is too)
PEN_OVER_LINE = 1.5  # ink this many times stronger than a ruled line at its darkest, on the line, is a pen stroke along it
LINE_THIN = 0.08  # a mark whose ink is on average under this share of its length thick is line-thin
HAIRLINE = 0.02  # in a photo, a mark under this share of its length thick is a rule's or an edge's piece, not a pen's
STRAY_LINE = 2.5  # a line-like mark this many times longer than the other ink is no digit of theirs
PHOTO_SPAN = 0.75  # in a photo, marks spanning more of the picture than this are shadows or the page's edge
MIN_LINED_SIDE = 96  # pictures smaller than this (in pixels) have no ruled lines
FILLED = 0.5  # a mark whose widest inscribed disc is over this share of its height is a filled shape,
FILLED_BOX = 0.5  # if its ink also covers this share of its box
BOLD_HEIGHT = 0.3  # unless it stands in line with digits written in strokes, within this share of their height
INSIDE_MARK = 0.05  # a mark inside a loop counts (a face's eye) from this share of the loop's height
CROSSINGS = 7  # a line across a digit meets its ink 4 times at most (an 8 drawn twice: 5); a spiral's, more
WEAK = 0.45  # marks fainter than this share of the strongest mark's ink are smudges, shadows or ruling
BROKEN_GAP = 0.06  # two pieces this close (a share of their height) and together
BROKEN_WIDTH = 0.8  # no wider than this share of their height are one digit broken in two
ONE_WIDTH = 1.6  # marks no wider together than this many times their height may be one digit
BARE_GAP = 0.25  # unless bare paper this share of their height wide stands between two of them (a 9 beside a 4)
FAR_LESS_SURE = 0.5  # one digit of all the ink beats one of part of it unless the judge is this much less sure
NEAR = 0.15  # ink this close to a digit (a share of its height) may be a piece of it
SPLIT_WIDTH = 1.15  # a group wider than this many digit heights is split (touching digits)
JUDGED_SPLIT_WIDTH = 0.95  # or this many, when a model judges each cut
JOIN_RUN = 3  # at most this many neighbouring pieces are joined into one digit
JOIN_ODDS = 0.9  # pieces joined into one digit are this much less likely than the pieces read apart, a priori
JOIN_GAP = 0.1  # and e times less likely again for each such share of their height of bare paper between them
CUT_CANDIDATES = 3  # cuts a judge is shown for each group too wide
MIN_PART = 0.15  # each part of a cut holds this share of the group's ink at least (a 1 beside an 8 does)
PART_HEIGHT = 0.7  # and stands this share of its height at least: touching digits are about as tall as each other
SEAM_STEP = 0.05  # what a cutting path pays for a step aside, against 1 for each ink pixel it crosses
ONE_DIGIT_WIDTH = 1.15  # a group wider than this many times its height is less likely one digit
MNIST_STROKE = 2.6  # typical stroke width of an MNIST digit in its 20-pixel box
CUT_SIDE = 112  # a digit is cut at most this many pixels long before it is framed
FAINT = 0.45  # in a photo, a digit's ink under this share of its pen's strength, away from it, is no part of it
PEN_REACH = 2  # pixels (at the cut's resolution) of soft edge kept around the pen's ink
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


Judge = Callable[[np.ndarray], np.ndarray]  # N×28×28 uint8 digits -> how sure a model is of each, 0 to 1


class _NotWriting(Exception):
    """Raised inside the reader when a picture is plainly not writing; its message is the reason."""


@dataclass(frozen=True)
class _Ink:
    """Ink strength (0 paper, 1 black) of the working picture, and the mask of marks on the analysis copy."""

    strength: np.ndarray  # working resolution, float32
    small: np.ndarray  # the same at analysis resolution
    tones: np.ndarray  # the picture's grey (dark ink on light paper) at analysis resolution
    even: bool  # paper lit evenly (a scan or a drawing): digits may touch the picture's border
    mask: np.ndarray  # analysis resolution, bool, lines and specks removed
    factor: float  # working pixels per analysis pixel
    threshold: float  # ink strength that counts as ink


def read_digits(picture: Picture, judge: Judge | None = None) -> Reading:
    """The handwritten digits in ``picture``, left to right, each framed as MNIST frames its digits.

    With a ``judge`` (how sure a model is of each of N×28×28 images, 0 to 1) the
    reader also asks it where the ink alone cannot tell one digit from two: when
    the marks together are no wider than a digit may be (a 0 drawn wide, a 4 in
    two strokes apart, a stroke broken in places), the whole is read as one digit
    if the judge is surer of it than of all the separate digits together.

    Returns a Reading with no marks and a reason when the picture is blank, or
    shows texture, a photograph, a filled shape or a drawing (a face) rather than written digits.
    """
    ink = _find_ink(unpixelated(picture.grey))
    if ink is None:
        return Reading((), "no ink found: a blank or nearly uniform picture")
    labels, count = ndimage.label(ink.mask, np.ones((3, 3), bool))
    if count == 0:
        return Reading((), "no ink found: only specks or lines")
    if ink.mask.mean() > (MAX_EVEN_INK_SHARE if ink.even else MAX_INK_SHARE):
        return Reading((), f"ink covers {ink.mask.mean():.0%} of the picture: not writing on paper")
    try:
        groups = _keep_marks(labels, ink)
    except _NotWriting as refusal:
        return Reading((), str(refusal))
    if not groups:
        return Reading((), "no ink found: only specks, lines or the page's edge")
    strong = _strong(groups, labels, ink.small)
    refusals = [_not_a_digit(labels, group) for group in strong]
    if all(refusals):
        return Reading((), refusals[0])
    strong = [group for group, refusal in zip(strong, refusals) if not refusal]
    made: dict[tuple, Mark | None] = {}

    def cut(group: tuple[slice, slice, list[int]]) -> Mark | None:
        """:func:`_cut` of ``group``, made once: the splitter, the joiner and the answer show the judge the same digits."""
        rows, cols, members = group
        key = (rows.start, rows.stop, cols.start, cols.stop, tuple(sorted(set(members))))
        if key not in made:
            made[key] = _cut(picture, ink, labels, group)
        return made[key]

    def best_cut(whole: tuple[slice, slice, list[int]], candidates: list[list]) -> int | None:
        """Which of the ``candidates`` (each a pair of parts) to cut ``whole`` into, or None to keep it whole.

        Without a judge, the first. With one, the pair it is surest of (the
        product of its two parts' scores), if that beats its score of the whole
        as one digit, discounted by how much wider than a digit the whole is
        (``_one_digit_odds``).
        """
        if judge is None:
            return 0
        cuts = [cut(group) for group in (whole, *(part for pair in candidates for part in pair))]
        if any(cut is None for cut in cuts):
            return None
        sure = judge(np.stack([cut.image for cut in cuts]))
        pairs = sure[1:].reshape(len(candidates), 2).prod(axis=1)
        best = int(np.argmax(pairs))
        return best if pairs[best] >= sure[0] * _one_digit_odds(whole) else None

    groups = _split_wide(strong, labels, best_cut, SPLIT_WIDTH if judge is None else JUDGED_SPLIT_WIDTH)
    if len(groups) > MAX_MARKS:
        return Reading((), f"{len(groups)} separate marks: texture, text or a photo, not a number")
    written = _bold_in_a_row(groups, [not _filled(labels, group) for group in groups])
    row = _in_a_row(written, labels)
    if judge is not None and len(row) > 1:
        row = _joined_by_judge(row, cut, judge)
    whole = _as_one(strong, labels) if judge is not None else None
    if whole is not None and len(row) == 1 and whole[:2] == row[0][:2] and sorted(whole[2]) == sorted(row[0][2]):
        whole = None  # the one digit already read, ink for ink
    marks = tuple(mark for group in row if (mark := cut(group)))
    one = cut(whole) if whole is not None else None
    if one is not None:
        sure = judge(np.stack([one.image, *(mark.image for mark in marks)]))
        # Against one digit, the reading that uses all the ink wins unless the judge is far less sure of it.
        if not marks or sure[0] > float(np.prod(sure[1:])) * (FAR_LESS_SURE if len(marks) == 1 else 1):
            return Reading((one,))
    if not marks:
        return Reading((), "a filled shape, not a written digit" if not written else "no ink found: only faint marks")
    return Reading(marks)


# --- 1. paper and ink -----------------------------------------------------------------


def _find_ink(grey: np.ndarray) -> _Ink | None:
    """Ink strength relative to the local paper, or None when the picture has no ink."""
    grey = grey.astype(np.float32)
    stride = max(1, int(max(grey.shape) / ANALYSIS_SIDE))
    if not _dark_on_light(grey[::stride, ::stride]):
        grey = 255 - grey
    factor = max(1.0, max(grey.shape) / ANALYSIS_SIDE)
    small = _resized(grey, factor)
    even, level = _even_paper(small)
    paper = np.full(small.shape, level, np.float32) if even else _paper(small)
    # Relative to its paper, but darker ground than the page's shadows (a table) is no paper to write on.
    floor = max(8.0, DARK_GROUND * float(np.percentile(paper, 95)))
    strength_small = np.clip((paper - small) / np.maximum(paper, floor), 0, 1)
    strongest = _strongest(strength_small)
    if strongest < MIN_CONTRAST:
        return None
    low, high = _thresholds(strength_small, strongest, even)
    mask = _hysteresis(strength_small, low, high)
    if not even:
        # Again with the paper seen at the strokes' own scale: a soft shadow's edge is no stroke, and
        # the paper in a gradient of light is not counted darker than it is. The thresholds are then
        # set by the writing alone, not by a strip of table or the page's edge along the border.
        ground = _ground(mask)
        # The pen's width, measured on its darkest ink: a shadow or a ruled line it touches is fainter.
        dark = mask & (strength_small > 0.7 * strongest)
        writing = dark & ~ground
        if writing.sum() < MIN_WRITING:  # the writing touches a line and went with it: what a line is too thin for
            writing = ndimage.binary_opening(dark, np.ones((3, 3), bool))
        window = max(3 * _stroke_width(writing), MIN_STROKE_WINDOW * max(small.shape))
        paper = np.minimum(paper, _paper(small, window))
        strength_small = np.clip((paper - small) / np.maximum(paper, floor), 0, 1)
        page = strength_small[~ground] if ground.mean() < 0.5 else strength_small
        if (rest := _strongest(page)) >= MIN_CONTRAST:
            low, high = _thresholds(page, rest, even)
    mask = _without_lines(_hysteresis(strength_small, low, high), strength_small, fine=not even)
    full_paper = paper if factor == 1 else _resized_to(paper, grey.shape)
    strength = np.clip((full_paper - grey) / np.maximum(full_paper, floor), 0, 1)
    return _Ink(strength, strength_small, small, even, mask, factor, low)


def _strongest(strength: np.ndarray) -> float:
    """The strength of the picture's strongest ink: its 99.95th percentile (a few pixels of noise are no
    ink), or where so little is inked that the percentile is paper (a small digit on a large page),
    the ``MIN_WRITING``-th strongest pixel."""
    strongest = float(np.percentile(strength, 99.95))
    if strongest >= MIN_CONTRAST or strength.size <= MIN_WRITING:
        return strongest
    return float(np.partition(strength.ravel(), -MIN_WRITING)[-MIN_WRITING])


def _ground(mask: np.ndarray) -> np.ndarray:
    """The marks of ``mask`` that are no writing: over a quarter of the picture long and touching its
    border (a table, the page's edge) or line-thin (a margin's rule, the page's edge within the picture).

    Marks a few pixels apart count as one (a line the threshold broke), and the
    result is a little widened.
    """
    joined = ndimage.binary_dilation(mask, iterations=2)
    labels, count = ndimage.label(joined, np.ones((3, 3), bool))
    areas = np.bincount(labels.ravel(), weights=mask.ravel(), minlength=count + 1)
    ground = np.zeros(count + 1, bool)
    for label, box in enumerate(ndimage.find_objects(labels), 1):
        if _length(box) > 0.25 * max(mask.shape) and (_at_border(box, mask.shape) or _line_thin(box, areas[label])):
            ground[label] = True
    return ground[labels] & joined


def _dark_on_light(grey: np.ndarray) -> bool:
    """Whether the ink is darker than the paper.

    Light ink is taken only where the ground is dark both at the picture's border
    and in its commonest tone, the lightest tones stand far above it, and hardly
    anything is darker than it (a digit drawn on a screen, MNIST's own pictures);
    paper, however dimly lit, is lighter than its ink, and darker ink or a table
    shows below its tone. A table's dark tone may be the commonest even where the
    page covers most of the picture (``PAGE_SHARE``): the ink is then dark too.
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    mode = int(np.argmax(np.bincount(np.clip(grey, 0, 255).astype(np.uint8).ravel(), minlength=256)))
    light, dark = np.percentile(grey, (99, 0.5))
    if not (np.median(border) < 128 and mode < 128 and light > mode + 80 and dark > mode - DARKER_THAN_GROUND):
        return True
    # A page unevenly lit on a dark table: the table's even tone is the commonest, the page's spread over many.
    return float((grey > (mode + light) / 2).mean()) > PAGE_SHARE


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


def _paper(small: np.ndarray, window: float | None = None) -> np.ndarray:
    """The paper's brightness under each pixel of the analysis copy.

    A closing (max, then min filter) removes everything darker and narrower than
    its window (default: ``PAPER_WINDOW`` of the longer side), strokes included,
    and keeps gradients of light and the edges of shadows and of the page. Paper
    lit evenly is taken as one level.
    """
    window = max(5, round(window or max(small.shape) * PAPER_WINDOW)) | 1
    # Past the border the picture goes on as at its edge: a strip of table along it stays dark.
    padded = np.pad(ndimage.uniform_filter(small, 3), window, mode="edge")  # noise peaks are not paper
    closed = ndimage.grey_closing(padded, size=(window, window))[window:-window, window:-window]
    low, middle, high = np.percentile(closed, (5, 50, 95))
    if high - low < 0.06 * middle:
        return np.full(small.shape, max(middle, float(np.percentile(small, 60))), np.float32)
    return np.maximum(closed, small)  # nothing is lighter than its paper


def _even_paper(small: np.ndarray) -> tuple[bool, float]:
    """Whether the paper is one even tone (a scan, a drawing, a screen), and that tone.

    Even paper is one exact tone: at least ``EVEN_SHARE`` of the pixels are the
    commonest tone, or ``EVEN_BORDER`` of those along the border when the digit
    fills most of its frame (a camera's noise and light spread paper over many
    tones: at most a tenth of a photo's pixels share one).
    """
    side = max(1, round(0.05 * min(small.shape)))
    border = np.concatenate([small[:side], small[-side:], small[:, :side].T, small[:, -side:].T], axis=None)
    for pixels, share in ((small, EVEN_SHARE), (border, EVEN_BORDER)):
        counts = np.bincount(np.clip(pixels, 0, 255).astype(np.uint8).ravel(), minlength=256)
        mode = int(np.argmax(counts))
        if counts[mode] >= share * pixels.size:
            return True, float(mode)
    return False, float(mode)


def _stroke_width(mask: np.ndarray) -> float:
    """The typical width of the strokes in ``mask``: the median over its marks of 4 × their mean distance to paper."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 1.0
    mask = np.pad(mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], 3)  # the ink's box: cheaper
    mask = ndimage.binary_closing(mask, np.ones((3, 3), bool), iterations=2) | mask  # speckled ink: a stroke's width, not its grain's
    labels, count = ndimage.label(mask, np.ones((3, 3), bool))
    distance = ndimage.distance_transform_edt(mask)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    means = ndimage.mean(distance, labels, np.arange(1, count + 1))
    marks = areas >= max(12, 0.05 * areas.max())
    width = float(np.median(4 * np.asarray(means)[marks])) if marks.any() else 1.0
    return width if np.isfinite(width) else 1.0


def _thresholds(strength: np.ndarray, strongest: float, even: bool) -> tuple[float, float]:
    """Hysteresis thresholds: weak ink joins strong ink; strong is at least half the strongest ink.

    On evenly lit paper (a scan, a drawing, a screen) every tone over
    ``INK_FLOOR`` of the strongest ink counts, as MNIST's own grey edges do.
    """
    if even:
        return INK_FLOOR * strongest, 0.5 * strongest
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


def _without_lines(mask: np.ndarray, strength: np.ndarray | None = None, fine: bool = False) -> np.ndarray:
    """``mask`` without ruled lines, grid lines or the page's edges (tilted up to 15°).

    A line is a thin run of ink (gaps bridged) across at least ``LINE_SPAN`` of
    the picture, and in a scan or a drawing (not ``fine``), where nothing hides it,
    one piece across ``EVEN_LINE_SPAN`` of it (a digit's bar may span half its
    frame); strokes that cross it are kept whole, and the broken bits of a line
    that the threshold left go with it. With the ink's ``strength``, a pen's
    stroke that runs along a line (the top of a 0 on it) is kept too, where its
    ink is much darker than the line at its darkest. Small pictures have no lines.
    ``fine``: angles searched as finely as a photo's long, slightly curved lines
    need (``_line_angle``); a scan's or a drawing's lines are straight, and its
    digit may fill the picture, where a finer search would take a long stroke for a line.
    """
    if min(mask.shape) < MIN_LINED_SIDE:
        return mask
    found = mask  # both ways' lines are found whole: a margin's rule is not yet cut by the ruled lines
    for axis in (0, 1):
        oriented = found if axis == 0 else found.T
        angle = _line_angle(oriented, fine)
        if angle is None:
            continue
        span = 0 if fine else EVEN_LINE_SPAN * oriented.shape[1]  # a photo's line may be in pieces
        lines = _thin(_long_runs(_shear(oriented, angle), LINE_SPAN * oriented.shape[1]), span)
        if not lines.any():
            continue
        sheared = _shear(mask if axis == 0 else mask.T, angle)
        thickness = _thickness(lines)
        band = _along(ndimage.maximum_filter1d, lines, thickness + 4)  # the line and its blurred edges
        rest = _outside(sheared & ~band, _along(ndimage.maximum_filter1d, band, 5))
        closed = _along(ndimage.minimum_filter1d, _along(ndimage.maximum_filter1d, rest, thickness + 7), thickness + 7)
        crossing = band & sheared & closed
        if strength is not None:  # a pen's stroke along the line: ink far darker than the ruling's
            levels = _shear(strength if axis == 0 else strength.T, angle)
            crossing |= band & sheared & (levels > PEN_OVER_LINE * float(np.percentile(levels[lines], 90)))
        kept = rest | crossing
        cleaned = _shear(kept, angle, inverse=True)
        mask = cleaned if axis == 0 else cleaned.T
    return mask


def _thickness(lines: np.ndarray) -> int:
    """How many pixels thick the (horizontal) lines of ``lines`` are: the median, over the columns
    that cross any, of a column's line pixels over the lines it crosses."""
    crossed = lines.any(axis=0)
    starts = (lines & ~np.vstack([np.zeros((1, lines.shape[1]), bool), lines[:-1]])).sum(axis=0)
    return max(1, int(np.ceil(np.median(lines.sum(axis=0)[crossed] / starts[crossed]))))


def _along(filter1d: Callable, mask: np.ndarray, size: int, axis: int = 0) -> np.ndarray:
    """``mask`` dilated (``maximum_filter1d``) or eroded (``minimum_filter1d``) by ``size`` pixels along ``axis``
    (0: down its columns, 1: along its rows).

    The same as a binary dilation or erosion by a bar of ``size`` pixels, beyond
    the border nothing, at a fraction of the cost.
    """
    return filter1d(mask.view(np.uint8), size, axis=axis, mode="constant", cval=0).astype(bool)


def _thin(lines: np.ndarray, span: float) -> np.ndarray:
    """The line pixels that belong to thin lines, each one piece ``span`` pixels long or longer: a digit's long
    stroke is thick beside a ruled line, and a digit's bar is shorter than a line across a scan."""
    labels, count = ndimage.label(lines, np.ones((3, 3), bool))
    if count == 0:
        return lines
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    extents = np.zeros(count + 1)
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        extents[index] = box[1].stop - box[1].start
    thin = (areas <= np.maximum(extents, 1) * np.maximum(3.0, LINE_THICKNESS * extents)) & (extents >= span)
    thin[0] = False
    return thin[labels]


def _outside(rest: np.ndarray, band: np.ndarray) -> np.ndarray:
    """``rest`` without its components that lie (almost) wholly inside ``band``: the broken bits of a line."""
    labels, count = ndimage.label(rest, np.ones((3, 3), bool))
    if count == 0:
        return rest
    inside = ndimage.sum_labels(band, labels, np.arange(1, count + 1))
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = np.concatenate([[False], inside < 0.8 * areas])
    return keep[labels]


def _line_angle(mask: np.ndarray, fine: bool = False) -> float | None:
    """The tilt (slope) at which ink rows line up as ruled lines, or None when none runs across.

    Tilts are tried 1° apart, or (``fine``) close enough that a line across the
    picture drifts by at most about two pixels from its sheared row (down to a
    quarter of a degree on the analysis copy's full width).
    """
    step = max(1, mask.shape[1] // 256)
    # Each block of step × step pixels with any ink is one inked pixel: a line a pixel thin stays unbroken.
    pooled = ndimage.maximum_filter(mask, size=step, origin=-(step // 2)) if step > 1 else mask
    rows, cols = np.nonzero(pooled[::step, ::step])
    width = -(-mask.shape[1] // step)
    if rows.size < LINE_SPAN * width:
        return None
    best, best_slope = 0.0, None
    spacing = float(np.clip(np.degrees(np.arctan(2 / mask.shape[1])), 0.25, 1.0)) if fine else 1.0
    for slope in np.tan(np.radians(np.arange(-15, 15 + spacing / 2, spacing))):
        shifted = rows - np.round(cols * slope).astype(int)
        peak = np.bincount(shifted - shifted.min()).max() / width  # ink in the fullest sheared row
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
    """The pixels of horizontal runs of ink at least ``length`` long, gaps of up to ``LINE_GAP`` of the width bridged."""
    gap = max(5, round(LINE_GAP * mask.shape[1])) | 1
    bridged = _along(ndimage.minimum_filter1d, _along(ndimage.maximum_filter1d, mask, gap, 1), gap, 1) | mask
    labels, count = ndimage.label(bridged, np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool))
    if count == 0:
        return np.zeros_like(mask)
    lengths = np.bincount(labels.ravel(), minlength=count + 1)
    long = lengths >= length
    long[0] = False
    return long[labels] & mask


def _keep_marks(labels: np.ndarray, ink: _Ink) -> list[tuple[slice, slice, list[int]]]:
    """Boxes (with their labels) of the components that make up digits, grouped, left to right.

    The page's edge, shadows' edges and lines along the border go; pieces much
    smaller than a digit join the digit they touch or nearly touch (a 5's bar,
    the dot of a stroke's end) and are otherwise specks. Small pieces at the
    border go, unless the paper is even (a scan or a drawing has no page edge),
    even when nothing else is left; so does, in a photo, ink under ``TINY`` of
    the picture's side.
    """
    shape, even = labels.shape, ink.even
    areas = np.bincount(labels.ravel())
    found = [(box, index + 1) for index, box in enumerate(ndimage.find_objects(labels)) if box is not None]
    found = [
        (box, label) for box, label in found
        if not _page_edge(box, int(areas[label]), shape, even)
        and (even or not (_a_step(box, int(areas[label]), ink.tones) or _hairline(box, int(areas[label]))))
    ]  # fmt: skip
    found = _without_stray_lines(found, areas, shape)
    if not found:
        return []
    strong = _written_strongly(found, labels, areas, ink.small)
    tallest = max(box[0].stop - box[0].start for box, _ in strong)
    big = [(box[0], box[1], [label]) for box, label in found if _side(box) >= SPECK * tallest and _side(box) >= 3]
    if not big:
        return []
    digit = float(np.median([rows.stop - rows.start for rows, _, _ in big if rows.stop - rows.start >= 0.5 * tallest]))
    pieces = [piece for piece in big if piece[0].stop - piece[0].start >= 0.45 * digit]  # digits are never flat
    strong_labels = {label for _, label in strong}
    if (count := sum(1 for piece in pieces if piece[2][0] in strong_labels)) > 3 * MAX_MARKS:
        raise _NotWriting(f"{count} separate marks: texture, text or a photo, not a number")
    slivers = [] if even else [p for p in pieces if _at_border(p[:2], shape) and min(p[0].stop - p[0].start, p[1].stop - p[1].start) < 0.2 * digit]
    pieces = [p for p in pieces if p not in slivers]  # the page's edge in pieces
    small = [piece for piece in big if piece not in pieces and (even or not _at_border(piece[:2], shape))]
    groups = _group(pieces)
    for piece in small:
        near = min(groups, key=lambda group: _gap(group, piece), default=None)
        if near is not None and _gap(near, piece) <= 0.3 * digit:
            groups[groups.index(near)] = _union(near, piece)
    groups = _group(groups)  # a digit in two pieces may be one only with its small ones
    if not even:  # the page's edge or a rule in pieces (a grid's lines cut it) is one once its pieces are together:
        # a step, or a hairline of pieces a pixel or two wide (a digit joined by bits of a grid is no hairline)
        groups = [group for group in groups if not _a_step(group[:2], int(areas[group[2]].sum()), ink.tones)] or groups
        boxes = {label: box for box, label in found}
        groups = [
            group for group in groups
            if not (_hairline(group[:2], int(areas[group[2]].sum())) and all(areas[label] < 2 * _length(boxes[label]) for label in group[2]))
        ]  # fmt: skip
        groups = [group for group in groups if _side(group[:2]) >= TINY * max(shape)]
    return sorted(groups, key=lambda group: group[1].start)


def _written_strongly(
    found: list[tuple[tuple[slice, slice], int]], labels: np.ndarray, areas: np.ndarray, strength: np.ndarray
) -> list[tuple[tuple[slice, slice], int]]:
    """Of ``found``, the marks whose ink is ``WEAK`` of the strongest's at least (of those of ``MIN_WRITING``
    pixels at least), as ``_strong`` has it: what sets the size a digit is measured by, which a faint giant
    (the page's edge against a table, a shadow's edge) must not set when a small digit is written in pen.
    """
    levels = {label: _level(strength, labels, (*box, [label])) for box, label in found}
    sizable = [levels[label] for _, label in found if areas[label] >= MIN_WRITING]
    if not sizable:
        return found
    return [(box, label) for box, label in found if levels[label] >= WEAK * max(sizable)] or found


def _without_stray_lines(
    found: list[tuple[tuple[slice, slice], int]], areas: np.ndarray, shape: tuple[int, int]
) -> list[tuple[tuple[slice, slice], int]]:
    """``found`` without the long thin marks far longer than the rest of the ink: a margin's rule or the
    piece of a line that the line finder missed, which would otherwise set the size digits are measured by.

    A mark is line-like when it is line-thin (``_line_thin``) and over a quarter of the
    picture long; it goes when it is ``STRAY_LINE`` times longer than the other marks
    and they hold ink enough (a quarter of its own) to be writing, not specks beside a
    tall 1.
    """
    lines = {label for box, label in found if _length(box) > 0.25 * max(shape) and _line_thin(box, areas[label])}
    others = [(box, label) for box, label in found if label not in lines and _side(box) >= 3]
    if not lines or not others:
        return found
    substantial = max(areas[label] for _, label in others)
    reference = max(_side(box) for box, label in others if areas[label] >= 0.2 * substantial)
    ink = sum(int(areas[label]) for _, label in others)
    stray = {
        label for box, label in found
        if label in lines and _side(box) > STRAY_LINE * reference and ink >= 0.25 * areas[label]
    }  # fmt: skip
    return [(box, label) for box, label in found if label not in stray]


def _a_step(box: tuple[slice, slice], area: int, tones: np.ndarray) -> bool:
    """Whether a thin mark is where the light changes, not a stroke on paper: the page's edge, a shadow's,
    or a short piece of one (a dash two pixels wide along the desk is checked too).

    Paper is as light on both sides of a pen's stroke; on the two sides of an
    edge (across the mark's narrower extent) it differs by over ``STEP`` of the
    lighter, more than the light's slope just outside the mark explains (a digit
    written where a lamp or the lens's vignetting darkens the page steadily is no edge),
    and a stroke's ink is far darker than the paper on either side, an edge's is not.
    Marks thicker than line-thin (``LINE_THIN`` of their length, or 2 pixels for a short one) are no edge.
    """
    rows, cols = box
    height, width = rows.stop - rows.start, cols.stop - cols.start
    length = float(np.hypot(height, width))
    if area / length >= max(LINE_THIN * length, 2.0) or length < STEP_LENGTH:
        return False
    strip = max(4, round(0.03 * min(tones.shape)))
    across = tones if height >= width else tones.T  # left of it against right of it, or above against below
    along, start, stop = (rows, cols.start, cols.stop) if height >= width else (cols, rows.start, rows.stop)
    near = across[along, max(0, start - strip) : start], across[along, stop : stop + strip]
    far = across[along, max(0, start - 2 * strip) : max(0, start - strip)], across[along, stop + strip : stop + 2 * strip]
    if min(side.size for side in near) == 0:
        return False
    one, other = (float(np.median(side)) for side in near)
    if min(one, other) - float(np.percentile(tones[rows, cols], 5)) > STEP * max(one, other, 1.0):
        return False  # ink far darker than the paper on either side: a pen's stroke beside a shadow's edge
    slope = 0.0
    if min(side.size for side in far) > 0:  # the light's change a pixel, on both sides outside the mark
        one_far, other_far = (float(np.median(side)) for side in far)
        slope = ((one - one_far) + (other_far - other)) / (2 * strip)
    return abs(other - one - slope * (stop - start + strip)) > STEP * max(one, other, 1.0)


def _length(box: tuple[slice, slice]) -> float:
    """A box's diagonal: the length of a straight mark that fills it."""
    return float(np.hypot(box[0].stop - box[0].start, box[1].stop - box[1].start))


def _line_thin(box: tuple[slice, slice], area: float) -> bool:
    """Whether a mark of ``area`` pixels filling ``box`` is as thin as a line: under ``LINE_THIN`` of its length."""
    length = _length(box)
    return area / length < LINE_THIN * length


def _hairline(box: tuple[slice, slice], area: float) -> bool:
    """Whether a mark is far thinner than a pen writes a digit that size: under ``HAIRLINE`` of its length.

    What is left of a ruled line, a fold or the page's edge when most of it went
    with the lines is a pixel wide however long; a pen's stroke is a twentieth of
    its digit or more, and a curved digit's ink is longer than its box's diagonal.
    """
    length = _length(box)
    return length >= 8 and area / length < HAIRLINE * length


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


def _page_edge(box: tuple[slice, slice], area: int, shape: tuple[int, int], even: bool) -> bool:
    """Whether a component is the edge of the page, a shadow's or a ruled line's: long, thin, at the border.

    On ``even`` paper (a scan or a drawing, whose digits may touch the border)
    only the end of a ruled line qualifies: lying, and much thinner than long.
    """
    rows, cols = box
    height, width = rows.stop - rows.start, cols.stop - cols.start
    margin = 0.02 * max(shape)
    at_top_or_bottom = rows.start <= margin or rows.stop >= shape[0] - margin
    at_left_or_right = cols.start <= margin or cols.stop >= shape[1] - margin
    length = np.hypot(height, width)
    if even:
        return (at_left_or_right or at_top_or_bottom) and width > 3 * height and area / length < 0.04 * length
    thin = _line_thin(box, area)
    if (height > PHOTO_SPAN * shape[0] or width > PHOTO_SPAN * shape[1]) and (thin or at_top_or_bottom or at_left_or_right):
        return True  # a digit photographed on paper never spans the picture in a line: a shadow or the page's edge does
    if (at_left_or_right and height > 0.6 * shape[0]) or (at_top_or_bottom and width > 0.6 * shape[1]):
        return True
    long = height > 0.3 * shape[0] or width > 0.3 * shape[1]
    # Half the picture long and line-thin, wherever it lies: the page's edge or a shadow's, never a digit's stroke.
    return thin and (length > 0.5 * max(shape) or long and (at_top_or_bottom or at_left_or_right))


# --- 3. digits: grouping and splitting ----------------------------------------------


def _group(boxes: list[tuple[slice, slice, list[int]]]) -> list[tuple[slice, slice, list[int]]]:
    """Components that belong to one digit (``_same_digit``) merged; the digits left to right."""
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
    """Whether two pieces belong to one digit.

    They share half the narrower one's columns and stand less than 0.6 of the
    taller one's height apart, or they are the nearly touching halves of one
    digit broken in two (``BROKEN_GAP``, ``BROKEN_WIDTH``).
    """
    overlap = min(a[1].stop, b[1].stop) - max(a[1].start, b[1].start)
    narrower = min(a[1].stop - a[1].start, b[1].stop - b[1].start)
    gap = max(a[0].start, b[0].start) - min(a[0].stop, b[0].stop)
    taller = max(a[0].stop - a[0].start, b[0].stop - b[0].start)
    if overlap >= 0.5 * narrower and gap < 0.6 * taller:
        return True
    # A stroke broken by a faint stretch: two nearly touching halves no wider together than a digit.
    union = _union(a, b)
    width, height = union[1].stop - union[1].start, union[0].stop - union[0].start
    return -overlap <= BROKEN_GAP * height and width <= BROKEN_WIDTH * height and min(
        a[0].stop - a[0].start, b[0].stop - b[0].start) >= 0.5 * height


def _union(a: tuple[slice, slice, list[int]], b: tuple[slice, slice, list[int]]) -> tuple[slice, slice, list[int]]:
    """The box around two pieces, with both pieces' labels."""
    rows = slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop))
    cols = slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop))
    return rows, cols, a[2] + b[2]


def _split_wide(groups: list[tuple[slice, slice, list[int]]], labels: np.ndarray, choose: Callable, widest: float) -> list[tuple[slice, slice, list[int]]]:
    """Groups much wider than a digit cut where the ink is thinnest (touching digits), best effort.

    ``choose(whole, candidates)`` picks one of the candidate cuts, or None to keep
    the group whole (a wide 0 is one digit).
    """
    typical = float(np.median([rows.stop - rows.start for rows, _, _ in groups]))
    result = []
    for group in groups:
        result.extend(_split(group, labels, typical, choose, widest))
    return result


def _split(group: tuple[slice, slice, list[int]], labels: np.ndarray, typical: float, choose: Callable, widest: float, depth: int = 0) -> list:
    """``group`` cut in two along the path through the least ink, again for each part still too wide.

    Too wide is wider than ``widest`` (``SPLIT_WIDTH``, or ``JUDGED_SPLIT_WIDTH`` when a
    model judges each cut) times the taller of its own height and the picture's
    ``typical`` (median) digit height.
    The candidates are paths from top to bottom that cross the least ink
    (``_seams``): straight down between digits that touch, slanted or bent round
    a digit that leans over its neighbour. Those whose two parts both stand
    ``PART_HEIGHT`` of the group's height are kept (a flat or short part is a stroke
    of one digit: a 5's bar, a 7's top, a 1's long upstroke); ``choose`` picks one or none.

    The group's ink is relabelled in ``labels``, one new label for each strip
    between neighbouring paths, so that every part is a group of labels like any other.
    """
    rows, cols, members = group
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if width <= widest * max(height, typical) or depth > 4:
        return [group]
    ink = np.isin(labels[rows, cols], members)
    seams = _seams(ink)
    if not seams:
        return [group]
    strips = np.zeros(ink.shape, np.int32)
    column = np.arange(width)[None, :]
    for seam in seams:
        strips += column >= seam[:, None]
    first = int(labels.max()) + 1
    labels[rows, cols][ink] = first + strips[ink]
    members = list(range(first, first + len(seams) + 1))
    group = (rows, cols, members)
    candidates = []
    for k in range(1, len(seams) + 1):
        parts = []
        for part, own in ((ink & (strips < k), members[:k]), (ink & (strips >= k), members[k:])):
            filled = np.nonzero(part.any(axis=1))[0]
            if filled.size == 0 or filled[-1] + 1 - filled[0] < PART_HEIGHT * height or part.sum() < MIN_PART * ink.sum():
                break
            used = np.nonzero(part.any(axis=0))[0]
            parts.append((slice(rows.start + filled[0], rows.start + filled[-1] + 1), slice(cols.start + used[0], cols.start + used[-1] + 1), own))
        if len(parts) == 2:
            candidates.append(parts)
    chosen = choose(group, candidates) if candidates else None
    if chosen is None:
        return [group]
    return [piece for part in candidates[chosen] for piece in _split(part, labels, typical, choose, widest, depth + 1)]


def _seams(ink: np.ndarray) -> list[np.ndarray]:
    """Up to ``CUT_CANDIDATES`` paths down through ``ink``, left to right, that do not cross: each a column per row.

    A path keeps to the middle seven tenths of the width, steps at most one
    column a row and pays 1 for each ink pixel it crosses and ``SEAM_STEP`` for
    each step aside; where it ends is chosen as ``_cut_columns`` chooses a
    column, by the cost of the best path ending there.
    """
    height, width = ink.shape
    cost = ink.astype(np.float32)
    cost[:, : max(1, round(0.15 * width))] = np.inf  # a path round the outside of the ink cuts nothing
    cost[:, min(width - 1, round(0.85 * width)) :] = np.inf
    total = cost[0].copy()
    back = np.zeros((height, width), np.int8)
    for row in range(1, height):
        left = np.concatenate([[np.inf], total[:-1]]) + SEAM_STEP
        right = np.concatenate([total[1:], [np.inf]]) + SEAM_STEP
        options = np.stack([left, total, right])
        step = options.argmin(axis=0)
        total = options[step, np.arange(width)] + cost[row]
        back[row] = step - 1
    if not np.isfinite(total).any():  # too narrow to have a middle
        return []
    seams = []
    total = np.minimum(total, float(total[np.isfinite(total)].max()))
    for end in _cut_columns(total):
        seam = np.empty(height, np.int64)
        seam[-1] = end
        for row in range(height - 1, 0, -1):
            seam[row - 1] = seam[row] + back[row, seam[row]]
        seams.append(seam)
    seams.sort(key=lambda seam: float(seam.mean()))
    return list(np.maximum.accumulate(np.stack(seams), axis=0)) if seams else []


def _cut_columns(profile: np.ndarray) -> list[int]:
    """Up to ``CUT_CANDIDATES`` columns to cut a group at, best first: the least ink, nearest the middle.

    Columns between a fifth and four fifths of the width are scored by their ink
    plus a penalty for their distance from the middle, and taken lowest score
    first, each a tenth of the width at least from those already taken.
    """
    width = len(profile)
    lo, hi = max(1, round(0.2 * width)), min(width - 1, round(0.8 * width))
    if hi <= lo:
        return []
    columns = np.arange(lo, hi)
    cost = profile[lo:hi] + 0.15 * np.abs(columns - width / 2) * profile.max() / width
    chosen: list[int] = []
    for index in np.argsort(cost, kind="stable"):
        column = int(columns[index])
        if all(abs(column - other) >= max(2, 0.1 * width) for other in chosen):
            chosen.append(column)
        if len(chosen) == CUT_CANDIDATES:
            break
    return chosen


def _one_digit_odds(group: tuple[slice, slice, list[int]]) -> float:
    """How readily a group this wide is one digit, 0 to 1: 1 up to ``ONE_DIGIT_WIDTH`` times its height, less beyond.

    Few digits are wider than they are tall (a 0, a 2 or a 7 drawn wide); two
    digits side by side are. The judge's score of the whole as one digit is
    weighed by this before it is compared with a cut's.
    """
    rows, cols, _ = group
    ratio = (cols.stop - cols.start) / max(1, rows.stop - rows.start)
    return float(min(1.0, (ONE_DIGIT_WIDTH / ratio) ** 2))


def _as_one(groups: list, labels: np.ndarray) -> tuple[slice, slice, list[int]] | None:
    """All of ``groups`` and the ink near them as one digit, when together they are no wider than a digit may be
    and no column of bare paper ``BARE_GAP`` of their height wide stands between them.

    The ink near them is every mark that lies wholly within ``NEAR`` of their
    height of their box (a stroke's broken-off end, a 9's tail): what a digit in
    pieces is made of.
    """
    if not groups or len(groups) > 3:
        return None
    box = groups[0]
    for group in groups[1:]:
        box = _union(box, group)
    rows, cols, _ = box
    height = rows.stop - rows.start
    if cols.stop - cols.start > ONE_WIDTH * height or _bare_gap(groups) > BARE_GAP * height:
        return None
    reach = round(NEAR * height)
    top, bottom, left, right = rows.start - reach, rows.stop + reach, cols.start - reach, cols.stop + reach
    near = np.unique(labels[max(0, top) : bottom, max(0, left) : right])
    found = ndimage.find_objects(labels)
    members = []
    for label in (int(label) for label in near if label):
        r, c = found[label - 1]
        if r.start >= top and r.stop <= bottom and c.start >= left and c.stop <= right:
            members.append(label)
            box = _union(box, (r, c, []))
    return box[0], box[1], members


def _bare_gap(groups: list) -> int:
    """The widest run of columns between ``groups`` that none of them reaches: bare paper between marks."""
    spans = sorted((cols.start, cols.stop) for _, cols, _ in groups)
    widest, reached = 0, spans[0][1]
    for start, stop in spans[1:]:
        widest, reached = max(widest, start - reached), max(reached, stop)
    return widest


def _joined_by_judge(row: list, cut: Callable, judge: Judge) -> list:
    """The row's neighbouring pieces joined where the judge reads them better as one digit.

    ``cut(group)`` is a group's framed digit (a :class:`Mark`), or None.

    A digit written in pieces (a 3 whose top stroke stands apart, a 0 the
    threshold broke) is read as several marks, each a poor digit.
    Every run of up to ``JOIN_RUN`` neighbours no wider together than ``ONE_WIDTH``
    times their height is a candidate digit; of all the ways to read the row as a
    sequence of candidates, the one the judge is surest of wins (the product of
    its scores, a joined candidate's weighed by ``_one_digit_odds``, ``JOIN_ODDS``
    and ``_apart_odds``): two digits side by side stay two unless one digit of both is
    read with more confidence than the two are.
    """
    spans = {}
    for start in range(len(row)):
        box = row[start]
        for stop in range(start + 2, min(len(row), start + JOIN_RUN) + 1):
            box = _union(box, row[stop - 1])
            if box[1].stop - box[1].start > ONE_WIDTH * (box[0].stop - box[0].start):
                break
            spans[start, stop] = box
    if not spans:
        return row
    cuts = {key: cut(box) for key, box in spans.items()}
    singles = [cut(group) for group in row]
    if any(cut is None for cut in singles):
        return row
    keys = [key for key, cut in cuts.items() if cut is not None]
    sure = judge(np.stack([cut.image for cut in singles] + [cuts[key].image for key in keys]))
    score = {(i, i + 1): float(sure[i]) for i in range(len(row))}
    for key, value in zip(keys, sure[len(row) :]):
        score[key] = float(value) * _one_digit_odds(spans[key]) * JOIN_ODDS * _apart_odds(row[key[0] : key[1]], spans[key])
    best = [(0.0, [])] + [(-np.inf, [])] * len(row)  # best[j]: log-score and spans of the first j pieces
    for stop in range(1, len(row) + 1):
        for start in range(max(0, stop - JOIN_RUN), stop):
            if (start, stop) in score and best[start][0] > -np.inf:
                total = best[start][0] + np.log(max(score[start, stop], 1e-9))
                if total > best[stop][0]:
                    best[stop] = (total, best[start][1] + [(start, stop)])
    return [row[start] if stop == start + 1 else spans[start, stop] for start, stop in best[-1][1]]


def _apart_odds(pieces: list, span: tuple[slice, slice, list[int]]) -> float:
    """How readily neighbouring ``pieces`` (left to right) are one digit, given the bare columns between them.

    A digit's pieces overlap or nearly touch (a 4's two strokes cross, a 5's bar
    lies over its body, a broken stroke's halves are a pen's width apart); two
    digits stand apart. Each gap costs a factor e per ``JOIN_GAP`` of the height
    of ``span``, the pieces' union.
    """
    height = span[0].stop - span[0].start
    reach, gaps = pieces[0][1].stop, 0
    for piece in pieces[1:]:
        gaps += max(0, piece[1].start - reach)
        reach = max(reach, piece[1].stop)
    return float(np.exp(-gaps / (JOIN_GAP * max(1, height))))


def _filled(labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> bool:
    """Whether a group is a filled shape: a wide disc fits inside its ink and ink fills most of its box (digits are strokes)."""
    rows, cols, members = group
    ink = np.isin(labels[rows, cols], members)
    height = rows.stop - rows.start
    if height < 8 or ink.mean() < FILLED_BOX:
        return False
    return 2 * float(ndimage.distance_transform_edt(np.pad(ink, 1)).max()) > FILLED * height


def _bold_in_a_row(groups: list, strokes: list[bool]) -> list:
    """The groups written in strokes, and the filled ones among them that stand in line with those (a digit
    written in a bold marker, beside others): as tall as the strokes' median, give or take ``BOLD_HEIGHT``,
    and overlapping their rows by half its height. Alone, or out of line, a filled group is a shape."""
    written = [group for group, stroke in zip(groups, strokes) if stroke]
    if not written or all(strokes):
        return written
    height = float(np.median([rows.stop - rows.start for rows, _, _ in written]))
    top, bottom = min(rows.start for rows, _, _ in written), max(rows.stop for rows, _, _ in written)
    kept = []
    for group, stroke in zip(groups, strokes):
        rows = group[0]
        tall = rows.stop - rows.start
        in_line = min(rows.stop, bottom) - max(rows.start, top) >= 0.5 * tall
        if stroke or (in_line and abs(tall - height) <= BOLD_HEIGHT * height):
            kept.append(group)
    return kept


def _drawing(labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> bool:
    """Whether a group is a drawing: its largest mark closes a loop round two marks or more.

    A face's eyes and mouth lie inside its outline; no digit holds separate marks
    in its loop (a 0, 6, 8 or 9 is one stroke round bare paper). Every mark found
    counts, also those too small or faint to be digits of their own, except those
    under ``INSIDE_MARK`` of the loop's height (dust).
    """
    rows, cols, members = group
    window = labels[rows, cols]
    ids, areas = np.unique(window[window > 0], return_counts=True)
    own = np.isin(ids, members)
    if len(ids) < 3 or not own.any():
        return False
    loop = ids[own][np.argmax(areas[own])]
    outer = window == loop
    hole = ndimage.binary_fill_holes(outer) & ~outer
    inside = 0
    for member in np.unique(window[hole & (window > 0)]):  # the marks that reach into the loop, only
        mark = window == member
        if (hole & mark).sum() < 0.9 * mark.sum():
            continue
        ys, xs = np.nonzero(mark)
        inside += max(np.ptp(ys), np.ptp(xs)) + 1 >= INSIDE_MARK * (rows.stop - rows.start)
    return inside >= 2


def _not_a_digit(labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> str | None:
    """Why a group of marks is no digit, before any model is asked (a drawing, a scribble); None when it may be one."""
    if _drawing(labels, group):
        return "a drawing (marks inside a closed loop, as a face's eyes), not a written digit"
    if _scribble(labels, group):
        return "a scribble (lines across it meet its ink more often than a digit's), not a written digit"
    return None


def _scribble(labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> bool:
    """Whether a group is a scribble: lines across it meet its ink ``CROSSINGS`` times or more.

    A vertical line through a digit meets its ink three times at most (an 8, a 3),
    a horizontal one twice; a spiral, hatching or a tangle is met many times. The
    count is the 90th percentile over the columns and over the rows, the rows' taken
    per digit height of width (touching digits in a row add up), so that a speck
    or a broken stroke in a few lines does not count.
    """
    rows, cols, members = group
    ink = np.isin(labels[rows, cols], members)
    height, width = ink.shape
    counts = []
    for lines, per in ((ink.T, 1.0), (ink, max(1.0, width / height))):
        starts = (np.diff(lines.astype(np.int8), axis=1) == 1).sum(axis=1) + lines[:, 0]
        counts.append(float(np.percentile(starts, 90)) / per)
    return max(counts) >= CROSSINGS


def _strong(groups: list, labels: np.ndarray, strength: np.ndarray) -> list:
    """The groups written as strongly as the strongest: a pen's strokes, not smudges, shadows or faint ruling."""
    levels = [_level(strength, labels, group) for group in groups]
    strongest = max(levels)
    return [group for group, level in zip(groups, levels) if level >= WEAK * strongest]


def _level(strength: np.ndarray, labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> float:
    """How strongly a group is written: the median strength of its own ink."""
    rows, cols, members = group
    return float(np.median(strength[rows, cols][np.isin(labels[rows, cols], members)]))


def _adjacent(inliers: np.ndarray, spans: np.ndarray, weights: np.ndarray, gap: float) -> np.ndarray:
    """Of the ``inliers``, the run of neighbours that holds the most ink: each starts no more than ``gap``
    after the run's ink so far ends (``spans``: each group's first and last column)."""
    order = [i for i in np.argsort(spans.mean(axis=1)) if inliers[i]]
    runs, current = [], [order[0]] if order else []
    for index in order[1:]:
        if spans[index, 0] - spans[current, 1].max() > gap:
            runs.append(current)
            current = []
        current.append(index)
    runs.append(current)
    best = max(runs, key=lambda run: weights[run].sum())
    chosen = np.zeros_like(inliers)
    chosen[best] = True
    return chosen


def _in_a_row(groups: list, labels: np.ndarray) -> list:
    """The groups along the line (tilted at most ±0.3) that holds the most ink: a number's digits; strays go."""
    if len(groups) < 2:
        return groups
    centres = np.array([[(c.start + c.stop) / 2, (r.start + r.stop) / 2] for r, c, _ in groups])
    heights = np.array([r.stop - r.start for r, _, _ in groups], float)
    weights = np.array([np.isin(labels[r, c], m).sum() for r, c, m in groups], float)
    spans = np.array([[c.start, c.stop] for _, c, _ in groups], float)
    reach = 0.5 * float(np.median(heights))
    best, best_score = np.ones(len(groups), bool), -1.0
    for i in range(len(groups)):
        for j in range(len(groups)):
            if j != i and abs(centres[j, 0] - centres[i, 0]) < 1:
                continue
            slope = 0.0 if j == i else (centres[j, 1] - centres[i, 1]) / (centres[j, 0] - centres[i, 0])
            if abs(slope) > 0.3:
                continue
            off = np.abs(centres[:, 1] - (centres[i, 1] + slope * (centres[:, 0] - centres[i, 0])))
            inliers = _adjacent(off <= np.maximum(reach, 0.5 * heights), spans, weights, ROW_GAP * 2 * reach)
            score = float(weights[inliers].sum())
            if score > best_score:
                best, best_score = inliers, score
    return [group for group, keep in zip(groups, best) if keep]


# --- 4. the MNIST recipe --------------------------------------------------------------


def _cut(picture: Picture, ink: _Ink, labels: np.ndarray, group: tuple[slice, slice, list[int]]) -> Mark | None:
    """One digit cut from the working picture, its ink normalized and its strokes MNIST-like, framed 28×28.

    None when none of its ink is strong enough to count once cut.
    """
    rows, cols, members = group
    f = ink.factor
    shape = ink.strength.shape
    top, bottom = int(rows.start * f), min(shape[0], int(np.ceil(rows.stop * f)))
    left, right = int(cols.start * f), min(shape[1], int(np.ceil(cols.stop * f)))
    own = np.isin(labels[rows, cols], members)
    own = ndimage.binary_dilation(own, np.ones((3, 3), bool))
    region = ink.strength[top:bottom, left:right]
    own = np.asarray(Image.fromarray(own).resize((region.shape[1], region.shape[0]), Image.Resampling.NEAREST))
    levels = np.where(own, region, 0).astype(np.float32)
    shrink = max(levels.shape) / CUT_SIDE
    if shrink > 1:  # enough for a 20-pixel box, and cheap to thicken
        size = (max(1, round(levels.shape[1] / shrink)), max(1, round(levels.shape[0] / shrink)))
        levels = np.asarray(Image.fromarray(levels, "F").resize(size, Image.Resampling.BOX), np.float32)
    levels = _normalized(levels, ink.threshold, ink.even)
    if not levels.any():
        return None
    if not ink.even:  # pens photographed; a drawing keeps the strokes it was drawn with
        levels = _mnist_strokes(_pen_only(levels))
    scale = picture.scale
    box = (round(left * scale), round(top * scale), round(right * scale), round(bottom * scale))
    return Mark(frame_digit(levels), box)


def _pen_only(levels: np.ndarray) -> np.ndarray:
    """``levels`` (0-255) without the faint ink that is not near the pen's own: a ruled line's remains,
    a shadow's or the page's edge that touches the digit. A stroke's soft edges stay (``PEN_REACH`` pixels)."""
    pen = levels >= FAINT * 255
    if not pen.any():
        return levels
    return np.where(ndimage.binary_dilation(pen, np.ones((3, 3), bool), iterations=PEN_REACH), levels, 0).astype(levels.dtype)


def _normalized(levels: np.ndarray, threshold: float, even: bool) -> np.ndarray:
    """Ink levels 0-255: paper and noise at 0, the stroke's core at full strength.

    Evenly lit ink is stretched to its strongest tone, fainter tones kept as MNIST
    keeps its grey edges.
    """
    inked = levels[levels > threshold]
    if inked.size == 0:
        return np.zeros_like(levels)
    if even:
        stretched = levels * (255 / float(levels.max()))
        return np.where(stretched < INK_FLOOR * 255, 0, stretched)
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
