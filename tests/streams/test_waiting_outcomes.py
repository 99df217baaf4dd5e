"""Outcomes that wait for their predictions (streams.waiting_room, streams.join): a batch of predictions joins
the outcomes that waited for it as soon as it is written, a sweep reads ``join_pending`` once a partition, and
a worker that takes a partition over finds what waited there. Real ClickHouse; the ingestion driven without
Faust."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence

import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.streams.batch import ColumnBatch, DeadLetter
from driftloop.streams.decode import Incoming
from driftloop.streams.ingestion import Ingestion
from driftloop.streams.join import OutcomeJoin
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration

TS = 1_790_000_000


class Labeled:
    """Records the labeled rows handed to the detectors, and refuses a dead letter (none is expected)."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")

    async def on_predictions(self, rows: ColumnBatch, partitions: Sequence[int]) -> None:
        pass

    async def on_labeled(self, rows: ColumnBatch, partitions: Sequence[int]) -> None:
        self.requests += rows["request_id"]


def predictions(model: str, requests: range, partition: int = 0) -> list[Incoming]:
    events = [
        {"model": model, "request_id": f"r{i}", "ts": TS + i, "features": {"x": float(i)}, "prediction": i % 2}
        for i in requests
    ]
    return [Incoming(json.dumps({"events": events}).encode(), "predictions", partition, requests.start)]


def outcomes(model: str, requests: range, partition: int = 0) -> list[Incoming]:
    events = [{"model": model, "request_id": f"r{i}", "ts": TS + 60 + i, "label": 1} for i in requests]
    return [Incoming(json.dumps({"events": events}).encode(), "outcomes", partition, requests.start)]


class PendingReads:
    """Counts the join's reads of ``join_pending`` (the partitions of each), passing them through."""

    def __init__(self, join: OutcomeJoin) -> None:
        self.partitions: list[list[int] | None] = []
        read = join._pending

        def counted(partitions: list[int] | None) -> ColumnBatch:
            self.partitions.append(partitions)
            return read(partitions)

        join._pending = counted  # type: ignore[method-assign]


@pytest.fixture()
def model() -> str:
    return "wait-" + uuid.uuid4().hex[:8]


@pytest.fixture()
def ingestion(stack: PrivateStack) -> Iterator[tuple[Ingestion, Labeled]]:
    labeled = Labeled()
    handler = Ingestion(Settings.from_env(stack.env), labeled, [labeled])
    yield handler, labeled
    handler.close()


def query(stack: PrivateStack, sql: str, model: str) -> list[tuple]:
    client = connect(stack.settings.clickhouse)
    try:
        return client.execute(sql, {"m": model})
    finally:
        client.disconnect()


def states(stack: PrivateStack, model: str) -> dict[str, int]:
    return dict(query(stack, "SELECT state, count() FROM join_pending FINAL WHERE model = %(m)s GROUP BY state", model))


def predictions_landed(stack: PrivateStack, model: str) -> int:
    return query(stack, "SELECT count() FROM predictions WHERE model = %(m)s", model)[0][0]


def test_outcomes_that_came_first_are_labeled_once_their_predictions_are_written_without_a_sweep(
    stack: PrivateStack, ingestion: tuple[Ingestion, Labeled], model: str
) -> None:
    handler, labeled = ingestion

    async def run() -> None:
        await handler.on_outcome_messages(outcomes(model, range(200)))
        assert labeled.requests == [] and states(stack, model) == {"pending": 200}
        await handler.on_prediction_messages(predictions(model, range(100)))
        assert sorted(labeled.requests) == sorted(f"r{i}" for i in range(100))
        await handler.on_prediction_messages(predictions(model, range(100, 200)))
        await handler.sweep({0})  # finds nothing left to join

    asyncio.run(run())
    assert sorted(labeled.requests) == sorted(f"r{i}" for i in range(200))  # each once
    assert states(stack, model) == {"matched": 200}
    assert model not in handler.join.room.batch()["model"]  # (the session's other models may wait there)


