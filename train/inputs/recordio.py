"""RecordIO framing of a byte stream, and what a record holds.

A stream is a sequence of ``magic, lrecord, data, padding`` frames (dmlc-core's format, which
SageMaker uses to wrap records in Pipe mode): ``lrecord`` carries the data length in its low 29
bits and a continuation flag in the top 3 (0 whole record, 1 first part, 2 middle, 3 last),
and data is padded to 4 bytes. A record is split into parts where its data holds the magic
word, which the reader puts back between the parts.

MXNet's own reader (``mx.recordio.MXRecordIO``) only opens paths, and reopening a FIFO by path
blocks forever once its writer has finished, so a FIFO is read with this reader; the tests check
it against files written by MXNet's writer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from train.errors import ClientError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
IR_HEADER = struct.Struct("<IfQQ")  # mxnet.recordio.IRHeader: flag, label, id, id2
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
