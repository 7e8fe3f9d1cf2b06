"""A real browser for the tests: open a page, see its console errors and every request it made,
run JavaScript, click, choose or drop files, take screenshots.

    with Browser() as browser, browser.open(url) as page:
        assert page.console_errors == [] and page.network_requests() == []
        page.set_files("input[type=file]", image_path)   # or page.drop_file("#drop", image_path)
        page.wait_for("document.querySelector('#top').textContent")
        page.click("th:nth-child(2)")
        assert page.blank_images() == []
        png = page.screenshot()

Each :meth:`Browser.open` gets a fresh tab in its own browser context (no cookies or cache shared
between tests). Built on :mod:`tests.devtools` (Chromium's DevTools protocol over a pipe).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.devtools import BrowserError, Chromium

# Schemes whose loads never leave the page (inline pictures, a chosen file's preview).
LOCAL_SCHEMES = ("data:", "blob:", "about:")
# Every <img>, <canvas> and <svg> that shows nothing: not loaded, zero-sized, or one flat color.
_BLANK_IMAGES_JS = """(() => {
  const blank = [];
  const flat = (canvas) => {
    const ctx = canvas.getContext("2d", {willReadFrequently: true});
    const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 4; i < d.length; i += 4)
      for (let c = 0; c < 4; c++) if (d[i + c] !== d[c]) return false;
    return true;
  };
  const name = (el, i) => `${el.tagName.toLowerCase()}[${i}] ${el.id || el.alt || ""}`.trim();
  document.querySelectorAll("img").forEach((img, i) => {
    if (!img.complete || img.naturalWidth === 0 || img.naturalHeight === 0) {
      blank.push(`${name(img, i)}: not loaded`); return;
    }
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    c.getContext("2d").drawImage(img, 0, 0);
    if (flat(c)) blank.push(`${name(img, i)}: one flat color`);
  });
  document.querySelectorAll("canvas").forEach((c, i) => {
    if (c.width === 0 || c.height === 0 || flat(c)) blank.push(`${name(c, i)}: empty`);
  });
  document.querySelectorAll("svg").forEach((s, i) => {
    const r = s.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || s.childElementCount === 0)
      blank.push(`${name(s, i)}: empty`);
  });
  return blank;
})()"""


@dataclass(frozen=True)
class Request:
    """One request the page made: its URL, method and kind (Document, Fetch, Image, ...)."""

    url: str
    method: str
    resource_type: str


class Page:
    """One tab. Records console errors and requests from the moment it opens."""

    def __init__(self, chromium: Chromium, session: str, target: str, context: str):
        self._chromium, self._session = chromium, session
        self._target, self._context = target, context
        self._changed = threading.Condition()
        self._loads = 0
        self.url = ""
        self.console_errors: list[str] = []
        self.requests: list[Request] = []

    def _send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._chromium.send(method, params, self._session)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        """Record what the tests look at (called on the reader thread)."""
        with self._changed:
            if method == "Page.loadEventFired":
                self._loads += 1
            elif method == "Network.requestWillBeSent":
                request = params["request"]
                kind = params.get("type", "")
                self.requests.append(Request(request["url"], request["method"], kind))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                words = [a.get("value", a.get("description", "")) for a in params["args"]]
                self.console_errors.append(" ".join(str(w) for w in words))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                exception = details.get("exception", {})
                self.console_errors.append(exception.get("description", details["text"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                self.console_errors.append(f"{entry['text']} ({entry.get('url', '')})")
            self._changed.notify_all()

    def goto(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        with self._changed:
            loads = self._loads
        answer = self._send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        self.url = url
        with self._changed:
            if not self._changed.wait_for(lambda: self._loads > loads, self._chromium.timeout):
                raise TimeoutError(f"{url} did not finish loading")

    def network_requests(self) -> list[Request]:
        """The requests that went over the network, beyond loading the page itself."""
        with self._changed:
            made = list(self.requests)
        return [r for r in made if r.url != self.url and not r.url.startswith(LOCAL_SCHEMES)]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited).

        Raises:
            BrowserError: the expression threw.
        """
        answer = self._send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description", details["text"])
            raise BrowserError(f"JavaScript error in {expression[:80]!r}: {text}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; return its value.

        Raises:
            TimeoutError: still falsy after ``timeout`` seconds (the console errors are named).
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{expression!r} still falsy after {timeout} s; console errors: "
                    f"{self.console_errors}"
                )
            time.sleep(0.05)

    def center_of(self, selector: str) -> tuple[float, float]:
        """The viewport coordinates of the middle of ``selector``, scrolled into view."""
        point = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if point is None:
            raise BrowserError(f"no element matches {selector!r} on {self.url}")
        return point[0], point[1]

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) on the middle of ``selector``."""
        x, y = self.center_of(selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            self._send("Input.dispatchMouseEvent", params)

    def set_files(self, selector: str, *paths: Path) -> None:
        """Choose ``paths`` in the file input ``selector``, as the file chooser does."""
        root = self._send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self._send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise BrowserError(f"no element matches {selector!r} on {self.url}")
        files = [str(Path(p).resolve()) for p in paths]
        self._send("DOM.setFileInputFiles", {"files": files, "nodeId": node})

    def drop_file(self, selector: str, path: Path) -> None:
        """Drag ``path`` from outside the browser and drop it on ``selector`` (real drag
        events: the page must accept the drag on dragover for the drop to happen)."""
        x, y = self.center_of(selector)
        data = {"items": [], "files": [str(Path(path).resolve())], "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            self._send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})

    def blank_images(self) -> list[str]:
        """Each ``<img>``, ``<canvas>`` and ``<svg>`` showing nothing (empty list: all render)."""
        return self.evaluate(_BLANK_IMAGES_JS)

    def screenshot(self, full_page: bool = True) -> bytes:
        """A PNG of the viewport, or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self._send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "scale": 1}
            params["clip"].update(width=size["width"], height=size["height"])
            params["captureBeyondViewport"] = True
        return base64.b64decode(self._send("Page.captureScreenshot", params)["data"])

    def close(self) -> None:
        """Close the tab and its browser context."""
        self._chromium.listen(self._session, None)
        self._chromium.send("Target.closeTarget", {"targetId": self._target})
        self._chromium.send("Target.disposeBrowserContext", {"browserContextId": self._context})

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Browser:
    """Headless Chromium; :meth:`open` a tab per page under test."""

    def __init__(self, width: int = 1100, height: int = 760, timeout: float = 30.0):
        self.width, self.height, self.timeout = width, height, timeout
        self._chromium: Chromium | None = None

    def __enter__(self) -> Browser:
        self._chromium = Chromium(self.timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._chromium is not None:
            self._chromium.close()

    def open(self, url: str) -> Page:
        """A new tab showing ``url`` (loaded), recording from before the first request."""
        chromium = self._chromium
        assert chromium is not None, "use Browser as a context manager"
        context = chromium.send("Target.createBrowserContext")["browserContextId"]
        target = chromium.send(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context}
        )["targetId"]
        session = chromium.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(chromium, session["sessionId"], target, context)
        chromium.listen(page._session, page.on_event)
        for domain in ("Page", "Runtime", "Network", "Log"):
            page._send(f"{domain}.enable")
        metrics = {"width": self.width, "height": self.height, "deviceScaleFactor": 1}
        page._send("Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False})
        page.goto(url)
        return page
