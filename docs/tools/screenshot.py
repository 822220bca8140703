"""Screenshot the drawing page for the README: a real ``mnist-classifier serve``, a number written with the mouse.

    python docs/tools/screenshot.py [--model mnist-cnn] [--out docs/images/drawing-page.png]

Needs Playwright and Chromium (Debian's ``/usr/bin/chromium``). The service runs on
127.0.0.1 on a free port and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def _arc(cx, cy, rx, ry, start, stop, steps=14):
    """Points along an ellipse from ``start`` to ``stop`` degrees (0 at the right, clockwise on screen)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in (start + (stop - start) * i / steps for i in range(steps + 1))]  # fmt: skip


# One stroke per digit, in a box about 100 pixels wide and 170 high.
GLYPHS = {
    "2": _arc(50, 45, 40, 38, 200, 360) + [(80, 80), (10, 170), (100, 170)],
    "0": _arc(50, 85, 42, 85, -90, 270, 24),
    "6": [(85, 5), (45, 40)] + _arc(50, 125, 42, 48, 200, 560, 22),
    "1": [(30, 30), (60, 0), (60, 170)],
    "7": [(5, 8), (95, 8), (70, 60), (40, 170)],
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-cnn")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "drawing-page.png")
    parser.add_argument("--number", default="1726", help=f"digits among {', '.join(GLYPHS)}")
    args = parser.parse_args()

    port = _free_port()
    command = [sys.executable, "-c", "from mnist_classifier.cli import main; main()", "serve", args.model, "--port", str(port)]
    service = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("the service did not start")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 760, "height": 670}, device_scale_factor=1)
            page.goto(base + "/")
            page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
            box = page.locator("#pad").bounding_box()
            for index, digit in enumerate(args.number):
                left, top = box["x"] + 60 + 130 * index, box["y"] + 50
                points = GLYPHS[digit]
                page.mouse.move(left + points[0][0], top + points[0][1])
                page.mouse.down()
                for x, y in points[1:]:
                    page.mouse.move(left + x, top + y, steps=4)
                page.mouse.up()
            page.wait_for_function(
                f"document.getElementById('prediction').textContent === '{args.number}'", timeout=20000
            )
            page.wait_for_timeout(800)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(args.out)
    finally:
        service.terminate()
        service.wait(timeout=30)


if __name__ == "__main__":
    main()
