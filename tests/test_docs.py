"""The documentation site builds strictly, with a page per command and every setting documented."""

import re
import subprocess
import sys

import typer.main

from mnist_classifier.cli import app
from mnist_classifier.config import known_settings
from tests.conftest import ROOT


def test_the_docs_build_strictly_with_every_command_and_setting(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]  # a broken link, anchor or reference fails the build
    for name in typer.main.get_command(app).commands:
        assert (site / "commands" / f"{name}.html").exists(), f"no page for the {name} command"
    configuration = (site / "configuration.html").read_text()
    documented = set(re.findall(r"<code>(\w+)</code></td>", configuration))
    for setting in known_settings():
        section, key = setting.split(".")
        assert section == "tune" or key in documented, f"{setting} is missing from the configuration page"
