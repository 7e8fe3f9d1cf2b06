"""Training batches from a Pipe-mode channel: a shuffle buffer, bounded shards, ImageRecordIter.

``reset()`` starts the next pass: a producer thread reads the next FIFO
(:func:`stream.packed_records`), shuffles within ``pipe_shuffle_buffer`` records and writes
shards of about that many records (a whole number of batches; the first ones smaller, so
training starts once the buffer is full) to local scratch; iterating
yields the batches of each shard from ``open_shard`` (File mode's ``ImageRecordIter``, with a
fresh augmentation seed per shard) and deletes the shard once read. The queue between the two
holds one shard, so at most four exist at once (one being read, the next being opened, one
queued, one being written) and a slow consumer slows the reading of the FIFO instead of filling
the disk.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from train import records
from train.errors import ClientError
from train.inputs import recordio
from train.inputs.channels import FULLY_REPLICATED
from train.inputs.stream import PassCount, StreamSource, packed_records

logger = logging.getLogger(__name__)

_END = object()


def shuffled(items: Iterable, size: int, rng: random.Random) -> Iterator:
    """``items`` in a random order that only looks ``size`` items ahead (bounded memory)."""
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        k = rng.randrange(size)
        yield buffer[k]
        buffer[k] = item
    rng.shuffle(buffer)
    yield from buffer


class _ShardWriter:
    """Writes records into numbered ``.rec`` + ``.idx`` files of ``size`` records. The first
    holds ``first_size`` (one batch) and each next one twice as many up to ``size``: training
    starts as soon as the shuffle buffer is full, and each shard is written while the one
    before is read."""

    def __init__(self, prefix: Path, size: int, first_size: int):
        self.prefix, self.size, self.first_size, self.number = prefix, size, first_size, 0
        self.writer, self.count = None, 0

    def add(self, record: bytes) -> records.PackedSet | None:
        if self.writer is None:
            self.rec = self.prefix.with_name(f"{self.prefix.name}-{self.number}.rec")
            self.idx = self.rec.with_suffix(".idx")
            self.writer = recordio.IndexedWriter(self.idx, self.rec)
        self.writer.write(self.count, record)
        self.count += 1
        limit = min(self.size, self.first_size << min(self.number, 30))
        return self.close() if self.count == limit else None

    def close(self) -> records.PackedSet | None:
        if self.writer is None:
            return None
        self.writer.close()
        done = records.PackedSet(self.rec, self.idx, self.count)
        self.writer, self.count, self.number = None, 0, self.number + 1
        return done


def discard(packed: records.PackedSet | None) -> None:
    """Delete a shard that has been read."""
    if packed is not None:
        packed.rec.unlink(missing_ok=True)
        packed.idx.unlink(missing_ok=True)


class PipeBatches:
    """The training iterator of a Pipe-mode channel: one FIFO per ``reset()`` (epoch)."""

    def __init__(
        self,
        source: StreamSource,
        open_shard: Callable[[records.PackedSet, int], Iterable],
        *,
        batch_size: int,
        shuffle_buffer: int,
        expected: int,
        seed: int,
        workers: int,
        part: tuple[int, int] = (0, 1),
    ):
        self.source, self.open_shard, self.part, self.workers = source, open_shard, part, workers
        self.expected, self.shuffle_buffer = expected, shuffle_buffer
        self.batch_size = batch_size
        self.shard_size = max(1, -(-shuffle_buffer // batch_size)) * batch_size
        # several workers step in lockstep: the same number of batches each (see stream.py)
        self.max_batches = -(-expected // (part[1] * batch_size)) if part[1] > 1 else None
        self.rng = random.Random(seed)
        self.next_index = 0
        self.last_received: int | None = None
        self._pass: _Pass | None = None

    def reset(self) -> None:
        """Start reading the next FIFO."""
        self._pass = _Pass(self, self.next_index)
        self.next_index += 1

    def __iter__(self) -> Iterator:
        current, self._pass = self._pass, None
        if current is None:
            raise RuntimeError("reset() starts a pass")
        batches, reader = 0, self._read(current)
        try:
            for batch in reader:
                yield batch
                batches += 1
                if self.max_batches is not None and batches >= self.max_batches:
                    break
            reader.close()
            current.finish()
            self._check(current)
            while self.max_batches is not None and batches < self.max_batches:
                for batch in self._open(current.last):  # a short share: its last shard again
                    yield batch
                    batches += 1
                    if batches >= self.max_batches:
                        break
        finally:
            reader.close()
            current.close()

    def _open(self, shard: records.PackedSet) -> Iterable:
        return self.open_shard(shard, self.rng.randrange(2**31))

    def _read(self, current: _Pass) -> Iterator:
        """The batches of each shard in turn. Creating an ``ImageRecordIter`` takes tens to
        hundreds of milliseconds (it decodes its first batches), so the next shard's iterator
        is created in another thread as soon as that shard is written: a shard boundary does
        not stall training."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipe-open") as opener:

            def opening(shard: records.PackedSet) -> Future:
                return opener.submit(self.open_shard, shard, self.rng.randrange(2**31))

            shard = current.take(block=True)
            pending = opening(shard) if shard is not None else None
            while shard is not None and pending is not None:
                opened, ahead = pending.result(), None
                for batch in opened:
                    if ahead is None and (ready := current.take(block=False)) is not None:
                        ahead = ready, opening(ready)
                    yield batch
                if ahead is None and (ready := current.take(block=True)) is not None:
                    ahead = ready, opening(ready)
                if ahead is None:
                    return  # the pass ended: its last shard stays for a short share
                opened = None
                current.release(shard)
                shard, pending = ahead

    def _check(self, current: _Pass) -> None:
        name, count = self.source.name(current.index), current.count
        if count.kept == 0:
            raise ClientError(
                f"this host received none of the {count.received} training images of {name}: "
                f"with ShardedByS3Key each host gets whole S3 objects, so give at least as many "
                f"files as hosts, or use FullyReplicated"
            )
        replicated = self.source.channel.distribution == FULLY_REPLICATED
        if replicated and count.received != self.expected and count.received != self.last_received:
            logger.warning(
                "num_training_samples=%d but %s carried %d images: %s",
                self.expected,
                name,
                count.received,
                "each host trains num_training_samples / hosts images per epoch"
                if self.max_batches is not None
                else f"the epoch covers the {count.received} that arrived",
            )
        if not replicated:
            logger.info("%s: this host received %d training images", name, count.received)
        elif self.part[1] > 1:
            logger.info(
                "%s: %d training images, %d for this host (CRC-32 share %d of %d)",
                name,
                count.received,
                count.kept,
                self.part[0],
                self.part[1],
            )
        self.last_received = count.received


