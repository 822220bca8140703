"""Our own generator of people's pictures, for measuring a digit reader: each case with its truth.

Every function takes a ``numpy.random.Generator`` (or a seed) and is deterministic
in it, given the same installed fonts and packages. Handwriting comes only from
MNIST's *test* images, handwriting fonts and hand-placed strokes; never from the
training images.

- :func:`photo_of_digit`: a phone's JPEG of one handwritten digit -> (bytes, digit)
- :func:`photo_of_number`, :func:`drawn_number`: 2-6 digits photographed or drawn cleanly -> (bytes, "2026")
- :func:`non_digit`: letters, words, clothing, noise, shapes, a smiley, colour photos, scribbles, blank pages -> bytes
- clean sets: :func:`redrawn_mnist`, :func:`typed_digit` (one font of :func:`fonts_with_digits`),
  :func:`sklearn_digit` (scikit-learn's 8×8 digits, when it is installed) -> (bytes, digit)

Example:
    >>> from tests.scenes import photo_of_digit
    >>> jpeg, digit = photo_of_digit(7)
"""

from tests.scenes.digits import drawn_number, photo_of_digit, photo_of_number, redrawn_mnist, sklearn_digit, typed_digit
from tests.scenes.glyphs import fonts_with_digits
from tests.scenes.nondigits import LOOKALIKES, NON_DIGIT_KINDS, non_digit

__all__ = [
    "LOOKALIKES",
    "NON_DIGIT_KINDS",
    "drawn_number",
    "fonts_with_digits",
    "non_digit",
    "photo_of_digit",
    "photo_of_number",
    "redrawn_mnist",
    "sklearn_digit",
    "typed_digit",
]
