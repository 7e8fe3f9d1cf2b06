"""The worker's model: loaded once, in the background, or the reason it could not be.

Loading runs in a background thread so that the worker answers ``/ping`` with 503 at once while a
large model loads (SageMaker's ping timeout is 2 s), instead of not answering at all. A missing or
broken model directory must not stop the server: it keeps answering 503 and the log says exactly
what is wrong. While no model is loaded, requests trigger a new attempt at most every
``retry_interval_s``, so a server started before training finished picks the model up.

A request that reaches a worker while its model is loading waits for the load (up to
``load_wait_s``) rather than failing: behind nginx, ``/ping`` turns healthy as soon as one worker
has loaded, and SageMaker then sends requests that any worker may receive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from serve.errors import ModelNotReady
from serve.predictor import Predictor
from train.artifacts import MissingModelFiles

logger = logging.getLogger(__name__)

_LOADING = "the model is loading"
# How long a request waits for a model that is loading: well inside SageMaker's 60 s
# invocation timeout, and longer than a ResNet-152 takes to load on a busy 2-core host.
DEFAULT_LOAD_WAIT_S = 30.0


class ModelSlot:
    """Holds a :class:`~serve.predictor.Predictor` produced by ``loader``."""

    def __init__(
        self,
        loader: Callable[[], Predictor],
        *,
        retry_interval_s: float,
        load_wait_s: float = DEFAULT_LOAD_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._loader = loader
        self._retry_interval_s = retry_interval_s
        self._load_wait_s = load_wait_s
        self._clock = clock
        self._lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._error = _LOADING
        self._last_attempt: float | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def holding(cls, predictor: Predictor) -> ModelSlot:
        """A slot that already holds ``predictor`` (tests, embedding)."""
        slot = cls(lambda: predictor, retry_interval_s=0.0)
        slot._predictor = predictor
        return slot

    @property
    def loaded(self) -> bool:
        """Whether a model is loaded (starts nothing)."""
        return self._predictor is not None

    def start_loading(self) -> None:
        """Start a background load unless a model is loaded or a load is running."""
        with self._lock:
            if self._predictor is None and (self._thread is None or not self._thread.is_alive()):
                self._last_attempt = self._clock()
                self._error = _LOADING
                thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
                # Started before it is published: request threads join it without the lock.
                thread.start()
                self._thread = thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running load to finish; True when a model is loaded."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._predictor is not None

    def get(self) -> Predictor:
        """The predictor; when there is none, start a new load if one is due, and wait for a
        load under way (at most ``load_wait_s``).

        Raises:
            ModelNotReady: no model yet; the message says why (loading, or which file is missing).
        """
        predictor = self._predictor
        if predictor is not None:
            return predictor
        last = self._last_attempt
        if last is None or self._clock() - last >= self._retry_interval_s:
            self.start_loading()
        self.wait(self._load_wait_s)
        predictor = self._predictor
        if predictor is not None:
            return predictor
        raise ModelNotReady(f"model not loaded: {self._error}")

    def _load(self) -> None:
        try:
            self._predictor = self._loader()
        except Exception as exc:  # any unusable model: report it, keep answering 503
            self._error = f"{type(exc).__name__}: {exc}"
            # A missing file needs no traceback: the message names it.
            traceback = not isinstance(exc, MissingModelFiles)
            logger.error("Model not loaded: %s", self._error, exc_info=traceback)
