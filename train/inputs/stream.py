"""A Pipe-mode channel's pass as packed records, split between hosts; validation read once.

Whichever the stream holds is told from its first record: im2rec records (a ``.rec`` channel)
are passed on as they are; an augmented manifest's images are decoded, resized and re-encoded
in worker threads as File mode packs them (:func:`records.prepare_image`), with their labels in
the record header. :mod:`train.inputs.shards` turns the training passes into batches.
Validation is read once (``validation_0``) into one local file, stored as File mode stores it,
so every epoch validates with File mode's evaluation transform on a known number of images.

Several hosts with ``FullyReplicated`` each see every record, in an order that may differ per
host, so a worker keeps the records whose CRC-32 falls on its rank: a rule that does not depend
on the order. With ``ShardedByS3Key`` each host trains on every record it receives (whole S3
objects). Either way each worker runs ``ceil(num_training_samples / (hosts x batch))`` batches
per epoch (repeating its last shard if its share falls short, leaving out the rest if it runs
over), so that synchronous parameter-server training steps in lockstep.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from train import records
from train.errors import ClientError
from train.inputs import manifest, pipe, recordio
from train.inputs.channels import Channel

logger = logging.getLogger(__name__)

MAX_NAMED = 10


@dataclass(frozen=True)
class StreamSource:
    """A Pipe-mode channel and how its records become packed records."""

    channel: Channel
    data_dir: Path
    scratch: Path  # where shards (training) or the packed file (validation) go
    labels: manifest.LabelFormat
    settings: records.PackSettings  # how manifest images are stored, as File mode packs them
    wait_timeout: float
    max_bad: float
    stop: threading.Event | None = None  # SIGTERM: ends a wait for a FIFO at once

    def name(self, index: int) -> str:
        return pipe.fifo_path(self.data_dir, self.channel.name, index).name


@dataclass
class PassCount:
    """What one pass of a stream carried."""

    received: int = 0  # images in the stream
    kept: int = 0  # images for this worker
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _mine(data: bytes, part: tuple[int, int]) -> bool:
    index, parts = part
    return parts == 1 or zlib.crc32(data) % parts == index


def _im2rec_records(
    frames: Iterable[bytes], name: str, source: StreamSource, part, count: PassCount
) -> Iterator[bytes]:
    for number, record in enumerate(frames):
        if not recordio.is_packed_record(record):
            raise ClientError(
                f"record {number} of {name} is not an im2rec record: {manifest.describe(record)}"
                f". A .rec channel must hold only records made by im2rec"
            )
        width = recordio.label_width(record)
        if width != source.labels.width:
            raise ClientError(
                f"record {number} of {name} has {width} label(s) but multi_label="
                f"{int(source.labels.multi_label)} and num_classes={source.labels.num_classes} "
                f"expect {source.labels.width}"
            )
        count.received += 1
        if _mine(record, part):
            count.kept += 1
            yield record


def _packed(item, name: str, count: PassCount, settings: records.PackSettings) -> bytes | None:
    number, labels, future = item
    encoded, problem = future.result()
    if encoded is not None:
        count.kept += 1
        return records.pack_record(number // 2, labels, encoded)
    if problem.startswith("too small"):
        h, w = settings.min_size
        raise ClientError(
            f"record {number} of {name} is {problem[len('too small: ') :]}, smaller than "
            f"image_shape {h}x{w}. Set 'resize' to at least {max(h, w)} or remove the image"
        )
    count.skipped.append((f"record {number}", problem))
    return None


def _manifest_records(
    frames: Iterable[bytes], name: str, source: StreamSource, part, workers: int, count
) -> Iterator[bytes]:
    """Decode and re-encode images in ``workers`` threads, a few per thread in flight."""
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for number, image, labels in manifest.pair_records(frames, name, source.labels):
            count.received += 1
            if not _mine(image, part):
                continue
            future = pool.submit(records.prepare_image, image, source.settings)
            pending.append((number, labels, future))
            while len(pending) > 4 * workers or (pending and pending[0][2].done()):
                if (packed := _packed(pending.popleft(), name, count, source.settings)) is not None:
                    yield packed
        while pending:
            if (packed := _packed(pending.popleft(), name, count, source.settings)) is not None:
                yield packed


def packed_records(
    source: StreamSource, index: int, count: PassCount, *, workers: int, part=(0, 1)
) -> Iterator[bytes]:
    """This worker's packed records from pass ``index`` of the channel, whichever it holds:
    im2rec records, or an augmented manifest's image and label records."""
    name = source.name(index)
    path = pipe.fifo_path(source.data_dir, source.channel.name, index)
    with contextlib.ExitStack() as stack:
        fifo = stack.enter_context(pipe.open_fifo(path, source.wait_timeout, source.stop))
        data = stack.enter_context(pipe.inflated(fifo))
        if data.peek(12)[8:12] == recordio.MAGIC_BYTES:  # type: ignore[attr-defined]
            raise ClientError(
                f"record 0 of {name} is a whole RecordIO file wrapped in one record: for a "
                f"channel of .rec files set RecordWrapperType to None (RecordIO is for "
                f"augmented manifests)"
            )
        frames = recordio.read_records(data, name)
        first = next(frames, None)
        if first is None:
            raise ClientError(f"{name} carried no images: check the channel's S3 data")
        frames = itertools.chain([first], frames)
        if recordio.is_packed_record(first):
            yield from _im2rec_records(frames, name, source, part, count)
        elif recordio.is_image(first) or source.channel.record_wrapper.lower() == "recordio":
            yield from _manifest_records(frames, name, source, part, workers, count)
        else:
            raise ClientError(
                f"record 0 of {name} is neither an image nor an im2rec record: "
                f"{manifest.describe(first)}. A Pipe-mode channel holds .rec files made by im2rec "
                f"(RecordWrapperType None) or an augmented manifest: {manifest.ATTRIBUTE_HINT}"
            )
    check_pass(name, count, source.max_bad)


def check_pass(name: str, count: PassCount, max_bad: float) -> None:
    """Fail on an empty pass or too many unusable images; warn about the skipped ones."""
    if count.received == 0:
        raise ClientError(f"{name} carried no images: check the channel's S3 data")
    if not count.skipped:
        return
    listed = "; ".join(f"{what} ({why})" for what, why in count.skipped[:MAX_NAMED])
    share = len(count.skipped) / count.received
    if share > max_bad:
        raise ClientError(
            f"{len(count.skipped)} of {count.received} images of {name} ({share:.1%}) cannot be "
            f"used, more than max_bad_image_fraction={max_bad}: {listed}"
        )
    logger.warning(
        "Skipped %d of %d images of %s: %s", len(count.skipped), count.received, name, listed
    )


def pack_validation(source: StreamSource, *, workers: int) -> records.PackedSet:
    """Read ``<channel>_0`` once into one packed file on scratch (File mode's storage)."""
    source.scratch.mkdir(parents=True, exist_ok=True)
    rec = source.scratch / f"{source.channel.name}.rec"
    idx = rec.with_suffix(".idx")
    count = PassCount()
    with recordio.IndexedWriter(idx, rec) as writer:
        for number, record in enumerate(packed_records(source, 0, count, workers=workers)):
            writer.write(number, record)
    if count.kept == 0:
        raise ClientError(f"{source.name(0)} carried no usable images")
    logger.info("Read %d %s images from %s", count.kept, source.channel.name, source.name(0))
    return records.PackedSet(rec, idx, count.kept, count.skipped)
