"""Faust's internals that driftloop relies on (faust-streaming 0.15, mode-streaming 0.7: :data:`WRITTEN_FOR`):
its Kafka transport with four changes: a gap in offsets is never taken as acknowledged, offsets
are committed only to the broker instance they were read from, a fetched message is handed to its
stream without four asyncio tasks when the stream has room for it (``streams.prompt_delivery``), and a
fetch waits for new messages as long as the app says (``fetch_max_wait_s``), not Faust's fixed 1.5 s.

The last one is a floor under landing latency: a broker may hold a fetch that finds nothing new for the
whole wait, and the embedded one does so even when messages arrive meanwhile, so that an event waited
0.75 s on average (uniformly up to 1.5 s) before the worker saw it. With 0.1 s, an idle consumer asks
ten times a second instead (a small request each); under load a fetch returns once ``FETCH_MIN_BYTES``
are there.

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

Once the offsets to commit are known, and before they are committed, the consumer awaits the app's
``checkpoint`` (when it has one): the streams worker saves the detector state there, so that every
committed event is in the saved detectors' history (a worker killed after the commit restores a state
that covers it). An answer of False leaves the offsets for the next commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP, TransportT
from faust.types.transports import TPorTopicSet
from mode.services import WaitResults
from mode.utils.times import Seconds

from driftloop.streams.compat.aiokafka import wait_for_fetches
from driftloop.streams.prompt_delivery import deliver_first

log = logging.getLogger("driftloop.streams")


#: The library series this module was written for (pinned in pyproject.toml).
WRITTEN_FOR = {"faust-streaming": "0.15.", "mode-streaming": "0.7."}

#: A fetch returns once this much is there (or the wait is over): under load, fewer and larger fetches (the
#: embedded broker's CPU at 20,000 events/s fell from about 50 % to 27 % of a core with 0.1 s waits).
FETCH_MIN_BYTES = 256 << 10


class PromptFetchThread(faust_kafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose aiokafka consumer waits ``app.fetch_max_wait_s`` at most for a fetch
    to bring ``FETCH_MIN_BYTES``."""

    def _create_worker_consumer(self, transport: faust_kafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_s: float | None = getattr(self.app, "fetch_max_wait_s", None)
        if wait_s is not None:
            wait_for_fetches(consumer, max_wait_s=wait_s, min_bytes=FETCH_MIN_BYTES)
        return consumer


class StrictOffsetsConsumer(faust_kafka.Consumer):
    """Faust's aiokafka consumer, except that offset gaps are not acknowledged, commits are guarded,
    messages are delivered promptly, and fetches wait as long as the app says (see the module docstring)."""

    def _new_consumer_thread(self) -> PromptFetchThread:
        return PromptFetchThread(self, loop=self.loop, beacon=self.beacon)

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

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        # faust-streaming 0.15: _commit_tps computes the offsets from the acknowledged messages, then calls this
        checkpoint: Callable[[], Awaitable[bool]] | None = getattr(self.app, "checkpoint", None)
        if checkpoint is not None and not await checkpoint():
            return False
        return await super()._commit_offsets(offsets, start_new_transaction)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        log.warning(
            "offsets skipped while reading; they stay unacknowledged and are read again after a restart",
            extra={"fields": {"topic": tp.topic, "partition": tp.partition, "from": offset_from, "to": offset_to}},
        )


class StrictOffsetsTransport(faust_kafka.Transport):
    Consumer = StrictOffsetsConsumer


class StrictOffsetsApp(faust.App):
    """A Faust app whose consumer uses :class:`StrictOffsetsConsumer`; ``fetch_max_wait_s`` (None: Faust's
    1.5 s) bounds how long a fetch waits for new messages."""

    fetch_max_wait_s: float | None = None

    def _new_transport(self) -> TransportT:
        return StrictOffsetsTransport(self.conf.broker_consumer, self)
