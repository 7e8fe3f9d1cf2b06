"""The try-it page (GET /) and the model's report (GET /report), with Flask's test client.

The browser side (the page runs, classifies, shows errors) is tests/integration/test_try_it_page.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from flask.testing import FlaskClient

import serve.app
from serve import content_types as ct
from serve.app import create_app
from serve.predictor import ModelInfo
from serve.settings import Settings

PROBS = np.array([0.1, 0.6, 0.3], dtype=np.float32)


class FakePredictor:
    info = ModelInfo((3, 24, 40), None, ("a", "b", "c"), True)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.tile(PROBS, (len(batch), 1))


class Blocks(HTMLParser):
    """The text of each <script> and <style> element, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[str, dict[str, str | None], str]] = []
        self._open: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs))
            self.blocks.append((tag, dict(attrs), ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            tag, attrs, text = self.blocks[-1]
            self.blocks[-1] = (tag, attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def parse(html: str) -> list[tuple[str, dict[str, str | None], str]]:
    parser = Blocks()
    parser.feed(html)
    return parser.blocks


def settings_for(tmp_path: Path) -> Settings:
    return Settings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    return tmp_path / "model"


@pytest.fixture
def client(tmp_path: Path, model_dir: Path) -> FlaskClient:
    return create_app(settings_for(tmp_path), FakePredictor()).test_client()


def page_config(html: str) -> dict:
    (config,) = [text for _, attrs, text in parse(html) if attrs.get("id") == "oic-config"]
    return json.loads(config)


def test_page_is_html_and_describes_the_loaded_model(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    config = page_config(response.get_data(as_text=True))
    assert config == {
        "model": {"classes": 3, "multi_label": True, "height": 24, "width": 40},
        "report": False,
    }


def test_policy_allows_exactly_the_pages_own_script_and_style(client: FlaskClient) -> None:
    response = client.get("/")
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    blocks = parse(response.get_data(as_text=True))
    executable = [text for tag, attrs, text in blocks if tag == "script" and "type" not in attrs]
    styles = [text for tag, _, text in blocks if tag == "style"]
    assert len(executable) == 1 and len(styles) == 1

    def source(text: str) -> str:
        return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"

    assert policy["script-src"] == source(executable[0])
    assert policy["style-src"] == source(styles[0])
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"


def test_page_fetches_nothing_from_elsewhere(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "fetch(`invocations?" in html  # the one request: the endpoint's own /invocations


def test_page_is_served_while_the_model_loads_and_never_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def loading_forever(settings: Settings) -> FakePredictor:
        release.wait(30)
        return FakePredictor()

    monkeypatch.setattr(serve.app, "_load_model", loading_forever)
    client = create_app(settings_for(tmp_path)).test_client()
    with ThreadPoolExecutor(1) as pool:
        try:
            response = pool.submit(client.get, "/").result(timeout=5)
        finally:
            release.set()
    assert response.status_code == 200
    assert page_config(response.get_data(as_text=True))["model"] is None


def test_page_links_the_report_only_when_the_model_directory_has_one(
    client: FlaskClient, model_dir: Path
) -> None:
    assert page_config(client.get("/").get_data(as_text=True))["report"] is False
    (model_dir / "report.html").write_text("<p>report</p>")
    assert page_config(client.get("/").get_data(as_text=True))["report"] is True


def test_report_is_served_from_the_model_directory(client: FlaskClient, model_dir: Path) -> None:
    body = "<!doctype html><title>Training report</title><p>accuracy 0.97 é</p>"
    (model_dir / "report.html").write_text(body, encoding="utf-8")
    response = client.get("/report")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.get_data() == body.encode()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_missing_report_is_a_json_404_that_says_where_it_was_looked_for(
    client: FlaskClient, model_dir: Path
) -> None:
    response = client.get("/report")
    assert response.status_code == 404 and response.mimetype == ct.JSON
    message = response.get_json()["error"]
    assert "report.html" in message and str(model_dir) in message


def test_the_sagemaker_routes_are_unchanged_beside_the_page(
    client: FlaskClient, model_dir: Path
) -> None:
    (model_dir / "report.html").write_text("<p>report</p>")
    assert client.get("/").status_code == 200 and client.get("/report").status_code == 200
    assert client.get("/ping").status_code == 200 and client.get("/ping").data == b""
    answer = client.post("/invocations", data=b"\x00", headers={"Content-Type": ct.JPEG})
    assert answer.status_code == 400 and "error" in answer.get_json()
    image = np.zeros((30, 30, 3), np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    answer = client.post("/invocations", data=png, headers={"Content-Type": ct.PNG})
    assert answer.status_code == 200 and answer.get_json() == pytest.approx(PROBS.tolist())
    refused = client.post("/", data=png, headers={"Content-Type": ct.PNG})
    assert refused.status_code == 405 and "error" in refused.get_json()
