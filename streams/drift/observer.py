"""The drift monitor plugged into ingestion: restore state, detect, publish alerts, save state and statistics.

A model's detector state is read from ClickHouse the first time this worker sees the model (so a
restarted worker, or one that took the partition over in a rebalance, keeps the reference window), and
saved every ``state_interval_s`` when it changed, and whenever partitions are revoked (a rebalance, or
the worker stopping).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.settings import ClickHouseEndpoint, Settings
from driftloop.infra.spec import SpecCatalog, SpecError
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.drift.alerts import ALERT_COLUMNS, Alert
from driftloop.streams.drift.frame import PredictionFrame
from driftloop.streams.drift.monitor import DriftMonitor, restore_model, snapshot_model
from driftloop.streams.drift.silences import Silence, active_silences, mark_silenced
from driftloop.streams.sink import ClickHouseSink

log = logging.getLogger("driftloop.drift")


class AlertPublisher(Protocol):
    """Sends alerts to their subscribers (the alerts topic) and returns once the broker has them."""

    async def publish(self, alerts: Sequence[Alert]) -> None: ...


class DetectorStateStore:
    """Detector state per model in ClickHouse ``detector_state`` (JSON, newest revision wins)."""

    def __init__(self, endpoint: ClickHouseEndpoint, sink: ClickHouseSink) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self._client = SharedClient(endpoint)

    def load(self, model: str) -> dict | None:  # type: ignore[type-arg]
        rows = self._client.execute(
            "SELECT argMax(state, revision) FROM detector_state WHERE model = %(m)s GROUP BY model", {"m": model}
        )
        return json.loads(rows[0][0]) if rows else None

    def forget(self, model: str) -> None:
        """Start the model's monitoring over: a newer ``null`` state, so the next owner learns afresh."""
        self._client.execute(
            "INSERT INTO detector_state (model, state, events, saved_at, revision) VALUES",
            [(model, "null", 0, int(time.time()), time.time_ns() // 1000)],
        )

    async def save(self, states: dict[str, dict]) -> None:  # type: ignore[type-arg]
        if not states:
            return
        now, revision = int(time.time()), time.time_ns() // 1000
        await self.sink.write(
            ColumnBatch(
                "detector_state",
                {
                    "model": list(states),
                    "state": [json.dumps(s) for s in states.values()],
                    "events": [int(s.get("events", 0)) for s in states.values()],
                    "saved_at": [now] * len(states),
                    "revision": [revision] * len(states),
                },
            )
        )

    def close(self) -> None:
        self._client.close()


class DriftObserver:
    """A :class:`~streams.observers.BatchObserver` that runs the drift monitor on every batch."""

    def __init__(
        self,
        monitor: DriftMonitor,
        publisher: AlertPublisher,
        store: DetectorStateStore,
        sink: ClickHouseSink,
        *,
        state_interval_s: float = 30.0,
        stats_interval_s: float = 10.0,
    ) -> None:
        self.monitor = monitor
        self.publisher = publisher
        self.store = store
        self.sink = sink
        self._reader = SharedClient(store.endpoint)  # reads the silences
        self.state_interval_s = state_interval_s
        self.stats_interval_s = stats_interval_s
        self.alerts_by_kind: Counter[str] = Counter()
        self._restored: set[str] = set()
        self._last_state = time.monotonic()
        self._last_stats = time.monotonic()
        self._last_counts: dict[tuple[str, str], int] = {}
        self._saved: dict[str, tuple[int, int]] = {}  # model -> (events, labeled) at its last save
        # the agents for predictions and for labeled rows take turns: the monitor is one state machine
        self._turn = asyncio.Lock()

    async def on_predictions(self, rows: ColumnBatch | PredictionFrame) -> None:
        frame = rows if isinstance(rows, PredictionFrame) else PredictionFrame.from_columns(rows)
        async with self._turn:
            await self._restore([part.model for part in frame.models])
            await self._handle(self.monitor.process_predictions(frame))

    async def on_labeled(self, rows: ColumnBatch) -> None:
        async with self._turn:
            await self._restore(rows["model"])
            await self._handle(self.monitor.process_labeled(rows))

    def close(self) -> None:
        self.store.close()
        self._reader.close()
        self.sink.close()

    async def flush(self) -> None:
        """Save every model's state and statistics now."""
        async with self._turn:
            await self._save_all()

    async def hand_over(self) -> None:
        """Save everything and forget it: the partitions (and models) may go to another worker."""
        async with self._turn:
            await self._save_all()
            self.monitor.models.clear()
            self._restored.clear()

    async def save_changed(self) -> None:
        """Save the state of the models that saw events since their last save (the worker's timer calls it)."""
        async with self._turn:
            await self._save_changed()

    async def _save_all(self) -> None:
        await self.store.save({m: snapshot_model(self.monitor, m) for m in self.monitor.models})
        self._saved = {m: (s.events, s.labeled) for m, s in self.monitor.models.items()}
        await self._write_stats()

    async def _save_changed(self) -> None:
        self._last_state = time.monotonic()
        changed = [m for m, s in self.monitor.models.items() if self._saved.get(m) != (s.events, s.labeled)]
        await self.store.save({m: snapshot_model(self.monitor, m) for m in changed})
        for m in changed:
            state = self.monitor.models[m]
            self._saved[m] = (state.events, state.labeled)

    async def _restore(self, models: list[str]) -> None:
        for model in set(models) - self._restored:
            self._restored.add(model)
            if model in self.monitor.models:
                continue
            saved = await asyncio.to_thread(self.store.load, model)
            if saved is not None:
                try:
                    restore_model(self.monitor, model, saved)
                except SpecError:  # the monitor reports it and leaves this model alone; restored once it is fixed
                    self._restored.discard(model)
                    continue
                log.info("detector state restored", extra={"fields": {"model": model, "events": saved.get("events")}})

    async def _handle(self, alerts: list[Alert]) -> None:
        if alerts:
            now = time.time()
            alerts = mark_silenced(alerts, await self._silences([a.model for a in alerts], now), now)
            told = [a for a in alerts if not a.silenced]  # a silenced alert is recorded, not published
            if told:
                await self.publisher.publish(told)
            rows = [a.to_row() for a in alerts]
            await self.sink.write(
                ColumnBatch("drift_alerts", {name: [row[i] for row in rows] for i, name in enumerate(ALERT_COLUMNS)})
            )
            for alert in alerts:
                self.alerts_by_kind[alert.kind] += 1
                log.warning(
                    ("[silenced] " if alert.silenced else "") + alert.message,
                    extra={"fields": {"alert_id": alert.alert_id}},
                )
        now = time.monotonic()
        if now - self._last_stats >= self.stats_interval_s:
            await self._write_stats()
        if now - self._last_state >= self.state_interval_s:
            await self._save_changed()

    async def _silences(self, models: list[str], now: float) -> list[Silence]:
        """The silences in force for ``models``; none when ClickHouse cannot say (the alerts go out: an alert
        sent during a silence is a nuisance, one lost is worse)."""
        try:
            return await asyncio.to_thread(active_silences, self._reader, sorted(set(models)), now)
        except Exception:  # any failure of the read: the alerts are not held back
            log.warning("could not read alert silences; the alerts are published", exc_info=True)
            return []

    async def _write_stats(self) -> None:
        self._last_stats = time.monotonic()
        rows = []
        now = int(time.time())
        for model, signal in self.monitor.signal_states():
            previous = self._last_counts.get((model, signal.name), -1)
            if signal.seen == previous:
                continue
            self._last_counts[(model, signal.name)] = signal.seen
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
                )
            )
        if rows:
            names = ("model", "signal", "kind", "detector", "ts", "events", "mean", "drifts")
            await self.sink.write(ColumnBatch("detector_stats", {n: [r[i] for r in rows] for i, n in enumerate(names)}))


def drift_observer(settings: Settings, publisher: AlertPublisher) -> DriftObserver:
    """The drift observer the worker runs (in :mod:`streams.drift.process`), configured from ``settings``."""
    sink = ClickHouseSink(settings.clickhouse)
    return DriftObserver(
        DriftMonitor(SpecCatalog(settings.spec_directory)),
        publisher,
        DetectorStateStore(settings.clickhouse, sink),
        sink,
        state_interval_s=settings.detector_state_interval_s,
    )
