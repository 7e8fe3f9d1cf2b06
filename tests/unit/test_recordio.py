"""The pure-Python RecordIO writer and reader against MXNet's own: equal bytes both ways, so the
packing cache and Pipe-mode shards do not depend on which writer made them."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from tests.datagen import make_image, write_jpeg
from train import records
from train.errors import ClientError
from train.inputs import recordio
from train.lst import Entry

MAGIC = struct.pack("<I", 0xCED7230A)
PAYLOADS = [
    b"",
    b"a",
    MAGIC,
    MAGIC + MAGIC,
    b"abcd" + MAGIC,
    b"ab" + MAGIC + b"cd",  # not aligned: not split
    b"x" * 7 + MAGIC,
    b"abcd" + MAGIC + b"efgh" + MAGIC + MAGIC + b"z",
    *(bytes(random.Random(n).randrange(256) for _ in range(n)) for n in range(9)),
    random.Random(1).randbytes(5000),
]
HEADERS = [
    recordio.IRHeader(0, 3.0, 5, 0),
    recordio.IRHeader(0, np.array([1, 2.5, -3], np.float32), 2**40, 7),
    recordio.IRHeader(9, 1.5, 0, 0),  # a number label: MXNet writes flag 0 whatever is given
    recordio.IRHeader(0, [0.5], 1, 0),  # a one-element list: flag 1
]


def _write_both(tmp_path: Path, records_: list[bytes]) -> None:
    mx_writer = mx.recordio.MXIndexedRecordIO(str(tmp_path / "m.idx"), str(tmp_path / "m.rec"), "w")
    with recordio.IndexedWriter(tmp_path / "p.idx", tmp_path / "p.rec") as writer:
        for key, record in enumerate(records_):
            mx_writer.write_idx(key * 3, record)
            writer.write(key * 3, record)
    mx_writer.close()


def test_headers_pack_and_unpack_as_mxnet_does():
    for header in HEADERS:
        for payload in (b"", b"\xff\xd8\xffjpeg" + MAGIC):
            packed = recordio.pack(header, payload)
            assert packed == mx.recordio.pack(mx.recordio.IRHeader(*header), payload)
            ours, theirs = recordio.unpack(packed), mx.recordio.unpack(packed)
            assert ours[1] == theirs[1] == payload
            assert ours[0].flag == theirs[0].flag and ours[0].id == theirs[0].id
            np.testing.assert_array_equal(ours[0].label, theirs[0].label)


def test_indexed_files_are_byte_identical_to_mxnets_including_split_records(tmp_path):
    packed = [recordio.pack(h, p) for p in PAYLOADS for h in HEADERS] + PAYLOADS
    _write_both(tmp_path, packed)
    assert (tmp_path / "p.rec").read_bytes() == (tmp_path / "m.rec").read_bytes()
    assert (tmp_path / "p.idx").read_bytes() == (tmp_path / "m.idx").read_bytes()
    split = recordio.encode(b"abcd" + MAGIC + b"efgh")
    assert [struct.unpack_from("<I", split, at)[0] >> 29 for at in (4, 16)] == [1, 3]
    mx_reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "m.idx"), str(tmp_path / "m.rec"), "r")
    with open(tmp_path / "p.rec", "rb") as stream:
        for key, offset in recordio.read_index(tmp_path / "p.idx"):
            assert recordio.read_at(stream, offset, "p.rec") == mx_reader.read_idx(key)
    mx_reader.close()
    assert list(recordio.read_file(tmp_path / "m.rec")) == packed


def test_the_packing_cache_is_what_mxnets_writer_made_and_imagerecorditer_reads_it(tmp_path):
    rng, entries = random.Random(3), []
    for i in range(6):
        write_jpeg(tmp_path / f"{i}.jpg", make_image(i % 2, rng, (44, 40)))
        labels = (float(i % 2),) if i < 3 else (1.0, 0.0, float(i))
        entries.append(Entry(10 + i, labels, f"{i}.jpg"))
    settings = records.PackSettings(36, True, (32, 32), 10**8)
    for width, chosen in ((1, entries[:3]), (3, entries[3:])):
        out = tmp_path / f"w{width}"
        packed = records.pack(
            chosen, tmp_path, name="t", settings=settings, cache_dir=out, workers=1, max_bad=0
        )
        mx_writer = mx.recordio.MXIndexedRecordIO(str(out / "m.idx"), str(out / "m.rec"), "w")
        for e in chosen:
            data, _ = records.prepare_image((tmp_path / e.relpath).read_bytes(), settings)
            label = e.labels[0] if width == 1 else np.array(e.labels, np.float32)
            mx_writer.write_idx(
                e.index, mx.recordio.pack(mx.recordio.IRHeader(0, label, e.index, 0), data)
            )
        mx_writer.close()
        assert packed.rec.read_bytes() == (out / "m.rec").read_bytes()
        assert packed.idx.read_bytes() == (out / "m.idx").read_bytes()
        batch = next(
            iter(
                mx.io.ImageRecordIter(
                    path_imgrec=str(packed.rec),
                    path_imgidx=str(packed.idx),
                    data_shape=(3, 32, 32),
                    batch_size=3,
                    label_width=width,
                )
            )
        )
        expected = (
            np.array([e.labels for e in chosen], np.float32)
            .reshape(3, -1)
            .squeeze(1 if width == 1 else ())
        )
        np.testing.assert_array_equal(batch.label[0].asnumpy(), expected)
        assert records.read_labels(packed.rec).tolist() == [list(e.labels) for e in chosen]
        assert records.count_records(packed.rec) == (3, width if width > 1 else 1)


def test_bad_files_say_what_is_wrong(tmp_path):
    (tmp_path / "x.idx").write_text("0\t0\nnot an index line\n")
    with pytest.raises(ClientError, match="line 2 is not 'index<TAB>offset'"):
        recordio.read_index(tmp_path / "x.idx")
    with pytest.raises(ClientError, match="too short for MXNet's IRHeader"):
        recordio.unpack(b"abc")
    with pytest.raises(ClientError, match="shorter than its 4 labels"):
        recordio.unpack(struct.pack("<IfQQ", 4, 0, 9, 0) + b"\0" * 8)
