"""The try-it page in a real browser (headless Chromium, tests/browser.py).

Against the production stack (nginx -> gunicorn -> Flask, a real model): the page loads without
console errors or requests, and an image chosen or dropped on it gets the top class and
probability that a direct POST to /invocations returns. Against the app in-process with a fake
multi-label model: what the page shows for a multi-label model and for a refused image.
"""

from __future__ import annotations

import base64
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from werkzeug.serving import make_server

from serve import content_types as ct
from serve.app import create_app
from serve.predictor import ModelInfo
from serve.settings import Settings
from tests.browser import Browser, Page
from tests.datagen import make_image, write_jpeg
from tests.integration.test_serve_stack import require_nginx
from tests.serve_fixtures import ServerProcess, make_model_dir

pytestmark = pytest.mark.integration

CLASSES = ["red-horizontal", "green-vertical", "blue-horizontal"]
RESULT_SHOWN = "document.getElementById('out').dataset.state === 'done'"
ERROR_SHOWN = "document.getElementById('out').dataset.state === 'error'"
SHOWN_CLASSES = """[...document.querySelectorAll('#classes li')].map(li => [
    li.querySelector('.label').firstChild.textContent, li.querySelector('.pct').textContent,
    !!li.querySelector('.tag')])"""
# A report as training might save it: a picture inline, a script, nothing fetched.
REPORT = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Training report</title></head><body><h1>Report</h1><img alt="curve" src="{png}">
<script>document.querySelector("h1").textContent += " (loaded)";</script></body></html>"""


def percent(probability: float) -> str:
    """The page's own rounding: one decimal, none at the ends."""
    value = 100 * probability
    return f"{value:.0f}%" if value >= 99.95 or value < 0.05 else f"{value:.1f}%"


def inline_png() -> str:
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, 10:] = (200, 80, 40)
    data = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
    return f"data:image/png;base64,{data}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as started:
        yield started


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ServerProcess]:
    require_nginx()
    base = tmp_path_factory.mktemp("try_it")
    make_model_dir(base / "model", class_names=CLASSES, seed=3)
    (base / "model" / "report.html").write_text(REPORT.format(png=inline_png()))
    with ServerProcess(base, base / "server.log", {"MODEL_SERVER_THREADS": "4"}) as proc:
        proc.wait_ready(timeout=120)
        yield proc


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = random.Random(7)
    paths = []
    for label in range(len(CLASSES)):
        path = folder / f"{CLASSES[label]}.jpg"
        write_jpeg(path, make_image(label, rng, (rng.randint(60, 140), rng.randint(60, 140))))
        paths.append(path)
    return paths


def direct_top_classes(url: str, path: Path) -> list[dict]:
    response = requests.post(
        f"{url}/invocations?top_k=5",
        data=path.read_bytes(),
        headers={"Content-Type": ct.JPEG, "Accept": ct.JSON},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()["top_k"]


def assert_page_shows(page: Page, expected: list[dict]) -> None:
    page.wait_for(RESULT_SHOWN)
    shown = page.evaluate(SHOWN_CLASSES)
    assert [(label, pct) for label, pct, _ in shown] == [
        (entry["label"], percent(entry["probability"])) for entry in expected
    ]
    assert page.evaluate("document.getElementById('top').textContent") == expected[0]["label"]


def test_page_loads_without_errors_or_requests_and_links_the_report(stack, browser) -> None:
    with browser.open(f"{stack.url}/") as page:
        assert page.console_errors == []
        assert page.network_requests() == []
        assert page.evaluate("document.getElementById('report-link').hidden") is False
        model_line = page.evaluate("document.getElementById('model').textContent")
        assert model_line == "3 classes · single-label · input 32×32 px"


@pytest.mark.parametrize("how", ["chosen", "dropped"])
def test_an_image_gets_the_top_classes_of_a_direct_post(stack, browser, images, how) -> None:
    for path in images:
        expected = direct_top_classes(stack.url, path)
        # Rounded to the page's 0.1 %, the ranking must still be unambiguous.
        assert expected[0]["probability"] - expected[1]["probability"] > 0.002, expected
        with browser.open(f"{stack.url}/") as page:
            if how == "chosen":
                page.set_files("#file", path)
            else:
                page.drop_file("#drop", path)
            assert_page_shows(page, expected)
            assert page.blank_images() == []  # the preview shows the image
            assert page.console_errors == []
            assert [(r.method, r.url) for r in page.network_requests()] == [
                ("POST", f"{stack.url}/invocations?top_k=5")
            ]


def test_report_is_served_through_nginx_and_renders(stack, browser) -> None:
    with browser.open(f"{stack.url}/report") as page:
        assert page.evaluate("document.querySelector('h1').textContent") == "Report (loaded)"
        assert page.blank_images() == []
        assert page.console_errors == [] and page.network_requests() == []


def test_sagemaker_routes_answer_as_before_beside_the_page(stack, images) -> None:
    assert requests.get(f"{stack.url}/ping", timeout=5).status_code == 200
    body = images[0].read_bytes()
    answer = requests.post(
        f"{stack.url}/invocations", data=body, headers={"Content-Type": ct.JPEG}, timeout=60
    )
    probabilities = answer.json()  # the built-in's plain list
    assert answer.status_code == 200 and len(probabilities) == len(CLASSES)
    top = direct_top_classes(stack.url, images[0])[0]
    assert top["index"] == int(np.argmax(probabilities))
    missing = requests.get(f"{stack.url}/admin", timeout=5)
    assert missing.status_code == 404 and "error" in missing.json()


class MultiLabel:
    """A multi-label model: two of its classes score over one half."""

    info = ModelInfo((3, 32, 32), None, ("cat", "dog", "sofa", "tree", "car", "sky"), True)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        scores = np.array([0.91, 0.04, 0.77, 0.12, 0.3, 0.5], dtype=np.float32)
        return np.tile(scores, (len(batch), 1))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("multi")
    settings = Settings.from_env({"SAGEMAKER_BASE_DIR": str(base)})
    server = make_server("127.0.0.1", 0, create_app(settings, MultiLabel()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_multi_label_page_marks_every_class_over_one_half(in_process, browser, images) -> None:
    with browser.open(f"{in_process}/") as page:
        assert "multi-label" in page.evaluate("document.getElementById('model').textContent")
        assert page.evaluate("document.getElementById('report-link').hidden") is True
        page.set_files("#file", images[0])
        page.wait_for(RESULT_SHOWN)
        assert page.evaluate(SHOWN_CLASSES) == [
            ["cat", "91.0%", True],
            ["sofa", "77.0%", True],
            ["sky", "50.0%", False],
            ["car", "30.0%", False],
            ["tree", "12.0%", False],
        ]
        assert page.console_errors == []


def test_a_refused_file_shows_the_endpoints_error_text(in_process, browser, tmp_path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    direct = requests.post(
        f"{in_process}/invocations", data=broken.read_bytes(), headers={"Content-Type": ct.JPEG}
    )
    assert direct.status_code == 400
    with browser.open(f"{in_process}/") as page:
        page.set_files("#file", broken)
        page.wait_for(ERROR_SHOWN)
        shown = page.evaluate("document.getElementById('error-text').textContent")
        assert shown == direct.json()["error"]
        # The browser logs the failed request itself; the page's own code logs nothing.
        assert [e for e in page.console_errors if "status of 400" not in e] == []
