"""/ping and a hung model: unhealthy while requests wait and none completes, healthy after."""

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
from serve.health import Progress, ReadinessWatch
from serve.predictor import ModelInfo
from serve.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_or_answering_model_is_never_stalled():
    clock = Clock()
    progress = Progress(60, clock)
    clock.now = 1000  # a long idle time before the first request counts for nothing
    assert progress.stalled_for() is None
    with progress.waiting() as answered:
        clock.now += 59
        answered()  # each answer restarts the count
        clock.now += 59
        assert progress.stalled_for() is None
    clock.now += 1000
    assert progress.stalled_for() is None


def test_waiting_without_an_answer_for_longer_than_the_limit_is_stalled_until_one_completes():
    clock = Clock()
    progress = Progress(60, clock)
    hung = progress.waiting()
    hung.__enter__()
    clock.now = 60
    assert progress.stalled_for() is None
    clock.now = 61
    assert progress.stalled_for() == 61 and progress.waiting_count == 1
    with progress.waiting() as answered:  # a later request gets through
        answered()
    assert progress.stalled_for() is None
    hung.__exit__(None, None, None)


def test_a_timed_out_request_keeps_the_clock_running():
    clock = Clock()
    progress = Progress(60, clock)
    with pytest.raises(TimeoutError), progress.waiting():
        clock.now = 50
        raise TimeoutError
    clock.now = 55
    with pytest.raises(TimeoutError), progress.waiting():  # the next one does not restart it
        clock.now = 61
        raise TimeoutError
    assert progress.stalled_for() == 61
    with progress.waiting() as answered:
        answered()
    assert progress.stalled_for() is None


def test_the_readiness_file_follows_the_stall(tmp_path):
    clock = Clock()
    progress = Progress(10, clock)
    marker = tmp_path / "model-ready"
    marker.touch()
    watch = ReadinessWatch(progress, marker, loaded=lambda: True)
    hung = progress.waiting()
    hung.__enter__()
    assert watch.check(False) is False and marker.exists()
    clock.now = 11
    assert watch.check(False) is True and not marker.exists()
    marker.touch()  # another worker restored it: removed again while this one is stalled
    assert watch.check(True) is True and not marker.exists()
    hung.__exit__(None, None, None)
    assert watch.check(True) is False and marker.exists()


class BlockingPredictor:
    """A fault injection: ``predict`` blocks until released, as a hung MXNet engine would."""

    def __init__(self) -> None:
        self.info = ModelInfo((3, 32, 32), 36, ("a", "b"), False)
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.release.wait()
        return np.full((len(batch), 2), 0.5, np.float32)


def test_ping_turns_503_with_the_reason_while_the_model_hangs_then_200(tmp_path: Path):
    env = {"SAGEMAKER_BASE_DIR": str(tmp_path), "SERVE_PING_STALL_SECONDS": "1"}
    predictor = BlockingPredictor()
    app = create_app(Settings.from_env(env), predictor)
    body = cv2.imencode(".jpg", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
    statuses = []

    def invoke() -> None:
        response = app.test_client().post(
            "/invocations", data=body, headers={"Content-Type": ct.JPEG}
        )
        statuses.append(response.status_code)

    request = threading.Thread(target=invoke)
    request.start()
    client = app.test_client()
    assert predictor.entered.wait(10)
    assert client.get("/ping").status_code == 200  # waiting, but not for long yet
    time.sleep(1.3)
    response = client.get("/ping")
    assert response.status_code == 503
    assert re.search(r"no request has completed for \d+ s while 1 wait", response.json["error"])
    assert "SERVE_PING_STALL_SECONDS=1)" in response.json["error"]
    predictor.release.set()
    request.join(10)
    assert statuses == [200]
    assert client.get("/ping").status_code == 200