def test_a_sweep_reads_join_pending_once_a_partition_and_a_new_owner_finds_what_waited(
    stack: PrivateStack, ingestion: tuple[Ingestion, Labeled], model: str
) -> None:
    """What waits in a partition is read when the partition is first swept (a worker that owned it before
    left it there), then held: later sweeps read nothing but the predictions, until the partition is given
    up and taken again, or a rebalance lets everything go."""
    first, _ = ingestion
    asyncio.run(first.on_outcome_messages(outcomes(model, range(0, 50), partition=0)))
    asyncio.run(first.on_outcome_messages(outcomes(model, range(50, 80), partition=1)))
    labeled = Labeled()
    second = Ingestion(Settings.from_env(stack.env), labeled, [labeled])  # a restart, or another worker
    reads = PendingReads(second.join)

    async def run() -> None:
        await second.sweep({0, 1})
        assert reads.partitions == [[0, 1]] and labeled.requests == []
        await second.on_prediction_messages(predictions(model, range(0, 80, 2)))  # half of each partition's
        assert sorted(labeled.requests) == sorted(f"r{i}" for i in range(0, 80, 2))
        for _ in range(3):
            await second.sweep({0, 1})
        assert reads.partitions == [[0, 1]]
        await second.sweep({0})  # partition 1 given up: its outcomes are let go
        await second.on_prediction_messages(predictions(model, range(1, 80, 2)))
        assert sorted(labeled.requests) == sorted(f"r{i}" for i in [*range(0, 80, 2), *range(1, 50, 2)])
        await second.sweep({0, 1})  # taken again: read, and joined
        assert reads.partitions == [[0, 1], [1]]
        await second.join.hand_over()  # a rebalance: nothing held until the partitions are read again
        assert len(second.join.room) == 0 and not second.join.room.held
        await second.sweep({0, 1})
        assert reads.partitions == [[0, 1], [1], [0, 1]]

    try:
        asyncio.run(run())
    finally:
        second.close()
    assert sorted(labeled.requests) == sorted(f"r{i}" for i in range(80))
    assert states(stack, model) == {"matched": 80}


def test_more_waiting_outcomes_than_are_held_are_joined_from_clickhouse(
    stack: PrivateStack, ingestion: tuple[Ingestion, Labeled], model: str
) -> None:
    handler, labeled = ingestion
    handler.join.room.max_held = 10
    reads = PendingReads(handler.join)

    async def run() -> None:
        await handler.on_outcome_messages(outcomes(model, range(40)))  # 40 wait: too many to hold
        assert len(handler.join.room) == 0
        await handler.on_prediction_messages(predictions(model, range(40)))
        await handler.sweep({0})
        await handler.sweep({0})

    asyncio.run(run())
    assert sorted(labeled.requests) == sorted(f"r{i}" for i in range(40))
    assert states(stack, model) == {"matched": 40}
    assert reads.partitions == [[0], [0]]  # read at each sweep until what waits there can be held


def test_predictions_written_while_their_outcomes_are_being_joined_still_join_them(
    stack: PrivateStack, ingestion: tuple[Ingestion, Labeled], model: str
) -> None:
    """The race between the two pipelines: the outcomes' lookup misses their predictions, the predictions are
    written before the outcomes are in the room, and their batch's prompt join comes then. It waits for the
    outcomes' join, and labels them (it once found the room empty, and they waited for the sweep)."""
    handler, labeled = ingestion
    write = handler.join._write
    predictions_written: list[asyncio.Task[None]] = []

    async def write_after_the_predictions_land(*args: object) -> None:
        if not predictions_written:  # the outcomes' join missed them: now they land, and are handed on
            predictions_written.append(
                asyncio.create_task(handler.on_prediction_messages(predictions(model, range(50))))
            )
            while not predictions_landed(stack, model):
                await asyncio.sleep(0.01)
        await write(*args)  # type: ignore[arg-type]

    handler.join._write = write_after_the_predictions_land  # type: ignore[method-assign]

    async def run() -> None:
        await handler.on_outcome_messages(outcomes(model, range(50)))
        await predictions_written[0]

    asyncio.run(run())
    assert sorted(labeled.requests) == sorted(f"r{i}" for i in range(50))  # no sweep: the prompt join took them
    assert states(stack, model) == {"matched": 50}
