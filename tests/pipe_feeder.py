"""SageMaker Pipe mode emulated for tests and benchmarks, as the reference recipe describes it.

A feeder thread per channel creates ``<channel>_<n>`` FIFOs one pass after another, creates the
next one in advance once the job has opened the current one, writes the pass's bytes and removes
the FIFO. The RecordIO framing here is written from dmlc-core's format description, not with the
product's code, so that the product's reader is checked against an independent writer.
"""

from __future__ import annotations

import errno
import json
import os
import random
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

MAGIC = 0xCED7230A


def frame(payload: bytes) -> bytes:
    """One RecordIO record as SageMaker wraps an S3 object or a manifest attribute."""
    return struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * ((4 - len(payload) % 4) % 4)


def label_bytes(value) -> bytes:
    """A manifest label as it would travel: a string's content, a number's or list's JSON."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def manifest_stream(
    lines: list[dict], root: Path, attributes: tuple[str, ...], seed: int | None = None
) -> Callable[[int], bytes]:
    """The bytes of each pass of an augmented manifest: one record per attribute, in the order
    of ``attributes``; a ``-ref`` attribute sends the file's bytes. Lines are shuffled per pass
    when ``seed`` is given (``ShuffleConfig``)."""

    def payload(index: int) -> bytes:
        order = list(lines)
        if seed is not None:
            random.Random(seed + index).shuffle(order)
        out = []
        for line in order:
            for name in attributes:
                value = line[name]
                data = (root / value).read_bytes() if name.endswith("-ref") else label_bytes(value)
                out.append(frame(data))
        return b"".join(out)

    return payload


def _open_for_writing(path: Path, deadline: float) -> int | None:
    """Open a FIFO for writing once a reader has opened it (None after ``deadline``)."""
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        return fd
    return None


class Feeder(threading.Thread):
    """Feeds ``passes`` passes of ``payload(index)`` into ``<data_dir>/<channel>_<index>``."""

    def __init__(
        self,
        data_dir: Path,
        channel: str,
        payload: Callable[[int], bytes],
        passes: int,
        *,
        timeout: float = 600,
    ):
        super().__init__(name=f"feeder-{channel}", daemon=True)
        self.data_dir, self.channel, self.payload = data_dir, channel, payload
        self.passes, self.timeout = passes, timeout
        self.opened: list[int] = []  # passes the job opened
        self.error: BaseException | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        if passes:
            os.mkfifo(self.fifo(0))

    def fifo(self, index: int) -> Path:
        return self.data_dir / f"{self.channel}_{index}"

    def run(self) -> None:
        try:
            for index in range(self.passes):
                self._feed(index)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def _feed(self, index: int) -> None:
        path = self.fifo(index)
        fd = _open_for_writing(path, time.monotonic() + self.timeout)
        if fd is None:
            path.unlink(missing_ok=True)
            return
        self.opened.append(index)
        if index + 1 < self.passes:
            os.mkfifo(self.fifo(index + 1))  # SageMaker creates the next FIFO in advance
        data = self.payload(index)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                view = memoryview(data)
                while view:
                    view = view[out.write(view) :]
        except BrokenPipeError:
            pass  # the job may close a FIFO early
        path.unlink(missing_ok=True)
