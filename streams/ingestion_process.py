"""Ingestion in a process of its own: the Faust agents hand it each batch's raw messages and ack on its answer.

With one event a message, Faust's own work for each message (fetching, events, acks) fills the agents'
thread; run there, ingestion (decode, write, join, dead letters) took turns with it and held the worker
below a bare Faust agent's rate. :class:`IngestionProcess` runs :class:`~streams.ingestion.Ingestion` in a
child process (:mod:`streams.child_process`) with the drift detection process beside it, and answers
each batch once it is handled, so the guarantees of ``streams.ingestion`` hold unchanged: a batch is
answered only after its rows are in ClickHouse and its dead letters on their topic, and the worker acks
its messages only then.

Predictions, outcomes and requests (join sweep, detector state) travel in lanes of their own: each is
handled in order, side by side with the others, as the agents and timers ran before. A batch travels in
pieces of at most ``batch_max_bytes`` (one insert each), a few at a time, so that the child decodes a piece
while the one before is written and never holds more than a few pieces, however large Faust's batch. A
piece whose child exits before it answers is handed to a new child once more (every write is idempotent);
if that fails too, the batch fails and stays unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from driftloop.infra.settings import Settings
from driftloop.streams.batch import ColumnBatch, DeadLetter
from driftloop.streams.child_process import AnswerLater, ChildLostError, ChildProcess, Request, UnknownRequestError
from driftloop.streams.decode import Incoming
from driftloop.streams.drift.process import DetectionMetrics, DetectionProcess
from driftloop.streams.ingestion import Ingestion, IngestionMetrics, all_or_first_failure, split_by_bytes
from driftloop.streams.sink import SinkMetrics
from driftloop.streams.topic_publisher import KafkaTopicPublisher

log = logging.getLogger("driftloop.ingestion")

PIECES_IN_FLIGHT = 3  # one decoded while two are written


_Packed = tuple[list[bytes], list[str], list[int], list[int]]  # values, topics, partitions, offsets

# --- what the worker asks of its ingestion process (streams.child_process requests) ------------------------


@dataclass(frozen=True, slots=True)
class WriteMessages(Request):
    """Decode a piece of Kafka messages and write its rows; answered once they are written."""

    table: Literal["predictions", "outcomes"]
    packed: _Packed


@dataclass(frozen=True, slots=True)
class Sweep(Request):
    """Join the waiting outcomes of ``partitions`` (None: all) whose prediction has arrived since."""

    partitions: set[int] | None


@dataclass(frozen=True, slots=True)
class WriteRows(Request):
    """Write rows the worker made itself (a broker incident's report) to their table."""

    rows: ColumnBatch


@dataclass(frozen=True, slots=True)
class HandOverDetectors(Request):
    """Save every model's detector state and forget it, and the waiting outcomes held (a rebalance)."""


@dataclass(frozen=True, slots=True)
class SaveDetectors(Request):
    """Save the detector state of the models that changed."""


class KafkaMessage(Protocol):
    """What ingestion reads of a Kafka message: a Faust message, or an :class:`~streams.decode.Incoming`."""

    @property
    def value(self) -> bytes: ...

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class IngestionProcess:
    """The worker's ingestion (the handlers of :class:`~streams.ingestion.Ingestion`) run in a child process.

    ``metrics``, ``sink_metrics`` (by sink) and ``drift_metrics`` are the child's, as of its last answer;
    ``batch_errors`` counts the batches that failed (the worker counts them: they stay unacknowledged).
    """

    def __init__(self, settings: Settings) -> None:
        self.batch_errors = 0
        self.metrics = IngestionMetrics()
        self.sink_metrics: dict[str, SinkMetrics] = {}
        self.drift_metrics = DetectionMetrics()
        self.batch_max_bytes = settings.batch_max_bytes
        self._room: dict[str, asyncio.Semaphore] = {}  # by lane: pieces the child may hold unanswered
        self._child = ChildProcess("driftloop-ingestion", IngestionHandler, settings, self._take_report)

    @property
    def restarts(self) -> int:
        """Times the ingestion process exited unasked and was started again."""
        return self._child.restarts

    async def on_prediction_messages(self, messages: Sequence[KafkaMessage]) -> None:
        await (await self.submit_predictions(messages))

    async def on_outcome_messages(self, messages: Sequence[KafkaMessage]) -> None:
        await (await self.submit_outcomes(messages))

    async def submit_predictions(self, messages: Sequence[KafkaMessage]) -> asyncio.Future[None]:
        """Hand ``messages`` on to be written; returns what settles once they are (see ``_hand_over_in_pieces``)."""
        return await self._hand_over_in_pieces("predictions", messages)

    async def submit_outcomes(self, messages: Sequence[KafkaMessage]) -> asyncio.Future[None]:
        """:meth:`submit_predictions` for outcomes."""
        return await self._hand_over_in_pieces("outcomes", messages)

    async def _hand_over_in_pieces(
        self, lane: Literal["predictions", "outcomes"], messages: Sequence[KafkaMessage]
    ) -> asyncio.Future[None]:
        """Send ``messages`` in pieces of at most ``batch_max_bytes``, a few unanswered at a time; returns once
        the last is sent, with what settles once all are answered (raising the first failure).

        A piece is one insert: the child decodes the next piece while the one before is written, and holds
        at most :data:`PIECES_IN_FLIGHT` pieces, however large the batch Faust took. Calls that do not overlap
        send their pieces in the order called: a batch's pieces follow the batch's before it, and the child
        writes and hands them on in that order.
        """
        room = self._room.setdefault(lane, asyncio.Semaphore(PIECES_IN_FLIGHT))
        pieces: list[asyncio.Future[Any]] = []
        for piece in split_by_bytes(messages, self.batch_max_bytes):
            await room.acquire()
            answered = asyncio.ensure_future(self._call(lane, WriteMessages(lane, _pack(piece))))
            answered.add_done_callback(lambda _: room.release())
            pieces.append(answered)
        return asyncio.ensure_future(all_or_first_failure(pieces))

    async def sweep(self, partitions: set[int] | None) -> None:
        """Join waiting outcomes of ``partitions`` (None: all) whose prediction has arrived since (nothing once
        closed: a timer may fire while the worker stops, and whoever owns the partitions next sweeps them)."""
        if not self._child.closed:
            await self._call("requests", Sweep(partitions))

    async def write(self, rows: ColumnBatch) -> None:
        """Write rows to ClickHouse (retrying while it is away), in the requests' lane."""
        await self._call("requests", WriteRows(rows))

    async def hand_over_detectors(self) -> None:
        """Save every model's detector state and forget it: the partitions may go to another worker (nothing
        to do when no ingestion process runs: the state lives in it, and a new one would hold none)."""
        if self._child.pid is not None:
            await self._call("requests", HandOverDetectors())

    async def save_detectors(self) -> None:
        """Save the detector state of the models that saw events since their last save (nothing once closed:
        closing handed every model's state over)."""
        if not self._child.closed:
            await self._call("requests", SaveDetectors())

    def start(self) -> None:
        self._child.start()

    async def close(self) -> None:
        """Hand the detector state over, let the child finish what it was handed, and stop both children.

        Faust sends no revocation when the worker stops, and the detection process may lag ingestion by a
        few batches: the hand-over here saves every acknowledged event's detector updates (it is answered
        after the batches handed to detection before it) before the partitions go to another worker.
        """
        try:
            await self.hand_over_detectors()
        except Exception:
            log.exception("could not save detector state before stopping")
        await self._child.close()

    async def _call(self, lane: str, request: Request) -> Any:
        try:
            return await self._child.call(lane, request)
        except ChildLostError:
            log.warning(
                "ingestion process lost; handing the message to a new one",
                extra={"fields": {"request": type(request).__name__}},
            )
            return await self._child.call(lane, request)

    def _take_report(self, report: dict[str, Any]) -> None:
        self.metrics, self.sink_metrics, self.drift_metrics = report["ingestion"], report["sinks"], report["drift"]


class IngestionHandler:
    """The ingestion child's handler: :class:`~streams.ingestion.Ingestion` with kafka-python dead letters
    and the drift detection process as its observer."""

    def __init__(self, settings: Settings) -> None:
        self.dead_letters = KafkaTopicPublisher[DeadLetter](
            settings, settings.topics.dead_letter, key=lambda letter: letter.topic
        )
        self.drift = DetectionProcess(settings)
        self.drift.start()
        self.ingestion = Ingestion(settings, self.dead_letters, [self.drift])

    async def handle(self, request: Request) -> AnswerLater | None:
        match request:
            case WriteMessages("predictions", packed):  # answered once written; the next piece is decoded now
                return AnswerLater(await self.ingestion.submit_predictions(_unpack(packed)))
            case WriteMessages("outcomes", packed):
                return AnswerLater(await self.ingestion.submit_outcomes(_unpack(packed)))
            case Sweep(partitions):
                await self.ingestion.sweep(partitions)
            case WriteRows(rows):
                await self.ingestion.prediction_sink.write(rows)
            case HandOverDetectors():
                await self.ingestion.join.hand_over()
                await self.drift.hand_over()
            case SaveDetectors():
                await self.drift.save_changed()
            case _:
                raise UnknownRequestError(self, request)
        return None

    def report(self) -> dict[str, Any]:
        return {
            "ingestion": self.ingestion.metrics,
            "sinks": {
                "predictions": self.ingestion.prediction_sink.metrics,
                "outcomes": self.ingestion.outcome_sink.metrics,
                "labeled": self.ingestion.labeled_sink.metrics,
            },
            "drift": self.drift.metrics,
        }

    async def close(self) -> None:
        await self.drift.close()
        self.ingestion.close()
        self.dead_letters.close()


def _pack(messages: Sequence[KafkaMessage]) -> _Packed:
    """Messages as four lists (values, topics, partitions, offsets): pickled several times faster than tuples."""
    return (
        [m.value for m in messages],
        [m.topic for m in messages],
        [m.partition for m in messages],
        [m.offset for m in messages],
    )


def _unpack(packed: _Packed) -> list[Incoming]:
    return list(map(Incoming, *packed))
