"""The model slot: background loading, 503 reasons, retries."""

from __future__ import annotations

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
    with pytest.raises(ModelNotReady, match="loading"):
        slot.get()  # starts the retry in the background
    assert slot.wait(5)
    assert slot.get() == "predictor"
    assert attempts == [0.0, 11]


def test_holding_slot_is_loaded() -> None:
    slot = ModelSlot.holding("p")  # type: ignore[arg-type]
    assert slot.loaded and slot.get() == "p"
