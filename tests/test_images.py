"""Reading people's pictures safely and framing them as MNIST frames its digits."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mnist_classifier.inference import images as images_module
from mnist_classifier.errors import ImageError
from mnist_classifier.inference.images import read_image, to_digit, to_item


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _stroke_on_paper(size=(300, 400), box=(50, 60, 90, 200)) -> Image.Image:
    """A dark bar (a '1') on white paper, off-centre."""
    paper = Image.new("L", size, 255)
    paper.paste(0, box)
    return paper


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP"])
def test_every_accepted_format_reads_as_greyscale(fmt):
    grey = read_image(_encode(_stroke_on_paper().convert("RGB"), fmt))
    assert grey.dtype == np.uint8 and grey.shape == (400, 300)
    assert grey[100, 70] < 40 and grey[10, 10] > 215


def test_transparent_background_is_composited_onto_white_paper():
    alpha = np.zeros((50, 50), np.uint8)
    alpha[10:40, 20:25] = 255
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[..., 3] = alpha  # black ink where opaque, transparent elsewhere
    grey = read_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert grey[20, 22] == 0 and grey[0, 0] == 255


def test_a_digit_is_framed_the_mnist_way():
    digit = to_digit(np.asarray(_stroke_on_paper()))
    rows, cols = np.nonzero(digit > 64)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)  # longer side scaled to 20 px
    weights = digit.astype(float)
    centre = [(np.indices(digit.shape)[axis] * weights).sum() / weights.sum() for axis in (0, 1)]
    assert centre == pytest.approx([13.5, 13.5], abs=0.6)


def test_light_ink_on_dark_paper_is_kept_and_dark_ink_inverted():
    dark_on_light = to_digit(np.asarray(_stroke_on_paper()))
    light_on_dark = to_digit(255 - np.asarray(_stroke_on_paper()))
    np.testing.assert_array_equal(dark_on_light, light_on_dark)
    assert dark_on_light[0, 0] == 0 and dark_on_light.max() > 200


def test_a_fashion_item_fills_the_frame():
    item = to_item(np.asarray(_stroke_on_paper(box=(50, 60, 150, 110))))  # wider than tall
    cols = np.nonzero(item.max(axis=0) > 64)[0]
    assert cols.max() - cols.min() + 1 >= 27


def _png_claiming(width: int, height: int) -> bytes:
    """A real 1×1 PNG whose header claims another size."""
    data = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"hello, not an image", "not an image (PNG, JPEG, BMP, GIF or WebP expected)"),
        (_encode(Image.new("L", (40, 40)), "TIFF"), "TIFF image, expected PNG, JPEG, BMP, GIF or WebP"),
        (_encode(_stroke_on_paper(), "PNG")[:300], "cannot decode the image, truncated or corrupt"),
        (_png_claiming(100_000, 100_000), "10,000,000,000 pixels is over the 40,000,000-pixel limit"),
        (_png_claiming(8000, 8000), "8000×8000 pixels is over the 40,000,000-pixel limit"),
    ],
    ids=["text", "tiff", "truncated", "bomb", "huge"],
)
def test_bad_files_get_one_clear_line(tmp_path, payload, message):
    path = tmp_path / "upload.png"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match=f"^{path}: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_image(path)


def test_missing_files_folders_and_oversized_files_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ImageError, match="nope.png: image file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)
    monkeypatch.setattr(images_module, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.png"
    big.write_bytes(bytes(5000))
    with pytest.raises(ImageError, match="5,000 bytes is over the 1,000-byte limit"):
        read_image(big)
    with pytest.raises(ImageError, match="^upload: 5,000 bytes"):
        read_image(bytes(5000), "upload")


def test_a_blank_page_has_no_ink():
    with pytest.raises(ImageError, match="blank.png: no ink found"):
        to_digit(np.full((100, 100), 250, np.uint8), "blank.png")


@pytest.mark.parametrize(("orientation", "stored"), [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_a_turned_phone_jpeg_is_read_upright(tmp_path, orientation, stored):
    upright = Image.new("L", (300, 200), 255)
    upright.paste(0, (0, 0, 60, 40))  # ink in the top left corner only
    exif = Image.Exif()
    exif[0x0112] = orientation  # the camera was turned: the pixels are stored turned, the tag says how
    upright.transpose(stored).save(tmp_path / "photo.jpg", "JPEG", exif=exif.tobytes())
    grey = read_image(tmp_path / "photo.jpg")
    assert grey.shape == (200, 300)
    assert grey[10, 10] < 40 and grey[10, 290] > 215 and grey[190, 10] > 215 and grey[190, 290] > 215


def _small_digit() -> np.ndarray:
    """An 8×8 picture of a 0, dark on light, in a few grey tones (as an 8×8 scan holds one)."""
    small = np.full((8, 8), 255, np.uint8)
    small[1:7, 2] = small[1:7, 5] = 40
    small[1, 3:5] = small[6, 3:5] = 90
    small[2:6, 3] = 200
    return small


@pytest.mark.parametrize(("side", "fmt"), [(64, "PNG"), (100, "PNG"), (173, "PNG"), (250, "JPEG"), (91, "JPEG")])
def test_a_picture_enlarged_by_repeating_pixels_is_enlarged_smoothly_instead(side, fmt):
    small = _small_digit()
    blocky = Image.fromarray(small).resize((side, side), Image.Resampling.NEAREST)
    grey = read_image(_encode(blocky, fmt, **({"quality": 80} if fmt == "JPEG" else {})))
    smooth = np.asarray(Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC), np.float32)
    restored = images_module.unpixelated(grey).astype(np.float32)
    assert np.abs(restored - smooth).mean() < 4 < np.abs(grey - smooth).mean(), (np.abs(restored - smooth).mean(), np.abs(grey - smooth).mean())


def test_pictures_not_enlarged_by_repeating_pixels_are_left_as_they_are():
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(_small_digit()).resize((120, 120), Image.Resampling.BICUBIC))
    bar = np.asarray(_stroke_on_paper())  # two edges across, two down: no grid of cells
    noise = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    ruled = np.full((300, 300), 250, np.uint8)
    ruled[::20] = ruled[:, ::20] = 120  # squared paper's lines, a pixel wide
    ruled[100:200, 148:153] = 0  # and a stroke across them
    nearly = np.asarray(Image.fromarray(_small_digit()).resize((16, 16), Image.Resampling.NEAREST))  # 2× is too little
    for grey in (smooth, bar, noise, ruled, nearly, np.full((50, 50), 7, np.uint8)):
        assert images_module.unpixelated(grey) is grey
