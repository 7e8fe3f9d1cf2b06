"""Which records make each batch: ``ImageRecordIter``'s epoch composition, made deterministic.

MXNet (measured with 1.9.1, N=22, B=4, one part): an epoch reads its part of the file in
order, or in a fresh permutation of the part when shuffling; with ``round_batch=True`` the last
batch is filled from the next epoch's order, and the next epoch skips what was borrowed
(6, 5, 6, ... batches). So the records form one endless stream (permutation after
permutation) cut into batches, and an epoch ends with the batch that crosses its permutation's
end. ``round_batch=False`` (validation) reads the part once; the last batch is short. (MXNet's
``pad`` is no help: it reports 2 on the wrapped training batch and 0 on the padded validation
one; the loader reports 0 and the true padding.)

Partitioning (``num_parts``/``part_index``) takes contiguous ``ceil(N/parts)`` slices of the
index, as dmlc does. Where this differs from MXNet, on purpose: with several parts MXNet gives
a short part fewer batches (with N=22, B=4, 3 parts: 2, 2 and 1 or 2 batches, depending on
its prefetch thread's timing), which would deadlock distributed data parallel training; here
every part runs ``ceil(ceil(N/parts)/B)`` batches per epoch, each wrapping round its own
stream. The permutations are numpy's, seeded by (seed, part, pass), not dmlc's generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from train.errors import ClientError


@dataclass(frozen=True)
class Slot:
    """One sample of a batch: the record (position in the index) and its place in the stream
    (which seeds its augmentation, so results do not depend on worker count)."""

    record: int
    stream: int


def part_range(count: int, num_parts: int, part_index: int) -> range:
    """The records of one part: dmlc's contiguous ``ceil(count/num_parts)`` slices."""
    if not 0 <= part_index < num_parts:
        raise ValueError(f"part_index {part_index} is not in 0..{num_parts - 1}")
    step = -(-count // num_parts)
    part = range(min(step * part_index, count), min(step * (part_index + 1), count))
    if not part:
        raise ClientError(
            f"{count} images cannot be split between {num_parts} workers (part {part_index} "
            f"would be empty): give at least {num_parts * step - step + 1} images"
        )
    return part


@dataclass(frozen=True)
class EpochPlan:
    """The batches of every epoch of one part, as record positions."""

    count: int
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    num_parts: int = 1
    part_index: int = 0
    round_batch: bool = True

    @property
    def part(self) -> range:
        return part_range(self.count, self.num_parts, self.part_index)

    def _records(self, number: int) -> np.ndarray:
        """The part's records in pass ``number``'s order."""
        part = np.arange(self.part.start, self.part.stop)
        if not self.shuffle:
            return part
        rng = np.random.default_rng([self.seed, self.part_index, number])
        return part[rng.permutation(len(part))]

    def _start(self, epoch: int) -> int:
        """The stream position where ``epoch`` starts."""
        if self.num_parts > 1:
            return epoch * self.steps(0) * self.batch_size
        start = 0
        for e in range(epoch):
            start += self._steps_from(start, e) * self.batch_size
        return start

    def _steps_from(self, start: int, epoch: int) -> int:
        n = len(self.part)
        return max(1, -(-((epoch + 1) * n - start) // self.batch_size))

    def steps(self, epoch: int) -> int:
        """How many batches ``epoch`` has (the same on every part when there are several)."""
        n, b = len(self.part), self.batch_size
        if not self.round_batch:
            return -(-n // b)
        if self.num_parts > 1:
            largest = -(-self.count // self.num_parts)
            return -(-largest // b)
        return self._steps_from(self._start(epoch), epoch)

    def batches(self, epoch: int) -> Iterator[list[Slot]]:
        """The batches of ``epoch``: lists of ``batch_size`` slots (the last may be short
        without ``round_batch``)."""
        n, b = len(self.part), self.batch_size
        if not self.round_batch:
            order = self._records(epoch)
            for i in range(0, n, b):
                yield [Slot(int(r), epoch * n + i + k) for k, r in enumerate(order[i : i + b])]
            return
        position = self._start(epoch)
        cache: dict[int, np.ndarray] = {}
        for _ in range(self.steps(epoch)):
            slots = []
            for p in range(position, position + b):
                number = p // n
                if number not in cache:
                    cache[number] = self._records(number)
                slots.append(Slot(int(cache[number][p % n]), p))
            position += b
            yield slots
