"""RecordIO framing of a byte stream, and what a record holds.

A stream is a sequence of ``magic, lrecord, data, padding`` frames (dmlc-core's format, which
SageMaker uses to wrap records in Pipe mode): ``lrecord`` carries the data length in its low 29
bits and a continuation flag in the top 3 (0 whole record, 1 first part, 2 middle, 3 last),
and data is padded to 4 bytes. A record is split into parts where its data holds the magic
word, which the reader puts back between the parts.

MXNet's own reader (``mx.recordio.MXRecordIO``) only opens paths, and reopening a FIFO by path
blocks forever once its writer has finished, so a FIFO is read with this reader. The packed
files (``.rec`` + ``.idx``) are written here too, byte for byte as ``mx.recordio.pack`` and
``MXIndexedRecordIO`` write them, so that packing needs no MXNet (the PyTorch engine runs
without it) and the packing cache stays valid across both writers; the tests check both
directions against MXNet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from train.errors import ClientError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
IR_HEADER = struct.Struct("<IfQQ")  # mxnet.recordio.IRHeader: flag, label, id, id2
MAX_RECORD = 1 << 29  # dmlc refuses records of 2**29 bytes or more
MAX_LABEL_WIDTH = 100_000

IMAGE_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_records(stream: BinaryIO, where: str) -> Iterator[bytes]:
    """Yield every record of ``stream`` until end of file.

    Raises:
        ClientError: a frame without the magic word or cut short (``where`` names the stream).
    """
    parts: list[bytes] = []
    number = 0
    while True:
        head = _read_exactly(stream, 8)
        if not head and not parts:
            return
        if len(head) < 8:
            raise ClientError(f"{where} ends in the middle of record {number}: cut short")
        magic, lrecord = struct.unpack("<II", head)
        if magic != MAGIC:
            raise ClientError(
                f"{where}: record {number} does not start with the RecordIO magic number: the "
                f"stream is not RecordIO (bytes {head[:8].hex()}). Pipe mode channels must hold "
                f".rec files (made by im2rec) or an augmented manifest with RecordWrapperType "
                f"RecordIO"
            )
        length, flag = lrecord & LENGTH_MASK, lrecord >> 29
        data = _read_exactly(stream, length)
        _read_exactly(stream, -length % 4)
        if len(data) < length:
            raise ClientError(f"{where} ends in the middle of record {number}: cut short")
        parts.append(data)
        if flag in (0, 3):
            yield MAGIC_BYTES.join(parts)
            parts, number = [], number + 1


def frame(payload: bytes) -> bytes:
    """One whole-record frame (the form SageMaker wraps each attribute or object in)."""
    return struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def is_image(data: bytes) -> bool:
    """Whether ``data`` starts like an encoded image (JPEG, PNG, GIF, BMP, TIFF, WebP)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data.startswith(IMAGE_SIGNATURES)


def is_packed_record(data: bytes) -> bool:
    """Whether ``data`` is an im2rec record: an ``IRHeader`` (and its labels), then an image."""
    if len(data) < IR_HEADER.size:
        return False
    flag = IR_HEADER.unpack_from(data)[0]
    return flag <= MAX_LABEL_WIDTH and is_image(data[IR_HEADER.size + 4 * flag :])


def label_width(record: bytes) -> int:
    """How many labels a packed record carries (1 unless its header lists several)."""
    return max(1, IR_HEADER.unpack_from(record)[0])


class IRHeader(NamedTuple):
    """``mxnet.recordio.IRHeader``: ``label`` is one float, or (with ``flag`` = their count)
    an array of float32 labels stored between the header and the payload."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack(header: IRHeader, payload: bytes) -> bytes:
    """One record as ``mx.recordio.pack`` makes it: a number label goes inline with flag 0; a
    sequence of labels sets flag to their count, label to 0, and precedes the payload."""
    if isinstance(header.label, (int, float, np.number)):
        return IR_HEADER.pack(0, header.label, header.id, header.id2) + payload
    labels = np.asarray(header.label, dtype=np.float32)
    return IR_HEADER.pack(labels.size, 0.0, header.id, header.id2) + labels.tobytes() + payload


def pack_labels(index: int, labels: Sequence[float], payload: bytes) -> bytes:
    """The product's record: one label inline, or several before the image; ``id2`` 0."""
    label = labels[0] if len(labels) == 1 else np.asarray(labels, dtype=np.float32)
    return pack(IRHeader(0, label, index, 0), payload)


