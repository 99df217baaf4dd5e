"""What the release controller reads from ClickHouse: labeled rows of two versions, paired or side by side, and
their answer times.

Every query of outcomes reads ``labeled`` (deduplicated: FINAL) of one model from a moment on (prediction time,
ms); answer times are the served predictions' ``latency_ms`` (:func:`latencies`). Accuracy
and absolute error come as aggregates, never rows: a shadow of a busy model compares millions of pairs in one
round trip. F1 and ROC AUC (a spec's ``training.metric``) are no means of per-row values: they are computed
here (:mod:`release.class_metrics`) on each side's :data:`MAX_CLASS_ROWS` most recent labeled requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from driftloop.release.class_metrics import Classes, live_estimate, paired_estimate
from driftloop.release.stats import Sample

#: Metrics computed on rows rather than aggregates, and the most recent labeled requests they read a side.
CLASS_METRICS = ("f1", "roc_auc")
MAX_CLASS_ROWS = 200_000


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
class PairedMetric:
    """Labeled requests both versions scored, judged on F1 or ROC AUC: each version's value and the standard
    error of their difference."""

    pairs: int
    new: float
    baseline: float
    se: float


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


#: One version's labeled requests: its answer, and with ``label`` the latest label of each (a correction's).
_REQUESTS = (
    "SELECT request_id, {label}any(prediction) AS {p}_prediction, "
    "any(score) AS {p}_score, max(ts_ms) AS {p}_ts_ms FROM labeled FINAL "
    "WHERE model = %(m)s AND model_version = %({p})s AND served = {served} AND ts_ms >= %(since)s "
    "GROUP BY request_id"
)
_LATEST_LABEL = "argMax(label, outcome_ts_ms) AS label, "


def paired_class_metric(
    client: Queries, model: str, baseline: int, new: int, since_ms: int, *, metric: str, positive: str | None = None
) -> PairedMetric:
    """``metric`` (f1 or roc_auc) of ``new`` (unserved) and ``baseline`` (served) on the same labeled requests
    since ``since_ms``, their :data:`MAX_CLASS_ROWS` most recent."""
    rows = client.execute(
        "SELECT label, base_prediction, base_score, new_prediction, new_score "
        f"FROM ({_REQUESTS.format(p='base', served=1, label=_LATEST_LABEL)}) AS base "
        f"ALL INNER JOIN ({_REQUESTS.format(p='new', served=0, label='')}) AS new USING (request_id) "
        f"ORDER BY base_ts_ms DESC LIMIT {MAX_CLASS_ROWS}",
        {"m": model, "base": baseline, "new": new, "since": since_ms},
        columnar=True,
    )
    if not rows:
        return PairedMetric(0, math.nan, math.nan, math.inf)
    labels, base_prediction, base_score, new_prediction, new_score = (np.asarray(c) for c in rows)
    new_value, base_value, se = paired_estimate(
        metric,
        labels.astype(object),
        (new_prediction.astype(object), new_score.astype(np.float64)),
        (base_prediction.astype(object), base_score.astype(np.float64)),
        model_classes(client, model, since_ms, positive),
    )
    return PairedMetric(len(labels), new_value, base_value, se)


def class_metric(
    client: Queries,
    model: str,
    version: int,
    since_ms: int,
    *,
    metric: str,
    positive: str | None = None,
    last: int | None = None,
) -> Sample:
    """``metric`` (f1 or roc_auc) of ``version``'s served requests labeled since ``since_ms`` (their
    :data:`MAX_CLASS_ROWS` most recent; with ``last``, its ``last`` most recent labeled rows, as accuracy's are
    taken), as a :class:`Sample` (see :mod:`release.class_metrics`)."""
    requests = _REQUESTS.format(p="v", served=1, label=_LATEST_LABEL)
    if last:  # a watch's, a floor's, a threshold's most recent rows: taken as rows, not grouped over all history
        requests = (
            "SELECT label, prediction AS v_prediction, score AS v_score, ts_ms AS v_ts_ms FROM labeled FINAL "
            "WHERE model = %(m)s AND model_version = %(v)s AND served = 1 AND ts_ms >= %(since)s "
            f"ORDER BY ts_ms DESC LIMIT {min(int(last), MAX_CLASS_ROWS)}"
        )
    rows = client.execute(
        f"SELECT label, v_prediction, v_score FROM ({requests}) ORDER BY v_ts_ms DESC LIMIT {MAX_CLASS_ROWS}",
        {"m": model, "v": version, "since": since_ms},
        columnar=True,
    )
    if not rows:
        return Sample(0, math.nan, math.inf)
    labels, predictions, scores = (np.asarray(c) for c in rows)
    classes = model_classes(client, model, since_ms, positive)
    return live_estimate(metric, labels.astype(object), predictions.astype(object), scores.astype(np.float64), classes)


def model_classes(client: Queries, model: str, since_ms: int, positive: str | None = None) -> Classes:
    """Every label ``model``'s outcomes gave to requests since ``since_ms`` (every version's: the same classes
    for both sides of a comparison), and the positive class (``positive``, else the last of them)."""
    ((labels,),) = client.execute(
        "SELECT groupUniqArray(label) FROM labeled WHERE model = %(m)s AND ts_ms >= %(since)s",
        {"m": model, "since": since_ms},
    )
    return Classes.of(labels, positive)


def live_rows(
    client: Queries,
    model: str,
    version: int,
    since_ms: int,
    *,
    metric: str,
    kpi_higher_is_better: bool = True,
    last: int | None = None,
    positive: str | None = None,
) -> LiveRows:
    """``version``'s served rows labeled since ``since_ms`` (only the ``last`` most recent, if given): ``metric``
    (accuracy, mae, or f1 and roc_auc of ``positive`` by :func:`class_metric`) and the KPI."""
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
    on_metric = Sample(int(n), _num(mean), _num(variance))
    if metric in CLASS_METRICS:
        on_metric = class_metric(client, model, version, since_ms, metric=metric, positive=positive, last=last)
    return LiveRows(on_metric, kpi if kpi_higher_is_better else kpi.negated())


@dataclass(frozen=True)
class Latencies:
    """Answer times (``latency_ms``) of one version's served predictions in a window of time: the rows that carry
    one, their quantile, and the quantile of each span of time (span number → quantile)."""

    rows: int
    overall: float
    by_span: dict[int, float]
    span_s: float  # the spans' length


#: Answer times are judged on the most recent ten minutes of a canary's step, or on as long as the canary takes to
#: serve :data:`WINDOW_SPANS` spans' rows where that is longer: a busy champion's rows since a step began are
#: millions, read again at every tick.
WINDOW_S = 600.0
WINDOW_SPANS = 30


def latencies(
    client: Queries,
    model: str,
    versions: tuple[int, int],
    since_ms: int,
    *,
    until_ms: int,
    quantile: float,
    span_s: float,
) -> tuple[Latencies, Latencies]:
    """:class:`Latencies` of two versions' served predictions since ``since_ms`` (a canary and its champion), in
    spans of time that both versions' share (numbered from the epoch): those of the window before ``until_ms``
    (:data:`WINDOW_S`, :data:`WINDOW_SPANS`).

    A span lasts at least ``span_s``, and as long as the version with fewer rows (a canary's small share, or a
    champion's once a canary widens past half) takes on average to serve :func:`rows_a_span` rows: a quantile of
    fewer rows is biased (the 0.99 quantile of ten rows is their largest, a 0.9 quantile), and both sides' must be
    near the true one for the spans to compare them; a span where either side served fewer than half of them is
    left out. The other version's rows are sampled (by a hash of their ``event_id``) to about as many: a quantile
    of few rows is biased low (the 0.99 quantile of 200 rows falls short of the true one more often than not, of
    4,000 rows seldom), and quantiles of as many rows a side are biased alike. Predictions sent without a
    ``latency_ms`` are left out. Read without FINAL: a row delivered twice before its merge moves a quantile by
    nothing that counts. ClickHouse's ``quantile`` is exact up to 8,192 rows a group, and a uniform sample's
    beyond."""
    q, need = float(quantile), rows_a_span(quantile)
    where = (
        "WHERE model = %(m)s AND model_version IN (%(a)s, %(b)s) AND served = 1 AND ts >= toDateTime(%(since_s)s) "
        "AND ts_ms >= %(since)s AND NOT isNaN(latency_ms)"
    )
    params: dict[str, Any] = {"m": model, "a": versions[0], "b": versions[1]}

    def rows_since(moment_ms: int, columns: str) -> dict[int, tuple[Any, ...]]:
        """``columns`` of each version's rows from ``moment_ms`` on (which the spans' query then reads too)."""
        params.update(since=moment_ms, since_s=moment_ms // 1000)
        query = f"SELECT model_version, {columns} FROM predictions {where} GROUP BY model_version"
        return {int(row[0]): tuple(row[1:]) for row in client.execute(query, params)}

    recent_ms = max(since_ms, until_ms - round(WINDOW_S * 1000))
    recent = [int(rows_since(recent_ms, "count()").get(v, (0,))[0]) for v in versions]
    if min(recent):  # the window holds WINDOW_SPANS spans of the fewer side's rows, at least
        spans_ms = WINDOW_SPANS * need * max(1, until_ms - recent_ms) / min(recent)
        since_ms = max(since_ms, until_ms - max(round(WINDOW_S * 1000), math.ceil(spans_ms)))
    totals = rows_since(since_ms, f"count(), quantile({q!r})(latency_ms), min(ts_ms), max(ts_ms)")
    counts = [int(totals.get(v, (0,))[0]) for v in versions]
    by_version: dict[int, dict[int, float]] = {v: {} for v in versions}
    first = min((int(totals[v][2]) for v in versions if v in totals), default=since_ms)
    last = max((int(totals[v][3]) for v in versions if v in totals), default=since_ms)
    fewest = min(counts)
    span_ms = max(round(span_s * 1000), math.ceil(need * (last - first + 1) / fewest) if fewest else 0)
    if fewest:
        keep = [round(fewest / n * _SAMPLED) for n in counts]  # each side's rows, about as many as the fewer's
        sampled = f"modulo(cityHash64(event_id), {_SAMPLED}) < if(model_version = %(a)s, %(keep_a)s, %(keep_b)s)"
        for version, span, value in client.execute(
            f"SELECT model_version, intDiv(ts_ms, %(span)s) AS span, quantile({q!r})(latency_ms) FROM predictions "
            f"{where} AND {sampled} GROUP BY model_version, span HAVING count() >= %(least)s",
            params | {"span": span_ms, "least": math.ceil(need / 2), "keep_a": keep[0], "keep_b": keep[1]},
        ):
            by_version[int(version)][int(span)] = float(value)
    return tuple(  # type: ignore[return-value]
        Latencies(n, _num(totals[v][1]) if v in totals else math.nan, by_version[v], span_ms / 1000)
        for v, n in zip(versions, counts, strict=True)
    )


_SAMPLED = 1_000_000  # the hash's range when sampling a side's rows


def rows_a_span(quantile: float) -> int:
    """The rows a span of answer times holds for its ``quantile`` to be near the true one: two beyond it (200
    for 0.99, 4 for the median).

    >>> rows_a_span(0.99), rows_a_span(0.5), rows_a_span(0.9)
    (200, 4, 20)
    """
    return math.ceil(2 / min(quantile, 1 - quantile) - 1e-9)


def predictions_landed(client: Queries, model: str, version: int, *, served: bool, since_ms: int) -> bool:
    """Whether any prediction ``version`` served (or, ``served=False``, scored unserved: a shadow's) has landed
    in ``predictions`` since ``since_ms``."""
    return bool(
        client.execute(
            "SELECT 1 FROM predictions WHERE model = %(m)s AND model_version = %(v)s AND served = %(s)s "
            "AND ts_ms >= %(since)s LIMIT 1",
            {"m": model, "v": version, "s": int(served), "since": since_ms},
        )
    )


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
