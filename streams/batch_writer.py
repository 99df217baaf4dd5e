"""Writing a record lane's batches in order, each acknowledged only once it is written.

The worker's agents take batches from their lanes (``streams.record_lanes``) and hand them to a
:class:`BatchWriter`, which writes them one after another in a task of its own, so that taking the next
batch overlaps with writing the one before; ``depth`` bounds the batches in flight (backpressure).

A batch is acknowledged (its offsets may be committed) after ``handle`` returns, never before; one that fails
is logged and counted and stays unacknowledged, so that the consumer commits nothing past it and the
partition's next owner reads it again. A batch taken before a rebalance cleared the lane and handed on after
(an older generation) is dropped unwritten: its partitions may have gone to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from driftloop.streams.record_lanes import RecordBatch, RecordLane

log = logging.getLogger("driftloop.worker")

Handle = Callable[[Sequence[Any]], Awaitable[None]]


class BatchWriter:
    """Writes a lane's batches in order (see the module docstring).

    ``handle`` writes a batch's records; ``acknowledge`` acknowledges them once it has; ``written`` is told each
    written record's (topic, partition, offset); ``count_failure`` each batch that failed.
    :meth:`freeze` stops taking batches and acknowledging them (what is queued is still written);
    :meth:`drain` waits until it is.
    """

    def __init__(
        self,
        handle: Handle,
        lane: RecordLane,
        acknowledge: Callable[[Sequence[Any]], None],
        written: Callable[[Iterable[tuple[str, int, int]]], None],
        count_failure: Callable[[], None],
        *,
        depth: int,
    ) -> None:
        self.handle = handle
        self.lane = lane
        self.acknowledge = acknowledge
        self.written = written
        self.count_failure = count_failure
        self.slots = asyncio.Semaphore(depth)
        self.queue: asyncio.Queue[RecordBatch] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.frozen = asyncio.Event()

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
        while True:
            records = (await self.queue.get()).records
            try:
                await self.handle(records)
            except Exception:
                self.count_failure()
                log.exception(
                    "batch failed; its messages stay unacknowledged and are delivered again "
                    "after a restart or rebalance"
                )
                continue
            finally:
                self.slots.release()
                self.queue.task_done()
            self.written((m.topic, m.partition, m.offset) for m in records)
            if not self.frozen.is_set():
                self.acknowledge(records)  # the consumer may commit these offsets now

    def freeze(self) -> None:
        self.frozen.set()

    async def drain(self) -> None:
        """Wait until every queued batch is written (or failed)."""
        if self.task is not None and not self.task.done():
            await self.queue.join()

    async def close(self) -> None:
        """Stop writing; batches not yet written stay unacknowledged (delivered again later)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
