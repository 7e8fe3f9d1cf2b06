"""/ping and a hung model: progress is a forward pass ending, counted in the micro-batcher, so
/ping is unhealthy while images are owed and none ends, and healthy once the model catches up,
whether or not anyone still waits."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from serve import content_types as ct
from serve.app import create_app
from serve.batching import MicroBatcher
from serve.health import Progress, ReadinessWatch
from serve.predictor import BatchedPredictor, ModelInfo
from serve.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class HeldForward:
    """A fault injection: the forward pass blocks until released, as a hung MXNet engine would."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        return np.full((len(batch), 2), 0.5, np.float32)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_an_idle_or_progressing_model_is_never_stalled():
    clock = Clock()
    progress = Progress(60, clock)
    clock.now = 1000  # a long idle time before the first image counts for nothing
    assert progress.stalled_for() is None
    progress.owe(3)
    clock.now += 59
    progress.passed(2)  # each forward pass that ends restarts the count
    clock.now += 59
    assert progress.stalled_for() is None
    progress.passed(1)
    clock.now += 1000
    assert progress.stalled_for() is None and progress.owed_count == 0


def test_owed_images_and_no_forward_pass_for_longer_than_the_limit_is_stalled_until_one_ends():
    clock = Clock()
    progress = Progress(60, clock)
    progress.owe(1)
    clock.now = 60
    assert progress.stalled_for() is None
    progress.owe(2)  # later images do not restart the count
    clock.now = 61
    assert progress.stalled_for() == 61 and progress.owed_count == 3
    progress.passed(1)
    assert progress.stalled_for() is None


def test_a_request_that_timed_out_leaves_the_model_stalled_until_it_ends_the_pass():
    """Nobody waits any more, but the model still owes the image: stuck is reported, and
    finishing the work makes it healthy again (not only a later request's completion)."""
    clock, forward = Clock(), HeldForward()
    progress = Progress(60, clock)
    batcher = MicroBatcher(forward, max_batch=4, progress=progress)
    try:
        with pytest.raises(TimeoutError):
            batcher.run(np.zeros((1, 3)), timeout=0.05)
        clock.now = 61
        assert progress.stalled_for() == 61 and progress.owed_count == 1
        forward.release.set()
        wait_until(lambda: progress.owed_count == 0)
        assert progress.stalled_for() is None
        clock.now = 10_000  # idle from then on: healthy
        assert progress.stalled_for() is None
    finally:
        forward.release.set()
        batcher.close()


def test_a_failing_forward_pass_is_progress_too():
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("bad kernel")

    progress = Progress(60)
    batcher = MicroBatcher(broken, max_batch=4, progress=progress)
    try:
        with pytest.raises(RuntimeError):
            batcher.run(np.zeros((2, 3)), timeout=5)
        assert progress.owed_count == 0
    finally:
        batcher.close()


def test_the_readiness_file_follows_the_stall(tmp_path):
    clock = Clock()
    progress = Progress(10, clock)
    marker = tmp_path / "model-ready"
    marker.touch()
    watch = ReadinessWatch(progress, marker, loaded=lambda: True)
    progress.owe(1)
    assert watch.check(False) is False and marker.exists()
    clock.now = 11
    assert watch.check(False) is True and not marker.exists()
    marker.touch()  # another worker restored it: removed again while this one is stalled
    assert watch.check(True) is True and not marker.exists()
    progress.passed(1)
    assert watch.check(True) is False and marker.exists()


class HeldModel(BatchedPredictor):
    """A real batched predictor whose forward pass is a :class:`HeldForward`."""

    def __init__(self, progress: Progress, timeout: float) -> None:
        self.held = HeldForward()
        info = ModelInfo((3, 32, 32), 36, ("a", "b"), False)
        super().__init__(info, max_batch=4, timeout=timeout, progress=progress)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self.held(batch)


JPEG = cv2.imencode(".jpg", np.zeros((40, 40, 3), np.uint8))[1].tobytes()


def served(tmp_path: Path, request_timeout: float, clock: Clock):
    settings = Settings.from_env(
        {"SAGEMAKER_BASE_DIR": str(tmp_path), "SERVE_PING_STALL_SECONDS": "0.5"}
    )
    progress = Progress(settings.ping_stall_s, clock)
    model = HeldModel(progress, request_timeout)
    return create_app(settings, model, progress), model


def invoke(app) -> int:
    headers = {"Content-Type": ct.JPEG}
    return app.test_client().post("/invocations", data=JPEG, headers=headers).status_code


def test_ping_turns_503_with_the_reason_while_the_model_hangs_then_200(tmp_path: Path):
    clock = Clock()
    app, model = served(tmp_path, request_timeout=10, clock=clock)
    statuses: list[int] = []
    request = threading.Thread(target=lambda: statuses.append(invoke(app)))
    request.start()
    client = app.test_client()
    try:
        assert model.held.entered.wait(10)
        assert client.get("/ping").status_code == 200  # owed, but not for long yet
        clock.now = 1
        response = client.get("/ping")
        assert response.status_code == 503
        error = response.json["error"]
        assert re.search(r"ended no forward pass for \d+ s while 1 images wait", error)
        assert "SERVE_PING_STALL_SECONDS=0.5)" in error
    finally:
        model.held.release.set()
        request.join(10)
    assert statuses == [200]
    assert client.get("/ping").status_code == 200
    model.close()


def test_an_idle_endpoint_is_healthy_once_the_model_ends_a_pass_nobody_waits_for(tmp_path):
    """Issue 18: a request that timed out left /ping at 503 until some later request came."""
    clock = Clock()
    app, model = served(tmp_path, request_timeout=0.2, clock=clock)
    client = app.test_client()
    try:
        assert invoke(app) == 503  # the model did not answer within the request's timeout
        clock.now = 1
        assert client.get("/ping").status_code == 503  # still owed, and stuck: reported
        model.held.release.set()
        wait_until(lambda: client.get("/ping").status_code == 200)
        assert client.get("/ping").status_code == 200
    finally:
        model.held.release.set()
        model.close()
