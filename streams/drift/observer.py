"""The drift monitors plugged into ingestion: restore state, detect, hand detections on, save state and statistics.

Detection runs per Kafka partition: one :class:`~streams.drift.monitor.DriftMonitor` for each partition
this worker reads, holding the detectors of the models whose events arrive there (``docs/scaling.md``).
A model keyed by its name sits on one partition, as before; a busy model whose events are spread over
several partitions (keyed by request id) is watched on each, by whichever worker owns it, and the alert
gate (``streams.drift.gate``) lets one alert per drift through.

The state of each (model, partition) is read from ClickHouse the first time this worker sees it (so a
restarted worker, or one that took the partition over in a rebalance, keeps the reference window), and
saved before every offset commit, every ``state_interval_s`` when it changed, and whenever partitions are
revoked (a rebalance, or the worker stopping).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.contract import Alert
from driftloop.infra.settings import ClickHouseEndpoint, Settings
from driftloop.infra.spec import SpecCatalog, SpecError
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.drift.frame import ModelPredictions, PredictionFrame
from driftloop.streams.drift.monitor import DriftMonitor
from driftloop.streams.drift.monitoring_start import WHOLE_MODEL
from driftloop.streams.drift.snapshot import restore_model, snapshot_model
from driftloop.streams.drift.spec_record import SpecRecorder
from driftloop.streams.drift.state_json import state_text
from driftloop.streams.drift.waiting import WaitingParts
from driftloop.streams.sink import ClickHouseSink

log = logging.getLogger("driftloop.drift")

Shard = tuple[str, int]  # (model, Kafka partition): what one set of detectors watches


class AlertPublisher(Protocol):
    """Hands detections on (the detections topic, read by the alert gate); returns once the broker has them."""

    async def publish(self, alerts: Sequence[Alert]) -> None: ...


class DetectorStateStore:
    """Detector state per (model, partition) in ClickHouse ``detector_state`` (JSON, newest revision wins)."""

    def __init__(self, endpoint: ClickHouseEndpoint, sink: ClickHouseSink) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.bytes_saved = 0  # of the states' text, in all (driftloop_detector_state_bytes)
        self._client = SharedClient(endpoint)

    def load(self, model: str, partition: int) -> dict | None:  # type: ignore[type-arg]
        """The newest state of ``model`` on ``partition``; else the one saved for the whole model (before
        detection was per partition), else None."""
        rows = self._client.execute(
            "SELECT partition, argMax(state, revision) FROM detector_state "
            "WHERE model = %(m)s AND partition IN (%(p)s, %(whole)s) GROUP BY partition",
            {"m": model, "p": partition, "whole": WHOLE_MODEL},
        )
        states = dict(rows)
        saved = states.get(partition, states.get(WHOLE_MODEL))
        return json.loads(saved) if saved is not None else None

    def forget(self, model: str) -> None:
        """Start the model's monitoring over: a newer ``null`` state on every partition, so that the next
        owner learns afresh. The whole model's (:data:`WHOLE_MODEL`) keeps when
        (:func:`~streams.drift.monitoring_start.monitoring_began`)."""
        partitions = {p for (p,) in self._client.execute(
            "SELECT DISTINCT partition FROM detector_state WHERE model = %(m)s", {"m": model}
        )} | {WHOLE_MODEL}  # fmt: skip
        now, revision = int(time.time()), time.time_ns() // 1000
        self._client.execute(
            "INSERT INTO detector_state (model, partition, state, events, saved_at, revision) VALUES",
            [(model, p, "null", 0, now, revision) for p in sorted(partitions)],
        )

    async def save(self, states: dict[Shard, dict]) -> None:  # type: ignore[type-arg]
        if not states:
            return
        now, revision = int(time.time()), time.time_ns() // 1000
        texts = [state_text(s) for s in states.values()]
        await self.sink.write(
            ColumnBatch(
                "detector_state",
                {
                    "model": [model for model, _ in states],
                    "partition": [partition for _, partition in states],
                    "state": texts,
                    "events": [int(s.get("events", 0)) for s in states.values()],
                    "saved_at": [now] * len(states),
                    "revision": [revision] * len(states),
                },
            )
        )
        self.bytes_saved += sum(len(text.encode()) for text in texts)

    def close(self) -> None:
        self._client.close()


class DriftObserver:
    """A :class:`~streams.observers.BatchObserver` that runs a drift monitor per partition on every batch."""

    def __init__(
        self,
        new_monitor: Callable[[], DriftMonitor],
        publisher: AlertPublisher,
        store: DetectorStateStore,
        sink: ClickHouseSink,
        *,
        state_interval_s: float = 30.0,
        stats_interval_s: float = 10.0,
        detection_wait_s: float = 0.0,
    ) -> None:
        self.new_monitor = new_monitor
        self.monitors: dict[int, DriftMonitor] = {}  # Kafka partition -> the detectors of its models
        self.publisher = publisher
        self.store = store
        self.sink = sink
        self.state_interval_s = state_interval_s
        self.stats_interval_s = stats_interval_s
        self.detections_by_kind: Counter[str] = Counter()
        self._restored: set[Shard] = set()
        self._last_state = time.monotonic()
        self._last_stats = time.monotonic()
        self._last_counts: dict[tuple[int, str, str], int] = {}
        self._saved: dict[Shard, tuple[int, int]] = {}  # (events, labeled) at its last save
        self._specs = SpecRecorder()  # the specs written to model_specs
        self._failures_before = 0  # detector failures of the monitors handed over
        self.waiting = WaitingParts(detection_wait_s)  # models' small parts, detected with their next ones
        self._due: asyncio.Task[None] | None = None  # detects what waited long enough when no batch comes
        # the agents for predictions and for labeled rows take turns: the monitors are one state machine
        self._turn = asyncio.Lock()

    @property
    def detector_failures(self) -> int:
        """Times a detector raised on its values (its signal started again), since the process started."""
        return self._failures_before + sum(monitor.detector_failures for monitor in self.monitors.values())

    def monitor(self, partition: int) -> DriftMonitor:
        """The monitor of ``partition``'s models (made at its first batch)."""
        if partition not in self.monitors:
            self.monitors[partition] = self.new_monitor()
        return self.monitors[partition]

    async def on_predictions(self, frame: PredictionFrame) -> None:
        """Run each partition's detectors on its part of ``frame``: a model's part of few events once it has
        waited for more (:mod:`streams.drift.waiting`), with what waited of the others long enough."""
        async with self._turn:
            now = time.monotonic()
            for partition, part in frame.by_partition().items():
                await self._restore(partition, [p.model for p in part.models])
                await self._detect(partition, self.waiting.take(partition, part.models, now))
            for partition, parts in self.waiting.due(now).items():
                await self._detect(partition, parts)
            await self._on_timers()
            if self.waiting.held() and (self._due is None or self._due.done()):
                self._due = asyncio.create_task(self._detect_when_due())

    async def _detect_when_due(self) -> None:
        """Detect each waiting part when it is due, though no batch comes (the stream paused or ended)."""
        while (due := self.waiting.next_due()) is not None:
            await asyncio.sleep(max(due - time.monotonic(), 0.01))
            async with self._turn:
                try:
                    for partition, parts in self.waiting.due(time.monotonic()).items():
                        await self._detect(partition, parts)
                except Exception:  # logged, and the batch's parts are not tried again (as a batch that fails)
                    log.exception("detection of parts that waited failed")

    async def on_labeled(self, rows: ColumnBatch, partition: int) -> None:
        async with self._turn:
            await self._detect_waiting(partition)  # the predictions before these outcomes are detected first
            await self._restore(partition, rows["model"])
            await self._publish(partition, self.monitor(partition).process_labeled(rows))
            await self._on_timers()

    async def _detect(self, partition: int, parts: list[ModelPredictions]) -> None:
        if parts:
            await self._publish(partition, self.monitor(partition).process_predictions(PredictionFrame(parts)))

    async def _detect_waiting(self, partition: int | None = None) -> None:
        """Detect what waits (of ``partition``, or of every partition) now: before a save, a hand-over, or the
        partition's labeled rows."""
        for waited, parts in self.waiting.release(partition).items():
            await self._detect(waited, parts)

    def close(self) -> None:
        if self._due is not None:
            self._due.cancel()
        self.store.close()
        self.sink.close()

    async def flush(self) -> None:
        """Save every model's state and statistics now."""
        async with self._turn:
            await self._save_all()

    async def hand_over(self) -> None:
        """Save everything and forget it: the partitions (and models) may go to another worker."""
        async with self._turn:
            await self._save_all()
            self._failures_before = self.detector_failures
            self.monitors.clear()
            self._restored.clear()

    async def save_changed(self) -> None:
        """Save the state of the models that saw events since their last save (before each commit, and on
        the worker's timer), after letting out the alerts held back of models gone quiet meanwhile
        (:meth:`~streams.drift.monitor.DriftMonitor.release_quiet`; their state is saved then too)."""
        async with self._turn:
            await self._detect_waiting()
            for partition, monitor in self.monitors.items():
                released = monitor.release_quiet()
                for model in {alert.model for alert in released}:
                    self._saved.pop((model, partition), None)
                await self._publish(partition, released)
            await self._save_changed()

    def _shards(self) -> list[tuple[Shard, DriftMonitor]]:
        return [((m, p), monitor) for p, monitor in self.monitors.items() for m in monitor.models]

    async def _save_all(self) -> None:
        await self._detect_waiting()  # a saved state holds every event handed over before the save
        shards = self._shards()
        await self.store.save({(m, p): snapshot_model(monitor, m) for (m, p), monitor in shards})
        self._saved = {(m, p): _counts(monitor, m) for (m, p), monitor in shards}
        await self._write_stats()

    async def _save_changed(self) -> None:
        await self._detect_waiting()
        self._last_state = time.monotonic()
        changed = [
            (shard, monitor)
            for shard, monitor in self._shards()
            if self._saved.get(shard) != _counts(monitor, shard[0])
        ]
        await self.store.save({(m, p): snapshot_model(monitor, m) for (m, p), monitor in changed})
        for (m, p), monitor in changed:
            self._saved[(m, p)] = _counts(monitor, m)
        await self._write_specs()

    async def _restore(self, partition: int, models: list[str]) -> None:
        monitor = self.monitor(partition)
        for model in set(models):
            shard = (model, partition)
            if shard in self._restored:
                continue
            self._restored.add(shard)
            if model in monitor.models:
                continue
            try:
                saved = await asyncio.to_thread(self.store.load, model, partition)
                if saved is not None:
                    restore_model(monitor, model, saved)
            except SpecError:  # the monitor reports it and leaves this model alone; restored once it is fixed
                self._restored.discard(shard)
                continue
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # a state this worker cannot read (written by another version, or damaged): its detection
                # starts afresh, rather than the batch failing and the model going on half restored
                monitor.models.pop(model, None)
                log.warning(
                    "detector state unreadable; the model's detection starts afresh",
                    extra={"fields": {"model": model, "partition": partition, "error": f"{type(exc).__name__}: {exc}"}},
                )
                continue
            if saved is not None:
                log.info(
                    "detector state restored",
                    extra={"fields": {"model": model, "partition": partition, "events": saved.get("events")}},
                )

    async def _publish(self, partition: int, alerts: list[Alert]) -> None:
        if alerts:
            # the alert gate (streams.drift.gate) decides which become alerts: one per drift, whatever the
            # number of partitions (and workers) that saw it
            await self.publisher.publish(
                [dataclasses.replace(a, evidence={**a.evidence, "partition": partition}) for a in alerts]
            )
            for alert in alerts:
                self.detections_by_kind[alert.kind] += 1
                log.info(
                    "detection handed to the alert gate",
                    extra={"fields": {"alert_id": alert.alert_id, "model": alert.model, "partition": partition}},
                )

    async def _on_timers(self) -> None:
        now = time.monotonic()
        if now - self._last_stats >= self.stats_interval_s:
            await self._write_stats()
        if now - self._last_state >= self.state_interval_s:
            await self._save_changed()

    async def _write_stats(self) -> None:
        self._last_stats = time.monotonic()
        await self._write_specs()
        rows = []
        now = int(time.time())
        for partition, monitor in self.monitors.items():
            for model, signal in monitor.signal_states():
                previous = self._last_counts.get((partition, model, signal.name), -1)
                if signal.seen == previous:
                    continue
                self._last_counts[(partition, model, signal.name)] = signal.seen
                rows.append(
                    (
                        model,
                        signal.name,
                        signal.kind,
                        signal.detector.name,
                        now,
                        signal.seen,
                        signal.last_mean,
                        signal.drifts,
                        partition,
                    )
                )
        if rows:
            names = ("model", "signal", "kind", "detector", "ts", "events", "mean", "drifts", "partition")
            await self.sink.write(ColumnBatch("detector_stats", {n: [r[i] for r in rows] for i, n in enumerate(names)}))

    async def _write_specs(self) -> None:
        """Write the spec in force of each model watched here to ``model_specs`` when it is not written as it is
        (:mod:`streams.drift.spec_record`). A write that fails is tried again with the next statistics."""
        specs, catalogs = {}, {}
        for monitor in self.monitors.values():
            for model in monitor.models:
                try:
                    specs[model], catalogs[model] = monitor.specs.get(model), monitor.specs
                except SpecError:  # broken from its first read: the monitor reports it
                    continue
        now_us = time.time_ns() // 1000
        batch = self._specs.changed(specs.values(), has_file=lambda m: catalogs[m].path(m).is_file(), now_us=now_us)
        if batch is None:
            return
        try:
            await self.sink.write(batch)
        except Exception as exc:  # an old schema (no migration 0017), or ClickHouse away: the next time
            log.warning(
                "model specs not written to model_specs; tried again with the next statistics",
                extra={"fields": {"models": len(batch), "error": f"{type(exc).__name__}: {exc}"}},
            )
            return
        self._specs.written(batch)


def _counts(monitor: DriftMonitor, model: str) -> tuple[int, int]:
    state = monitor.models[model]
    return state.events, state.labeled


def drift_observer(settings: Settings, publisher: AlertPublisher) -> DriftObserver:
    """The drift observer the worker runs (in :mod:`streams.drift.process`), configured from ``settings``."""
    sink = ClickHouseSink(settings.clickhouse)
    specs = SpecCatalog.of(settings)
    return DriftObserver(
        lambda: DriftMonitor(specs),
        publisher,
        DetectorStateStore(settings.clickhouse, sink),
        sink,
        state_interval_s=settings.detector_state_interval_s,
        detection_wait_s=settings.detection_wait_s,
    )
