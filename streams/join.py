"""The outcome join: each outcome meets its prediction by (``model``, ``request_id``) in a labeled row.

Join state lives in ClickHouse, not in a Faust table. Predictions are already durable there, and the
``prediction_requests`` index (kept by a materialized view) finds one by primary key whatever the label
delay, seconds or days; a Faust table would hold a second copy of every prediction in RocksDB and a
changelog topic (which the embedded broker keeps only in memory), and would force predictions and
outcomes onto co-partitioned keys. State therefore survives any worker restart or rebalance.

An outcome whose prediction is not there yet waits in ``join_pending``; a periodic sweep joins it when
the prediction arrives, or marks it ``expired`` after ``DRIFTLOOP_JOIN_WINDOW_S`` (then it shows in the
``unmatched_outcomes`` view: counted, never silently dropped). Every write is idempotent by ``event_id``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.settings import ClickHouseEndpoint
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.decode import PREDICTION_COLUMNS
from driftloop.streams.sink import ClickHouseSink

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
)
PENDING_COLUMNS = (
    "event_id",
    "model",
    "request_id",
    "ts",
    "ts_ms",
    "label",
    "label_num",
    "source_partition",
    "arrived_at",
    "state",
    "revision",
)
# what a labeled row takes from its prediction
_PREDICTION_FIELDS = tuple(
    c for c in PREDICTION_COLUMNS if c not in {"model", "request_id", "scores.label", "scores.probability"}
)


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
    """Labeled rows made, and how many outcomes still wait (or just expired)."""

    labeled: ColumnBatch
    waiting: int
    expired: int = 0


class OutcomeJoin:
    """Joins outcome batches to predictions in ClickHouse; writes labeled and pending rows through a sink."""

    def __init__(self, endpoint: ClickHouseEndpoint, sink: ClickHouseSink, *, window_s: float) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.window_s = window_s
        self._client = SharedClient(endpoint)

    async def join(self, outcomes: ColumnBatch, partitions: list[int]) -> JoinResult:
        """Join freshly ingested ``outcomes`` (``partitions[i]``: the Kafka partition of row i)."""
        if not len(outcomes):
            return JoinResult(ColumnBatch.empty("labeled", LABELED_COLUMNS), 0)
        found = await asyncio.to_thread(self._lookup, outcomes["model"], outcomes["request_id"])
        labeled, unmatched = _label(outcomes, found)
        now = int(time.time())
        pending = _pending_rows(outcomes.take(unmatched), [partitions[i] for i in unmatched], now, "pending")
        await self._write(labeled, pending)
        return JoinResult(labeled, len(unmatched))

    async def sweep(self, partitions: Iterable[int] | None = None) -> JoinResult:
        """Join waiting outcomes whose prediction has arrived; expire those older than the window."""
        waiting = await asyncio.to_thread(self._pending, None if partitions is None else sorted(partitions))
        if not len(waiting):
            return JoinResult(ColumnBatch.empty("labeled", LABELED_COLUMNS), 0)
        found = await asyncio.to_thread(self._lookup, waiting["model"], waiting["request_id"])
        labeled, unmatched = _label(waiting, found)
        matched = sorted(set(range(len(waiting))) - set(unmatched))
        deadline = time.time() - self.window_s
        expired = [i for i in unmatched if waiting["arrived_at"][i].timestamp() < deadline]
        now = int(time.time())
        states = _pending_rows(waiting.take(matched), [waiting["source_partition"][i] for i in matched], now, "matched")
        gone = _pending_rows(waiting.take(expired), [waiting["source_partition"][i] for i in expired], now, "expired")
        # labeled rows first: a crash before the state rows only means the next sweep joins them again
        await self._write(labeled, states.concat(gone))
        return JoinResult(labeled, len(unmatched) - len(expired), len(expired))

    # --- ClickHouse lookups (blocking; run in a thread) -------------------------------------------------

    def _lookup(self, models: list[str], request_ids: list[str]) -> dict[tuple[str, str], dict[str, object]]:
        """The latest prediction of each (model, request_id) that has one, as field → value."""
        keys = [{"model": m, "request_id": r} for m, r in set(zip(models, request_ids, strict=True))]
        index = self._client.execute(
            "SELECT model, request_id, argMax(event_id, ts_ms), argMax(ts, ts_ms) FROM prediction_requests "
            "WHERE (model, request_id) IN (SELECT model, request_id FROM _keys) GROUP BY model, request_id",
            external_tables=[_external("_keys", {"model": "String", "request_id": "String"}, keys)],
        )
        if not index:
            return {}
        wanted = [{"model": m, "day": ts.date(), "event_id": e} for m, _, e, ts in index]
        fields = ", ".join(f"`{f}`" for f in _PREDICTION_FIELDS)
        rows = self._client.execute(
            f"SELECT model, {fields} FROM predictions "
            "WHERE (model, toDate(ts), event_id) IN (SELECT model, day, event_id FROM _wanted)",
            external_tables=[_external("_wanted", {"model": "String", "day": "Date", "event_id": "String"}, wanted)],
        )
        by_event = {(row[0], row[1]): dict(zip(_PREDICTION_FIELDS, row[1:], strict=True)) for row in rows}
        return {(m, r): by_event[(m, e)] for m, r, e, _ in index if (m, e) in by_event}

    def _pending(self, partitions: list[int] | None) -> ColumnBatch:
        where = "state = 'pending'" + ("" if partitions is None else " AND source_partition IN %(parts)s")
        if partitions == []:
            return ColumnBatch.empty("join_pending", PENDING_COLUMNS)
        rows = self._client.execute(
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

    def close(self) -> None:
        self._client.close()


def _external(name: str, structure: dict[str, str], data: list[dict[str, object]]) -> dict[str, object]:
    return {"name": name, "structure": list(structure.items()), "data": data}


def _label(outcomes: ColumnBatch, found: dict[tuple[str, str], dict[str, object]]) -> tuple[ColumnBatch, list[int]]:
    """Labeled rows for the outcomes whose prediction was found, and the indices of those not found."""
    rows: list[tuple[object, ...]] = []
    unmatched: list[int] = []
    o = outcomes.columns
    for i, key in enumerate(zip(o["model"], o["request_id"], strict=True)):
        p = found.get(key)
        if p is None:
            unmatched.append(i)
            continue
        prediction, prediction_num = str(p["prediction"]), float(p["prediction_num"])  # type: ignore[arg-type]
        label, label_num = o["label"][i], o["label_num"][i]
        if is_classification(prediction_num, label_num):
            correct = int(prediction == label)
            error = 1.0 - correct
        else:
            error = abs(prediction_num - label_num)
            correct = int(error == 0.0)
        outcome_ts_ms = o["ts_ms"][i]
        rows.append(
            (
                o["event_id"][i],
                p["event_id"],
                key[0],
                p["model_version"],
                key[1],
                _epoch(p["ts"]),
                p["ts_ms"],
                o["ts"][i] if isinstance(o["ts"][i], int) else _epoch(o["ts"][i]),
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
            )
        )
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in LABELED_COLUMNS]
    return ColumnBatch("labeled", dict(zip(LABELED_COLUMNS, columns, strict=True))), unmatched


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
        "source_partition": partitions,
        "arrived_at": [_epoch(a) for a in arrived],
        "state": [state] * n,
        "revision": [revision] * n,
    }
    return ColumnBatch("join_pending", columns)
