"""Writing a record lane's batches in order, each acknowledged only once it is written.

The worker's agents take batches from their lanes (``streams.record_lanes``) and hand them to a
:class:`BatchWriter`, which hands them on one after another in a task of its own (``submit``: in the order
taken) and acknowledges each once it is written, in the same order. Handing on returns before the batch is
written, so the next batch is decoded while the one before is inserted, and taking the next batch overlaps
with both; ``depth`` bounds the batches handed on and not yet written (backpressure).

A batch is acknowledged (its offsets may be committed) once what ``submit`` returned has completed, never
before, and after every batch handed on before it has been written or has failed; one that fails (handing it
on, or writing it) is logged and counted and stays unacknowledged, so that the consumer commits nothing past
it and the partition's next owner reads it again. A batch taken before a rebalance cleared the lane and
handed on after (an older generation) is dropped unwritten: its partitions may have gone to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from driftloop.streams.record_lanes import RecordBatch, RecordLane

log = logging.getLogger("driftloop.worker")

Submit = Callable[[Sequence[Any]], Awaitable[Awaitable[None]]]
"""Hands a batch's records on (in the order it is called) and returns what completes once they are written."""

Handle = Callable[[Sequence[Any]], Awaitable[None]]
"""Writes a batch's records and returns once they are written."""


def written_on_return(handle: Handle) -> Submit:
    """``handle`` as a :data:`Submit` whose batches are written once it returns (nothing to overlap)."""

    async def submit(records: Sequence[Any]) -> Awaitable[None]:
        await handle(records)
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        written.set_result(None)
        return written

    return submit


class BatchWriter:
    """Writes a lane's batches in order (see the module docstring).

    ``submit`` hands a batch's records on to be written; ``acknowledge`` acknowledges them once they are;
    ``written`` is told each written record's (topic, partition, offset); ``count_failure`` each batch that
    failed.
    :meth:`freeze` stops taking batches and acknowledging them (what is queued is still written);
    :meth:`drain` waits until it is.
    """

    def __init__(
        self,
        submit: Submit,
        lane: RecordLane,
        acknowledge: Callable[[Sequence[Any]], None],
        written: Callable[[Iterable[tuple[str, int, int]]], None],
        count_failure: Callable[[], None],
        *,
        depth: int,
    ) -> None:
        self.submit = submit
        self.lane = lane
        self.acknowledge = acknowledge
        self.written = written
        self.count_failure = count_failure
        self.slots = asyncio.Semaphore(depth)
        self.queue: asyncio.Queue[RecordBatch] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.frozen = asyncio.Event()
        self.settling: set[asyncio.Task[None]] = set()  # batches handed on, until acknowledged or failed

    async def put(self, batch: RecordBatch) -> None:
        """Queue ``batch`` to be written; waits while ``depth`` batches are in flight."""
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="driftloop-batch-writer")
        if self.task.done():  # it never ends by itself: only a bug gets here; surface it
            self.task.result()
        if self.frozen.is_set():
            await asyncio.Future()  # never: the worker is about to start again
        await self.slots.acquire()
        if batch.generation != self.lane.generation:
            self.slots.release()  # a rebalance came while it waited: its records are read again
            return
        self.queue.put_nowait(batch)

    async def _run(self) -> None:
        previous: asyncio.Task[None] | None = None
        while True:
            records = (await self.queue.get()).records
            try:
                written: Awaitable[None] | None = await self.submit(records)
            except Exception:
                self._failed()
                written = None
            previous = asyncio.create_task(self._settle(records, written, previous), name="driftloop-batch-ack")
            self.settling.add(previous)
            previous.add_done_callback(self.settling.discard)

    async def _settle(
        self, records: Sequence[Any], written: Awaitable[None] | None, previous: asyncio.Task[None] | None
    ) -> None:
        """Acknowledge ``records`` once ``written`` completes and the batch handed on before them is settled."""
        try:
            done = False
            if written is not None:
                try:
                    await written
                    done = True
                except Exception:
                    self._failed()
            if previous is not None:
                await asyncio.wait([previous])  # in order, whatever became of it
            if done:
                self.written((m.topic, m.partition, m.offset) for m in records)
                if not self.frozen.is_set():
                    self.acknowledge(records)  # the consumer may commit these offsets now
        finally:
            self.slots.release()
            self.queue.task_done()

    def _failed(self) -> None:
        self.count_failure()
        log.exception(
            "batch failed; its messages stay unacknowledged and are delivered again after a restart or rebalance"
        )

    def freeze(self) -> None:
        self.frozen.set()

    async def drain(self) -> None:
        """Wait until every queued batch is written (or failed)."""
        if self.task is not None and not self.task.done():
            await self.queue.join()

    async def close(self) -> None:
        """Stop writing; batches not yet written stay unacknowledged (delivered again later)."""
        if self.task is None:
            return
        for task in (self.task, *self.settling):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
