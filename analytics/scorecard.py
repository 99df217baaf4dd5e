"""The scorecard in three layers, read from the ``scorecard`` view: business results (the KPI), model metrics,
operational health, per version, stage and hour. ``driftloop scorecard``, the report and Grafana show it.

>>> [layer for layer, _ in LAYERS]
['business', 'model', 'operations']
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, NamedTuple

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.settings import Settings


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


def load_scorecard(
    settings: Settings, model: str, since: float | None = None, until: float | None = None
) -> list[ScorecardRow]:
    """The model's scorecard rows between ``since`` and ``until`` (hours of prediction time), oldest first."""
    client = SharedClient(settings.clickhouse)
    try:
        rows = client.execute(
            f"SELECT {', '.join(ScorecardRow._fields)} FROM scorecard WHERE model = %(m)s "
            "AND hour >= toStartOfHour(toDateTime(%(s)s)) AND hour <= toDateTime(%(u)s) "
            "ORDER BY hour, version, stage",
            {"m": model, "s": int(since or 0), "u": int(until or 4_000_000_000)},
        )
    finally:
        client.close()
    return [ScorecardRow(*row) for row in rows]