def unpack(record: bytes) -> tuple[IRHeader, bytes]:
    """``mx.recordio.unpack``: the header (labels as a float32 array when flag > 0) and the
    payload."""
    if len(record) < IR_HEADER.size:
        raise ClientError(f"a {len(record)}-byte record is too short for MXNet's IRHeader")
    header = IRHeader(*IR_HEADER.unpack_from(record))
    body = memoryview(record)[IR_HEADER.size :]
    if header.flag > 0:
        if len(body) < 4 * header.flag:
            raise ClientError(f"record {header.id} is shorter than its {header.flag} labels")
        labels = np.frombuffer(body[: 4 * header.flag], np.float32).copy()
        return header._replace(label=labels), bytes(body[4 * header.flag :])
    return header, bytes(body)


def encode(record: bytes) -> bytes:
    """``record`` framed as dmlc's ``RecordIOWriter`` writes it: split before each magic word
    at a 4-byte-aligned offset (the word itself dropped), the last part padded to 4 bytes."""
    if len(record) >= MAX_RECORD:
        raise ClientError(f"a record of {len(record)} bytes is over RecordIO's 2**29-byte limit")
    view, out, start = memoryview(record), [], 0
    found = record.find(MAGIC_BYTES)
    while found != -1:
        if found % 4 == 0:
            flag = 1 if start == 0 else 2
            out += [struct.pack("<II", MAGIC, flag << 29 | (found - start)), view[start:found]]
            start = found + 4
            found = record.find(MAGIC_BYTES, start)
        else:
            found = record.find(MAGIC_BYTES, found + 1)
    flag = 3 if start else 0
    out += [struct.pack("<II", MAGIC, flag << 29 | (len(record) - start)), view[start:]]
    out.append(b"\0" * (-len(record) % 4))
    return b"".join(out)


class IndexedWriter:
    """``MXIndexedRecordIO(idx, rec, "w")``: each ``write(key, record)`` appends the framed
    record and an ``key<TAB>offset`` line to the index."""

    def __init__(self, idx: Path, rec: Path):
        self._rec = open(rec, "wb")  # noqa: SIM115 - closed by close()
        try:
            self._idx = open(idx, "w")  # noqa: SIM115
        except BaseException:
            self._rec.close()
            raise
        self._pos = 0

    def write(self, key: int, record: bytes) -> None:
        data = encode(record)
        self._rec.write(data)
        self._idx.write(f"{key}\t{self._pos}\n")
        self._pos += len(data)

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> IndexedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_index(idx: Path) -> list[tuple[int, int]]:
    """The ``(key, offset)`` lines of an ``.idx`` file, in file order."""
    entries = []
    with open(idx) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                key, offset = line.split("\t")[:2]
                entries.append((int(key), int(offset)))
            except ValueError:
                raise ClientError(
                    f"{idx} line {number} is not 'index<TAB>offset' ({line.strip()[:60]!r}): "
                    f"give the .idx file im2rec wrote with the .rec, or none"
                ) from None
    return entries


def read_at(stream: BinaryIO, offset: int, where: str) -> bytes:
    """The one record that starts at ``offset`` of a seekable stream."""
    stream.seek(offset)
    record = next(read_records(stream, where), None)
    if record is None:
        raise ClientError(f"{where}: no record at offset {offset}: the .idx does not fit the .rec")
    return record


def read_file(rec: Path) -> Iterator[bytes]:
    """Every record of a ``.rec`` file, in order."""
    with open(rec, "rb") as stream:
        yield from read_records(stream, str(rec))
