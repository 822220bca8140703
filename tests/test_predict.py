"""Prediction from real pictures: the API, its robustness to how digits are drawn, and the CLI."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_classifier import load_dataset
from mnist_classifier.errors import ConfigError, ImageError
from mnist_classifier.inference.predict import Classifier, predict_images
from tests.test_cli import assert_one_line_error, cli


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    _, (images, labels) = load_dataset("mnist", mnist_dir)
    return images[:200], labels[:200]


def png_file(path: Path, pixels: np.ndarray) -> Path:
    """A data set image as a person would save it: dark on white, enlarged, as PNG."""
    Image.fromarray(255 - pixels).resize((112, 112)).save(path, "PNG")
    return path


def _redraw(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """An MNIST digit as a person's picture: dark ink on white paper, enlarged, off-centre on a big canvas."""
    scale = int(rng.integers(4, 10))
    canvas = (int(rng.integers(300, 700)), int(rng.integers(300, 700)))
    ink = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    paper = Image.new("L", canvas, 255)
    paper.paste(ink, (int(rng.integers(0, canvas[0] - 28 * scale)), int(rng.integers(0, canvas[1] - 28 * scale))))
    lightness = np.asarray(paper, np.float32) / 255
    if style == "colour":  # blue ink on cream paper
        rgb = np.stack([lightness * 245, lightness * 235 + 20 * (1 - lightness), lightness * 200 + 120 * (1 - lightness)], -1)
        picture, fmt = Image.fromarray(rgb.astype(np.uint8), "RGB"), "PNG"
    elif style == "transparent":  # black ink on a transparent background
        alpha = ((1 - lightness) * 255).astype(np.uint8)
        picture, fmt = Image.fromarray(np.dstack([np.zeros_like(alpha)] * 3 + [alpha]), "RGBA"), "PNG"
    else:
        picture, fmt = paper, style.upper()
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("style", ["png", "jpeg", "colour", "transparent"])
def test_redrawn_test_digits_are_still_recognized(mlp_model_path, test_digits, style):
    images, labels = test_digits
    rng = np.random.default_rng(["png", "jpeg", "colour", "transparent"].index(style))
    pictures = [_redraw(digit, style, rng) for digit in images]
    predictions = predict_images(mlp_model_path, pictures)
    accuracy = np.mean([p.label for p in predictions] == labels)
    assert accuracy >= 0.95, f"{style}: {accuracy:.1%}"


def test_arrays_paths_and_bytes_are_accepted(mlp_model_path, test_digits, tmp_path):
    images, labels = test_digits
    path = tmp_path / "seven.png"
    path.write_bytes(_redraw(images[0], "png", np.random.default_rng(0)))
    classifier = Classifier.load(mlp_model_path)
    answers = predict_images(classifier, [images[1], path, path.read_bytes(), images[2] / 255.0], top_k=5)
    assert [a.label for a in answers] == [labels[1], labels[0], labels[0], labels[2]]
    assert [a.source for a in answers] == ["image 0", str(path), "image 2", "image 3"]
    first = answers[0]
    assert len(first.top) == 5 and first.top[0] == (first.name, first.probability)
    assert sum(first.probabilities) == pytest.approx(1.0, abs=1e-5) and predict_images(classifier, []) == []


def test_bad_inputs_raise_one_clear_error(mlp_model_path):
    with pytest.raises(ImageError, match="^image 1: not an image"):
        predict_images(mlp_model_path, [np.zeros((28, 28)), b"junk"])
    with pytest.raises(ConfigError, match="image 0: pixels must be finite values in 0-255"):
        predict_images(mlp_model_path, [np.full((28, 28), 300.0)])
    with pytest.raises(ConfigError, match=r"image 0: array of shape \(2, 28, 28\), expected a 2-D greyscale image"):
        predict_images(mlp_model_path, [np.zeros((2, 28, 28))])
    with pytest.raises(ConfigError, match="top_k=0: expected at least 1"):
        predict_images(mlp_model_path, [np.zeros((28, 28))], top_k=0)


def test_cli_predicts_the_good_files_and_reports_each_bad_one(mlp_model_path, test_digits, tmp_path):
    images, labels = test_digits
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(3):
        (folder / f"digit{i}.jpg").write_bytes(_redraw(images[i], "jpeg", np.random.default_rng(i)))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    result = cli("predict", mlp_model_path, folder, "--json", "--top-k", 2, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {folder / 'broken.png'}: not an image (PNG, JPEG, BMP, GIF or WebP expected)"]
    records = json.loads(result.stdout)
    assert [r["file"] for r in records] == [str(folder / n) for n in ("broken.png", "digit0.jpg", "digit1.jpg", "digit2.jpg")]
    assert [r["label"] for r in records[1:]] == list(labels[:3]) and len(records[1]["top"]) == 2
    line = cli("predict", mlp_model_path, folder / "digit0.jpg").stdout
    assert line.startswith(f"{folder / 'digit0.jpg'}: {labels[0]} (") and "top 3: " in line


def test_cli_refuses_an_empty_folder_and_a_missing_model(mlp_model_path, tmp_path):
    result = cli("predict", mlp_model_path, tmp_path, check=False)
    assert_one_line_error(result, f"{tmp_path}: no .png, .jpg")
    assert_one_line_error(cli("predict", tmp_path / "none.keras", tmp_path, check=False), "none.keras")
