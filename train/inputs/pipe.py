"""SageMaker Pipe mode: one FIFO per channel and pass, ``<channel>_<n>``, each read once.

SageMaker creates ``/opt/ml/input/data/<channel>_0``, and ``<channel>_1`` for the next pass once
(or before) the first is closed; a FIFO may not exist yet when the job looks for it. Opening
one for reading would block until the writer connects, possibly forever, so it is opened
non-blocking and ``select`` waits for its first bytes (or its end), within the timeout (the
``pipe_wait_timeout`` setting). A regular file of that name is read the same way, which makes
local runs and tests simple.

``CompressionType: Gzip`` data is inflated here if it arrives compressed (whether SageMaker
inflates it before streaming is not documented, so both are accepted).

The pass number is not the epoch: a job restarted from a checkpoint (a spot interruption) finds
its FIFOs numbered from 0 again while it resumes at a later epoch.
"""

from __future__ import annotations

import gzip
import os
import select
import threading
import time
from pathlib import Path
from typing import BinaryIO

from train.errors import ClientError, TrainingInterrupted

GZIP_MAGIC = b"\x1f\x8b"
POLL_SECONDS = 0.05
READ_BUFFER = 1 << 20


def fifo_path(data_dir: Path, channel: str, index: int) -> Path:
    """The FIFO of pass ``index`` of ``channel``."""
    return data_dir / f"{channel}_{index}"


def _wait_until(
    deadline: float, ready, what: str, path: Path, timeout: float, stop: threading.Event | None
) -> None:
    while not ready():
        if stop is not None and stop.is_set():
            raise TrainingInterrupted(f"stopped while waiting for {path}")
        if time.monotonic() >= deadline:
            raise ClientError(
                f"Pipe mode: {path} {what} within {timeout:g} s. SageMaker creates one FIFO per "
                f"channel and pass ({path.name.rsplit('_', 1)[0]}_0, _1, ...) and feeds it as "
                f"soon as the job opens it; outside SageMaker, whatever feeds the job must "
                f"create {path.name}. The hyperparameter pipe_wait_timeout sets this wait"
            )
        time.sleep(POLL_SECONDS)


def open_fifo(path: Path, timeout: float, stop: threading.Event | None = None) -> BinaryIO:
    """Wait for ``path`` to exist and for its first bytes; return it as a blocking stream.

    Raises:
        ClientError: the FIFO did not appear, or nothing was written to it, within
            ``timeout`` seconds (the message names the FIFO).
        TrainingInterrupted: ``stop`` was set during the wait (SIGTERM).
    """
    deadline = time.monotonic() + timeout
    _wait_until(deadline, path.exists, "did not appear", path, timeout, stop)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + timeout  # a fresh wait for the writer's first bytes

        def readable() -> bool:
            return bool(select.select([fd], [], [], POLL_SECONDS)[0])

        _wait_until(
            deadline, readable, "was opened but nothing was written to it", path, timeout, stop
        )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=READ_BUFFER)
    except BaseException:
        os.close(fd)
        raise


def inflated(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself, or a reader of its inflated bytes when it starts like gzip data
    (concatenated gzip members, one per S3 object, are read one after another)."""
    peek = getattr(stream, "peek", None)
    if peek is not None and peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return stream
