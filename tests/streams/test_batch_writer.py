"""The batch writer acknowledges a batch only once it is written, in order, and never a failed or stale one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from driftloop.streams.batch_writer import BatchWriter
from driftloop.streams.record_lanes import RecordBatch, RecordLane


def batch(offsets: range, generation: int = 0) -> RecordBatch:
    records = [SimpleNamespace(topic="t", partition=0, offset=o) for o in offsets]
    return RecordBatch(records, generation)


class Recorder:
    """What the writer did: writes started, acknowledgements, written offsets, failures."""

    def __init__(self) -> None:
        self.started: list[list[int]] = []
        self.acknowledged: list[list[int]] = []
        self.written: list[int] = []
        self.failures = 0
        self.gates: dict[int, asyncio.Event] = {}  # first offset -> what its write waits for
        self.fail: set[int] = set()

    async def handle(self, records: Sequence[Any]) -> None:
        first = records[0].offset
        self.started.append([r.offset for r in records])
        if first in self.gates:
            await self.gates[first].wait()
        if first in self.fail:
            raise RuntimeError("ClickHouse refused the batch")

    def writer(self, lane: RecordLane, depth: int = 2) -> BatchWriter:
        return BatchWriter(
            self.handle,
            lane,
            lambda records: self.acknowledged.append([r.offset for r in records]),
            lambda coordinates: self.written.extend(o for _, _, o in coordinates),
            self.count_failure,
            depth=depth,
        )

    def count_failure(self) -> None:
        self.failures += 1


def lane() -> RecordLane:
    return RecordLane(max_records=10, max_bytes=1 << 20, max_wait_s=0.1)


def test_a_batch_is_acknowledged_only_once_written_and_a_failed_one_never() -> None:
    async def scenario() -> Recorder:
        seen = Recorder()
        seen.gates[0] = asyncio.Event()
        seen.fail.add(3)
        writer = seen.writer(lane())
        await writer.put(batch(range(0, 3)))
        await writer.put(batch(range(3, 6)))
        await asyncio.sleep(0.05)
        assert seen.started == [[0, 1, 2]] and seen.acknowledged == []  # being written: not acknowledged
        seen.gates[0].set()
        await writer.put(batch(range(6, 8)))
        await asyncio.wait_for(writer.drain(), 2)
        await writer.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen.started == [[0, 1, 2], [3, 4, 5], [6, 7]]  # in order
    assert seen.acknowledged == [[0, 1, 2], [6, 7]]  # the failed batch stays unacknowledged ...
    assert seen.written == [0, 1, 2, 6, 7] and seen.failures == 1  # ... and unwritten in the broker's watch


def test_depth_bounds_the_batches_in_flight() -> None:
    async def scenario() -> None:
        seen = Recorder()
        seen.gates[0] = asyncio.Event()
        writer = seen.writer(lane(), depth=2)
        await writer.put(batch(range(0, 1)))
        await writer.put(batch(range(1, 2)))
        third = asyncio.create_task(writer.put(batch(range(2, 3))))
        await asyncio.sleep(0.05)
        assert not third.done()  # the agent stops taking from its lane: backpressure
        seen.gates[0].set()
        await asyncio.wait_for(third, 2)
        await asyncio.wait_for(writer.drain(), 2)
        assert seen.acknowledged == [[0], [1], [2]]
        await writer.close()

    asyncio.run(scenario())


def test_a_batch_taken_before_a_rebalance_is_dropped_unwritten() -> None:
    async def scenario() -> Recorder:
        seen = Recorder()
        seen.gates[0] = asyncio.Event()
        records = lane()
        writer = seen.writer(records, depth=1)
        await writer.put(batch(range(0, 2)))
        stale = asyncio.create_task(writer.put(batch(range(2, 4))))  # waits for the one slot
        await asyncio.sleep(0.02)
        records.clear()  # the rebalance: the partitions may go to another worker
        seen.gates[0].set()  # the batch handed on before it is still written (the rebalance waits for it)
        await asyncio.wait_for(stale, 2)
        await writer.put(batch(range(2, 4), generation=records.generation))  # read again after the rebalance
        await asyncio.wait_for(writer.drain(), 2)
        await writer.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen.started == [[0, 1], [2, 3]] and seen.acknowledged == [[0, 1], [2, 3]]


def test_a_frozen_writer_writes_what_it_has_and_acknowledges_nothing() -> None:
    async def scenario() -> Recorder:
        seen = Recorder()
        seen.gates[0] = asyncio.Event()
        writer = seen.writer(lane())
        await writer.put(batch(range(0, 2)))
        writer.freeze()  # a broker back empty: the worker starts again
        seen.gates[0].set()
        await asyncio.wait_for(writer.drain(), 2)
        await writer.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen.written == [0, 1] and seen.acknowledged == []
