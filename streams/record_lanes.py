"""Fetched records of one topic gathered into the worker's batches, past Faust's streams.

Faust hands every fetched message to an agent's stream one at a time: a message object, a stream event, a
queue, sensors and an acknowledgement for each. With one event a message that cost the Faust process about
55 µs an event, and it, not ingestion, bounded the worker (11,000 events/s against 285,000 for a plain
consumer). The worker's consumer (``streams.compat.faust``) instead puts each partition's fetched records into
its topic's :class:`RecordLane` as one list; the worker takes batches from the lane and acknowledges them in
bulk once written.

A batch closes at ``max_records`` records, ``max_bytes`` bytes of values, or ``max_wait_s`` after its oldest
record arrived, whichever comes first (Faust's ``take``, bounded by bytes as well). The lane holds at most one
full batch: while one waits to be taken, :meth:`RecordLane.put` waits, and so does the consumer's fetching
(backpressure). A rebalance :meth:`~RecordLane.clear`\\ s the lane: what waits there was never handed on, is
not acknowledged, and is read again by whoever owns the partition next; a batch taken before and handed on
after belongs to an older :attr:`~RecordLane.generation`, which the worker drops.

>>> import asyncio
>>> from types import SimpleNamespace as Record
>>> async def two_batches():
...     lane = RecordLane(max_records=3, max_bytes=1 << 20, max_wait_s=0.01)
...     await lane.put([Record(offset=i, serialized_value_size=10) for i in range(4)])
...     first, second = await lane.take(), await lane.take()  # the second after 0.01 s: one record only
...     return [r.offset for r in first.records], [r.offset for r in second.records]
>>> asyncio.run(two_batches())
([0, 1, 2], [3])
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, NamedTuple, Protocol


class FetchedRecord(Protocol):
    """What a lane reads of a fetched record (aiokafka's ``ConsumerRecord``)."""

    @property
    def offset(self) -> int: ...

    @property
    def serialized_value_size(self) -> int: ...


class RecordBatch(NamedTuple):
    """Records taken from a lane together, in the order they were fetched (each partition's in offset order)."""

    records: list[Any]
    generation: int  # the lane's generation when they were taken (a rebalance starts a new one)


#: What :meth:`RecordLane.put` answers when the records are in the lane (a rebalance may drop them instead).
PUT = object()


class RecordLane:
    """Fetched records of one topic, waiting to be taken as batches (see the module docstring)."""

    def __init__(self, *, max_records: int, max_bytes: int, max_wait_s: float) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_wait_s = max_wait_s
        self.generation = 0
        self._records: list[Any] = []
        self._sizes: list[int] = []
        self._bytes = 0
        self._arrivals: deque[list[float]] = deque()  # [records, loop time] of each put still waiting
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()

    def __len__(self) -> int:
        return len(self._records)

    def _full(self) -> bool:
        return len(self._records) >= self.max_records or self._bytes >= self.max_bytes

    async def put(self, records: Sequence[FetchedRecord]) -> object:
        """Add one partition's fetched records; wait first while a full batch waits to be taken.

        :data:`PUT` once they are in; None when a rebalance cleared the lane meanwhile (they are not).
        """
        generation = self.generation
        while self._full():
            self._taken.clear()
            await self._taken.wait()
            if generation != self.generation:
                return None
        if not records:
            return PUT
        self._arrivals.append([len(records), asyncio.get_running_loop().time()])
        sizes = [max(r.serialized_value_size, 0) for r in records]
        self._records.extend(records)
        self._sizes.extend(sizes)
        self._bytes += sum(sizes)
        self._arrived.set()
        return PUT

    async def take(self) -> RecordBatch:
        """The next batch, once it is full or its oldest record has waited ``max_wait_s``."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._records:
                self._arrived.clear()
                await self._arrived.wait()
            generation = self.generation
            remaining = self._arrivals[0][1] + self.max_wait_s - loop.time()
            while remaining > 0 and not self._full() and generation == self.generation:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                if generation == self.generation:
                    remaining = self._arrivals[0][1] + self.max_wait_s - loop.time()
            if generation == self.generation and self._records:
                return RecordBatch(self._cut(), generation)

    def _cut(self) -> list[Any]:
        """Remove and return the oldest records that fit a batch (one at least)."""
        end = min(len(self._records), self.max_records)
        if self._bytes > self.max_bytes:
            within = sum(1 for total in accumulate(self._sizes[:end]) if total <= self.max_bytes)
            end = max(1, within)
        batch = self._records[:end]
        taken = self._sizes[:end]
        del self._records[:end], self._sizes[:end]
        self._bytes -= sum(taken)
        while end:  # what is left waits from when it arrived
            arrival = self._arrivals[0]
            if arrival[0] > end:
                arrival[0] -= end
                break
            end -= int(arrival[0])
            self._arrivals.popleft()
        self._taken.set()
        return batch

    def clear(self) -> None:
        """Drop the waiting records (a rebalance: they were not handed on) and start a new generation."""
        self._records.clear()
        self._sizes.clear()
        self._arrivals.clear()
        self._bytes = 0
        self.generation += 1
        self._taken.set()
        self._arrived.set()
