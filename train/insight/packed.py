"""Read a packed RecordIO file (im2rec's layout) without MXNet: labels and image bytes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from train.inputs.recordio import IR_HEADER, read_records


def read_packed(rec: Path) -> Iterator[tuple[int, tuple[float, ...], bytes]]:
    """Yield ``(record id, labels, encoded image)`` for every record of ``rec`` (the id is
    the ``.lst`` index packing was given), in file order (the order
    a non-shuffling ``ImageRecordIter`` delivers them, so validation outputs line up)."""
    with open(rec, "rb", buffering=1 << 20) as stream:
        for record in read_records(stream, str(rec)):
            flag, label, record_id, _ = IR_HEADER.unpack_from(record)
            offset = IR_HEADER.size
            if flag:
                labels = struct.unpack_from(f"<{flag}f", record, offset)
                offset += 4 * flag
            else:
                labels = (label,)
            yield record_id, labels, record[offset:]
