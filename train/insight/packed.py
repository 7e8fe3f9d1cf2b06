"""Read a packed RecordIO file (im2rec's layout) without MXNet: labels and image bytes, all in
order, or as a lazy sequence that reads each image from disk when asked (the audit of a large
data set keeps a few hundred bytes per image in memory, not the images)."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

from train.inputs.recordio import IR_HEADER, read_records

_FRAME = struct.Struct("<II")  # magic, flag << 29 | length
_LENGTH_MASK = (1 << 29) - 1


def _split(record: bytes) -> tuple[int, tuple[float, ...], bytes]:
    flag, label, record_id, _ = IR_HEADER.unpack_from(record)
    offset = IR_HEADER.size
    if flag:
        labels = struct.unpack_from(f"<{flag}f", record, offset)
        offset += 4 * flag
    else:
        labels = (label,)
    return record_id, labels, record[offset:]


def read_packed(rec: Path) -> Iterator[tuple[int, tuple[float, ...], bytes]]:
    """Yield ``(record id, labels, encoded image)`` for every record of ``rec`` (the id is
    the ``.lst`` index given to packing), in file order (the order
    a non-shuffling ``ImageRecordIter`` delivers them, so validation outputs line up)."""
    with open(rec, "rb", buffering=1 << 20) as stream:
        for record in read_records(stream, str(rec)):
            yield _split(record)


class PackedImages(Sequence[bytes]):
    """The encoded images of a packed file, read from disk by position on demand
    (``os.pread``: safe from several threads)."""

    def __init__(self, rec: Path, spans: list[tuple[int, int]]) -> None:
        self._rec, self._spans = rec, spans
        self._fd = os.open(rec, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self._spans)

    @overload
    def __getitem__(self, k: int) -> bytes: ...
    @overload
    def __getitem__(self, k: slice) -> list[bytes]: ...
    def __getitem__(self, k: int | slice) -> bytes | list[bytes]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        offset, size = self._spans[k]
        frames = os.pread(self._fd, size, offset)
        _, word = _FRAME.unpack_from(frames)
        if word >> 29 == 0:  # one frame, the usual case
            return _split(frames[_FRAME.size : _FRAME.size + (word & _LENGTH_MASK)])[2]
        return _split(next(read_records(io.BytesIO(frames), str(self._rec))))[2]

    def __del__(self) -> None:
        os.close(self._fd)


def scan_packed(rec: Path) -> tuple[list[int], list[tuple[float, ...]], PackedImages]:
    """Record ids, labels and the lazily read images of every record of ``rec``, in file
    order, from one pass over the file."""
    ids, labels, spans = [], [], []
    with open(rec, "rb", buffering=1 << 20) as stream:
        start = 0
        while True:
            head = stream.read(_FRAME.size)
            if len(head) < _FRAME.size:
                break
            _, word = _FRAME.unpack(head)
            length, flag = word & _LENGTH_MASK, word >> 29
            header = stream.read(min(length, IR_HEADER.size + 4 * 64))
            stream.seek(length - len(header) + (-length % 4), io.SEEK_CUR)
            if flag in (0, 1):  # a whole record, or the first part of one: its header
                record_id, label, _ = _split(header)
                ids.append(record_id)
                labels.append(label)
            if flag in (0, 3):  # a whole record, or the last part of one
                end = stream.tell()
                spans.append((start, end - start))
                start = end
    return ids, labels, PackedImages(rec, spans)
