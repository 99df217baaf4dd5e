"""Record lanes: fetched records gathered into batches by count, bytes and time, with backpressure, and
cleared by a rebalance."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from driftloop.streams.record_lanes import PUT, RecordLane


def records(offsets: range, size: int = 100) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=o, serialized_value_size=size) for o in offsets]


def offsets(batch: object) -> list[int]:
    return [r.offset for r in batch.records]  # type: ignore[attr-defined]


def test_a_batch_closes_at_its_count_its_bytes_or_its_wait() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        lane = RecordLane(max_records=5, max_bytes=1000, max_wait_s=0.2)
        await lane.put(records(range(0, 12)))  # 100 bytes each: 10 fit the bytes, 5 the count
        assert offsets(await lane.take()) == [0, 1, 2, 3, 4]
        assert offsets(await lane.take()) == [5, 6, 7, 8, 9]
        started = loop.time()
        assert offsets(await lane.take()) == [10, 11]  # not full: after its wait
        assert loop.time() - started >= 0.15  # (it counts from when they arrived, just before)

        big = RecordLane(max_records=100, max_bytes=1000, max_wait_s=5.0)
        await big.put(records(range(0, 4), size=300))
        started = loop.time()
        assert offsets(await big.take()) == [0, 1, 2]  # 900 bytes; a fourth would be over
        assert loop.time() - started < 1.0
        await big.put(records(range(4, 5), size=5000))
        assert offsets(await big.take()) == [3]  # the leftover first ...
        assert offsets(await big.take()) == [4]  # ... then a record larger than a batch, alone

    asyncio.run(scenario())


def test_the_wait_counts_from_when_the_oldest_record_arrived() -> None:
    async def scenario() -> list[list[int]]:
        lane = RecordLane(max_records=1000, max_bytes=1 << 20, max_wait_s=0.3)
        taken: list[list[int]] = []

        async def take_two() -> None:
            for _ in range(2):
                taken.append(offsets(await lane.take()))

        taker = asyncio.create_task(take_two())
        await lane.put(records(range(0, 2)))
        await asyncio.sleep(0.2)
        await lane.put(records(range(2, 4)))  # arrives 0.2 s later: the batch still closes 0.3 s after the first
        await asyncio.sleep(0.2)
        await lane.put(records(range(4, 5)))
        await asyncio.wait_for(taker, 5)
        return taken

    assert asyncio.run(scenario()) == [[0, 1, 2, 3], [4]]


def test_put_waits_while_a_full_batch_waits_to_be_taken() -> None:
    async def scenario() -> None:
        lane = RecordLane(max_records=3, max_bytes=1 << 20, max_wait_s=5.0)
        assert await lane.put(records(range(0, 3))) is PUT
        second = asyncio.create_task(lane.put(records(range(3, 5))))
        await asyncio.sleep(0.05)
        assert not second.done() and len(lane) == 3  # backpressure: the consumer's fetching waits here
        assert offsets(await lane.take()) == [0, 1, 2]
        assert await asyncio.wait_for(second, 1) is PUT and len(lane) == 2

    asyncio.run(scenario())


def test_a_rebalance_drops_what_waits_and_starts_a_new_generation() -> None:
    async def scenario() -> None:
        lane = RecordLane(max_records=3, max_bytes=1 << 20, max_wait_s=0.05)
        await lane.put(records(range(0, 3)))
        waiting = asyncio.create_task(lane.put(records(range(3, 6))))
        await asyncio.sleep(0.02)
        lane.clear()  # the rebalance: nothing waiting was handed on
        assert await asyncio.wait_for(waiting, 1) is None and len(lane) == 0 and lane.generation == 1
        await lane.put(records(range(0, 2)))  # read again from the committed offset
        batch = await lane.take()
        assert offsets(batch) == [0, 1] and batch.generation == 1

    asyncio.run(scenario())


def test_a_take_that_waits_through_a_rebalance_returns_only_records_that_came_after() -> None:
    async def scenario() -> None:
        lane = RecordLane(max_records=10, max_bytes=1 << 20, max_wait_s=0.3)
        taker = asyncio.create_task(lane.take())
        await lane.put(records(range(0, 2)))
        await asyncio.sleep(0.05)
        lane.clear()
        await lane.put(records(range(7, 8)))
        batch = await asyncio.wait_for(taker, 2)
        assert offsets(batch) == [7] and batch.generation == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [-1, 0])
def test_records_without_a_value_count_no_bytes(size: int) -> None:
    """Records without a value (aiokafka says -1 bytes) neither fill a batch nor make room in it."""

    async def scenario() -> list[int]:
        lane = RecordLane(max_records=10_000, max_bytes=1000, max_wait_s=5.0)
        await lane.put(records(range(0, 600), size=size))
        await lane.put(records(range(600, 602), size=600))  # 1,200 bytes: full at once, if the others count 0
        return offsets(await asyncio.wait_for(lane.take(), 1.0))

    assert asyncio.run(scenario()) == list(range(0, 601))  # the second 600 bytes would be over
