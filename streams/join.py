"""The outcome join: each outcome meets its prediction by (``model``, ``request_id``) in a labeled row.

Join state lives in ClickHouse, not in a Faust table. Predictions are already durable there, and the
``prediction_requests`` index (kept by a materialized view) finds one by primary key whatever the label
delay, seconds or days; a Faust table would hold a second copy of every prediction in RocksDB and a
changelog topic (which the embedded broker keeps only in memory), and would force predictions and
outcomes onto co-partitioned keys. State therefore survives any worker restart or rebalance.

A request may have several predictions: the one served to the caller, and those of versions scored in
shadow beside it (``served = false``). The outcome makes a labeled row with each: the served one under the
outcome's ``event_id``, each shadow one under ``<event_id>@v<version>``, so that both versions are judged
on the same outcomes (a re-sent prediction counts once: the latest of each kind). An outcome waits until
the served prediction is there, so that the shadow's rows never go without it.

An outcome whose prediction is not there yet waits in ``join_pending``; a periodic sweep joins it when
the prediction arrives, or marks it ``expired`` after ``DRIFTLOOP_JOIN_WINDOW_S`` (then it shows in the
``unmatched_outcomes`` view: counted, never silently dropped). Every write is idempotent by ``event_id``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.settings import ClickHouseEndpoint
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.decode import PREDICTION_COLUMNS
from driftloop.streams.sink import ClickHouseSink, is_transient

log = logging.getLogger("driftloop.join")

LABELED_COLUMNS = (
    "event_id",
    "prediction_event_id",
    "model",
    "model_version",
    "request_id",
    "ts",
    "ts_ms",
    "outcome_ts",
    "outcome_ts_ms",
    "num.name",
    "num.value",
    "cat.name",
    "cat.value",
    "missing",
    "prediction",
    "prediction_num",
    "score",
    "label",
    "label_num",
    "correct",
    "error",
    "label_delay_s",
    "served",
    "value",
)
PENDING_COLUMNS = (
    "event_id",
    "model",
    "request_id",
    "ts",
    "ts_ms",
    "label",
    "label_num",
    "value",
    "source_partition",
    "arrived_at",
    "state",
    "revision",
)
# what a labeled row takes from its prediction
_NOT_LABELED = {"model", "request_id", "scores.label", "scores.probability", "latency_ms"}
_PREDICTION_FIELDS = tuple(c for c in PREDICTION_COLUMNS if c not in _NOT_LABELED)


def is_classification(prediction_num: float, label_num: float) -> bool:
    """Without a model spec: a class label (text) or two whole numbers means classification.

    >>> is_classification(float("nan"), float("nan")), is_classification(1.0, 0.0), is_classification(2.5, 3.1)
    (True, True, False)
    """
    if math.isnan(prediction_num) or math.isnan(label_num):
        return True
    return prediction_num.is_integer() and label_num.is_integer()


@dataclass(frozen=True)
class JoinResult:
    """Labeled rows made (``partitions[i]``: the Kafka partition of row i's outcome), and how many outcomes
    still wait (or just expired)."""

    labeled: ColumnBatch
    waiting: int
    expired: int = 0
    partitions: list[int] = field(default_factory=list)


class OutcomeJoin:
    """Joins outcome batches to predictions in ClickHouse; writes labeled and pending rows through a sink."""

    def __init__(self, endpoint: ClickHouseEndpoint, sink: ClickHouseSink, *, window_s: float) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.window_s = window_s
        self._client = SharedClient(endpoint)
        self._closed = threading.Event()

    async def join(self, outcomes: ColumnBatch, partitions: list[int]) -> JoinResult:
        """Join freshly ingested ``outcomes`` (``partitions[i]``: the Kafka partition of row i)."""
        if not len(outcomes):
            return JoinResult(ColumnBatch.empty("labeled", LABELED_COLUMNS), 0)
        found = await asyncio.to_thread(self._lookup, outcomes["model"], outcomes["request_id"])
        labeled, unmatched, origins = _label(outcomes, found)
        now = int(time.time())
        pending = _pending_rows(outcomes.take(unmatched), [partitions[i] for i in unmatched], now, "pending")
        await self._write(labeled, pending)
        return JoinResult(labeled, len(unmatched), partitions=[partitions[i] for i in origins])

    async def sweep(self, partitions: Iterable[int] | None = None) -> JoinResult:
        """Join waiting outcomes whose prediction has arrived; expire those older than the window."""
        waiting = await asyncio.to_thread(self._pending, None if partitions is None else sorted(partitions))
        if not len(waiting):
            return JoinResult(ColumnBatch.empty("labeled", LABELED_COLUMNS), 0)
        found = await asyncio.to_thread(self._lookup, waiting["model"], waiting["request_id"])
        labeled, unmatched, origins = _label(waiting, found)
        matched = sorted(set(range(len(waiting))) - set(unmatched))
        deadline = time.time() - self.window_s
        expired = [i for i in unmatched if waiting["arrived_at"][i].timestamp() < deadline]
        now = int(time.time())
        states = _pending_rows(waiting.take(matched), [waiting["source_partition"][i] for i in matched], now, "matched")
        gone = _pending_rows(waiting.take(expired), [waiting["source_partition"][i] for i in expired], now, "expired")
        # labeled rows first: a crash before the state rows only means the next sweep joins them again
        await self._write(labeled, states.concat(gone))
        partitions = [waiting["source_partition"][i] for i in origins]
        return JoinResult(labeled, len(unmatched) - len(expired), len(expired), partitions)

    # --- ClickHouse lookups (blocking; run in a thread) -------------------------------------------------

    def _lookup(self, models: list[str], request_ids: list[str]) -> dict[tuple[str, str], list[dict[str, object]]]:
        """The predictions of each (model, request_id) that has any, as field → value: the latest served one
        first (if there is one), then the latest of each version scored unserved."""
        keys = [{"model": m, "request_id": r} for m, r in set(zip(models, request_ids, strict=True))]
        index = self._read(
            "SELECT model, request_id, event_id, ts FROM prediction_requests "
            "WHERE (model, request_id) IN (SELECT model, request_id FROM _keys)",
            external_tables=[_external("_keys", {"model": "String", "request_id": "String"}, keys)],
        )
        if not index:
            return {}
        wanted = [{"model": m, "day": ts.date(), "event_id": e} for m, _, e, ts in set(index)]
        fields = ", ".join(f"`{f}`" for f in _PREDICTION_FIELDS)
        rows = self._read(
            f"SELECT model, request_id, {fields} FROM predictions "
            "WHERE (model, toDate(ts), event_id) IN (SELECT model, day, event_id FROM _wanted)",
            external_tables=[_external("_wanted", {"model": "String", "day": "Date", "event_id": "String"}, wanted)],
        )
        latest: dict[tuple[str, str, int], dict[str, object]] = {}  # (model, request, -1 or a shadow's version)
        for row in rows:
            prediction = dict(zip(_PREDICTION_FIELDS, row[2:], strict=True))
            kind = -1 if prediction["served"] else int(prediction["model_version"])  # type: ignore[call-overload]
            key = (row[0], row[1], kind)
            if key not in latest or prediction["ts_ms"] > latest[key]["ts_ms"]:  # type: ignore[operator]
                latest[key] = prediction
        found: dict[tuple[str, str], list[dict[str, object]]] = {}
        for (model, request_id, _), prediction in sorted(latest.items(), key=lambda item: item[0][2]):
            found.setdefault((model, request_id), []).append(prediction)
        return found

    def _pending(self, partitions: list[int] | None) -> ColumnBatch:
        where = "state = 'pending'" + ("" if partitions is None else " AND source_partition IN %(parts)s")
        if partitions == []:
            return ColumnBatch.empty("join_pending", PENDING_COLUMNS)
        rows = self._read(
            f"SELECT {', '.join(PENDING_COLUMNS)} FROM join_pending FINAL WHERE {where}",
            {"parts": tuple(partitions or ())},
        )
        columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in PENDING_COLUMNS]
        return ColumnBatch("join_pending", dict(zip(PENDING_COLUMNS, columns, strict=True)))

    async def _write(self, labeled: ColumnBatch, pending: ColumnBatch) -> None:
        for batch in (labeled, pending):
            rejected = await self.sink.write(batch)
            if rejected:  # rows built from validated events: a refusal is a bug worth shouting about
                raise RuntimeError(f"ClickHouse refused {len(rejected)} {batch.table} rows: {rejected[0].reason}")

    def _read(self, query: str, params: object = None, **kwargs: Any) -> Any:
        """A read that waits out a ClickHouse that is away, as the sink's writes do (a batch whose lookup failed
        would stay unacknowledged until a rebalance): transient errors are retried with the sink's backoff."""
        attempt = 0
        while True:
            try:
                return self._client.execute(query, params, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = self.sink.backoff.delay(attempt)
                log.warning(
                    "ClickHouse unavailable for the outcome join; retrying",
                    extra={"fields": {"attempt": attempt + 1, "retry_in_s": round(delay, 2), "error": repr(exc)}},
                )
                if self._closed.wait(delay):
                    raise
                attempt += 1

    def close(self) -> None:
        self._closed.set()
        self._client.close()


def _external(name: str, structure: dict[str, str], data: list[dict[str, object]]) -> dict[str, object]:
    return {"name": name, "structure": list(structure.items()), "data": data}


def _label(
    outcomes: ColumnBatch, found: dict[tuple[str, str], list[dict[str, object]]]
) -> tuple[ColumnBatch, list[int], list[int]]:
    """Labeled rows for the outcomes whose predictions were found, the indices of those not found, and the
    index of each labeled row's outcome."""
    rows: list[tuple[object, ...]] = []
    unmatched: list[int] = []
    origins: list[int] = []
    o = outcomes.columns
    values = o.get("value")
    for i, key in enumerate(zip(o["model"], o["request_id"], strict=True)):
        predictions = found.get(key)
        if not predictions or not predictions[0]["served"]:  # a shadow's rows wait for the served one's
            unmatched.append(i)
            continue
        label, label_num = o["label"][i], o["label_num"][i]
        outcome_ts_ms = o["ts_ms"][i]
        outcome_ts = o["ts"][i] if isinstance(o["ts"][i], int) else _epoch(o["ts"][i])
        value = values[i] if values is not None else math.nan
        for p in predictions:
            prediction, prediction_num = str(p["prediction"]), float(p["prediction_num"])  # type: ignore[arg-type]
            if is_classification(prediction_num, label_num):
                correct = int(prediction == label)
                error = 1.0 - correct
            else:
                error = abs(prediction_num - label_num)
                correct = int(error == 0.0)
            served = int(p["served"])  # type: ignore[call-overload]
            origins.append(i)
            rows.append(
                (
                    o["event_id"][i] if served else f"{o['event_id'][i]}@v{p['model_version']}",
                    p["event_id"],
                    key[0],
                    p["model_version"],
                    key[1],
                    _epoch(p["ts"]),
                    p["ts_ms"],
                    outcome_ts,
                    outcome_ts_ms,
                    p["num.name"],
                    p["num.value"],
                    p["cat.name"],
                    p["cat.value"],
                    p["missing"],
                    prediction,
                    prediction_num,
                    p["score"],
                    label,
                    label_num,
                    correct,
                    error,
                    (outcome_ts_ms - p["ts_ms"]) / 1000.0,  # type: ignore[operator]
                    served,
                    value if served else math.nan,  # the value of the decision served: a shadow made none
                )
            )
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in LABELED_COLUMNS]
    return ColumnBatch("labeled", dict(zip(LABELED_COLUMNS, columns, strict=True))), unmatched, origins


def _epoch(value: object) -> int:
    return int(value.timestamp()) if hasattr(value, "timestamp") else int(value)  # type: ignore[arg-type]


def _pending_rows(outcomes: ColumnBatch, partitions: list[int], now: int, state: str) -> ColumnBatch:
    o = outcomes.columns
    n = len(outcomes)
    revision = time.time_ns() // 1000
    arrived = o.get("arrived_at", [now] * n)
    columns = {
        "event_id": o["event_id"],
        "model": o["model"],
        "request_id": o["request_id"],
        "ts": [_epoch(t) for t in o["ts"]],
        "ts_ms": o["ts_ms"],
        "label": o["label"],
        "label_num": o["label_num"],
        "value": o.get("value", [math.nan] * n),
        "source_partition": partitions,
        "arrived_at": [_epoch(a) for a in arrived],
        "state": [state] * n,
        "revision": [revision] * n,
    }
    return ColumnBatch("join_pending", columns)
