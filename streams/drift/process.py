"""Drift detection in a process of its own, so that it runs beside ingestion instead of taking turns with it.

Detection costs about as much CPU an event as decoding and writing it together (30-odd detector updates
an event); run in the ingestion agents' process it took half of their time. :class:`DetectionProcess`
is the worker's drift observer: each batch that ingestion has written is handed to a child process,
which runs the :class:`~streams.drift.observer.DriftObserver` (detectors, alerts, state) exactly as the
worker once did, and ingestion goes on with the next batch.

- Batches are detected in the order they are handed over (one pipe, read in order).
- At most ``max_in_flight`` batches wait for the child; handing over one more waits (backpressure), so a
  slow child slows ingestion down instead of filling memory.
- :meth:`~DetectionProcess.hand_over`, :meth:`~DetectionProcess.save_changed` and
  :meth:`~DetectionProcess.flush` return once the child has handled every batch handed over before them
  and done what they ask, or raise :class:`DetectionError`.
- A child that dies (killed, out of memory) is started again at the next batch; the batches it held are
  in ClickHouse but not detected, and its models restart from their last saved state, as a worker
  restarted after ``kill -9`` does. The child exits as soon as the worker's end of its pipe closes
  (the worker stopped, died, or started again after a broker incident).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import multiprocessing
import pickle
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from kafka import KafkaProducer

from infra.logs import configure_logging
from infra.settings import Settings
from streams.batch import ColumnBatch
from streams.drift.alerts import Alert
from streams.drift.monitor import PREDICTION_INPUTS
from streams.drift.observer import DriftObserver, drift_observer

log = logging.getLogger("driftloop.drift")

_BATCHES = frozenset({"predictions", "labeled"})


class DetectionError(RuntimeError):
    """The detection process could not do what was asked (its reason), or exited before it did."""


@dataclass
class DetectionMetrics:
    """What the detection process reports back after each message (read by ``/metrics`` and logs)."""

    alerts_by_kind: Counter[str] = field(default_factory=Counter)
    rows_written: Counter[str] = field(default_factory=Counter)
    retries: int = 0  # of the child's ClickHouse writes (alerts, state, statistics)
    rows_waiting: int = 0
    batch_errors: int = 0  # batches the child failed on (logged there); ingestion went on
    restarts: int = 0  # children that exited unasked and were started again


class DetectionProcess:
    """The worker's drift observer (a :class:`~streams.observers.BatchObserver`) run in a child process.

    Nothing starts until the first batch, request or :meth:`start`; :meth:`close` stops the child.
    """

    def __init__(self, settings: Settings, *, max_in_flight: int = 8) -> None:
        self.settings = settings
        self.metrics = DetectionMetrics()
        self._context = multiprocessing.get_context("spawn")  # never fork a process running Faust's threads
        self._process: Any = None
        self._to_child: Connection | None = None
        self._from_child: Connection | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self._ids = itertools.count()
        self._outgoing: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    @property
    def alerts_by_kind(self) -> Counter[str]:
        return self.metrics.alerts_by_kind

    async def on_predictions(self, rows: ColumnBatch) -> None:
        await self._hand("predictions", ColumnBatch(rows.table, {name: rows[name] for name in PREDICTION_INPUTS}))

    async def on_labeled(self, rows: ColumnBatch) -> None:
        await self._hand("labeled", rows)

    async def hand_over(self) -> None:
        """Save every model's state and forget it: the partitions may go to another worker."""
        await self._ask("hand_over")

    async def save_changed(self) -> None:
        """Save the state of the models that saw events since their last save."""
        await self._ask("save_changed")

    async def flush(self) -> None:
        """Save every model's state and statistics now."""
        await self._ask("flush")

    def start(self) -> None:
        """Start the child now (it imports for a few seconds) rather than at the first batch."""
        if self._process is None:
            self._start()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Let the child finish what it holds and exit (ending it after ``timeout_s``)."""
        if self._process is None:
            return
        try:
            await asyncio.wait_for(self._ask("stop"), timeout_s)
        except (DetectionError, TimeoutError):
            log.warning("detection process did not stop in time; ending it")
        process = self._process
        if process is None:  # it exited meanwhile
            return
        self._forget_child()
        await asyncio.to_thread(process.join, 5)
        if process.is_alive():
            process.kill()

    # --- internals ---------------------------------------------------------------------------------------

    async def _hand(self, kind: str, rows: ColumnBatch) -> None:
        await self._slots.acquire()  # released when the child reports the batch done (or is lost)
        try:
            self._send(kind, rows)
        except BaseException:
            self._slots.release()
            raise

    async def _ask(self, kind: str) -> None:
        await self._send(kind, None)

    def _send(self, kind: str, payload: ColumnBatch | None) -> asyncio.Future[None]:
        """Queue a message for the child (started if need be); the future settles when the child replies."""
        if self._process is None:
            self._start()
        request = next(self._ids)
        done = asyncio.get_running_loop().create_future()
        self._pending[request] = (kind, done)
        self._outgoing.put_nowait((kind, request, payload))
        return done

    async def _write(self, outgoing: asyncio.Queue[tuple[str, int, Any]], connection: Connection) -> None:
        """Write one child's messages in order (a task: ingestion never waits for a busy child's pipe)."""
        while True:
            message = await outgoing.get()
            try:
                # pickled and written in a thread: a large batch must not stall the event loop
                await asyncio.to_thread(_send_pickled, connection, message)
            except (OSError, EOFError):
                self._lost()
                return

    def _start(self) -> None:
        to_child_read, to_child_write = self._context.Pipe(duplex=False)
        from_child_read, from_child_write = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=serve,
            args=(self.settings, to_child_read, from_child_write),
            name="driftloop-detection",
            daemon=True,
        )
        process.start()
        to_child_read.close()  # the child's ends: only the child may hold them, or it never sees EOF
        from_child_write.close()
        self._process, self._to_child, self._from_child = process, to_child_write, from_child_read
        self._outgoing = asyncio.Queue()
        self._writer = asyncio.create_task(self._write(self._outgoing, to_child_write), name="driftloop-detection-out")
        asyncio.get_running_loop().add_reader(from_child_read.fileno(), self._on_reply)
        log.info("detection process started", extra={"fields": {"pid": process.pid}})

    def _on_reply(self) -> None:
        assert self._from_child is not None
        try:
            while self._from_child.poll():
                request, error, report = self._from_child.recv()
                self._take_report(report)
                kind, done = self._pending.pop(request)
                if kind in _BATCHES:
                    self._slots.release()
                    self.metrics.batch_errors += error is not None
                    done.set_result(None)
                elif error is not None:
                    done.set_exception(DetectionError(error))
                else:
                    done.set_result(None)
        except (EOFError, OSError):
            self._lost()

    def _take_report(self, report: dict[str, Any]) -> None:
        self.metrics.alerts_by_kind = Counter(report["alerts_by_kind"])
        self.metrics.rows_written = Counter(report["rows_written"])
        self.metrics.retries = report["retries"]
        self.metrics.rows_waiting = report["rows_waiting"]

    def _lost(self) -> None:
        """The child exited unasked: settle what it held; the next message starts a new one."""
        process = self._process
        if process is None:
            return
        self._forget_child()
        process.join(1)
        held = [kind for kind, _ in self._pending.values()]
        log.error(
            "detection process exited; a new one starts with the next batch, from the models' saved state",
            extra={"fields": {"exitcode": process.exitcode, "batches_not_detected": sum(k in _BATCHES for k in held)}},
        )
        self.metrics.restarts += 1
        for kind, done in self._pending.values():
            if kind in _BATCHES:
                self._slots.release()
                done.set_result(None)
            else:
                done.set_exception(DetectionError(f"the detection process exited before it could {kind}"))
        self._pending.clear()

    def _forget_child(self) -> None:
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        self._writer = None
        if self._from_child is not None:
            asyncio.get_running_loop().remove_reader(self._from_child.fileno())
            self._from_child.close()
        if self._to_child is not None:
            self._to_child.close()
        self._process = self._to_child = self._from_child = None


def _send_pickled(connection: Connection | None, message: tuple[Any, ...]) -> None:
    assert connection is not None
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


# --- the child -------------------------------------------------------------------------------------------


class KafkaAlertPublisher:
    """Publishes alerts on the alerts topic with a kafka-python producer (the child has no Faust app) and
    returns once the broker has them all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: KafkaProducer | None = None

    async def publish(self, alerts: Sequence[Alert]) -> None:
        await asyncio.to_thread(self._publish, alerts)

    def _publish(self, alerts: Sequence[Alert]) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(**self.settings.kafka_python_config(), acks="all")
        sent = [
            self._producer.send(
                self.settings.topics.alerts, json.dumps(a.to_json()).encode(), key=a.model.encode("utf-8")
            )
            for a in alerts
        ]
        self._producer.flush(timeout=30)
        for record in sent:
            record.get(timeout=30)  # raises what the broker said, if it refused

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)


