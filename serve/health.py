"""Whether a worker's model still makes progress: the part of ``/ping`` a loaded model needs.

A worker whose inference hangs (a deadlock inside MXNet's engine, a stuck device) while its
main loop still runs is never replaced by gunicorn, which only watches the main loop. Progress
is therefore measured where it happens, in the micro-batcher (``serve.batching``): each image
queued for the model is owed a forward pass, and each forward pass that ends is progress,
whoever was waiting for it. When images are owed and no forward pass has ended for longer than
``stall_after_s`` (SageMaker's 60 s invocation timeout by default), the worker is stalled, and
``/ping`` says so until a forward pass ends. A request that gave up does not matter: its images
are still owed, so a model that finishes them is healthy again, and one that never does is
reported even when nothing waits any more.

Behind nginx, ``/ping`` falls back to a readiness file when every gunicorn thread is busy (see
``container/nginx.conf``); a stalled worker's :class:`ReadinessWatch` removes that file, and
puts it back once the worker makes progress again, so the fallback tells the same story.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


class Progress:
    """Counts the images owed a forward pass and remembers since when none has ended."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic):
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._owed = 0
        # Start of the current wait for progress: None while nothing is owed.
        self._since: float | None = None

    def owe(self, count: int) -> None:
        """``count`` images were queued for the model."""
        with self._lock:
            if self._owed == 0:
                self._since = self._clock()
            self._owed += count

    def passed(self, count: int) -> None:
        """A forward pass over ``count`` queued images ended (answered or failed): progress."""
        with self._lock:
            self._owed = max(0, self._owed - count)
            self._since = self._clock() if self._owed else None

    def stalled_for(self) -> float | None:
        """Seconds without progress while images are owed, when over the limit; else None."""
        with self._lock:
            since = self._since
        if since is None:
            return None
        idle = self._clock() - since
        return idle if idle > self.stall_after_s else None

    @property
    def owed_count(self) -> int:
        """Images queued for the model and not yet through a forward pass."""
        return self._owed


class ReadinessWatch:
    """Keeps nginx's readiness file in step with :class:`Progress` (one thread per worker)."""

    def __init__(
        self,
        progress: Progress,
        marker: Path,
        loaded: Callable[[], bool],
        interval_s: float | None = None,
    ):
        self._progress = progress
        self._marker = marker
        self._loaded = loaded
        self._interval_s = interval_s or min(1.0, progress.stall_after_s / 5)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="readiness-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (tests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def check(self, was_stalled: bool) -> bool:
        """One step: remove the file while stalled, restore it on recovery; returns stalled."""
        stalled_for = self._progress.stalled_for()
        if stalled_for is not None:
            # Every step, not only the first: another worker may have restored the file.
            self._marker.unlink(missing_ok=True)
            if not was_stalled:
                logger.error(
                    "No forward pass ended for %.0f s while %d images wait for one: "
                    "reporting unhealthy on /ping",
                    stalled_for,
                    self._progress.owed_count,
                )
            return True
        if was_stalled and self._loaded():
            self._marker.touch()
            logger.info("Forward passes end again: reporting healthy on /ping")
        return False

    def _run(self) -> None:
        stalled = False
        while not self._stop.wait(self._interval_s):
            try:
                stalled = self.check(stalled)
            except OSError:
                logger.exception("could not update %s", self._marker)
