"""Input sources: RecordIO framing (checked against MXNet's writer), FIFOs, manifests, labels,
the shuffle buffer and the per-worker split of a Pipe-mode stream."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import struct
import threading
import time
from pathlib import Path

import mxnet as mx
import pytest

from tests.datagen import make_image, write_jpeg
from tests.pipe_feeder import frame
from train import records
from train.config import parse_hyperparameters
from train.errors import ClientError, TrainingInterrupted
from train.inputs import channels, manifest, pipe, pipe_mode, recordio, shards, stream
from train.lst import Entry
from train.paths import Paths

MULTI_HOT = manifest.LabelFormat(multi_label=True, num_classes=3)
CLASS_IDS = manifest.LabelFormat(multi_label=True, num_classes=3, class_ids=True)
SINGLE = manifest.LabelFormat(multi_label=False, num_classes=4)


def _jpeg(tmp_path: Path, label: int = 0, name: str = "a.jpg") -> bytes:
    path = tmp_path / name
    write_jpeg(path, make_image(label, random.Random(label), (40, 40)))
    return path.read_bytes()


def test_reader_agrees_with_mxnets_writer_including_split_records(tmp_path: Path):
    magic = struct.pack("<I", 0xCED7230A)
    payloads = [b"", b"abc", b"\x00" * 8 + magic + b"tail", magic + magic, os.urandom(5000)]
    writer = mx.recordio.MXRecordIO(str(tmp_path / "x.rec"), "w")
    for payload in payloads:
        writer.write(payload)
    writer.close()
    raw = (tmp_path / "x.rec").read_bytes()
    third = len(frame(b"")) + len(frame(b"abc"))  # offset of the third record's first frame
    assert struct.unpack_from("<I", raw, third + 4)[0] >> 29 == 1  # MXNet split it at the magic
    assert list(recordio.read_records(io.BytesIO(raw), "x")) == payloads


def test_reader_names_a_stream_that_is_not_recordio_or_cut_short():
    with pytest.raises(ClientError, match="train_0: record 0 does not start with the RecordIO"):
        list(recordio.read_records(io.BytesIO(b'{"source-ref": "s3://b/a.jpg"}'), "train_0"))
    with pytest.raises(ClientError, match="train_0 ends in the middle of record 1"):
        list(recordio.read_records(io.BytesIO(frame(b"abcd") + frame(b"efgh")[:10]), "train_0"))


def test_an_im2rec_record_is_told_from_an_image_and_from_text(tmp_path: Path):
    jpeg = _jpeg(tmp_path)
    single = mx.recordio.pack(mx.recordio.IRHeader(0, 2.0, 7, 0), jpeg)
    multi = records.pack_record(3, (1.0, 0.0, 1.0), jpeg)
    assert recordio.is_packed_record(single) and recordio.label_width(single) == 1
    assert recordio.is_packed_record(multi) and recordio.label_width(multi) == 3
    assert not recordio.is_packed_record(jpeg) and recordio.is_image(jpeg)
    assert not recordio.is_image(b"3") and not recordio.is_packed_record(b"x" * 40)
    header, payload = mx.recordio.unpack(multi)
    assert list(header.label) == [1.0, 0.0, 1.0] and payload == jpeg


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        (b"3", SINGLE, (3.0,)),
        (b'"3"', SINGLE, (3.0,)),
        (b"3.0", SINGLE, (3.0,)),
        (b" 2 \n", SINGLE, (2.0,)),
        (b"[1]", SINGLE, (1.0,)),
        (b"[1, 0, 1]", MULTI_HOT, (1.0, 0.0, 1.0)),
        (b'"[1,0,1]"', MULTI_HOT, (1.0, 0.0, 1.0)),
        (b"[0, 2]", CLASS_IDS, (1.0, 0.0, 1.0)),
        (b'"[2]"', CLASS_IDS, (0.0, 0.0, 1.0)),
        (b"1", CLASS_IDS, (0.0, 1.0, 0.0)),
    ],
)
def test_label_encodings(raw: bytes, fmt, expected):
    assert manifest.parse_label(raw, fmt) == expected


@pytest.mark.parametrize(
    ("raw", "fmt", "message"),
    [
        (b"cat", SINGLE, "it is text `cat`, not a label"),
        (b"2.5", SINGLE, "not a whole class number"),
        (b"4", SINGLE, "not below num_classes=4"),
        (b"-1", SINGLE, "not a class number"),
        (b"[0, 2]", SINGLE, "set multi_label=1"),
        (b"[0, 2]", MULTI_HOT, "add '; label-format=class-id' to the ContentType"),
        (b"2", MULTI_HOT, "multi_label=1 expects a list"),
        (b'{"class": 1}', SINGLE, "not a class number"),
    ],
)
def test_bad_labels_say_why(raw: bytes, fmt, message: str):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        manifest.parse_label(raw, fmt)


def test_stream_of_pairs_and_what_a_wrong_attribute_order_gives(tmp_path: Path):
    image = _jpeg(tmp_path)
    pairs = list(manifest.pair_records([image, b"1", image, b'"2"'], "train_0", SINGLE))
    assert [(n, labels) for n, _, labels in pairs] == [(0, (1.0,)), (2, (2.0,))]
    cases = {
        ("class", "source-ref"): [b"1", image],
        ("source-ref",): [image, image],
        ("source-ref", "class", "class-metadata"): [image, b"1", b'{"class-name": "dog"}', b"1"],
    }
    messages = {}
    for attributes, stream_records in cases.items():
        with pytest.raises(ClientError) as caught:
            list(manifest.pair_records(stream_records, "train_0", SINGLE))
        messages[attributes] = str(caught.value)
        assert "AttributeNames must list exactly two attributes" in messages[attributes]
    assert (
        "record 0 of train_0 is not an image: it looks like JSON text `1`"
        in messages[("class", "source-ref")]
    )
    assert (
        "record 1 of train_0 is an image where the label of record 0" in messages[("source-ref",)]
    )
    assert (
        'record 2 of train_0 is not an image: it looks like JSON text `{"class-name"'
        in (messages[("source-ref", "class", "class-metadata")])
    )


def test_file_mode_manifest_resolves_s3_and_relative_refs(tmp_path: Path):
    for rel in ("cats/a.jpg", "b.jpg", "sub/c.jpg"):
        _jpeg(tmp_path, name=rel)
    lines = [
        {"source-ref": "s3://bucket/job/cats/a.jpg", "label": "1", "label-metadata": {"x": 1}},
        {"source-ref": "s3://bucket/deep/prefix/b.jpg", "label": 2},
        {"source-ref": "sub/c.jpg", "label": 0.0},
    ]
    path = tmp_path / "train.manifest"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    entries = manifest.read_manifest(path, tmp_path, SINGLE)
    assert [(e.relpath, e.labels) for e in entries] == [
        ("cats/a.jpg", (1.0,)),
        ("b.jpg", (2.0,)),
        ("sub/c.jpg", (0.0,)),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"source-ref": "a.jpg", "class": 1, "other": 2}, "found class, other"),
        ({"class": 1}, "no image attribute"),
        ({"source-ref": "../a.jpg", "class": 1}, "leaves the channel root"),
        ({"source-ref": "a.jpg", "class": "dog"}, "'dog' is not a class number"),
    ],
)
def test_file_mode_manifest_errors_name_the_line(tmp_path: Path, line: dict, message: str):
    path = tmp_path / "x.manifest"
    path.write_text(json.dumps({"source-ref": "a.jpg", "class": 0}) + "\n" + json.dumps(line))
    with pytest.raises(ClientError, match=f"x.manifest:2: .*{message}"):
        manifest.read_manifest(path, tmp_path, SINGLE)


def test_channels_from_inputdataconfig(tmp_path: Path):
    path = tmp_path / "inputdataconfig.json"
    assert channels.read_channels(path) == {}
    path.write_text(
        json.dumps(
            {
                "train": {
                    "ContentType": "application/x-recordio; label-format=class-id",
                    "TrainingInputMode": "Pipe",
                    "S3DistributionType": "ShardedByS3Key",
                    "RecordWrapperType": "RecordIO",
                },
                "validation": {"TrainingInputMode": "File"},
            }
        )
    )
    found = channels.read_channels(path)
    assert found["train"].pipe and found["train"].class_id_labels
    assert found["train"].distribution == "ShardedByS3Key"
    assert not found["validation"].pipe and not found["validation"].class_id_labels


def test_a_missing_fifo_and_a_silent_writer_fail_within_the_timeout(tmp_path: Path):
    start = time.monotonic()
    with pytest.raises(ClientError, match=r"train_1 did not appear within 0.3 s.*create train_1"):
        pipe.open_fifo(tmp_path / "train_1", 0.3)
    os.mkfifo(tmp_path / "train_2")
    with pytest.raises(ClientError, match="train_2 was opened but nothing was written"):
        pipe.open_fifo(tmp_path / "train_2", 0.3)  # a FIFO that no writer ever opens
    assert time.monotonic() - start < 3


def test_sigterm_ends_the_wait_for_a_fifo_at_once(tmp_path: Path):
    """A stop request (SIGTERM sets the job's stop event) must not wait out pipe_wait_timeout
    (600 s by default): SageMaker kills the job 120 s after asking it to stop."""
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.monotonic()
    with pytest.raises(TrainingInterrupted, match="train_1"):
        pipe.open_fifo(tmp_path / "train_1", 600, stop)  # never created
    os.mkfifo(tmp_path / "train_2")
    with pytest.raises(TrainingInterrupted, match="train_2"):
        pipe.open_fifo(tmp_path / "train_2", 600, stop)  # created, never written
    assert time.monotonic() - start < 3


def test_a_fifo_written_before_and_after_the_reader_opens(tmp_path: Path):
    path = tmp_path / "train_0"
    os.mkfifo(path)
    payload = os.urandom(300_000)  # more than a pipe buffer: the writer blocks on the reader

    def write():
        with open(path, "wb") as out:
            out.write(payload)

    writer = threading.Thread(target=write)
    writer.start()
    with pipe.open_fifo(path, 5) as stream_in:
        assert stream_in.read() == payload
    writer.join(5)


def test_shuffle_buffer_looks_only_so_far_ahead():
    items = list(range(200))
    out = list(shards.shuffled(items, 16, random.Random(0)))
    assert sorted(out) == items and out != items
    assert all(item <= position + 16 for position, item in enumerate(out))
    assert list(shards.shuffled(items, 1, random.Random(0))) == items


def _source(tmp_path: Path, name: str = "train") -> stream.StreamSource:
    return stream.StreamSource(
        channels.Channel(name, input_mode="Pipe"),
        tmp_path,
        tmp_path / "scratch",
        manifest.LabelFormat(False, 3),
        records.PackSettings(36, False, (32, 32), 10**8),
        wait_timeout=2,
        max_bad=0.0,
    )


def _im2rec_stream(tmp_path: Path, count: int) -> bytes:
    jpeg = _jpeg(tmp_path)
    return b"".join(
        frame(mx.recordio.pack(mx.recordio.IRHeader(0, float(i % 3), i, 0), jpeg))
        for i in range(count)
    )


def test_workers_split_a_replicated_stream_by_content(tmp_path: Path):
    (tmp_path / "train_0").write_bytes(_im2rec_stream(tmp_path, 50))  # a file stands in
    shares = []
    for rank in (0, 1):
        count = stream.PassCount()
        found = stream.packed_records(_source(tmp_path), 0, count, workers=1, part=(rank, 2))
        shares.append({mx.recordio.unpack(record)[0].id for record in found})
        assert count.received == 50 and count.kept == len(shares[-1])
    assert not shares[0] & shares[1] and shares[0] | shares[1] == set(range(50))
    assert 15 <= len(shares[0]) <= 35  # the CRC-32 split is roughly even


@pytest.mark.parametrize(("expected", "batches"), [(20, 3), (80, 10)])
def test_workers_step_in_lockstep_whatever_their_share(tmp_path: Path, expected, batches):
    """Each of two workers runs ceil(num_training_samples / (2 x batch)) batches per epoch,
    repeating its last shard or leaving out the rest, and leaves no shard on disk."""
    data = _im2rec_stream(tmp_path, 50)

    def open_shard(shard: records.PackedSet, seed: int):
        reader = mx.recordio.MXIndexedRecordIO(str(shard.idx), str(shard.rec), "r")
        ids = [mx.recordio.unpack(reader.read_idx(k))[0].id for k in reader.keys]
        return [ids[i : i + 4] for i in range(0, len(ids), 4)]

    for rank in (0, 1):
        iterator = shards.PipeBatches(
            _source(tmp_path),
            open_shard,
            batch_size=4,
            shuffle_buffer=8,
            expected=expected,
            seed=1,
            workers=1,
            part=(rank, 2),
        )
        for index in range(2):
            (tmp_path / f"train_{index}").write_bytes(data)
            iterator.reset()
            assert len(list(iterator)) == batches
        assert not list((tmp_path / "scratch").glob("*.rec"))


def test_a_gzip_compressed_stream_is_inflated(tmp_path: Path):
    """CompressionType Gzip: one gzip member per S3 object, in case SageMaker streams them as
    they are stored."""
    data = _im2rec_stream(tmp_path, 6)
    (tmp_path / "train_0").write_bytes(gzip.compress(data[:100]) + gzip.compress(data[100:]))
    count = stream.PassCount()
    found = list(stream.packed_records(_source(tmp_path), 0, count, workers=1))
    assert [mx.recordio.unpack(r)[0].id for r in found] == list(range(6))


def test_streamed_validation_is_stored_as_file_mode_packs_it(tmp_path: Path):
    """The same images, streamed as a manifest or listed in a .lst: the same pixels (lossless,
    resized by the same code) and labels, so Pipe mode validates as File mode does."""
    paths = Paths(tmp_path / "opt_ml")
    paths.data_dir.mkdir(parents=True)
    cfg = parse_hyperparameters({"num_classes": "3", "image_shape": "3,32,32", "resize": "40"})
    entries = []
    for i in range(3):
        _jpeg(tmp_path, label=i, name=f"img/{i}.jpg")
        entries.append(Entry(i, (float(i),), f"img/{i}.jpg"))
    (paths.data_dir / "validation_0").write_bytes(
        b"".join(
            frame((tmp_path / e.relpath).read_bytes()) + frame(b"%d" % e.label) for e in entries
        )
    )
    channel = channels.Channel("validation", input_mode="Pipe")
    streamed = stream.pack_validation(
        pipe_mode.source(paths, cfg, channel, lossless=True), workers=2
    )
    file_mode = records.PackSettings(40, True, (32, 32), cfg.max_image_pixels)
    listed = records.pack(
        entries, tmp_path, name="v", settings=file_mode, cache_dir=tmp_path / "c", workers=2,
        max_bad=0.0,
    )  # fmt: skip

    def contents(packed):
        reader = mx.recordio.MXIndexedRecordIO(str(packed.idx), str(packed.rec), "r")
        unpacked = [mx.recordio.unpack(reader.read_idx(k)) for k in sorted(reader.keys)]
        return sorted((h.label, payload) for h, payload in unpacked)

    assert streamed.count == 3 and contents(streamed) == contents(listed)


def test_a_rec_file_wrapped_whole_is_refused_before_it_is_read(tmp_path: Path):
    (tmp_path / "train_0").write_bytes(frame(_im2rec_stream(tmp_path, 3)))
    with pytest.raises(ClientError, match="set RecordWrapperType to None"):
        list(stream.packed_records(_source(tmp_path), 0, stream.PassCount(), workers=1))


def test_a_pass_with_too_many_bad_images_fails(tmp_path: Path):
    jpeg = _jpeg(tmp_path)
    (tmp_path / "train_0").write_bytes(
        frame(jpeg) + frame(b"1") + frame(jpeg[:5] + b"\0" * 50) + frame(b"0")
    )
    with pytest.raises(ClientError, match="1 of 2 images of train_0 .* record 2"):
        list(stream.packed_records(_source(tmp_path), 0, stream.PassCount(), workers=1))
