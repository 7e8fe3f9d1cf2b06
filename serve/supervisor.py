"""Starts and watches the production stack: gunicorn, behind nginx when nginx is installed.

SageMaker's contract: the container serves until SIGTERM and then has 30 s before SIGKILL. On
SIGTERM (or SIGINT) the supervisor asks nginx to finish its connections (SIGQUIT) and gunicorn
its requests (SIGTERM), waits a few seconds and exits 0. If either child dies on its own, it
stops the other and exits non-zero, so the container stops instead of half-serving.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serve import proxy
from serve.settings import STATE_DIR_ENV, Settings
from train.images import opencv_limit_environment

logger = logging.getLogger(__name__)

GUNICORN_CONFIG = "python:serve.gunicorn_conf"
# How long children get to exit after SIGTERM/SIGQUIT before SIGKILL.
STOP_GRACE_S = 8.0
_POLL_S = 0.1


class ProxyUnavailable(RuntimeError):
    """SERVE_PROXY=nginx but nginx is not installed."""


@dataclass(frozen=True)
class Child:
    """A started child process, and the signal that stops it gracefully."""

    name: str
    process: subprocess.Popen
    stop_signal: int


def child_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The children's environment: MXNet's CPU threads shared out between the workers, and
    OpenCV's pixel cap set to ``SERVE_MAX_IMAGE_PIXELS`` before any of them loads OpenCV.

    MXNet otherwise uses half the cores (it assumes hyper-threading); an explicit
    ``OMP_NUM_THREADS`` from the user is kept.
    """
    env = {**environ, **opencv_limit_environment(settings.max_image_pixels)}
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // settings.workers))
    return env


def use_nginx(settings: Settings) -> bool:
    """Whether to put nginx in front (``SERVE_PROXY``: auto, nginx or none).

    Raises:
        ProxyUnavailable: nginx was required but is not installed.
    """
    if settings.proxy == "none":
        return False
    installed = proxy.nginx_binary() is not None
    if settings.proxy == "nginx" and not installed:
        raise ProxyUnavailable("SERVE_PROXY=nginx but nginx is not installed")
    if not installed:
        logger.warning("nginx is not installed: gunicorn faces clients directly")
    return installed


def gunicorn_command(bind: str) -> list[str]:
    """The gunicorn command line, bound to ``bind``."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        GUNICORN_CONFIG,
        "--bind",
        bind,
        "serve.wsgi:app",
    ]


def start_children(settings: Settings, state_dir: Path) -> list[Child]:
    """Start gunicorn, and nginx in front of it when :func:`use_nginx` says so."""
    env = child_environment(settings, os.environ)
    if not use_nginx(settings):
        bind = f"{settings.host}:{settings.port}"
        gunicorn = subprocess.Popen(gunicorn_command(bind), env=env)
        return [Child("gunicorn", gunicorn, signal.SIGTERM)]
    env[STATE_DIR_ENV] = str(state_dir)  # where workers mark their model loaded
    socket = state_dir / "gunicorn.sock"
    conf = state_dir / "nginx.conf"
    conf.write_text(proxy.nginx_conf(settings, socket=socket, state_dir=state_dir))
    gunicorn = subprocess.Popen(gunicorn_command(f"unix:{socket}"), env=env)
    nginx_cmd = [
        proxy.nginx_binary() or "nginx",
        "-e",
        "stderr",
        "-p",
        str(state_dir),
        "-c",
        str(conf),
    ]
    nginx = subprocess.Popen(nginx_cmd, env=env)
    logger.info("Serving on %s:%d: nginx -> gunicorn (%s)", settings.host, settings.port, socket)
    return [Child("gunicorn", gunicorn, signal.SIGTERM), Child("nginx", nginx, signal.SIGQUIT)]


def stop_children(children: list[Child], grace_s: float = STOP_GRACE_S) -> None:
    """Signal every running child to stop; SIGKILL whatever still runs after ``grace_s``."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(child.stop_signal)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0f s: killing it", child.name, grace_s)
            child.process.kill()
            child.process.wait()


def supervise(children: list[Child], stop: threading.Event) -> int:
    """Wait until ``stop`` is set (0) or a child exits by itself (its code, at least 1)."""
    while not stop.wait(_POLL_S):
        for child in children:
            code = child.process.poll()
            if code is not None:
                logger.error("%s exited (code %s): stopping the server", child.name, code)
                stop_children(children)
                return code or 1
    logger.info("Stop requested: stopping nginx and gunicorn")
    stop_children(children)
    return 0


def run(settings: Settings) -> int:
    """Run the stack until SIGTERM/SIGINT or a child's death; return the exit code."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="serve-") as tmp:
        state_dir = Path(tmp)
        # nginx's workers run as another user when started by root: they need to reach the
        # socket and the temp folders in here.
        state_dir.chmod(0o755)
        children = start_children(settings, state_dir)
        return supervise(children, stop)
