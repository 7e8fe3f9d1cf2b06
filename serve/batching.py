"""Micro-batching: images from concurrent requests share one forward pass.

Request threads preprocess their images in parallel and queue them; one thread per worker takes
whatever is queued (up to ``max_batch``), runs the model once and hands each request its rows.
A lone request is not delayed, while under load the batches grow by themselves, because requests
queue up during each forward pass. With ``max_wait_s`` > 0, a batch smaller than the previous
one waits that long for the rest of the previous batch's requests to come back, so that steady
load gives full batches instead of alternating big and tiny ones. One batching thread also
means the model is only ever called from one thread, which MXNet requires. The batcher reports
what the model owes and each forward pass that ends to a :class:`~serve.health.Progress`, which
``/ping`` reads to tell a hung model from an idle one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from serve.health import Progress

logger = logging.getLogger(__name__)

_Item = tuple[np.ndarray, Future]


class MicroBatcher:
    """Runs ``forward`` on batches assembled from single images submitted by many threads."""

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        progress: Progress | None = None,
    ):
        self._forward = forward
        self._progress = progress
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_size = 1  # only touched by the batching thread

    def submit(self, image: np.ndarray) -> Future:
        """Queue one preprocessed ``CxHxW`` image; the future gives its output row."""
        self._ensure_started()
        future: Future = Future()
        if self._progress is not None:
            self._progress.owe(1)
        self._queue.put((image, future))
        return future

    def run(self, batch: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Submit every image of an ``NxCxHxW`` batch and wait for the ``N`` output rows.

        Raises:
            TimeoutError: the model did not answer within ``timeout`` seconds.
        """
        futures = [self.submit(image) for image in batch]
        deadline = None if timeout is None else time.monotonic() + timeout
        rows = []
        for future in futures:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            rows.append(future.result(timeout=remaining))
        return np.stack(rows)

    def close(self) -> None:
        """Stop the batching thread after the queued work (tests; workers just exit)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_started(self) -> None:
        # Started on first use, not at construction: a gunicorn worker creates its own thread
        # after the fork, and importing or building the app starts nothing.
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="micro-batcher", daemon=True
                )
                self._thread.start()

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        # Take what is queued; while the batch is smaller than the previous one (requests of
        # the last batch are coming back), wait up to max_wait_s for them. A lone client
        # never waits: its previous batch had one image.
        items, stop = [first], False
        deadline = time.monotonic() + self._max_wait_s
        expected = min(self._max_batch, self._last_size)
        while len(items) < self._max_batch:
            timeout = deadline - time.monotonic() if len(items) < expected else 0.0
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            items.append(item)
        self._last_size = len(items)
        return items, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, stop = self._collect(first)
            self._run_batch(items)
            if stop:
                return

    def _run_batch(self, items: list[_Item]) -> None:
        try:
            self._answer([(image, f) for image, f in items if f.set_running_or_notify_cancel()])
        finally:  # answered, failed or cancelled: the model owes these images nothing more
            if self._progress is not None:
                self._progress.passed(len(items))

    def _answer(self, live: list[_Item]) -> None:
        if not live:
            return
        try:
            outputs = self._forward(np.stack([image for image, _ in live]))
        except Exception as exc:  # handed to every waiting request, which answers 500
            logger.exception("forward pass on a batch of %d failed", len(live))
            for _, future in live:
                future.set_exception(exc)
            return
        for (_, future), row in zip(live, outputs, strict=True):
            future.set_result(row)
