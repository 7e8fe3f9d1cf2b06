"""The try-it page (``GET /``) and the model's training report (``GET /report``).

For people, not for SageMaker (which calls only ``/ping`` and ``/invocations``): a page to drop
an image on and see the top classes, through the same ``/invocations`` every client uses. The
page is ``try_it.html`` beside this module (package data), sent with a Content-Security-Policy
that allows its own inline ``<style>`` and ``<script>`` (by hash) and requests to its own origin
only, so the browser itself guarantees the page fetches nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Response, send_file

from serve.errors import NotFound
from serve.predictor import ModelInfo
from train import artifacts

PAGE_FILE = "try_it.html"
# The training report, when the job saved it beside the model (the served model directory).
REPORT_FILE = artifacts.REPORT_FILE

# The page's executable script and style sheet, each opening a line (the CSP allows them by
# hash), and the JSON block the server fills with what it knows of the model.
_SCRIPT = re.compile(r"^<script>(.*?)</script>", re.DOTALL | re.MULTILINE)
_STYLE = re.compile(r"^<style>(.*?)</style>", re.DOTALL | re.MULTILINE)
_CONFIG = re.compile(
    r'(<script type="application/json" id="oic-config">)(.*?)(</script>)', re.DOTALL
)


def page_config(model_dir: Path, info: ModelInfo | None) -> dict[str, Any]:
    """What the page shows about the model: ``None`` while it loads; whether a report is there."""
    model = None
    if info is not None:
        _, height, width = info.image_shape
        model = {
            "classes": len(info.labels),
            "multi_label": info.multi_label,
            "height": height,
            "width": width,
        }
    return {"model": model, "report": (model_dir / REPORT_FILE).is_file()}


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_security_policy(html: str) -> str:
    """A policy that runs exactly ``html``'s inline script and style and lets it call only its
    own origin (``/invocations``); images come from the chosen file (``blob:``)."""
    scripts = " ".join(_csp_hash(m) for m in _SCRIPT.findall(html))
    styles = " ".join(_csp_hash(m) for m in _STYLE.findall(html))
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; "
        "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def render_page(config: dict[str, Any]) -> str:
    """The page with ``config`` in its JSON block (``<`` escaped: no class name can end it)."""
    template = resources.files("serve").joinpath(PAGE_FILE).read_text(encoding="utf-8")
    data = json.dumps(config).replace("<", "\\u003c")
    html, count = _CONFIG.subn(lambda m: m.group(1) + data + m.group(3), template)
    if count != 1:
        raise RuntimeError(f"{PAGE_FILE} must hold exactly one oic-config block, found {count}")
    return html


def page_response(model_dir: Path, info: ModelInfo | None) -> Response:
    """``GET /``: the page, never cached (it shows the model being served now)."""
    html = render_page(page_config(model_dir, info))
    response = Response(html, status=200, mimetype="text/html")
    response.headers["Content-Security-Policy"] = content_security_policy(html)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def report_response(model_dir: Path) -> Response:
    """``GET /report``: the model directory's ``report.html``.

    Raises:
        NotFound: the model directory holds no report.
    """
    path = model_dir / REPORT_FILE
    if not path.is_file():
        raise NotFound(
            f"no training report: {REPORT_FILE} is not in the model directory {model_dir} "
            "(a training job writes it to output/data/; copy it beside the model to serve it)"
        )
    response = send_file(path.resolve(), mimetype="text/html", max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
