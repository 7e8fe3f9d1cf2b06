"""The PyTorch engine's ``ImageRecordIter``: batches of uint8 NCHW pixels and float labels from
a packed ``.rec`` (+ ``.idx``), without MXNet.

Records come from :mod:`train.inputs.recordio`, batches from :mod:`.plan`, pixels from
:mod:`.augment` (OpenCV, the iterator's steps and arithmetic). Pixels stay raw 0-255 uint8: the
network normalises inside its graph, and uint8 is a quarter of float32's bytes to move.

Decoding runs in ``workers`` threads (OpenCV releases the GIL; the default) or worker
processes (a torch ``DataLoader``); each batch is made by one worker. A batch's random numbers
are seeded by (seed, part, the batch's place in the stream), so batches do not depend on the
worker count or kind. Pipe mode reads each shard as a training set of its own
(:func:`shard_opener`).
On a GPU, training batches can instead be decoded and augmented there
(:mod:`train.engines.torch.gpu`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from train.engines.torch import augment
from train.engines.torch.plan import EpochPlan, Slot
from train.errors import ClientError
from train.inputs import recordio


class Batch(NamedTuple):
    """``data``: (B, C, H, W) uint8; ``label``: (B,) or (B, label_width) float32; ``pad``: how
    many trailing samples are filler (only a validation epoch's last batch has any)."""

    data: torch.Tensor
    label: torch.Tensor
    pad: int


class RecordFile:
    """Random access to a ``.rec``'s records: offsets from its ``.idx``, or from one scan of a
    file that has none. Each thread opens its own handle (and so does each process)."""

    def __init__(self, rec: Path, idx: Path | None):
        self.rec = Path(rec)
        if idx is not None and Path(idx).is_file():
            self.offsets = [offset for _, offset in recordio.read_index(Path(idx))]
            self.indexed = True
        else:
            self.offsets = _scan_offsets(self.rec)
            self.indexed = False
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, position: int) -> bytes:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = open(self.rec, "rb")  # noqa: SIM115 - per thread
        return recordio.read_at(handle, self.offsets[position], str(self.rec))

    def __getstate__(self) -> dict:
        return {"rec": self.rec, "offsets": self.offsets, "indexed": self.indexed}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


def _scan_offsets(rec: Path) -> list[int]:
    offsets, where = [], 0
    with open(rec, "rb") as stream:
        while True:
            stream.seek(where)
            if next(recordio.read_records(stream, str(rec)), None) is None:
                return offsets
            offsets.append(where)
            where = stream.tell()


def labels_of(header: recordio.IRHeader, width: int) -> np.ndarray:
    """The record's labels as ``ImageRecordIter`` reads them with ``label_width``."""
    if width == 1:
        return np.array([header.label if header.flag == 0 else 0.0], np.float32)
    if header.flag != width:
        raise ClientError(
            f"record {header.id} has {header.flag or 1} label(s) but the job expects {width} "
            f"(multi_label with num_classes={width}): repack the data with one label per class"
        )
    return np.asarray(header.label, np.float32)


@dataclass(frozen=True)
class BatchMaker:
    """Decodes and augments one batch of slots; picklable, for worker processes."""

    records: RecordFile
    settings: augment.AugmentSettings
    label_width: int
    seed: int
    part_index: int
    batch_size: int

    def __call__(self, slots: list[Slot]) -> tuple[np.ndarray, np.ndarray, int]:
        channels, height, width = self.settings.image_shape
        data = np.zeros((self.batch_size, channels, height, width), np.uint8)
        labels = np.zeros((self.batch_size, self.label_width), np.float32)
        for k, (slot, draws) in enumerate(zip(slots, self.draws(slots), strict=True)):
            header, payload = recordio.unpack(self.records.read(slot.record))
            labels[k] = labels_of(header, self.label_width)
            image = augment.decode(payload, channels)
            data[k] = augment.augment(image, self.settings, draws)
        return data, labels, self.batch_size - len(slots)

    def draws(self, slots: list[Slot]) -> list[augment.Draws]:
        """The random numbers of a batch's samples, seeded by where the batch starts in the
        stream (one generator per batch: seeding one per image costs a tenth of the time)."""
        rng = np.random.default_rng([self.seed, self.part_index, slots[0].stream])
        return [augment.draw(self.settings, rng) for _ in slots]


class _Keys(torch.utils.data.Sampler):
    """The batch numbers of the epoch set before iterating (a DataLoader's sampler)."""

    def __init__(self, plan: EpochPlan):
        self.plan, self.epoch = plan, 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in range(self.plan.steps(self.epoch)))

    def __len__(self) -> int:
        return self.plan.steps(self.epoch)


