"""Faust's Kafka transport with three changes: a gap in offsets is never taken as acknowledged, offsets
are committed only to the broker instance they were read from, and a fetched message is handed to its
stream without four asyncio tasks when the stream has room for it (``streams.prompt_delivery``).

Faust (faust-streaming 0.15) records a *gap* when a partition's next message has an offset more than one
past the last one read, and treats the gap's offsets as acknowledged, so that compacted topics and
transaction markers do not stall commits. driftloop's topics are neither compacted nor transactional: a
gap there means messages were skipped while reading (a broker resuming past the requested offset, or
messages dropped from a stream buffer), and acknowledging them commits offsets of events that never
reached ClickHouse: a loss. With this transport a gap is logged and left unacknowledged: commits stop
before it and a later owner of the partition reads those messages again (at-least-once; ClickHouse
results stay free of duplicates by ``event_id``).

Before each commit the consumer awaits the app's ``commit_guard`` (when it has one): the streams worker
passes its broker watch, which answers False while the broker is away or when it came back as a new
instance without its data (``streams.broker_watch``). The commit waits for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP, TransportT
from faust.types.transports import TPorTopicSet
from mode.services import WaitResults
from mode.utils.times import Seconds

from driftloop.streams.prompt_delivery import deliver_first

log = logging.getLogger("driftloop.streams")


class StrictOffsetsConsumer(faust_kafka.Consumer):
    """Faust's aiokafka consumer, except that offset gaps are not acknowledged, commits are guarded, and
    messages are delivered promptly (see the module docstring)."""

    async def wait_first(self, *coros: Any, timeout: Seconds | None = None) -> WaitResults:
        # The consumer waits on two things only where it delivers a message: the delivery, and the flow
        # being suspended (a rebalance). While the flow runs, a delivery that finishes without waiting won.
        if (
            len(coros) == 2
            and timeout is None
            and asyncio.iscoroutine(coros[0])
            and not self.suspend_flow.is_set()
            and not self.should_stop
            and not self._crashed.is_set()
        ):
            return await deliver_first(coros[0], coros[1], super().wait_first)
        return await super().wait_first(*coros, timeout=timeout)

    async def commit(self, topics: TPorTopicSet | None = None, start_new_transaction: bool = True) -> bool:
        guard: Callable[[], Awaitable[bool]] | None = getattr(self.app, "commit_guard", None)
        if guard is not None and not await guard():
            return False
        return await super().commit(topics, start_new_transaction)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        log.warning(
            "offsets skipped while reading; they stay unacknowledged and are read again after a restart",
            extra={"fields": {"topic": tp.topic, "partition": tp.partition, "from": offset_from, "to": offset_to}},
        )


class StrictOffsetsTransport(faust_kafka.Transport):
    Consumer = StrictOffsetsConsumer


class StrictOffsetsApp(faust.App):
    """A Faust app whose consumer uses :class:`StrictOffsetsConsumer`."""

    def _new_transport(self) -> TransportT:
        return StrictOffsetsTransport(self.conf.broker_consumer, self)
