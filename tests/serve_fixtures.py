"""Helpers for the serving tests and benchmark: tiny real models and the real server stack.

``make_model_dir`` writes a randomly initialised model in the trainer's exact format (through
``train.formats.model_dir.export_model``); ``ServerProcess`` runs ``python -m serve`` on a free
loopback port and stops it with SIGTERM, keeping its log for assertions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent


def make_model_dir(
    model_dir: Path,
    *,
    num_layers: int = 20,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    resize: int | None = 36,
    num_classes: int = 3,
    multi_label: bool = False,
    class_names: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a from-scratch (random weights) model as training would; return ``model_dir``."""
    import mxnet as mx

    from train import artifacts, config, model
    from train.formats.metadata import InputConvention
    from train.formats.model_dir import export_model

    mx.random.seed(seed)
    cfg = config.parse_hyperparameters(
        {"num_layers": str(num_layers), "image_shape": ",".join(map(str, image_shape))}
    )
    net = model.from_scratch(cfg, num_classes)
    net(mx.nd.zeros((1, *image_shape)))
    geometry = ("resize_crop", resize) if resize else ("stretch", None)
    export_model(
        net,
        model_dir,
        1,
        multi_label=multi_label,
        image_shape=image_shape,
        batch_size=4,
        input_convention=InputConvention("raw", image_shape[0], *geometry),
    )
    names = class_names or [f"class_{i}" for i in range(num_classes)]
    artifacts.atomic_write_json(
        model_dir / artifacts.CLASSES_FILE, artifacts.classes_document(names, multi_label)
    )
    hyperparameters = {"num_layers": str(num_layers), "resize": str(resize or "")}
    artifacts.atomic_write_json(model_dir / artifacts.HYPERPARAMETERS_FILE, hyperparameters)
    return model_dir


def require_nginx() -> None:
    """Fail (not skip) without nginx: the container ships it, so the stack is tested with it."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    assert shutil.which("nginx", path=path), (
        "nginx is not installed: the serving stack runs behind it (run `make deps` as root)"
    )


class ServerProcess:
    """``python -m serve`` on 127.0.0.1:<free port> with ``SAGEMAKER_BASE_DIR=base``."""

    def __init__(self, base: Path, log_path: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {
            **os.environ,
            "SAGEMAKER_BASE_DIR": str(base),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "SERVE_HOST": "127.0.0.1",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        """Start the server (returns at once; see :meth:`wait_ready`)."""
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serve"],
            cwd=REPO,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ping(
        self, until: Callable[[requests.Response], bool], timeout: float = 60.0
    ) -> list[requests.Response]:
        """Poll ``/ping`` until an answer satisfies ``until``; return every answer seen, that
        one last. An open port proves nothing: nginx answers before gunicorn's workers are up.
        """
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log()
            try:
                seen.append(requests.get(f"{self.url}/ping", timeout=5))
                if until(seen[-1]):
                    return seen
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.05)
        last = f"{seen[-1].status_code} {seen[-1].text[:300]}" if seen else "nothing"
        raise TimeoutError(f"/ping not as awaited after {timeout} s (last: {last}):\n{self.log()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/ping`` answers 200: a worker has loaded the model."""
        self.wait_ping(lambda response: response.status_code == 200, timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
