"""Faust's internals that driftloop relies on (faust-streaming 0.15, mode-streaming 0.7: :data:`WRITTEN_FOR`):
its Kafka transport with six changes: a gap in offsets is never taken as acknowledged, offsets
are committed only to the broker instance they were read from, a fetched message is handed to its
stream without four asyncio tasks when the stream has room for it (``streams.prompt_delivery``), a
fetch waits for new messages as long as the app says (``fetch_max_wait_s``), not Faust's fixed 1.5 s,
the consumer reads committed records only (``read_committed``: a transactional producer's aborted
records are never read, and a transaction still open holds back what comes after it), and the records
of the app's *record lanes* skip Faust's streams altogether.

**Record lanes.** An app with ``record_lanes`` (a mapping of topic to :class:`~streams.record_lanes.RecordLane`)
gets each of those topics' fetched records as one list a partition and fetch, put into the topic's lane
(past Faust's message objects, streams, events and sensors, which cost 55 µs a message); whoever takes them
acknowledges them with :meth:`StrictOffsetsConsumer.acknowledge` once they are done with. Everything else
about offsets stays Faust's: read offsets and gaps are kept as for any message, commits take the
acknowledged offsets, and a rebalance first clears the lanes (what waits there is read again) and then
awaits the app's ``drain_record_lanes`` (the batches handed on, written and acknowledged) before Faust
commits and hands the partitions over, as it waits for its streams' messages to be acknowledged.

The fetch wait is a floor under landing latency: a broker may hold a fetch that finds nothing new for the
whole wait, and the embedded one does so even when messages arrive meanwhile, so that an event waited
0.75 s on average (uniformly up to 1.5 s) before the worker saw it. With 0.1 s, an idle consumer asks
ten times a second instead (a small request each); under load a fetch returns once ``FETCH_MIN_BYTES``
are there.

Faust (faust-streaming 0.15) records a *gap* when a partition's next message has an offset more than one
past the last one read, and treats the gap's offsets as acknowledged, so that compacted topics and
transaction markers do not stall commits. Neither leaves a gap here: driftloop's topics are not
compacted, and the offsets of a transaction's markers and of its aborted records arrive as placeholders
(``streams.compat.aiokafka``), acknowledged with the records around them. A gap means messages were
skipped while reading (a broker resuming past the requested offset, or
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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from itertools import groupby
from operator import attrgetter
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP, Message, TransportT
from faust.types.transports import TPorTopicSet
from faust.types.tuples import ack_lock
from mode.services import WaitResults
from mode.utils.futures import notify
from mode.utils.times import Seconds

from driftloop.streams.compat.aiokafka import wait_for_fetches
from driftloop.streams.prompt_delivery import deliver_first
from driftloop.streams.record_lanes import PUT, RecordLane

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
        consumer._isolation_level = "read_committed"  # what start() gives its fetcher (Faust: read_uncommitted)
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

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        # faust-streaming 0.15's Consumer.getmany, except that the records of a topic with a lane go there.
        lanes: Mapping[str, RecordLane] = getattr(self.app, "record_lanes", {})
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:  # as Faust: records fetched while the flow stopped are read again
            try:
                await self.perform_seek()
            except Exception as exc:  # a rebalance took the partitions meanwhile: the next owner seeks
                log.warning("could not seek back to the committed offsets", extra={"fields": {"error": repr(exc)}})
            return
        for tp, fetched in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            if active_partitions is not None and tp not in active_partitions and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            lane = lanes.get(tp.topic)
            if lane is None:
                for record in fetched:
                    if not self.flow_active or self.app.consumer_generation_id != generation_id:
                        return
                    yield tp, self._to_message(tp, record)
            elif not await self._put_in_lane(lane, tp, fetched):
                return

    async def _put_in_lane(self, lane: RecordLane, tp: TP, fetched: Sequence[Any]) -> bool:
        """Put a partition's fetched records not read before into ``lane``, as Faust's ``_drain_messages`` hands
        on messages one by one (offsets already read skipped, gaps recorded); False when a rebalance stopped it."""
        read = self._read_offset[tp]
        if read is not None and fetched[0].offset < read:
            fetched = [record for record in fetched if record.offset >= read]
            if not fetched:
                return True
        first, last = fetched[0].offset, fetched[-1].offset
        contiguous = first <= read + 1 and last - first + 1 == len(fetched) if read else True
        if not contiguous and self.app.topics.acks_enabled_for(tp.topic):  # a gap: find where (rare)
            expected = read + 1
            for record in fetched:
                if record.offset > expected:
                    await self._add_gap(tp, expected, record.offset - 1)
                expected = record.offset + 1
        outcome = await self.wait_first(lane.put(fetched), self.suspend_flow.wait())
        if PUT not in outcome.results:
            return False
        self._read_offset[tp] = fetched[-1].offset
        return True

    def acknowledge(self, records: Sequence[Any]) -> None:
        """Acknowledge records taken from a lane, as ``Consumer.ack`` acknowledges one message: their offsets may
        be committed once every offset before them is."""
        with ack_lock:
            for (topic, partition), group in groupby(records, _topic_partition):
                if not self.app.topics.acks_enabled_for(topic):
                    continue
                tp = TP(topic, partition)
                committed = self._committed_offset[tp]
                index = self._acked_index[tp]
                offsets = [
                    r.offset for r in group if (committed is None or r.offset >= committed) and r.offset not in index
                ]
                index.update(offsets)
                self._acked[tp].extend(offsets)
                self._n_acked += len(offsets)
            notify(self._waiting_for_ack)

    async def wait_empty(self) -> None:
        # Faust waits here, before a rebalance's commit, for the messages its streams took to be acknowledged;
        # the lanes' records are dropped when waiting, and the batches handed on are waited for.
        lanes: Mapping[str, RecordLane] = getattr(self.app, "record_lanes", {})
        for lane in lanes.values():
            lane.clear()
        drain: Callable[[], Awaitable[None]] | None = getattr(self.app, "drain_record_lanes", None)
        if drain is not None and not self.should_stop:
            await drain()
        await super().wait_empty()

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


_topic_partition = attrgetter("topic", "partition")


class StrictOffsetsTransport(faust_kafka.Transport):
    Consumer = StrictOffsetsConsumer


class StrictOffsetsApp(faust.App):
    """A Faust app whose consumer uses :class:`StrictOffsetsConsumer`; ``fetch_max_wait_s`` (None: Faust's
    1.5 s) bounds how long a fetch waits for new messages."""

    fetch_max_wait_s: float | None = None

    def _new_transport(self) -> TransportT:
        return StrictOffsetsTransport(self.conf.broker_consumer, self)
