"""What the ingestion agents do with each batch of messages: decode, write, join, dead-letter, observe.

The order inside a batch is what makes delivery at-least-once: rows reach ClickHouse, dead letters reach
their topic and table, and only then may the caller ack the batch's messages (so that Faust commits
their offsets). A crash anywhere before that re-delivers the batch; every write is idempotent by
``event_id`` (or by Kafka coordinates for dead letters), so re-delivery doubles nothing in query results.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from driftloop.infra.errors import DriftloopError
from driftloop.infra.metrics import Histogram
from driftloop.infra.settings import Settings
from driftloop.streams.batch import ColumnBatch, DeadLetter, Decoded
from driftloop.streams.decode import Incoming, decode_outcomes, decode_predictions, event_sources
from driftloop.streams.join import JoinResult, OutcomeJoin, RegressionSpecs
from driftloop.streams.observers import BatchObserver
from driftloop.streams.sink import ClickHouseSink, Rejected

log = logging.getLogger("driftloop.ingestion")

_Written = tuple[ColumnBatch, list[int]]  # the rows written, and the index of each one's message
_W = TypeVar("_W")

MAX_STORED_ORIGINAL = 64 * 1024
DEAD_LETTER_COLUMNS = (
    "source_topic",
    "source_partition",
    "source_offset",
    "source_offset_last",
    "event_index",
    "reason",
    "original",
    "original_size",
    "received_at",
)


BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: An event's age when its row is written: under a second while the worker keeps up (README, Performance);
#: minutes and more for a backlog, or for events a producer stamps long before it sends them.
EVENT_AGE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class DeadLetterPublisher(Protocol):
    """Publishes dead letters to the dead-letter topic and returns once the broker has them."""

    async def publish(self, letters: Sequence[DeadLetter]) -> None: ...


#: Model names a worker's metrics carry; events of more models are counted under ``other`` (bounds the series).
MAX_MODEL_LABELS = 200
OTHER_MODELS = "other"


@dataclass
class ModelActivity:
    """Events per model and kind, and when each model last sent one (wall clock): a model that stops sending
    shows in ``seconds_since_last_event``. At most ``max_models`` names; the rest count as ``other``."""

    max_models: int = MAX_MODEL_LABELS
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_event: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, models: Sequence[str]) -> None:
        now = time.time()
        for model, count in Counter(models).items():
            if model not in self.last_event and len(self.last_event) >= self.max_models:
                model = OTHER_MODELS
            self.events[(model, kind)] += count
            self.last_event[model] = now

    def seconds_since_last_event(self, now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        return {model: max(0.0, now - at) for model, at in self.last_event.items()}


@dataclass
class IngestionMetrics:
    """Counters of the ingestion agents (events by kind, dead letters, join outcomes, failures)."""

    messages: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)  # by DeadLetter.reason_class
    models: ModelActivity = field(default_factory=ModelActivity)
    unreadable_offsets: int = 0  # offsets of record batches the consumer could not read (dead-lettered)
    labeled: int = 0
    waiting_outcomes: int = 0
    expired_outcomes: int = 0
    observer_errors: int = 0
    last_batch_s: float = 0.0
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(BATCH_SECONDS_BUCKETS))
    event_age_seconds: dict[str, Histogram] = field(default_factory=dict)  # by kind

    def batch_done(self, seconds: float) -> None:
        self.last_batch_s = seconds
        self.batch_seconds.observe(seconds)

    def landed(self, kind: str, ts_ms: Sequence[int], now: float) -> None:
        """Each written event's age at ``now`` (epoch seconds) from its ``ts``; an event stamped ahead of this
        machine's clock counts as 0."""
        ages_ms = round(now * 1000) - np.fromiter(ts_ms, np.int64, len(ts_ms))  # 14 ns an event; a list's asarray 33
        ages = np.maximum(ages_ms, 0) / 1000.0
        if kind not in self.event_age_seconds:  # a plain dict: a defaultdict's factory would not pickle
            self.event_age_seconds[kind] = Histogram(EVENT_AGE_BUCKETS)
        self.event_age_seconds[kind].observe_many(ages)


