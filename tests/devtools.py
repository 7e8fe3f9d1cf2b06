"""Headless Chromium and its DevTools protocol, over a pipe: no driver, no download, no package.

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from its file
descriptor 3 and writes answers and events to descriptor 4, each a JSON message ended by a NUL
byte (what Puppeteer and Playwright use). :class:`Chromium` owns the process and that pipe; a
reader thread routes each answer to the command waiting for it and each event to the listener of
its session (one per tab, see ``tests/browser.py``). Debian's ``chromium`` package is the browser
(``tests/host-deps`` installs it); ``$CHROMIUM`` names another binary.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Listener = Callable[[str, dict[str, Any]], None]
# Keeps Chromium from reaching out on its own (updates, sync, field trials, safe browsing):
# nothing here has the internet, and a test must see only the page's own requests.
_QUIET = (
    "--headless",
    "--no-sandbox",  # root in CI containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--metrics-recording-only",
    "--no-pings",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(RuntimeError):
    """Chromium is missing, died, or answered a command with an error."""


def chromium_binary() -> str:
    """``$CHROMIUM``, else ``chromium`` on PATH.

    Raises:
        BrowserError: none found (the message says how to install it).
    """
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found:
        raise BrowserError(
            "headless Chromium is not installed: the browser tests need Debian's `chromium` "
            "package (run `make deps` as root, or set $CHROMIUM to a Chromium binary)"
        )
    return found


def _high_fd(fd: int) -> int:
    """``fd`` moved to a number >= 10, so that placing it on 3 or 4 clobbers nothing."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless Chromium process; :meth:`send` runs a protocol command, returns its result."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="oic-chromium-")
        self._log_path = Path(self._profile.name) / "chromium.log"
        self._lock = threading.Lock()
        self._next_id = 0
        self._pending: dict[int, tuple[threading.Event, dict[str, Any]]] = {}
        self._listeners: dict[str, Listener] = {}
        self._dead: str | None = None
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        child_r, child_w = _high_fd(to_browser_r), _high_fd(from_browser_w)
        args = [chromium_binary(), *_QUIET, f"--user-data-dir={self._profile.name}"]
        args += ["--remote-debugging-pipe", "about:blank"]
        # bash (not sh: dash takes one-digit descriptors only) puts the pipe ends on 3 and 4.
        trampoline = f'exec "$0" "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        with self._log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", trampoline, *args],
                pass_fds=(child_r, child_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        os.close(child_r)
        os.close(child_w)
        self._write_fd = to_browser_w
        self._read_fd = from_browser_r
        self._reader = threading.Thread(target=self._read_loop, name="devtools-pipe", daemon=True)
        self._reader.start()

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Run ``method`` (in tab ``session``, or on the browser) and return its ``result``.

        Raises:
            BrowserError: the command failed, or Chromium died.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        done, answer = threading.Event(), {}
        with self._lock:
            if self._dead:
                raise BrowserError(self._dead)
            self._next_id += 1
            message: dict[str, Any] = {"id": self._next_id, "method": method}
            message["params"] = params or {}
            if session:
                message["sessionId"] = session
            self._pending[self._next_id] = (done, answer)
            data = memoryview(json.dumps(message).encode() + b"\0")
            while data:
                data = data[os.write(self._write_fd, data) :]
        if not done.wait(self.timeout):
            raise TimeoutError(f"Chromium did not answer {method} within {self.timeout} s")
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')} {params or ''}")
        return answer.get("result", {})

    def listen(self, session: str, listener: Listener | None) -> None:
        """Send the events of tab ``session`` to ``listener(method, params)`` (None: stop)."""
        with self._lock:
            if listener is None:
                self._listeners.pop(session, None)
            else:
                self._listeners[session] = listener

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))
        with self._lock:
            self._dead = f"Chromium exited; its log ends:\n{self.log()[-3000:]}"
            for done, answer in self._pending.values():
                answer["error"] = {"message": self._dead}
                done.set()
            self._pending.clear()

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._lock:
            if "id" in message:
                done, answer = self._pending.pop(message["id"], (None, None))
                listener = None
            else:
                listener = self._listeners.get(message.get("sessionId", ""))
        if "id" in message:
            if done is not None:
                answer.update(message)
                done.set()
        elif listener is not None:
            listener(message["method"], message.get("params", {}))

    def log(self) -> str:
        """What Chromium printed (its own warnings; page console messages go to the tab)."""
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def close(self) -> None:
        """Stop Chromium (Browser.close, then SIGTERM/SIGKILL) and delete its profile."""
        if self.process.poll() is None:
            try:
                self.send("Browser.close")
            except (BrowserError, TimeoutError, OSError):
                self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self._write_fd)
        self._reader.join(timeout=5)
        os.close(self._read_fd)
        self._profile.cleanup()
