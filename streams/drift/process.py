"""Drift detection in a process of its own, so that it runs beside ingestion instead of taking turns with it.

Detection costs about as much CPU an event as decoding and writing it together (30-odd detector updates
an event). :class:`DetectionProcess` is ingestion's drift observer: each batch that ingestion has written
is handed to a child process (:mod:`streams.child_process`) running the
:class:`~streams.drift.observer.DriftObserver` (detectors per partition, their detections, state), and
ingestion goes on.

- Batches are detected in the order they are handed over, and requests (:meth:`~DetectionProcess.hand_over`,
  :meth:`~DetectionProcess.save_changed`, :meth:`~DetectionProcess.flush`) run after the batches handed
  over before them, and raise :class:`~streams.child_process.ChildError` if they fail.
- At most ``max_in_flight`` batches wait for the child; handing over one more waits (backpressure), so a
  slow child slows ingestion down instead of filling memory.
- A child that dies (killed, out of memory) is started again at the next batch; the batches it held are
  in ClickHouse but not detected, and its models restart from their last saved state, as a worker
  restarted after ``kill -9`` does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.infra.contract import Alert
from driftloop.infra.settings import Settings
from driftloop.streams.batch import ColumnBatch, by_partition, served_only
from driftloop.streams.child_process import ChildLostError, ChildProcess, Request, UnknownRequestError
from driftloop.streams.drift.frame import PredictionFrame
from driftloop.streams.topic_publisher import KafkaTopicPublisher

#: The labeled rows' columns the performance detectors read (``DriftMonitor.process_labeled``): the rest would
#: only be pickled to the detection process.
LABELED_DETECTED = frozenset({"model", "model_version", "request_id", "ts_ms", "error", "served", "features"})

# --- what ingestion asks of its detection process (streams.child_process requests) -------------------------


@dataclass(frozen=True, slots=True)
class DetectPredictions(Request):
    """Run the detectors on a written batch of predictions (each part on its partition's)."""

    frame: PredictionFrame


@dataclass(frozen=True, slots=True)
class DetectLabeled(Request):
    """Run the performance detectors of ``partition`` on written labeled rows (their outcomes read from it)."""

    partition: int
    rows: ColumnBatch


@dataclass(frozen=True, slots=True)
class HandOver(Request):
    """Save every model's state and forget it."""


@dataclass(frozen=True, slots=True)
class SaveChanged(Request):
    """Save the state of the models that saw events since their last save."""


@dataclass(frozen=True, slots=True)
class Flush(Request):
    """Save every model's state and statistics now."""


@dataclass
class DetectionMetrics:
    """What the detection process reports after each message (read by ``/metrics`` and logs)."""

    detections_by_kind: Counter[str] = field(default_factory=Counter)  # handed to the alert gate
    rows_written: Counter[str] = field(default_factory=Counter)  # its ClickHouse writes: alerts, state, stats
    state_bytes: int = 0  # of detector state saved
    events_waiting: int = 0  # models' events held to be detected with their next ones (streams.drift.waiting)
    retries: int = 0
    rows_waiting: int = 0
    batch_errors: int = 0  # batches the detectors failed on (logged by the child); ingestion went on
    detector_failures: int = 0  # times a detector raised on its values: its signal started again, the others went on
    batches_lost: int = 0  # batches held by a child that exited unasked
    restarts: int = 0


class DetectionProcess:
    """Ingestion's drift observer (a :class:`~streams.observers.BatchObserver`), run in a child process.

    Nothing starts until the first batch, request or :meth:`start`; :meth:`close` stops the child.
    """

    def __init__(self, settings: Settings, *, max_in_flight: int = 8) -> None:
        self.metrics = DetectionMetrics()
        self._child = ChildProcess("driftloop-detection", DetectionHandler, settings, self._take_report)
        self._slots = asyncio.Semaphore(max_in_flight)

    async def on_predictions(self, rows: ColumnBatch, partitions: Sequence[int]) -> None:
        places = np.asarray(partitions, np.int64)
        served = rows.columns.get("served")
        if served is not None and not all(served):  # a shadow's predictions are not the traffic
            kept = [i for i, flag in enumerate(served) if flag]
            rows, places = rows.take(kept), places[kept]
        if len(rows):  # a frame is far cheaper to send than rows; its parts say their partitions
            await self._hand(DetectPredictions(PredictionFrame.from_columns(rows, places)))

    async def on_labeled(self, rows: ColumnBatch, partitions: Sequence[int]) -> None:
        detected = {name: column for name, column in rows.columns.items() if name in LABELED_DETECTED}
        for partition, part in by_partition(ColumnBatch(rows.table, detected), partitions):
            part = served_only(part)
            if len(part):
                await self._hand(DetectLabeled(partition, part))

    async def hand_over(self) -> None:
        """Save every model's state and forget it: the partitions may go to another worker."""
        await self._child.call("detect", HandOver())

    async def save_changed(self) -> None:
        """Save the state of the models that saw events since their last save."""
        await self._child.call("detect", SaveChanged())

    async def flush(self) -> None:
        """Save every model's state and statistics now."""
        await self._child.call("detect", Flush())

    def start(self) -> None:
        self._child.start()

    async def close(self) -> None:
        await self._child.close()

    async def _hand(self, batch: DetectPredictions | DetectLabeled) -> None:
        await self._slots.acquire()  # released when the child answers (or is lost)
        self._child.call("detect", batch).add_done_callback(self._batch_done)

    def _batch_done(self, done: asyncio.Future[Any]) -> None:
        self._slots.release()
        error = done.exception()
        if isinstance(error, ChildLostError):
            self.metrics.batches_lost += 1
        elif error is not None:
            self.metrics.batch_errors += 1

    def _take_report(self, report: dict[str, Any]) -> None:
        self.metrics.detections_by_kind = Counter(report["detections_by_kind"])
        self.metrics.rows_written = Counter(report["rows_written"])
        self.metrics.state_bytes = report["state_bytes"]
        self.metrics.events_waiting = report["events_waiting"]
        self.metrics.retries = report["retries"]
        self.metrics.detector_failures = report["detector_failures"]
        self.metrics.rows_waiting = report["rows_waiting"]
        self.metrics.restarts = self._child.restarts


class DetectionHandler:
    """The detection child's handler: the drift observer, handing detections to the alert gate (the detections
    topic, keyed by model) with kafka-python."""

    def __init__(self, settings: Settings) -> None:
        # imported here, in the detection process: the detectors (River, scipy) are not loaded into the
        # ingestion process, which starts this one (90 MiB and 1.5 s of imports less there)
        from driftloop.streams.drift.observer import drift_observer

        self.publisher = KafkaTopicPublisher[Alert](settings, settings.topics.detections, key=lambda alert: alert.model)
        self.observer = drift_observer(settings, self.publisher)

    async def handle(self, request: Request) -> None:
        match request:
            case DetectPredictions(frame):
                await self.observer.on_predictions(frame)
            case DetectLabeled(partition, rows):
                await self.observer.on_labeled(rows, partition)
            case HandOver():
                await self.observer.hand_over()
            case SaveChanged():
                await self.observer.save_changed()
            case Flush():
                await self.observer.flush()
            case _:
                raise UnknownRequestError(self, request)

    def report(self) -> dict[str, Any]:
        sink = self.observer.sink.metrics
        return {
            "detections_by_kind": dict(self.observer.detections_by_kind),
            "rows_written": dict(sink.rows_written),
            "state_bytes": self.observer.store.bytes_saved,
            "events_waiting": self.observer.waiting.held(),
            "retries": sink.retries,
            "rows_waiting": sink.rows_waiting,
            "detector_failures": self.observer.detector_failures,
        }

    async def close(self) -> None:
        self.observer.close()
        self.publisher.close()