class _Pass:
    """One pass over one FIFO: the producer thread and the queue of written shards."""

    def __init__(self, owner: PipeBatches, index: int):
        self.owner, self.index = owner, index
        self.count = PassCount()
        self.enough = threading.Event()  # enough batches: read on, only to count
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.ended = False
        self.held: list[records.PackedSet] = []  # taken and not yet released
        seed = owner.rng.randrange(2**31)
        self.thread = threading.Thread(
            target=self._produce, args=(seed,), name=f"pipe-{index}", daemon=True
        )
        self.thread.start()

    def _produce(self, seed: int) -> None:
        owner = self.owner
        prefix = owner.source.scratch / owner.source.name(self.index)
        writer = _ShardWriter(prefix, owner.shard_size, owner.batch_size)
        try:
            owner.source.scratch.mkdir(parents=True, exist_ok=True)
            stream = packed_records(
                owner.source, self.index, self.count, workers=owner.workers, part=owner.part
            )
            for record in shuffled(stream, owner.shuffle_buffer, random.Random(seed)):
                if not self.enough.is_set() and (shard := writer.add(record)) is not None:
                    self.queue.put(shard)
            last = writer.close()
            if self.enough.is_set():
                discard(last)
            elif last is not None:
                self.queue.put(last)
            self.queue.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            discard(writer.close())
            self.queue.put(exc)

    def take(self, *, block: bool) -> records.PackedSet | None:
        """The next written shard; None once the pass has ended (or, without ``block``, when
        none is ready yet)."""
        if self.ended:
            return None
        try:
            item = self.queue.get(block=block)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            self.ended = True
            raise item
        if item is _END:
            self.ended = True
            return None
        self.held.append(item)
        return item

    @property
    def last(self) -> records.PackedSet | None:
        return self.held[-1] if self.held else None

    def release(self, shard: records.PackedSet) -> None:
        """Delete a shard that has been read."""
        self.held.remove(shard)
        discard(shard)

    def finish(self) -> None:
        """Let the producer read the rest of the stream (to count it) and wait for it."""
        self.enough.set()
        while not self.ended:
            if (shard := self.take(block=True)) is not None:
                self.release(shard)
        self.thread.join()

    def close(self) -> None:
        """Delete every shard still held."""
        for shard in list(self.held):
            self.release(shard)
