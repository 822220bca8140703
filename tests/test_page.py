"""The drawing page in headless Chromium: write with the mouse, see the number, a box per digit and its input."""

import pytest

from tests.conftest import ARTIFACTS
from tests.test_serve import service  # noqa: F401  (the live server fixture)


def _stroke(page, points):
    """Press, move through ``points`` (canvas pixels), release."""
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    page.mouse.up()


def test_drawing_a_digit_shows_a_prediction_and_ten_bars(service, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 900, "height": 700})
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(str(service.base_url) + "/")
    page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
    assert "mnist" in page.locator("#about").inner_text()
    _stroke(page, [(90, 60), (200, 60), (150, 160), (120, 240)])  # a 7: the bar, then the stem
    # Live answers for the half-drawn stroke may come first; the finished 7 must end as 7.
    page.wait_for_function("document.getElementById('prediction').textContent === '7'", timeout=15000)
    page.wait_for_timeout(500)  # no later answer may replace it
    assert page.locator("#prediction").inner_text() == "7"
    assert page.locator("#bars li").count() == 10
    widths = page.eval_on_selector_all("#bars .fill", "fills => fills.map(f => parseFloat(f.style.width))")
    assert sum(widths) == pytest.approx(100, abs=1) and max(widths) == widths[7]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "drawing-page.png"))
    assert all(url.startswith(str(service.base_url)) for url in requests), "the page must not fetch from elsewhere"
    page.click("#clear")
    assert page.locator("#prediction").inner_text() == "–"
    page.close()


def test_writing_a_number_shows_it_with_a_box_and_an_input_per_digit(service, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.goto(str(service.base_url) + "/")
    page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
    _stroke(page, [(60, 60), (170, 60), (120, 160), (95, 240)])  # a 7
    _stroke(page, [(300, 50), (300, 240)])  # a 1
    _stroke(page, [(420, 90), (470, 50), (520, 90), (500, 150), (430, 240), (540, 240)])  # a 2
    page.wait_for_function("document.getElementById('prediction').textContent === '712'", timeout=15000)
    page.wait_for_timeout(500)
    assert page.locator("#inputs li").count() == 3
    sizes = page.eval_on_selector_all("#inputs img", "images => images.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[28, 28]] * 3
    assert page.locator("#bars li").count() == 0  # the bars are for one digit; each digit has its own caption
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "drawing-page-number.png"))
    page.close()


def test_the_api_docs_render_offline(service, browser):  # noqa: F811
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(str(service.base_url) + "/docs")
    page.wait_for_selector("#swagger-ui .info .title")
    assert "mnist-classifier API" in page.title()
    page.get_by_text("/predict/batch", exact=True).wait_for()
    assert page.locator(".errors-wrapper").count() == 0
    assert all(url.startswith(str(service.base_url)) for url in requests), requests
    page.close()