def serve(settings: Settings, inbox: Connection, outbox: Connection) -> None:
    """The child's main: handle messages from the worker until it asks to stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the worker decides
    configure_logging(settings.log_level, settings.log_format)
    from streams.worker import collect_less_often  # the worker's GC tuning suits the detectors as well

    collect_less_often()
    asyncio.run(_serve(settings, inbox, outbox))


async def _serve(settings: Settings, inbox: Connection, outbox: Connection) -> None:
    publisher = KafkaAlertPublisher(settings)
    observer = drift_observer(settings, publisher)
    loop = asyncio.get_running_loop()
    messages: asyncio.Queue[tuple[str, int, Any] | None] = asyncio.Queue()

    def receive() -> None:  # a thread: the worker's writes never wait for the detectors to finish a batch
        while True:
            try:
                message = pickle.loads(inbox.recv_bytes())
            except (EOFError, OSError):
                loop.call_soon_threadsafe(messages.put_nowait, None)
                return
            loop.call_soon_threadsafe(messages.put_nowait, message)

    threading.Thread(target=receive, name="driftloop-detection-inbox", daemon=True).start()
    try:
        while (message := await messages.get()) is not None:
            kind, request, payload = message
            error = None
            try:
                await _handle(observer, kind, payload)
            except Exception as exc:
                log.exception("drift detection failed", extra={"fields": {"message": kind}})
                error = f"{type(exc).__name__}: {exc}"
            sink = observer.sink.metrics
            report = {
                "alerts_by_kind": dict(observer.alerts_by_kind),
                "rows_written": dict(sink.rows_written),
                "retries": sink.retries,
                "rows_waiting": sink.rows_waiting,
            }
            try:
                outbox.send((request, error, report))
            except OSError:
                return  # the worker went away
            if kind == "stop":
                return
    finally:
        observer.close()
        publisher.close()


async def _handle(observer: DriftObserver, kind: str, payload: ColumnBatch | None) -> None:
    if kind == "predictions":
        await observer.on_predictions(payload)  # type: ignore[arg-type]
    elif kind == "labeled":
        await observer.on_labeled(payload)  # type: ignore[arg-type]
    elif kind == "hand_over":
        await observer.hand_over()
    elif kind == "save_changed":
        await observer.save_changed()
    elif kind == "flush":
        await observer.flush()
    elif kind != "stop":
        raise DetectionError(f"unknown request {kind!r}")
