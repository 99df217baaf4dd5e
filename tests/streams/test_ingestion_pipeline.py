"""A batch is handled in chunks, two at a time (streams.ingestion): each chunk is handed on only once written,
in order (across batches too), and a chunk that fails stops the ones after it in its batch (the caller does
not ack the batch)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence

import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.streams.batch import ColumnBatch, DeadLetter
from driftloop.streams.decode import Incoming
from driftloop.streams.ingestion import Ingestion
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration

EVENTS_PER_MESSAGE = 100  # ~13 KB a message; with 64 KiB chunks, five messages a chunk


class DeadLetters:
    """Takes dead letters, or fails like an unreachable dead-letter topic when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[DeadLetter] = []

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        if self.fail:
            raise ConnectionError("dead-letter topic unreachable")
        self.published += letters


class WrittenFirst:
    """An observer that checks, for every chunk it is given, that ClickHouse already has all of its rows."""

    def __init__(self, settings: Settings) -> None:
        self.client = connect(settings.clickhouse)
        self.seen: list[str] = []

    async def on_predictions(self, rows: ColumnBatch, partitions: list[int]) -> None:
        ids = tuple(rows["event_id"])
        stored = self.client.execute("SELECT count() FROM predictions FINAL WHERE event_id IN %(ids)s", {"ids": ids})
        assert stored[0][0] == len(ids), "a chunk reached the detectors before its rows were in ClickHouse"
        self.seen += rows["request_id"]

    async def on_labeled(self, rows: ColumnBatch, partitions: list[int]) -> None:
        pass


def envelope(model: str, first: int, bad_at: int | None = None) -> bytes:
    events = [
        {"model": model, "request_id": f"r{i:05d}", "ts": 1_790_000_000 + i, "features": {"x": i}, "prediction": 1}
        for i in range(first, first + EVENTS_PER_MESSAGE)
    ]
    if bad_at is not None:
        events[bad_at - first]["features"] = "broken"
    return json.dumps({"events": events}).encode()


def ingestion(stack: PrivateStack, dead_letters: DeadLetters) -> tuple[Ingestion, WrittenFirst]:
    settings = Settings.from_env({**stack.env, "DRIFTLOOP_BATCH_MAX_BYTES": str(64 * 1024)})
    observer = WrittenFirst(settings)
    return Ingestion(settings, dead_letters, [observer]), observer


def test_chunks_reach_the_detectors_in_order_and_only_once_written(stack: PrivateStack) -> None:
    model = "pipe-" + uuid.uuid4().hex[:8]
    messages = [Incoming(envelope(model, k * EVENTS_PER_MESSAGE), "p", 0, k) for k in range(40)]
    handler, observer = ingestion(stack, DeadLetters())
    try:
        asyncio.run(handler.on_prediction_messages(messages))
    finally:
        handler.close()
    assert observer.seen == [f"r{i:05d}" for i in range(40 * EVENTS_PER_MESSAGE)]
    assert handler.metrics.batch_seconds.count >= 8  # it was cut into chunks: the pipeline had work to overlap


def test_the_next_batch_is_decoded_while_the_one_before_is_written_and_handed_on_after_it(stack: PrivateStack) -> None:
    model = "pipe-" + uuid.uuid4().hex[:8]
    batches = [[Incoming(envelope(model, (b * 5 + k) * EVENTS_PER_MESSAGE), "p", 0, b * 5 + k) for k in range(5)]
               for b in range(4)]  # fmt: skip
    handler, observer = ingestion(stack, DeadLetters())

    async def run() -> None:
        first = await handler.submit_predictions(batches[0])  # one chunk: decoded, its write under way
        second = await handler.submit_predictions(batches[1])
        assert not first.done()  # the second batch did not wait for the first to be written
        rest = [await handler.submit_predictions(batch) for batch in batches[2:]]
        await asyncio.gather(first, second, *rest)

    try:
        asyncio.run(run())
    finally:
        handler.close()
    assert observer.seen == [f"r{i:05d}" for i in range(20 * EVENTS_PER_MESSAGE)]


def test_a_failing_chunk_stops_the_batch_and_the_chunks_after_it_are_not_handed_on(stack: PrivateStack) -> None:
    model = "pipe-" + uuid.uuid4().hex[:8]
    bad_message = 20  # its chunk has a bad event; publishing the dead letter fails
    messages = [
        Incoming(envelope(model, k * EVENTS_PER_MESSAGE, bad_at=k * EVENTS_PER_MESSAGE if k == bad_message else None),
                 "p", 0, k)
        for k in range(40)
    ]  # fmt: skip
    handler, observer = ingestion(stack, DeadLetters(fail=True))
    try:
        with pytest.raises(ConnectionError):
            asyncio.run(handler.on_prediction_messages(messages))
    finally:
        handler.close()
    # every chunk before the failing one was handed on, in order; nothing from it or after it
    assert observer.seen == [f"r{i:05d}" for i in range(len(observer.seen))]
    assert 0 < len(observer.seen) <= bad_message * EVENTS_PER_MESSAGE
