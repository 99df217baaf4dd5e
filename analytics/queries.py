"""The report's data, read from ClickHouse as DataFrames (one query each, bucketed in the server).

>>> bucket_seconds(0, 180)
5
>>> bucket_seconds(0, 7 * 86400)
10080
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings


class NoDataError(DriftloopError):
    """The model has nothing in ClickHouse to report on."""


def bucket_seconds(start: float, end: float, buckets: int = 60) -> int:
    """A bucket width that gives about ``buckets`` points over [start, end], at least 5 s."""
    return max(5, int((end - start) / buckets))


@dataclass(frozen=True)
class ModelHistory:
    """Everything the report shows about one model over one time range."""

    model: str
    start: float
    end: float
    bucket_s: int
    task: str  # "classification" (accuracy) or "regression" (mean error)
    performance: pd.DataFrame  # bucket, model_version, labeled, accuracy, mean_error
    volume: pd.DataFrame  # bucket, predictions
    # alert_id, kind, signal, detector, event_ts, detected_at, change_point_ts, message, features (the JSON
    # array a joint or correlation alert names, else empty)
    alerts: pd.DataFrame
    versions: pd.DataFrame  # version, status, updated_at, created_at, reason, metric_name, metric_value
    promotions: pd.DataFrame  # version, at: when each version served its first prediction
    stages: pd.DataFrame  # changed_at, version, from_stage, to_stage, path, traffic_share, test, result, reason
    runs: pd.DataFrame  # started_at, finished_at, status, device, train_rows, *_s phases, versions, metrics


def _frame(client: SharedClient, sql: str, params: dict, columns: list[str]) -> pd.DataFrame:  # type: ignore[type-arg]
    return pd.DataFrame(client.execute(sql, params), columns=columns)


def load_history(
    settings: Settings, model: str, since: float | None = None, until: float | None = None
) -> ModelHistory:
    """The model's history between ``since`` and ``until`` (default: everything it has)."""
    client = SharedClient(settings.clickhouse)
    try:
        span = client.execute(
            "SELECT toUInt32(min(ts)), toUInt32(max(ts)), count() FROM predictions WHERE model = %(m)s"
            " AND ts >= toDateTime(%(s)s) AND ts <= toDateTime(%(u)s)",
            {"m": model, "s": int(since or 0), "u": int(until or 4_000_000_000)},
        )[0]
        if not span[2]:
            raise NoDataError(
                f"no predictions of {model!r} in ClickHouse for that time: check the model name "
                "(`driftloop models list`) and --since"
            )
        start, end = float(span[0]), float(span[1])
        width = bucket_seconds(start, end)
        p = {"m": model, "s": int(start), "u": int(end) + 1, "b": width}
        window = "model = %(m)s AND ts >= toDateTime(%(s)s) AND ts <= toDateTime(%(u)s)"
        performance = _frame(
            client,
            "SELECT intDiv(toUInt32(ts), %(b)s) * %(b)s AS bucket, model_version, uniqExact(event_id), avg(correct), "
            f"avg(error) FROM labeled FINAL WHERE {window} AND served = 1 "
            "GROUP BY bucket, model_version ORDER BY bucket, model_version",
            p,
            ["bucket", "model_version", "labeled", "accuracy", "mean_error"],
        )
        volume = _frame(
            client,
            "SELECT intDiv(toUInt32(ts), %(b)s) * %(b)s AS bucket, uniqExact(event_id) FROM predictions "
            f"WHERE {window} AND served = 1 GROUP BY bucket ORDER BY bucket",
            p,
            ["bucket", "predictions"],
        )
        alerts = _frame(
            client,
            "SELECT alert_id, toString(kind), signal, detector, toUInt32(event_ts), toUInt32(detected_at), "
            "toUInt32(change_point_ts), model_version, message, visitParamExtractRaw(evidence, 'features') "
            "FROM drift_alerts FINAL "
            "WHERE model = %(m)s AND event_ts >= toDateTime(%(s)s) AND event_ts <= toDateTime(%(u)s) "
            "ORDER BY detected_at, alert_id",
            p,
            [
                "alert_id",
                "kind",
                "signal",
                "detector",
                "event_ts",
                "detected_at",
                "change_point_ts",
                "model_version",
                "message",
                "features",
            ],
        )
        versions = _frame(
            client,
            "SELECT version, toString(status), toUInt32(created_at), toUInt32(updated_at), reason, metric_name, "
            "metric_value, trigger_alert_id FROM model_versions FINAL WHERE model = %(m)s ORDER BY version",
            p,
            [
                "version",
                "status",
                "created_at",
                "updated_at",
                "reason",
                "metric_name",
                "metric_value",
                "trigger_alert_id",
            ],
        )
        promotions = _frame(  # from the served predictions: when each version really went live
            client,
            "SELECT model_version, toUInt32(min(ts)) AS at FROM predictions "
            f"WHERE {window} AND model_version > 0 AND served = 1 GROUP BY model_version ORDER BY at",
            p,
            ["version", "at"],
        )
        stages = _frame(
            client,
            "SELECT changed_at_ms / 1000, version, toString(from_stage), toString(to_stage), path, traffic_share, "
            "test, result, reason FROM version_changes FINAL WHERE model = %(m)s "
            "AND changed_at >= toDateTime(%(s)s) ORDER BY changed_at_ms, change_id",
            p,
            ["changed_at", "version", "from_stage", "to_stage", "path", "traffic_share", "test", "result", "reason"],
        )
        runs = _frame(
            client,
            "SELECT toUInt32(started_at), toUInt32(finished_at), toString(status), device, train_rows, fetch_s, "
            "train_s, evaluate_s, publish_s, champion_version, challenger_version, metric_name, champion_metric, "
            "challenger_metric, error FROM retrain_runs FINAL WHERE model = %(m)s "
            "AND started_at >= toDateTime(%(s)s) ORDER BY started_at, run_id",
            p,
            [
                "started_at",
                "finished_at",
                "status",
                "device",
                "train_rows",
                "fetch_s",
                "train_s",
                "evaluate_s",
                "publish_s",
                "champion_version",
                "challenger_version",
                "metric_name",
                "champion_metric",
                "challenger_metric",
                "error",
            ],
        )
    finally:
        client.close()
    # classification rows store error = 1 - correct; regression rows an absolute error
    classification = bool(((performance["mean_error"] + performance["accuracy"] - 1).abs() < 1e-9).all())
    return ModelHistory(
        model,
        start,
        end,
        width,
        "classification" if classification else "regression",
        performance,
        volume,
        alerts,
        versions,
        promotions,
        stages,
        runs,
    )


