"""Whether a worker's model still makes progress: the part of ``/ping`` a loaded model needs.

A worker whose inference hangs (a deadlock inside MXNet's engine, a stuck device) while its
main loop still runs is never replaced by gunicorn, which only watches the main loop. Every
request that reaches the model is therefore tracked here: when requests are waiting and none
has completed for longer than ``stall_after_s`` (SageMaker's 60 s invocation timeout by
default), the worker is stalled, and ``/ping`` says so until a request completes again.

Behind nginx, ``/ping`` falls back to a readiness file when every gunicorn thread is busy (see
``container/nginx.conf``); a stalled worker's :class:`ReadinessWatch` removes that file, and
puts it back once the worker makes progress again, so the fallback tells the same story.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


class Progress:
    """Counts requests waiting for the model and remembers since when none completed."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic):
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting = 0
        # Start of the current wait for progress: None while nothing is owed an answer.
        self._since: float | None = None

    @contextmanager
    def waiting(self) -> Iterator[Callable[[], None]]:
        """Mark a request as waiting for the model while in the block; call the yielded
        function each time the model answers it (a request may take several forward passes).

        A request that gives up (``TimeoutError``) leaves the clock running: the model still
        owes an answer, and later requests must not restart the count.
        """
        with self._lock:
            self._waiting += 1
            if self._since is None:
                self._since = self._clock()

        def answered() -> None:
            with self._lock:
                self._since = self._clock()

        timed_out = False
        try:
            yield answered
        except TimeoutError:
            timed_out = True
            raise
        finally:
            with self._lock:
                self._waiting -= 1
                if self._waiting == 0 and not timed_out:
                    self._since = None

    def stalled_for(self) -> float | None:
        """Seconds without progress while an answer is owed, when over the limit; else None."""
        with self._lock:
            since = self._since
        if since is None:
            return None
        idle = self._clock() - since
        return idle if idle > self.stall_after_s else None

    @property
    def waiting_count(self) -> int:
        """Requests waiting for the model right now."""
        return self._waiting


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
                    "No request completed for %.0f s while %d wait: reporting unhealthy on /ping",
                    stalled_for,
                    self._progress.waiting_count,
                )
            return True
        if was_stalled and self._loaded():
            self._marker.touch()
            logger.info("Requests complete again: reporting healthy on /ping")
        return False

    def _run(self) -> None:
        stalled = False
        while not self._stop.wait(self._interval_s):
            try:
                stalled = self.check(stalled)
            except OSError:
                logger.exception("could not update %s", self._marker)