class Ingestion:
    """The batch handlers behind the ingestion agents (Faust-free, so tools and tests can drive them)."""

    def __init__(
        self,
        settings: Settings,
        dead_letters: DeadLetterPublisher,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        self.settings = settings
        self.dead_letter_publisher = dead_letters
        self.observers = list(observers)
        self.prediction_sink = ClickHouseSink(settings.clickhouse)
        self.outcome_sink = ClickHouseSink(settings.clickhouse)
        # the join's own: a chunk's outcomes are written while the chunk before them is joined
        self.labeled_sink = ClickHouseSink(settings.clickhouse)
        self.join = OutcomeJoin(
            settings.clickhouse,
            self.labeled_sink,
            window_s=settings.join_window_s,
            regression=RegressionSpecs(settings.spec_directory, recheck_s=settings.spec_recheck_s),
        )
        self.metrics = IngestionMetrics()
        self._predictions = _Pipeline[_Written](self._start_predictions, self._after_predictions, self.metrics)
        self._outcomes = _Pipeline[tuple[_Written, JoinResult]](
            self._start_outcomes, self._after_outcomes, self.metrics
        )

    async def on_prediction_messages(self, messages: Sequence[Incoming]) -> None:
        await (await self.submit_predictions(messages))

    async def on_outcome_messages(self, messages: Sequence[Incoming]) -> None:
        await (await self.submit_outcomes(messages))

    async def submit_predictions(self, messages: Sequence[Incoming]) -> asyncio.Future[None]:
        """Decode ``messages`` and queue their writes; returns once they are queued, with what settles when
        they are written and handed on (:class:`_Pipeline`): the next batch's decoding need not wait for it."""
        return await self._predictions.submit(messages, self.settings.batch_max_bytes)

    async def submit_outcomes(self, messages: Sequence[Incoming]) -> asyncio.Future[None]:
        """:meth:`submit_predictions` for outcomes."""
        return await self._outcomes.submit(messages, self.settings.batch_max_bytes)

    def _start_predictions(self, chunk: Sequence[Incoming]) -> asyncio.Task[_Written]:
        decoded = decode_predictions(chunk, max_bytes=self.settings.max_message_bytes)
        return asyncio.create_task(self._write(decoded, chunk, self.prediction_sink))

    def _start_outcomes(self, chunk: Sequence[Incoming]) -> asyncio.Task[tuple[_Written, JoinResult]]:
        decoded = decode_outcomes(chunk, max_bytes=self.settings.max_message_bytes)
        return asyncio.create_task(self._write_and_join(decoded, chunk))

    async def _write_and_join(self, decoded: Decoded, chunk: Sequence[Incoming]) -> tuple[_Written, JoinResult]:
        """Outcomes written, then joined: their labeled rows written (or the outcomes left to wait for their
        predictions). So a chunk is joined while the next one is written, not after it is handed on."""
        rows, origins = written = await self._write(decoded, chunk, self.outcome_sink)
        return written, await self.join.join(rows, [chunk[i].partition for i in origins])

    async def _after_predictions(self, written: _Written, chunk: Sequence[Incoming]) -> None:
        rows, origins = written
        self._count("predictions", chunk, rows)
        partitions = np.fromiter((message.partition for message in chunk), np.int64, len(chunk))
        await self._observe("on_predictions", rows, partitions[np.asarray(origins, np.intp)])
        if len(rows) and self.join.may_be_waiting:
            await self._join_promptly(rows["request_id"])

    async def _join_promptly(self, request_ids: Sequence[str]) -> None:
        """Label the outcomes that waited for these predictions (written a moment ago). A failure leaves them
        waiting: the next sweep joins them."""
        try:
            result = await self.join.prompt(request_ids)
        except Exception:
            log.exception("joining the outcomes that waited for a batch's predictions failed; the sweep will")
            return
        self.metrics.labeled += len(result.labeled)
        await self._observe("on_labeled", result.labeled, result.partitions)

    async def _after_outcomes(self, joined: tuple[_Written, JoinResult], chunk: Sequence[Incoming]) -> None:
        (rows, _), result = joined
        self._count("outcomes", chunk, rows)
        self.metrics.labeled += len(result.labeled)
        self.metrics.waiting_outcomes += result.waiting
        await self._observe("on_labeled", result.labeled, result.partitions)

    async def sweep(self, partitions: set[int] | None) -> None:
        """Join waiting outcomes of ``partitions`` (None: all) whose prediction has arrived since."""
        result = await self.join.sweep(partitions)
        self.metrics.labeled += len(result.labeled)
        self.metrics.expired_outcomes += result.expired
        if len(result.labeled) or result.expired:
            log.info(
                "join sweep",
                extra={
                    "fields": {
                        "labeled": len(result.labeled),
                        "expired": result.expired,
                        "still_waiting": result.waiting,
                    }
                },
            )
        await self._observe("on_labeled", result.labeled, result.partitions)

    def close(self) -> None:
        self.prediction_sink.close()
        self.outcome_sink.close()
        self.labeled_sink.close()
        self.join.close()

    # --- internals ---------------------------------------------------------------------------------------

    async def _write(self, decoded: Decoded, messages: Sequence[Incoming], sink: ClickHouseSink) -> _Written:
        """Write good rows; dead-letter bad events and rows ClickHouse refused.

        Returns the rows written and, for each, the index of the message it came from.
        """
        rejected = await sink.write(decoded.rows)
        letters = list(decoded.dead)
        rows, origins = decoded.rows, decoded.origins
        if rejected:
            refused = {r.index for r in rejected}
            letters += self._refused_letters(rejected, origins, messages, rows.table)
            kept = [i for i in range(len(rows)) if i not in refused]
            rows, origins = rows.take(kept), [origins[i] for i in kept]
        if letters:
            await self._dead_letter(letters)
        return rows, origins

    def _refused_letters(
        self, rejected: list[Rejected], origins: list[int], messages: Sequence[Incoming], table: str
    ) -> list[DeadLetter]:
        """Dead letters for rows ClickHouse refused, each naming its own event (its index in the envelope)."""
        rank: list[int] = []  # each row's position among the rows of its message
        rows_of: Counter[int] = Counter()
        for origin in origins:
            rank.append(rows_of[origin])
            rows_of[origin] += 1
        sources: dict[int, list[tuple[int, bytes]]] = {}
        letters = []
        for r in rejected:
            origin = origins[r.index]
            message = messages[origin]
            if origin not in sources:
                sources[origin] = event_sources(message, table, max_bytes=self.settings.max_message_bytes)
            found = sources[origin]
            index, original = found[rank[r.index]] if rank[r.index] < len(found) else (-1, message.value)
            letters.append(DeadLetter(r.reason, original, message.topic, message.partition, message.offset, index))
        return letters

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        await self.dead_letter_publisher.publish(letters)
        now = int(time.time())
        table = ColumnBatch(
            "dead_letters",
            {
                "source_topic": [d.topic for d in letters],
                "source_partition": [d.partition for d in letters],
                "source_offset": [d.offset for d in letters],
                "source_offset_last": [d.offset if d.last_offset is None else d.last_offset for d in letters],
                "event_index": [d.index for d in letters],
                "reason": [d.reason for d in letters],
                "original": [d.original[:MAX_STORED_ORIGINAL] for d in letters],
                "original_size": [len(d.original) for d in letters],
                "received_at": [now] * len(letters),
            },
        )
        await self.prediction_sink.write(table)
        self.metrics.dead_letters += len(letters)
        self.metrics.dead_letter_reasons.update(d.reason_class for d in letters)
        self.metrics.unreadable_offsets += sum(
            d.last_offset - d.offset + 1 for d in letters if d.last_offset is not None
        )
        log.info("dead-lettered", extra={"fields": {"count": len(letters), "first_reason": letters[0].reason}})

    def _count(self, kind: str, messages: Sequence[Incoming], rows: ColumnBatch) -> None:
        self.metrics.messages[kind] += len(messages)
        self.metrics.events[kind] += len(rows)
        if len(rows):
            self.metrics.models.add(kind, rows["model"])
            self.metrics.landed(kind, rows["ts_ms"], time.time())

    async def _observe(self, hook: str, rows: ColumnBatch, partitions: Sequence[int]) -> None:
        if not len(rows):
            return
        for observer in self.observers:
            try:
                await getattr(observer, hook)(rows, partitions)
            except Exception:
                self.metrics.observer_errors += 1
                log.exception("observer failed; ingestion goes on", extra={"fields": {"observer": repr(observer)}})


class _Pipeline(Generic[_W]):
    """One kind's chunks (predictions or outcomes), written two at a time and handed on in order.

    A chunk's insert runs in a thread and mostly waits for ClickHouse: meanwhile the next chunk is decoded,
    whether it belongs to the same batch or the next one, and the chunk before is handed on to the
    detectors (``after``). The write stage is what ``start_write`` starts (for outcomes, the join too); each
    chunk is handed on only once written, and after the chunk before it; a chunk that fails fails the rest of
    its batch (they are not handed on: the batch is not acked).
    """

    def __init__(
        self,
        start_write: Callable[[Sequence[Incoming]], asyncio.Task[_W]],
        after: Callable[[_W, Sequence[Incoming]], Awaitable[None]],
        metrics: IngestionMetrics,
        *,
        depth: int = 2,
    ) -> None:
        self.start_write = start_write
        self.after = after
        self.metrics = metrics
        self.depth = depth
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = asyncio.Semaphore(depth)  # bounds the chunks decoded and not yet written
        self._last: asyncio.Task[None] | None = None  # the last chunk queued: the next one is handed on after it

    async def submit(self, messages: Sequence[Incoming], max_bytes: int) -> asyncio.Future[None]:
        """Queue ``messages`` chunk by chunk; returns what settles once every chunk is handed on (or failed)."""
        if self._loop is not asyncio.get_running_loop():  # a new event loop (tools and tests run one per call)
            self._loop, self._writing, self._last = asyncio.get_running_loop(), asyncio.Semaphore(self.depth), None
        chunks: list[asyncio.Task[None]] = []
        for chunk in split_by_bytes(messages, max_bytes):
            await self._writing.acquire()
            started = time.perf_counter()
            try:
                writing = self.start_write(chunk)
            except BaseException:
                self._writing.release()
                raise
            writing.add_done_callback(lambda _: self._writing.release())
            before = chunks[-1] if chunks else None
            self._last = asyncio.create_task(self._hand_on(writing, chunk, started, self._last, before))
            chunks.append(self._last)
        return asyncio.ensure_future(all_or_first_failure(chunks))

    async def _hand_on(
        self,
        writing: asyncio.Task[_W],
        chunk: Sequence[Incoming],
        started: float,
        previous: asyncio.Task[None] | None,
        before_in_batch: asyncio.Task[None] | None,
    ) -> None:
        written = await writing
        if previous is not None:
            await asyncio.wait([previous])  # in order, whatever became of it
        if before_in_batch is not None and (before_in_batch.cancelled() or before_in_batch.exception()):
            raise ChunkSkippedError("a chunk before it in its batch failed")
        await self.after(written, chunk)
        self.metrics.batch_done(time.perf_counter() - started)


class ChunkSkippedError(DriftloopError, RuntimeError):
    """A chunk written but not handed on: a chunk before it in its batch failed (the batch is not acked)."""


async def all_or_first_failure(work: Sequence[Awaitable[Any]]) -> None:
    """Wait for all of ``work``; then raise the first failure, if any (each failure is retrieved)."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class _HasValue(Protocol):
    @property
    def value(self) -> bytes | None: ...


M = TypeVar("M", bound=_HasValue)


def split_by_bytes(messages: Sequence[M], max_bytes: int) -> list[Sequence[M]]:
    """Consecutive runs of messages of at most ``max_bytes`` together (a larger message is a run alone)."""
    chunks: list[Sequence[M]] = []
    start, size = 0, 0
    for i, message in enumerate(messages):
        length = len(message.value or b"")
        if size and size + length > max_bytes:
            chunks.append(messages[start:i])
            start, size = i, 0
        size += length
    if start < len(messages):
        chunks.append(messages[start:])
    return chunks
