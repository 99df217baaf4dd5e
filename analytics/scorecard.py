"""The scorecard in three layers, read from the ``scorecard`` view: business results (the KPI), model metrics,
operational health, per version, stage and hour. ``driftloop scorecard``, the report and Grafana show it.

>>> [layer for layer, _ in LAYERS]
['business', 'model', 'operations']
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from typing import Any, NamedTuple

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.clickhouse.migrations import discover
from driftloop.infra.errors import SchemaError
from driftloop.infra.settings import Settings

#: The event tables the ``scorecard`` view reads, and how a row of each names its model.
_SCANNED = {
    "predictions": "model",
    "labeled": "model",
    "version_changes": "model",
    "dead_letters": "visitParamExtractString(original, 'model')",
    "model_specs": "model",
}


class ScorecardRow(NamedTuple):
    """One row of the ``scorecard`` view (NaN where a metric does not apply or has no rows)."""

    model: str
    version: int
    stage: str
    hour: dt.datetime
    predictions: int
    served_share: float
    labeled_rows: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float
    mae: float
    rmse: float
    kpi_rows: int
    kpi_sum: float
    kpi_mean: float
    label_delay_p50_s: float
    label_delay_p99_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    dead_letters: int

    def to_json(self) -> dict[str, Any]:
        """The row as JSON values (NaN as null, the hour in RFC 3339)."""
        out: dict[str, Any] = {}
        for name, value in self._asdict().items():
            if isinstance(value, dt.datetime):
                value = value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            out[name] = value
        return out


#: The three layers and the columns each shows (leaders, engineers, operators).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("business", ("kpi_rows", "kpi_sum", "kpi_mean")),
    ("model", ("labeled_rows", "accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")),
    (
        "operations",
        (
            "predictions",
            "served_share",
            "label_delay_p50_s",
            "label_delay_p99_s",
            "latency_p50_ms",
            "latency_p99_ms",
            "dead_letters",
        ),
    ),
)


@functools.cache
def one_model_scorecard(database: str) -> str:
    """The ``scorecard`` view's query (as its newest migration defines it) with each of its scans of an event table
    kept to the rows of the model ``%(m)s``: ClickHouse 18.16 does not push a filter on a view into the view's
    subqueries, so ``SELECT ... FROM scorecard WHERE model = ...`` read every model's rows (20 s for one model
    among twenty models' 20 million predictions and labels; 1.1 s kept to the model). Every one of the view's
    groupings is by model, so the model's rows are the same."""
    select = None
    for migration in discover():
        for statement in migration.statements(database):
            if found := re.match(r"CREATE VIEW IF NOT EXISTS \S+\.scorecard AS\s+(SELECT\b.*)", statement, re.S):
                select = found.group(1)
    if select is None:
        raise SchemaError("no migration creates the scorecard view: the package's SQL files are incomplete")
    for table, model in _SCANNED.items():
        select, scans = re.subn(
            rf"\bFROM {re.escape(database)}\.{table} FINAL\b", rf"\g<0> WHERE {model} = %(m)s", select
        )
        if not scans:
            raise SchemaError(f"the scorecard view no longer reads {table} FINAL: keep _SCANNED in step with it")
    return select


class SpecRow(NamedTuple):
    """What a model's spec in force says that its scorecard's readers need (``model_specs``)."""

    task: str
    positive_class: str
    owner: str
    kpi_name: str

    def describe(self, layer: str) -> str:
        """A layer's heading beyond its name: what its numbers are of (empty: nothing to add).

        >>> SpecRow("binary", "fraud", "risk-ml", "").describe("model")
        'positive class fraud'
        >>> SpecRow("", "", "", "loss avoided").describe("business")
        'KPI: loss avoided'
        """
        if layer == "business" and self.kpi_name:
            return f"KPI: {self.kpi_name}"
        if layer == "model" and self.positive_class:
            return f"positive class {self.positive_class}"
        if layer == "model" and self.task == "multiclass":
            return "precision, recall, F1: means over the classes"
        return ""


def load_spec_row(settings: Settings, model: str) -> SpecRow | None:
    """The model's spec in force as the drift worker recorded it; None before it has."""
    client = SharedClient(settings.clickhouse)
    try:
        rows = client.execute(
            f"SELECT {', '.join(SpecRow._fields)} FROM model_specs FINAL WHERE model = %(m)s", {"m": model}
        )
    finally:
        client.close()
    return SpecRow(*rows[0]) if rows else None


def load_scorecard(
    settings: Settings, model: str, since: float | None = None, until: float | None = None
) -> list[ScorecardRow]:
    """The model's scorecard rows between ``since`` and ``until`` (hours of prediction time), oldest first."""
    client = SharedClient(settings.clickhouse)
    try:
        rows = client.execute(
            f"SELECT {', '.join(ScorecardRow._fields)} FROM ({one_model_scorecard(settings.clickhouse.database)}) "
            "WHERE model = %(m)s AND hour >= toStartOfHour(toDateTime(%(s)s)) AND hour <= toDateTime(%(u)s) "
            "ORDER BY hour, version, stage",
            {"m": model, "s": int(since or 0), "u": int(until or 4_000_000_000)},
        )
    finally:
        client.close()
    return [ScorecardRow(*row) for row in rows]
