"""The micro-batcher: concurrent submissions share forward passes, results go to the right
caller, failures reach every caller of the batch."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serve.batching import MicroBatcher


class SlowDouble:
    """A forward pass that doubles its input, records batch sizes, and can be held."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(5)
        self.sizes.append(len(batch))
        return batch * 2


def test_single_image_round_trip() -> None:
    batcher = MicroBatcher(SlowDouble(), max_batch=4)
    try:
        assert batcher.run(np.ones((1, 3)), timeout=5).tolist() == [[2.0, 2.0, 2.0]]
    finally:
        batcher.close()


def test_requests_queued_during_a_forward_pass_share_the_next_one() -> None:
    forward = SlowDouble()
    batcher = MicroBatcher(forward, max_batch=8)
    try:
        forward.release.clear()
        first = batcher.submit(np.zeros(2))  # occupies the model
        while not forward.sizes and batcher._queue.qsize():  # wait until it is taken
            pass
        futures = [batcher.submit(np.full(2, i, dtype=float)) for i in range(6)]
        forward.release.set()
        assert first.result(5).tolist() == [0.0, 0.0]
        assert [f.result(5)[0] for f in futures] == [2.0 * i for i in range(6)]
        assert forward.sizes == [1, 6]
    finally:
        batcher.close()


def test_batches_never_exceed_max_batch() -> None:
    forward = SlowDouble()
    batcher = MicroBatcher(forward, max_batch=3)
    try:
        out = batcher.run(np.arange(10, dtype=float)[:, None], timeout=5)
        assert out[:, 0].tolist() == [2.0 * i for i in range(10)]
        assert max(forward.sizes) <= 3
    finally:
        batcher.close()


def test_many_threads_each_get_their_own_rows() -> None:
    batcher = MicroBatcher(SlowDouble(), max_batch=16)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: batcher.run(np.full((2, 1), i), 5), range(64)))
        assert all((r == 2 * i).all() for i, r in enumerate(results))
    finally:
        batcher.close()


def test_a_failing_forward_pass_fails_its_callers_and_the_batcher_survives() -> None:
    calls = []

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return batch

    batcher = MicroBatcher(flaky, max_batch=4)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.run(np.ones((1, 2)), timeout=5)
        assert batcher.run(np.ones((1, 2)), timeout=5).shape == (1, 2)
    finally:
        batcher.close()


def test_timeout_raises_timeout_error() -> None:
    forward = SlowDouble()
    forward.release.clear()
    batcher = MicroBatcher(forward, max_batch=4)
    try:
        with pytest.raises(TimeoutError):
            batcher.run(np.ones((1, 2)), timeout=0.05)
    finally:
        forward.release.set()
        batcher.close()


def test_nothing_starts_before_first_use() -> None:
    before = threading.active_count()
    MicroBatcher(SlowDouble(), max_batch=4)
    assert threading.active_count() == before


def test_with_a_wait_a_small_batch_waits_for_the_previous_batch_size() -> None:
    forward = SlowDouble()
    batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.5)
    try:
        forward.release.clear()
        first = batcher.submit(np.ones(1))  # a batch of one, held in the forward pass
        while batcher._queue.qsize():
            pass
        queued = [batcher.submit(np.ones(1)) for _ in range(3)]  # the next batch: 3
        forward.release.set()
        [f.result(5) for f in [first, *queued]]
        lone = batcher.submit(np.ones(1))  # waits for the previous batch size...
        time.sleep(0.05)
        late = [batcher.submit(np.ones(1)) for _ in range(2)]  # ...which comes back late
        [f.result(5) for f in [lone, *late]]
        assert forward.sizes == [1, 3, 3]
    finally:
        batcher.close()


def test_a_lone_client_never_waits() -> None:
    batcher = MicroBatcher(SlowDouble(), max_batch=8, max_wait_s=5.0)
    try:
        start = time.monotonic()
        for _ in range(3):
            batcher.run(np.ones((1, 1)), timeout=5)
        assert time.monotonic() - start < 1.0
    finally:
        batcher.close()
