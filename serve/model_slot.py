"""The worker's model: loaded once, or the reason it could not be.

A missing or broken model directory must not stop the server: it starts, ``/ping`` answers 503,
and the log says exactly what is wrong. While no model is loaded the slot retries (at most every
``retry_interval_s``), so a server started before training finished picks the model up.
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


class ModelSlot:
    """Holds a :class:`~serve.predictor.Predictor` produced by ``loader``."""

    def __init__(
        self,
        loader: Callable[[], Predictor],
        *,
        retry_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._loader = loader
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._error = "the model has not been loaded yet"
        self._last_attempt: float | None = None

    @classmethod
    def holding(cls, predictor: Predictor) -> ModelSlot:
        """A slot that already holds ``predictor`` (tests, embedding)."""
        slot = cls(lambda: predictor, retry_interval_s=0.0)
        slot._predictor = predictor
        return slot

    @property
    def loaded(self) -> bool:
        """Whether a model is loaded (no loading attempt)."""
        return self._predictor is not None

    def load(self) -> bool:
        """Try to load now (unless loaded); True when a model is loaded."""
        with self._lock:
            if self._predictor is None:
                self._attempt()
        return self._predictor is not None

    def get(self) -> Predictor:
        """The predictor, loading it first when due.

        Raises:
            ModelNotReady: no model; the message says why (e.g. which file is missing).
        """
        predictor = self._predictor
        if predictor is not None:
            return predictor
        with self._lock:
            due = (
                self._last_attempt is None
                or self._clock() - self._last_attempt >= self._retry_interval_s
            )
            if self._predictor is None and due:
                self._attempt()
            if self._predictor is None:
                raise ModelNotReady(f"model not loaded: {self._error}")
            return self._predictor

    def _attempt(self) -> None:
        self._last_attempt = self._clock()
        try:
            self._predictor = self._loader()
        except Exception as exc:  # any unusable model: report it, keep serving /ping
            message = f"{type(exc).__name__}: {exc}"
            if message != self._error:
                # A missing file needs no traceback: the message names it.
                traceback = not isinstance(exc, MissingModelFiles)
                logger.error("Model not loaded: %s", message, exc_info=traceback)
            self._error = message
