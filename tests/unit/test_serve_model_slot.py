"""The model slot: background loading, 503 reasons, retries."""

from __future__ import annotations

import threading
import time

import pytest

from serve.errors import ModelNotReady
from serve.model_slot import ModelSlot
from train.artifacts import MissingModelFiles


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_missing_model_gives_503_with_the_loader_message() -> None:
    def loader():
        raise MissingModelFiles("model directory /m is missing: image-classification-symbol.json")

    slot = ModelSlot(loader, retry_interval_s=60)
    slot.start_loading()
    assert not slot.wait(5)
    with pytest.raises(ModelNotReady, match="missing: image-classification-symbol.json"):
        slot.get()


def test_loading_is_retried_after_the_interval() -> None:
    attempts = []
    clock = Clock()

    def loader():
        attempts.append(clock.now)
        if len(attempts) == 1:
            raise FileNotFoundError("not yet")
        return "predictor"

    slot = ModelSlot(loader, retry_interval_s=10, clock=clock)
    slot.start_loading()
    slot.wait(5)
    with pytest.raises(ModelNotReady, match="not yet"):
        slot.get()  # too early for a retry
    assert attempts == [0.0]
    clock.now = 11
    assert slot.get() == "predictor"  # starts the retry and waits for it
    assert attempts == [0.0, 11]


def test_a_request_during_the_load_waits_for_the_model() -> None:
    """Another worker may have made /ping healthy already: a request that reaches this worker
    while its model loads is answered once the load ends, not refused."""
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return "predictor"

    slot = ModelSlot(slow_loader, retry_interval_s=60)
    slot.start_loading()
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    assert slot.get() == "predictor"
    assert 0.2 < time.monotonic() - start < 5


def test_a_load_that_outlasts_the_wait_gives_503_loading() -> None:
    release = threading.Event()
    slot = ModelSlot(lambda: release.wait(10) and "predictor", retry_interval_s=60, load_wait_s=0.2)
    slot.start_loading()
    try:
        with pytest.raises(ModelNotReady, match="loading"):
            slot.get()
    finally:
        release.set()
    assert slot.wait(5)


def test_holding_slot_is_loaded() -> None:
    slot = ModelSlot.holding("p")  # type: ignore[arg-type]
    assert slot.loaded and slot.get() == "p"


def test_a_request_that_looks_while_a_load_is_being_started_does_not_fail(monkeypatch) -> None:
    """Request threads read the slot without its lock: one that arrives between the loader
    thread's creation and its start must not join an unstarted thread (a 500 at start-up)."""
    slot = ModelSlot(lambda: "model", retry_interval_s=0.0)
    observed = []

    class LookedAtBeforeStart(threading.Thread):
        def start(self) -> None:
            observed.append(slot.wait(0))  # another request thread, at the worst moment
            super().start()

    monkeypatch.setattr(threading, "Thread", LookedAtBeforeStart)
    slot.start_loading()
    assert observed == [False]
    assert slot.wait(5) and slot.get() == "model"
