"""What the release controller reads from ClickHouse: labeled rows of two versions, paired or side by side.

Every query reads ``labeled`` (deduplicated: FINAL) of one model from a moment on (prediction time, ms), and
returns aggregates, never rows: a shadow of a busy model compares millions of pairs in one round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from driftloop.release.stats import Sample


class Queries(Protocol):
    """What the evidence needs from a ClickHouse client (``clickhouse_driver.Client`` fits)."""

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True)
class Pairs:
    """Labeled requests both versions scored (the baseline served them, the new one in shadow)."""

    pairs: int
    baseline_only: int  # right by the baseline alone (classification)
    new_only: int  # right by the new version alone
    baseline_accuracy: float
    mean_gain: float  # baseline's absolute error - the new version's, on average (regression)
    gain_variance: float
    baseline_mae: float


@dataclass(frozen=True)
class LiveRows:
    """One version's served labeled rows: the model metric (oriented higher-is-better) and the KPI."""

    metric: Sample
    kpi: Sample


def paired(client: Queries, model: str, baseline: int, new: int, since_ms: int) -> Pairs:
    """Requests labeled since ``since_ms`` that ``baseline`` served and ``new`` scored unserved."""
    side = (
        "SELECT request_id, any(correct) AS {p}_correct, any(error) AS {p}_error FROM labeled FINAL "
        "WHERE model = %(m)s AND model_version = %({p})s AND served = {served} AND ts_ms >= %(since)s "
        "GROUP BY request_id"
    )
    ((pairs, baseline_only, new_only, accuracy, gain, variance, mae),) = client.execute(
        "SELECT count(), sum(base_correct * (1 - new_correct)), sum((1 - base_correct) * new_correct), "
        "avg(base_correct), avg(base_error - new_error), varPop(base_error - new_error), avg(base_error) "
        f"FROM ({side.format(p='base', served=1)}) AS base "
        f"ALL INNER JOIN ({side.format(p='new', served=0)}) AS new USING (request_id)",
        {"m": model, "base": baseline, "new": new, "since": since_ms},
    )
    return Pairs(
        int(pairs), int(baseline_only or 0), int(new_only or 0), _num(accuracy), _num(gain), _num(variance), _num(mae)
    )


def live_rows(
    client: Queries,
    model: str,
    version: int,
    since_ms: int,
    *,
    metric: str,
    kpi_higher_is_better: bool = True,
    last: int | None = None,
) -> LiveRows:
    """``version``'s served rows labeled since ``since_ms`` (only the ``last`` most recent, if given)."""
    value = "toFloat64(correct)" if metric == "accuracy" else "-error"
    recent = f" ORDER BY ts_ms DESC LIMIT {int(last)}" if last else ""
    ((n, mean, variance, kpi_n, kpi_mean, kpi_variance),) = client.execute(
        "SELECT count(), avg(x), varPop(x), countIf(NOT isNaN(value)), avgIf(value, NOT isNaN(value)), "
        "varPopIf(value, NOT isNaN(value)) FROM ("
        f" SELECT {value} AS x, value FROM labeled FINAL"
        " WHERE model = %(m)s AND model_version = %(v)s AND served = 1 AND ts_ms >= %(since)s"
        f"{recent})",
        {"m": model, "v": version, "since": since_ms},
    )
    kpi = Sample(int(kpi_n), _num(kpi_mean), _num(kpi_variance))
    return LiveRows(Sample(int(n), _num(mean), _num(variance)), kpi if kpi_higher_is_better else kpi.negated())


def label_delay_s(client: Queries, model: str, *, last: int = 10_000) -> float:
    """The median seconds from prediction to label of ``model``'s ``last`` most recent labeled rows (NaN: none)."""
    ((median,),) = client.execute(
        "SELECT median(label_delay_s) FROM (SELECT label_delay_s FROM labeled FINAL WHERE model = %(m)s"
        f" ORDER BY ts_ms DESC LIMIT {int(last)})",
        {"m": model},
    )
    return _num(median)


def _num(value: object) -> float:
    number = float(value) if value is not None else math.nan  # type: ignore[arg-type]
    return number if math.isfinite(number) else math.nan
