"""tests/browser.py sees what the page tests rely on it to see: a check that cannot fail proves
nothing, so each one is shown failing here on a page built to break it."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.browser import Browser

pytestmark = pytest.mark.integration


def png_data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", image)[1]).decode()


def flat() -> np.ndarray:
    return np.full((8, 8, 3), 90, np.uint8)


def striped() -> np.ndarray:
    image = flat()
    image[::2] = 250
    return image


PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body>
<img id="good" src="{good}"><img id="flat" src="{flat}"><img id="broken" src="{missing}">
<canvas id="drawn" width="10" height="10"></canvas><canvas id="empty" width="10" height="10">
</canvas>
<table><thead><tr><th id="name">name</th></tr></thead><tbody><tr><td>b</td></tr>
<tr><td>a</td></tr></tbody></table>
<script>
const ctx = document.getElementById("drawn").getContext("2d");
ctx.fillStyle = "#c00"; ctx.fillRect(2, 2, 4, 4);
document.getElementById("name").addEventListener("click", () => {{
  const body = document.querySelector("tbody");
  [...body.rows].sort((x, y) => x.textContent.localeCompare(y.textContent))
    .forEach((row) => body.append(row));
}});
console.error("deliberate console error");
fetch("http://127.0.0.1:9/data.json").catch(() => {{}});
</script></body></html>"""


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("harness") / "page.html"
    missing = path.with_name("missing.png").as_uri()
    path.write_text(
        PAGE.format(good=png_data_url(striped()), flat=png_data_url(flat()), missing=missing)
    )
    return path


def test_the_harness_reports_errors_requests_blank_images_and_clicks(page_file: Path) -> None:
    with Browser() as browser, browser.open(page_file.as_uri()) as page:
        page.wait_for("document.readyState === 'complete'")
        assert "deliberate console error" in page.console_errors
        assert any("missing.png" in error for error in page.console_errors)
        fetched = [r.url for r in page.network_requests()]
        assert fetched == [
            page_file.with_name("missing.png").as_uri(),
            "http://127.0.0.1:9/data.json",
        ]
        assert page.blank_images() == [
            "img[1] flat: one flat color",
            "img[2] broken: not loaded",
            "canvas[1] empty: empty",
        ]
        rows = "[...document.querySelectorAll('tbody td')].map((td) => td.textContent)"
        assert page.evaluate(rows) == ["b", "a"]
        page.click("#name")
        assert page.evaluate(rows) == ["a", "b"]
        png = page.screenshot()
        shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert shot.shape[1] == browser.width and shot.std() > 0