class _EpochBatches(torch.utils.data.Dataset):
    """(epoch, batch number) -> batch, the plan recomputed in each worker process."""

    def __init__(self, plan: EpochPlan, maker: BatchMaker):
        self.plan, self.maker, self._epoch, self._batches = plan, maker, None, []

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
        epoch, number = key
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, list(self.plan.batches(epoch))
        return self.maker(self._batches[number])


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    torch.set_num_threads(1)


class RecordLoader:
    """Batches of a packed set, one epoch per :meth:`epoch` call.

    Args:
        rec, idx: the packed files (``idx`` may be missing: then no shuffling, as MXNet).
        settings: what the iterator does to each image (:class:`augment.AugmentSettings`).
        training: ``round_batch`` and shuffling (with an index) as the product's training
            iterator; otherwise every record once, in file order, the last batch padded.
        workers: decoding threads or processes; ``processes`` picks a torch ``DataLoader``.
    """

    def __init__(
        self,
        rec: Path,
        idx: Path | None,
        settings: augment.AugmentSettings,
        *,
        batch_size: int,
        label_width: int = 1,
        training: bool,
        seed: int = 0,
        num_parts: int = 1,
        part_index: int = 0,
        workers: int = 2,
        processes: bool = False,
        prefetch: int = 4,
        pin_memory: bool | None = None,
    ):
        self.records = RecordFile(rec, idx)
        if not len(self.records):
            raise ClientError(f"{rec} holds no records")
        parts = (num_parts, part_index) if training else (1, 0)
        self.plan = EpochPlan(
            len(self.records),
            batch_size,
            shuffle=training and self.records.indexed,
            seed=seed,
            num_parts=parts[0],
            part_index=parts[1],
            round_batch=training,
        )
        self.maker = BatchMaker(self.records, settings, label_width, seed, parts[1], batch_size)
        self.label_width, self.workers, self.processes = label_width, max(1, workers), processes
        self.prefetch = prefetch
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._loader: torch.utils.data.DataLoader | None = None

    def steps(self, epoch: int) -> int:
        """Batches in ``epoch`` (equal on every part when training is partitioned)."""
        return self.plan.steps(epoch)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of ``epoch`` (0-based: the shuffle and the wrap-around depend on it)."""
        made = self._from_processes(epoch) if self.processes else self._from_threads(epoch)
        for data, labels, pad in made:
            yield self._batch(data, labels, pad)

    def _batch(self, data, labels, pad) -> Batch:
        data, labels = torch.as_tensor(data), torch.as_tensor(labels)
        if self.label_width == 1:
            labels = labels[:, 0]
        if self.pin_memory and not data.is_pinned():
            data, labels = data.pin_memory(), labels.pin_memory()
        return Batch(data, labels, int(pad))

    def _from_threads(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool:
            pending: deque = deque()
            batches = self.plan.batches(epoch)
            try:
                while True:
                    while len(pending) < self.workers + self.prefetch:
                        if (slots := next(batches, None)) is None:
                            break
                        pending.append(pool.submit(self.maker, slots))
                    if not pending:
                        return
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _from_processes(self, epoch: int) -> Iterator:
        if self._loader is None:
            self._keys = _Keys(self.plan)
            self._loader = torch.utils.data.DataLoader(
                _EpochBatches(self.plan, self.maker),
                sampler=self._keys,
                batch_size=None,
                num_workers=self.workers,
                pin_memory=self.pin_memory,
                worker_init_fn=_worker_init,
                persistent_workers=True,
                prefetch_factor=max(1, self.prefetch // self.workers + 1),
            )
        self._keys.epoch = epoch
        yield from self._loader


def shard_opener(
    settings: augment.AugmentSettings, *, batch_size: int, label_width: int, workers: int
) -> Callable[[object, int], Iterable[Batch]]:
    """Pipe mode's ``open_shard`` for :class:`train.inputs.shards.PipeBatches`: a shard (``.rec``
    + ``.idx``) read as one training epoch of its own, shuffled and augmented with the seed
    given, its last batch wrapped round within the shard, as File mode's iterator does."""

    def open_shard(shard, seed: int) -> Iterable[Batch]:
        loader = RecordLoader(
            shard.rec,
            shard.idx,
            settings,
            batch_size=batch_size,
            label_width=label_width,
            training=True,
            seed=seed,
            workers=workers,
        )
        return loader.epoch(0)

    return open_shard
