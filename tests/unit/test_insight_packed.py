"""The audit reads packed files lazily: every record's id, labels and image bytes as MXNet's
own RecordIO reader gives them, records split around the magic word and multi-label headers
included."""

from __future__ import annotations

import struct
from pathlib import Path

import mxnet as mx
import numpy as np

from train.insight.audit import read_part

MAGIC = struct.pack("<I", 0xCED7230A)


def test_lazy_packed_images_match_mxnet_records(tmp_path: Path) -> None:
    rec = tmp_path / "data.rec"
    rng = np.random.default_rng(0)
    payloads = [rng.bytes(int(n)) for n in rng.integers(1, 300, 40)]
    payloads[3] = b"ab" + MAGIC + b"cd" + MAGIC  # MXNet splits this record in three parts
    payloads[7] = MAGIC
    writer = mx.recordio.MXRecordIO(str(rec), "w")
    for k, data in enumerate(payloads):
        label = [float(k % 3), 1.0, 0.5] if k % 2 else float(k % 5)
        writer.write(mx.recordio.pack(mx.recordio.IRHeader(0, label, 100 + k, 0), data))
    writer.close()
    reader = mx.recordio.MXRecordIO(str(rec), "r")
    expected = []
    while (record := reader.read()) is not None:
        header, data = mx.recordio.unpack(record)
        expected.append((header.id, tuple(np.atleast_1d(header.label).tolist()), data))
    reader.close()
    part = read_part(rec)
    got = list(zip(part.ids, part.labels, part.encoded, strict=True))
    assert got == expected
    assert part.encoded[3] == payloads[3] and part.encoded[-1] == payloads[-1]
    assert part.encoded[5:8] == payloads[5:8]
