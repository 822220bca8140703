"""The small things a user meets first: the version, names misspelt, a busy port, help, messages while waiting."""

import json
import re
import socket

import numpy as np
import pytest
from PIL import Image

from mnist_classifier import __version__
from tests.test_cli import SMALL, TINY, assert_one_line_error, cli


def test_version_prints_the_package_version():
    result = cli("--version")
    assert result.stdout.strip() == f"mnist-classifier {__version__}" and not result.stderr


def test_serving_on_a_busy_port_is_one_error_line_at_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "mnist-mlp", "--port", port, check=False, timeout=60)
    assert_one_line_error(result, f"error: port {port} on 127.0.0.1 is in use: pick another with --port")
    assert "INFO" not in result.stderr


COMMANDS = ["info", "train", "tune", "report", "compare", "evaluate", "predict", "serve", "models", "export"]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_names_what_each_option_takes_without_type_tags(command):
    shown = cli(*([command] if command else []), "--help", env={"COLUMNS": "120"}).stdout
    assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])[^>]*>", shown), shown  # options and arguments
    # The docstring's paragraphs are wrapped by the terminal's width, not by the docstring's line breaks.
    prose = shown[: shown.index("╭")] if "╭" in shown else shown
    lines = [line.strip() for line in prose.splitlines() if line.strip() and not line.strip().startswith(("Usage", "-"))]
    assert all(len(line) > 60 for line, following in zip(lines, lines[1:]) if following[0].islower()), prose


def test_models_shows_a_bundled_models_network_and_record():
    shown = cli("models", "mnist-mlp", env={"COLUMNS": "100"}).stdout
    assert "layer (type)" in shown and "(None, 512)" in shown and "parameters:" in shown
    assert "classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in shown and "temperature" in shown
    record = json.loads(cli("models", "mnist-mlp", "--json").stdout)
    assert record["record"]["dataset"] == "mnist" and record["network"]["total"] == sum(
        layer["params"] for layer in record["network"]["layers"]
    )


def test_models_of_a_misspelt_name_says_which_was_meant():
    assert_one_line_error(cli("models", "mnist-mpl", check=False), "did you mean 'mnist-mlp'?")


def test_loading_a_model_says_so_on_a_terminal_and_not_in_piped_output(tmp_path):
    picture = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(picture)
    assert "loading" not in cli("predict", "mnist-mlp", picture).stderr
    assert "loading mnist-mlp ..." in cli("predict", "mnist-mlp", picture, env={"FORCE_COLOR": "1"}).stderr


def test_a_one_epoch_mlp_run_shows_its_network_first_and_records_only_what_it_uses(mnist_dir, tmp_path):
    shown = cli("train", "--data", mnist_dir, "--epochs", 1, "--out", tmp_path, *SMALL, *TINY).stdout
    assert shown.index("layer (type)") < shown.index("epoch 1/1") and "25,450 parameters" in shown
    assert " after 1 epoch (best 1) " in shown
    (run,) = tmp_path.iterdir()
    settings = (run / "config.toml").read_text()
    assert "[model]" in settings and "filters" not in settings and "rotation" not in settings
    report = (run / "report" / "report.md").read_text()
    assert "## Network" in report and "| dense_0 (Dense) | (None, 32) | 25,120 |" in report
    assert "<h2>Network</h2>" in (run / "report" / "report.html").read_text()
