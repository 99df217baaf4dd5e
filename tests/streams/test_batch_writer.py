"""The batch writer acknowledges a batch only once it is written, in order, and never a failed or stale one; it
hands the next batch on while the one before is written."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from types import SimpleNamespace
from typing import Any

from driftloop.streams.batch_writer import BatchWriter, written_on_return
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

    async def submit(self, records: Sequence[Any]) -> Awaitable[None]:
        return await written_on_return(self.handle)(records)

    def writer(self, lane: RecordLane, depth: int = 2) -> BatchWriter:
        return BatchWriter(
            self.submit,
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


class Overlapping(Recorder):
    """A submit that returns once a batch is handed on, its write finishing when its gate opens (as the
    ingestion process answers a batch once written, having taken the next one meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_on: list[int] = []
        self.writes: dict[int, asyncio.Event] = {}  # first offset -> what its write waits for
        self.refuse: set[int] = set()  # first offsets of batches refused while handed on

    async def submit(self, records: Sequence[Any]) -> asyncio.Task[None]:
        first = records[0].offset
        if first in self.refuse:
            raise RuntimeError("the ingestion process is gone")
        self.handed_on.append(first)
        self.writes[first] = asyncio.Event()

        async def write() -> None:
            await self.writes[first].wait()
            if first in self.fail:
                raise RuntimeError("ClickHouse refused the batch")

        return asyncio.create_task(write())


async def until(condition: Any) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.005)


def test_the_next_batch_is_handed_on_while_the_one_before_is_written() -> None:
    async def scenario() -> Overlapping:
        seen = Overlapping()
        writer = seen.writer(lane(), depth=3)
        for first in (0, 3, 6):
            await writer.put(batch(range(first, first + 3)))
        await until(lambda: seen.handed_on == [0, 3, 6])  # none of them written yet
        seen.writes[6].set()  # the last written first: acknowledged only after those before it
        seen.writes[3].set()
        await asyncio.sleep(0.05)
        assert seen.acknowledged == [] and seen.written == []
        seen.writes[0].set()
        await asyncio.wait_for(writer.drain(), 2)
        await writer.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen.acknowledged == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert seen.written == list(range(9)) and seen.failures == 0


def test_a_batch_whose_write_or_hand_over_fails_stays_unacknowledged_and_the_rest_go_on() -> None:
    async def scenario() -> Overlapping:
        seen = Overlapping()
        seen.fail.add(2)  # refused by the write
        seen.refuse.add(4)  # refused while handed on
        writer = seen.writer(lane(), depth=4)
        for first in (0, 2, 4, 6):
            await writer.put(batch(range(first, first + 2)))
        await until(lambda: seen.handed_on == [0, 2, 6] and seen.failures == 1)
        for first in (0, 2, 6):
            seen.writes[first].set()
        await asyncio.wait_for(writer.drain(), 2)
        await writer.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen.acknowledged == [[0, 1], [6, 7]] and seen.written == [0, 1, 6, 7] and seen.failures == 2


def test_depth_bounds_the_batches_handed_on_and_not_yet_written() -> None:
    async def scenario() -> None:
        seen = Overlapping()
        writer = seen.writer(lane(), depth=2)
        await writer.put(batch(range(0, 1)))
        await writer.put(batch(range(1, 2)))
        third = asyncio.create_task(writer.put(batch(range(2, 3))))
        await until(lambda: seen.handed_on == [0, 1])
        await asyncio.sleep(0.05)
        assert not third.done()  # two handed on, neither written: the agent stops taking from its lane
        seen.writes[1].set()  # written, but not acknowledged before the batch ahead of it: still in flight
        await asyncio.sleep(0.05)
        assert not third.done() and seen.acknowledged == []
        seen.writes[0].set()
        await asyncio.wait_for(third, 2)
        await until(lambda: seen.handed_on == [0, 1, 2])
        seen.writes[2].set()
        await asyncio.wait_for(writer.drain(), 2)
        assert seen.acknowledged == [[0], [1], [2]]
        await writer.close()

    asyncio.run(scenario())


def test_closing_leaves_batches_not_yet_written_unacknowledged() -> None:
    async def scenario() -> Overlapping:
        seen = Overlapping()
        writer = seen.writer(lane(), depth=3)
        await writer.put(batch(range(0, 2)))
        await writer.put(batch(range(2, 4)))
        await until(lambda: seen.handed_on == [0, 2])
        seen.writes[0].set()
        await until(lambda: seen.acknowledged == [[0, 1]])
        await writer.close()  # the worker stops: the second batch is read again by the partition's next owner
        seen.writes[2].set()
        await asyncio.sleep(0.05)
        return seen

    seen = asyncio.run(scenario())
    assert seen.acknowledged == [[0, 1]] and seen.written == [0, 1]
