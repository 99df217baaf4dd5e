"""Backtests: replay a model's history from ClickHouse through the configured detectors and alert policy.

The tool for tuning a spec without waiting for live traffic: the same monitor the worker runs, fed the
model's predictions and labeled rows in event-time order, reports which alerts would have fired.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, replace

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.contract import Alert
from driftloop.infra.settings import Settings
from driftloop.infra.spec import SpecCatalog
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.decode import PREDICTION_COLUMNS
from driftloop.streams.drift.monitor import DriftMonitor

_LABELED = ("model", "model_version", "request_id", "ts_ms", "error", "served")


@dataclass(frozen=True)
class BacktestReport:
    """What a backtest saw and which alerts the policy would have let out."""

    model: str
    predictions: int
    labeled: int
    alerts: tuple[Alert, ...]
    detections: int  # detector firings before the policy


def backtest(
    settings: Settings,
    model: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    specs: SpecCatalog | None = None,
    chunk_rows: int = 20_000,
) -> BacktestReport:
    """Replay ``model`` between ``since`` and ``until`` (default: everything). A spec the monitor cannot run is
    a :class:`~driftloop.infra.spec.SpecError` before anything is replayed (the worker leaves such a model
    unmonitored: a replay of it would report no alert)."""
    monitor = DriftMonitor(specs or SpecCatalog.of(settings), clock=lambda: 0.0)
    monitor.checked_spec(model)
    alerts: list[Alert] = []
    predictions = labeled = 0
    for batch in _history(settings, "predictions", PREDICTION_COLUMNS, model, since, until, chunk_rows):
        predictions += len(batch)
        alerts += monitor.process_predictions(batch)
    for batch in _history(settings, "labeled", _LABELED, model, since, until, chunk_rows):
        labeled += len(batch)
        alerts += monitor.process_labeled(batch)
    # the wall clock of a replay means nothing: report the event time
    alerts = [replace(alert, detected_at=alert.event_ts) for alert in alerts]
    detections = sum(s.drifts for _, s in monitor.signal_states())
    return BacktestReport(model, predictions, labeled, tuple(sorted(alerts, key=lambda a: a.event_ts)), detections)


def _history(
    settings: Settings,
    table: str,
    columns: tuple[str, ...],
    model: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    chunk_rows: int,
) -> Iterator[ColumnBatch]:
    client = connect(settings.clickhouse)
    names = ", ".join(f"`{c}`" for c in columns)
    # constants as toDateTime(epoch): 18.16 cannot compare a text literal with a DateTime inside the sorting key
    where = "model = %(model)s"
    where += " AND ts >= toDateTime(%(since)s)" if since else ""
    where += " AND ts < toDateTime(%(until)s)" if until else ""
    rows = client.execute_iter(
        f"SELECT {names} FROM {table} FINAL WHERE {where} ORDER BY ts_ms, request_id",
        {"model": model, "since": _epoch(since), "until": _epoch(until)},
        settings={"max_block_size": chunk_rows},
    )
    chunk: list[tuple] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) == chunk_rows:
                yield _batch(table, columns, chunk)
                chunk = []
        if chunk:
            yield _batch(table, columns, chunk)
    finally:
        client.disconnect()


def _batch(table: str, columns: tuple[str, ...], rows: list[tuple]) -> ColumnBatch:
    return ColumnBatch(table, {name: [row[i] for row in rows] for i, name in enumerate(columns)})


def _epoch(moment: dt.datetime | None) -> int | None:
    if moment is None:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp())