def feature_values(
    settings: Settings, model: str, feature: str, start: float, split: float, end: float, limit: int = 20_000
) -> tuple[pd.Series, pd.Series, str]:
    """A feature's values before and after ``split`` (the change point), and whether it is numeric or categorical."""
    client = SharedClient(settings.clickhouse)
    try:
        params = {"m": model, "f": feature, "s": int(start), "x": int(split), "u": int(end) + 1, "n": limit}
        halves = []
        for low, high in (("s", "x"), ("x", "u")):
            window = f"model = %(m)s AND ts >= toDateTime(%({low})s) AND ts < toDateTime(%({high})s)"
            numeric = client.execute(
                f"SELECT v FROM (SELECT num.value AS v, num.name AS name FROM predictions ARRAY JOIN num "
                f"WHERE {window} AND served = 1) WHERE name = %(f)s AND isFinite(v) LIMIT %(n)s",
                params,
            )
            if numeric:
                halves.append(pd.Series([v for (v,) in numeric], dtype="float64"))
                continue
            categorical = client.execute(
                f"SELECT v FROM (SELECT cat.value AS v, cat.name AS name FROM predictions ARRAY JOIN cat "
                f"WHERE {window} AND served = 1) WHERE name = %(f)s LIMIT %(n)s",
                params,
            )
            halves.append(pd.Series([v for (v,) in categorical], dtype=object))
    finally:
        client.close()
    kind = "numeric" if any(h.dtype == "float64" and len(h) for h in halves) else "categorical"
    return halves[0], halves[1], kind


def pair_values(
    settings: Settings, model: str, pair: tuple[str, str], start: float, split: float, end: float, limit: int = 5000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two features' values together (the events that sent both), before and after ``split``: a feature that any
    of them sent as a number is a float column (an event that sent it otherwise left out), else a text one."""
    client = SharedClient(settings.clickhouse)
    try:
        params = {"m": model, "a": pair[0], "b": pair[1], "s": int(start), "x": int(split), "u": int(end) + 1}
        both = " AND ".join(f"(has(num.name, %({f})s) OR has(cat.name, %({f})s))" for f in "ab")
        columns = ", ".join(
            f"has(num.name, %({f})s), num.value[indexOf(num.name, %({f})s)], cat.value[indexOf(cat.name, %({f})s)]"
            for f in "ab"
        )
        halves = [
            client.execute(
                f"SELECT {columns} FROM predictions WHERE model = %(m)s AND ts >= toDateTime(%({low})s) "
                f"AND ts < toDateTime(%({high})s) AND served = 1 AND {both} LIMIT {int(limit)}",
                params,
            )
            for low, high in (("s", "x"), ("x", "u"))
        ]
    finally:
        client.close()
    numeric = [any(row[3 * k] for half in halves for row in half) for k in range(2)]

    def column(rows: list[tuple], k: int) -> pd.Series:  # type: ignore[type-arg]
        if numeric[k]:  # an event that sent it otherwise: NaN, left out below
            return pd.Series([row[3 * k + 1] if row[3 * k] else math.nan for row in rows], dtype="float64")
        return pd.Series([row[3 * k + 2] for row in rows], dtype=object)

    frames = [pd.DataFrame({name: column(rows, k) for k, name in enumerate(pair)}) for rows in halves]
    frames = [f.replace([math.inf, -math.inf], math.nan).dropna().reset_index(drop=True) for f in frames]
    return frames[0], frames[1]
