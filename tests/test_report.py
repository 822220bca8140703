"""Reports people can look at: valid, non-blank PNGs of the expected size, an HTML page that shows them all."""

import numpy as np
import pytest
from PIL import Image

from mnist_classifier.config import apply_overrides
from mnist_classifier.errors import TrainingError
from mnist_classifier.pipeline import train_run
from mnist_classifier.presets import preset
from mnist_classifier.report import compare_runs, run_labels, write_report
from mnist_classifier.runs import RunRecord
from tests.conftest import ARTIFACTS
from tests.test_cli import assert_one_line_error, cli

SMALL = {"data.train_limit": 3000, "data.test_limit": 500, "data.validation_size": 500, "training.epochs": 3}


@pytest.fixture(scope="module")
def runs(mnist_dir, tmp_path_factory):
    """Two small finished runs that differ in their hidden layers."""
    out = tmp_path_factory.mktemp("runs")
    base = {**SMALL, "data.path": str(mnist_dir), "model.activations": ["relu", "softmax"]}
    return [
        train_run(apply_overrides(preset("mlp"), {**base, "model.layers": [width, 10]}), out).run_dir
        for width in (32, 128)
    ]


def assert_picture(path, size):
    """A real PNG of ``size`` (width, height) with something drawn on it."""
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size, (path.name, image.size)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10 and len(np.unique(pixels)) > 20, f"{path.name} looks blank"


def test_the_report_has_every_figure(runs):
    html = write_report(runs[0])
    folder = html.parent
    assert_picture(folder / "curves.png", (1100, 400))
    assert_picture(folder / "confusion.png", (750, 650))
    assert_picture(folder / "per_class.png", (1000, 400))
    with Image.open(folder / "misclassified.png") as grid:
        assert grid.size[0] == 1200
    assert_picture(folder / "misclassified.png", Image.open(folder / "misclassified.png").size)
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 5 and "src=\"http" not in text
    markdown = (folder / "report.md").read_text()
    accuracy = RunRecord.read(runs[0]).metrics["test_accuracy"]
    assert f"{accuracy:.2%}" in markdown and "![Confusion matrix](confusion.png)" in markdown


def test_the_html_report_shows_every_figure_in_a_browser(runs, browser):
    html = write_report(runs[1])
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(html.as_uri())
    loaded = page.eval_on_selector_all("img", "images => images.map(i => i.complete && i.naturalWidth > 0)")
    assert loaded == [True] * 5
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()


def test_compare_puts_runs_side_by_side(runs, tmp_path):
    header, rows = compare_runs(runs, tmp_path / "compare.png")
    assert header == ["", *run_labels([run.name for run in runs])] and len(set(header)) == 3
    assert all(name.startswith("mlp-mnist ") for name in header[1:])
    by_name = {row[0]: row[1:] for row in rows}
    assert by_name["model.layers"] == ["[32, 10]", "[128, 10]"] and "data.path" not in by_name
    assert by_name["epochs"] == ["3", "3"] and all(v.endswith("%") for v in by_name["test accuracy"])
    assert_picture(tmp_path / "compare.png", (1100, 400))
    shown = cli("compare", *runs, "--out", tmp_path / "cli.png").stdout
    assert "model.layers" in shown and (tmp_path / "cli.png").exists()


def test_compare_draws_beside_the_runs_and_names_them_apart_in_80_columns(runs):
    shown = cli("compare", *runs, env={"COLUMNS": "80"}).stdout
    beside = runs[0].parent / "compare.png"
    assert f"validation curves: {beside}" in shown.replace("\n", "") and beside.exists()
    assert shown.count("mlp-mnist") == 2 and max(map(len, shown.splitlines())) <= 80


def test_run_labels_keep_the_date_or_seconds_only_where_they_tell_runs_apart():
    assert run_labels(["20261130-062241-mlp-mnist", "20261201-062241-mlp-mnist"]) == [
        "mlp-mnist 11-30 06:22", "mlp-mnist 12-01 06:22"
    ]
    assert run_labels(["20261201-062241-cnn-mnist", "20261201-062259-cnn-mnist"]) == [
        "cnn-mnist 06:22:41", "cnn-mnist 06:22:59"
    ]
    assert run_labels(["mine", "20261201-062241-cnn-mnist"]) == ["mine", "20261201-062241-cnn-mnist"]


def test_info_show_draws_samples_of_every_class(mnist_dir, tmp_path):
    result = cli("info", "--data", mnist_dir, "--show", 5, "--out", tmp_path / "grid.png")
    assert "grid.png" in result.stderr
    with Image.open(tmp_path / "grid.png") as grid:
        width, height = grid.size
    assert_picture(tmp_path / "grid.png", (width, height))
    assert width > 400 and height > 800  # 10 rows of 5 digits


def test_info_show_draws_into_the_runs_folder_by_default(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("info", "--data", mnist_dir, "--show", 1)
    assert "runs/samples-mnist.png" in result.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert_picture(tmp_path / "runs" / "samples-mnist.png", Image.open(tmp_path / "runs" / "samples-mnist.png").size)


def test_report_refuses_what_is_not_a_finished_run(tmp_path):
    with pytest.raises(TrainingError, match="is .* a run directory"):
        write_report(tmp_path)
    (tmp_path / "config.toml").write_text("")
    (tmp_path / "history.json").write_text("[]")
    assert_one_line_error(cli("report", tmp_path, check=False), "metrics.json", "is the run finished?")
    assert cli("info", "--show", 0, check=False).returncode == 2
