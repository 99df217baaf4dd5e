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
the served prediction is there, so that the shadow's rows never go without it. ``labeled`` keeps one row a
prediction (keyed by request, and a shadow's version, versioned by the outcome's time): a later outcome of
the request (a corrected label) replaces the row of the first, whether joined in the same batch or not.

An outcome whose prediction is not there yet waits in ``join_pending``; a periodic sweep joins it when
the prediction arrives, or marks it ``expired`` after ``DRIFTLOOP_JOIN_WINDOW_S`` (then it shows in the
``unmatched_outcomes`` view: counted, never silently dropped). Every write is idempotent by ``event_id``.

A batch is joined a column at a time, in two queries. The lookup (:data:`_LOOKUP`) reads what a labeled row
takes from each prediction but its features, for the batch's requests (sent as an external table, a column at a
time); the labeled rows are made from it as columns (:func:`_label`); and ClickHouse copies each prediction's
features into its labeled row (:data:`_WITH_FEATURES`: an ``INSERT ... SELECT`` joining the labeled rows,
sent as an external table, to their predictions by ``model``, ``event_id`` and ``ts_ms``). The features of a
batch never travel to the worker and back: reading them (a Python list a row and a feature) and writing them
again was most of the join's time. What the join hands on (:data:`LABELED_ROWS`) is the labeled rows without
the features, and how many each prediction sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.clickhouse.columnar_insert import ExternalColumns
from driftloop.infra.settings import ClickHouseEndpoint
from driftloop.infra.spec import RECHECK_S, SpecError, file_signature, load_spec
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.event_rules import number_in
from driftloop.streams.sink import ClickHouseSink, is_transient
from driftloop.streams.waiting_room import PARTITION, WAITING_COLUMNS, WaitingRoom, as_batch, rows_of

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
#: A ``join_pending`` row: what the waiting room holds of an outcome, and its state and revision.
PENDING_COLUMNS = (*WAITING_COLUMNS, "state", "revision")
#: A labeled row's copy of its prediction's features: ClickHouse copies them (``INSERT ... SELECT``), the worker
#: never reads them.
FEATURE_COLUMNS = ("num.name", "num.value", "cat.name", "cat.value", "missing")
#: The other columns of a labeled row, made by the join, and their types in the external table sent with it.
_MADE = {
    "event_id": "String",
    "prediction_event_id": "String",
    "model": "String",
    "model_version": "UInt32",
    "request_id": "String",
    "ts": "DateTime('UTC')",
    "ts_ms": "UInt64",
    "outcome_ts": "DateTime('UTC')",
    "outcome_ts_ms": "UInt64",
    "prediction": "String",
    "prediction_num": "Float64",
    "score": "Float64",
    "label": "String",
    "label_num": "Float64",
    "correct": "UInt8",
    "error": "Float64",
    "label_delay_s": "Float64",
    "served": "UInt8",
    "value": "Float64",
}
#: The labeled rows the join hands on (to the drift detectors): a labeled row's columns but its prediction's
#: features, of which ``features`` counts the names sent (values, categories and nulls).
LABELED_ROWS = (*_MADE, "features")
_FEATURES_SELECTED = ", ".join(f"`{name}`" for name in FEATURE_COLUMNS)
#: The labeled rows made, completed with their predictions' features (``ts_ms`` too: an ``event_id`` a producer
#: gave may come again another day).
_WITH_FEATURES = (
    f"SELECT {', '.join(f'`{name}`' for name in _MADE)}, {_FEATURES_SELECTED} FROM _labeled ANY LEFT JOIN ("
    f"SELECT model, event_id AS prediction_event_id, ts_ms, {_FEATURES_SELECTED} FROM predictions "
    "WHERE (model, toDate(ts), event_id) IN (SELECT model, toDate(ts), prediction_event_id FROM _labeled)"
    ") AS p USING (model, prediction_event_id, ts_ms)"
)
#: What the join reads of a prediction: what a labeled row takes from it but the features, and how many it sent.
_PREDICTION_FIELDS = ("event_id", "model_version", "ts", "ts_ms", "prediction", "prediction_num", "score", "served")
_SELECTED = {
    "ts": "toUInt32(ts)",  # times as epoch seconds
    "arrived_at": "toUInt32(arrived_at)",
    "features": "length(num.name) + length(cat.name) + length(missing)",
}
#: The predictions of the requests in ``_keys`` (model, request_id), found by the request index.
_LOOKUP = (
    f"SELECT model, request_id, {', '.join(_SELECTED.get(f, f'`{f}`') for f in (*_PREDICTION_FIELDS, 'features'))} "
    "FROM predictions WHERE (model, toDate(ts), event_id) IN ("
    "SELECT model, toDate(ts), event_id FROM prediction_requests "
    "WHERE (model, request_id) IN (SELECT model, request_id FROM _keys))"
)


def is_classification(prediction_num: np.ndarray, label_num: np.ndarray) -> np.ndarray:
    """Without a model spec, which rows are classifications: a class label (text: NaN as a number) on either
    side, or two whole numbers.

    >>> nan = float("nan")
    >>> is_classification(np.array([nan, 1.0, 2.5, nan]), np.array([nan, 0.0, 3.1, 2.5])).tolist()
    [True, True, False, True]
    """
    with np.errstate(invalid="ignore"):
        whole = (np.floor(prediction_num) == prediction_num) & (np.floor(label_num) == label_num)
    return np.isnan(prediction_num) | np.isnan(label_num) | whole


def numbers_beside(numbers: np.ndarray, texts: Sequence[str], other: np.ndarray) -> np.ndarray:
    """``numbers`` with the texts that read as numbers where the other side is a number and either is a fraction:
    a regression's value sent as text on one side (``"12.5"`` from a form or a CSV) is that value, not a class.
    Whole numbers on both sides stay classes compared as text.

    >>> nan = float("nan")
    >>> numbers_beside(np.array([nan, nan, nan, nan]), ["12.5", "7", "7", "cat"], np.array([12.0, 7.5, 7.0, 1.5]))
    array([12.5,  7. ,  nan,  nan])
    """
    rows = np.flatnonzero(np.isnan(numbers) & np.isfinite(other)).tolist()
    if not rows:
        return numbers
    read = numbers.copy()
    parsed = {text: number_in(text) for text in {texts[i] for i in rows}}  # a classifier's few classes: once each
    for i in rows:
        number = parsed[texts[i]]
        if number is not None and (not number.is_integer() or not float(other[i]).is_integer()):
            read[i] = number
    return read


#: The class a boolean stands for beside a number: a classifier's 1 / 0 and an outcome's true / false (or the
#: other way round) are one class, as scikit-learn and pandas compare them.
_CLASS_OF_BOOLEAN = {"true": "1", "false": "0", "True": "1", "False": "0"}


def same_classes(predictions: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Whether each prediction's text is its label's class: equal texts, or a boolean and its number.

    >>> same_classes(["1", "0", "1", "true", "cat"], ["1", "false", "false", "1", "true"]).tolist()
    [True, True, False, True, False]
    """
    same = np.fromiter(map(operator.eq, predictions, labels), dtype=bool, count=len(predictions))
    if not same.all():
        of = _CLASS_OF_BOOLEAN.get
        for i in np.flatnonzero(~same).tolist():  # the wrong ones only, most often a share of the rows
            prediction, label = predictions[i], labels[i]
            same[i] = of(prediction, prediction) == of(label, label)
    return same


@dataclass(frozen=True)
class JoinResult:
    """Labeled rows made (:data:`LABELED_ROWS`; ``partitions[i]``: the Kafka partition of row i's outcome), and
    how many outcomes still wait (or just expired)."""

    labeled: ColumnBatch
    waiting: int
    expired: int = 0
    partitions: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Found:
    """The predictions of a batch's requests, a column a field (:data:`_PREDICTION_FIELDS`, ``ts`` in epoch
    seconds, and ``features``: how many names each sent), and the rows an outcome labels: by (``model``,
    ``request_id``), the latest served prediction's row, and the rows of the latest of each version scored
    unserved, by version (a re-sent prediction counts once)."""

    columns: dict[str, list[Any]]
    served: dict[tuple[str, str], int]
    shadows: dict[tuple[str, str], list[int]]

    @classmethod
    def none(cls) -> Found:
        return cls({name: [] for name in (*_PREDICTION_FIELDS, "features")}, {}, {})

    @classmethod
    def of(cls, models: list[str], request_ids: list[str], columns: dict[str, list[Any]]) -> Found:
        """The latest of each kind among the rows read (``models[i]``, ``request_ids[i]``: row i's request)."""
        keys = list(zip(models, request_ids, strict=True))
        oldest_first = np.argsort(np.asarray(columns["ts_ms"], dtype=np.uint64), kind="stable").tolist()
        flags = columns["served"]
        served = [row for row in oldest_first if flags[row]]
        latest = dict(zip(map(keys.__getitem__, served), served, strict=True))  # later rows replace earlier
        if len(served) == len(keys):
            return cls(columns, latest, {})
        versions = columns["model_version"]
        by_version = {(*keys[row], versions[row]): row for row in oldest_first if not flags[row]}
        shadows: dict[tuple[str, str], list[int]] = {}
        for (*key, _), row in sorted(by_version.items(), key=lambda item: item[0][2]):
            shadows.setdefault(tuple(key), []).append(row)  # type: ignore[arg-type]
        return cls(columns, latest, shadows)


class RegressionSpecs:
    """Whether a model's spec (``<directory>/<model>.toml``) says regression. A model without a spec, or with
    one that does not load (the monitor reports it), is not: the join judges its rows by their values. Only the
    answers are kept, for at most :data:`MODELS_KEPT` models (then read again); a model's file is looked at
    again every ``recheck_s`` and read again when it changed (an edit is taken, as every worker takes it)."""

    MODELS_KEPT = 100_000

    def __init__(
        self, directory: Path, *, recheck_s: float = RECHECK_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.directory = directory
        self.recheck_s = recheck_s
        self.clock = clock
        self._known: dict[str, tuple[bool, tuple[int, int, int] | None, float]] = {}  # answer, file, looked at

    def __call__(self, model: str) -> bool:
        known, now = self._known.get(model), self.clock()
        if known is not None and now - known[2] < self.recheck_s:
            return known[0]
        path = self.directory / f"{model}.toml"
        signature = file_signature(path)
        if known is not None and signature == known[1]:
            answer = known[0]
        else:
            try:
                answer = signature is not None and load_spec(path).task == "regression"
            except SpecError:  # broken: the last answer stands, as the last good spec does in every worker
                answer = known[0] if known is not None else False
            if known is None and len(self._known) >= self.MODELS_KEPT:
                self._known.clear()
        self._known[model] = (answer, signature, now)
        return answer


class OutcomeJoin:
    """Joins outcome batches to predictions in ClickHouse; writes labeled and pending rows through a sink."""

    def __init__(
        self,
        endpoint: ClickHouseEndpoint,
        sink: ClickHouseSink,
        *,
        window_s: float,
        regression: Callable[[str], bool] = lambda model: False,
    ) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.window_s = window_s
        self.regression = regression  # whether a model's spec says regression: its whole numbers are values too
        self._client = SharedClient(endpoint)
        self._closed = threading.Event()
        self.room = WaitingRoom()
        # a sweep and a prompt join never take the same outcome, and neither runs inside a join (:meth:`join`)
        self._joining = asyncio.Lock()
        self._joins = 0  # joins under way (:meth:`join`)

    async def join(self, outcomes: ColumnBatch, partitions: list[int]) -> JoinResult:
        """Join freshly ingested ``outcomes`` (``partitions[i]``: the Kafka partition of row i)."""
        if not len(outcomes):
            return JoinResult(ColumnBatch.empty("labeled", LABELED_ROWS), 0)
        # From before the lookup until what it missed is in the room, a batch of predictions written meanwhile
        # waits to join them (:meth:`prompt`): without that, some 10 % of the outcomes sent with their
        # predictions fell between the two and waited for the sweep, seconds out of order.
        self._joins += 1
        try:
            async with self._joining:
                found = await asyncio.to_thread(self._lookup, outcomes["model"], outcomes["request_id"])
                labeled, unmatched, origins = _label(outcomes, found, self.regression)
                now = int(time.time())
                pending = _pending_rows(outcomes.take(unmatched), [partitions[i] for i in unmatched], now, "pending")
                await self._write(labeled, pending)
                self.room.add(rows_of(pending))
        finally:
            self._joins -= 1
        return JoinResult(labeled, len(unmatched), partitions=[partitions[i] for i in origins])

    @property
    def may_be_waiting(self) -> bool:
        """Whether an outcome waits, or a join under way may leave one waiting (:meth:`prompt` has work)."""
        return bool(len(self.room) or self._joins)

    async def prompt(self, request_ids: Sequence[str]) -> JoinResult:
        """Join the waiting outcomes of these requests, whose predictions have just been written: an outcome
        that came a moment before its prediction is labeled now, not at the next sweep, and labeled rows
        reach the performance detectors in about the order of their predictions."""
        async with self._joining:  # after any join under way has put what it missed in the room
            waiting = self.room.batch(self.room.candidates(request_ids))
            return await self._join_waiting(waiting, expire=False)

    async def sweep(self, partitions: Iterable[int] | None = None) -> JoinResult:
        """Join waiting outcomes whose prediction has arrived; expire those older than the window.

        ``partitions``: the outcome partitions this worker owns; their waiting outcomes are read from
        ClickHouse once, then held (:class:`~driftloop.streams.waiting_room.WaitingRoom`). None: every
        partition's, read from ClickHouse (tools and tests)."""
        async with self._joining:
            waiting = await self._waiting(None if partitions is None else set(partitions))
            return await self._join_waiting(waiting, expire=True)

    async def hand_over(self) -> None:
        """Let go of every waiting outcome held (the partitions are being reassigned): the next sweep reads
        those of the partitions this worker then owns, and no prompt join takes one that another worker's
        sweep may take too."""
        async with self._joining:
            self.room.let_go(self.room.partitions() | self.room.held)

    async def _waiting(self, owned: set[int] | None) -> ColumnBatch:
        """The outcomes waiting in ``owned`` partitions (None: in all, from ClickHouse)."""
        if owned is None:
            return await asyncio.to_thread(self._pending, None)
        self.room.let_go((self.room.partitions() | self.room.held) - owned)  # their new owner reads them
        unheld = owned - self.room.held
        if not unheld:
            return self.room.batch(partitions=owned)
        rows = rows_of(await asyncio.to_thread(self._pending, sorted(unheld)))
        for partition in unheld:
            self.room.hold(partition, [row for row in rows if row[PARTITION] == partition])
        # a partition with too many to hold is joined from what was read, as every sweep did before the room
        too_many = [row for row in rows if row[PARTITION] not in self.room.held]
        return self.room.batch(partitions=owned).concat(as_batch(too_many))

    async def _join_waiting(self, waiting: ColumnBatch, *, expire: bool) -> JoinResult:
        """Join ``waiting`` outcomes whose predictions are there (and, with ``expire``, expire those older
        than the window): labeled rows, then their new states, written; the room forgets them."""
        if not len(waiting):
            return JoinResult(ColumnBatch.empty("labeled", LABELED_ROWS), 0)
        found = await asyncio.to_thread(self._lookup, waiting["model"], waiting["request_id"])
        labeled, unmatched, origins = _label(waiting, found, self.regression)
        matched = sorted(set(range(len(waiting))) - set(unmatched))
        deadline = time.time() - self.window_s
        expired = [i for i in unmatched if waiting["arrived_at"][i] < deadline] if expire else []
        now = int(time.time())
        states = _pending_rows(waiting.take(matched), [waiting["source_partition"][i] for i in matched], now, "matched")
        gone = _pending_rows(waiting.take(expired), [waiting["source_partition"][i] for i in expired], now, "expired")
        # labeled rows first: a crash before the state rows only means the next sweep joins them again
        await self._write(labeled, states.concat(gone))
        self.room.remove(waiting["event_id"][i] for i in (*matched, *expired))
        partitions = [waiting["source_partition"][i] for i in origins]
        return JoinResult(labeled, len(unmatched) - len(expired), len(expired), partitions)

    # --- ClickHouse lookups (blocking; run in a thread) -------------------------------------------------

    def _lookup(self, models: list[str], request_ids: list[str]) -> Found:
        """The predictions of each (model, request_id) that has any, read a column at a time (the request index
        gives their keys)."""
        keys = list(zip(*set(zip(models, request_ids, strict=True)), strict=True))
        read = self._read(_LOOKUP, external_tables=[ExternalColumns("_keys", _KEYS, keys)], columnar=True)
        if not read or not read[0]:
            return Found.none()
        model, request_id, *values = (list(column) for column in read)
        return Found.of(model, request_id, dict(zip((*_PREDICTION_FIELDS, "features"), values, strict=True)))

    def _pending(self, partitions: list[int] | None) -> ColumnBatch:
        where = "state = 'pending'" + ("" if partitions is None else " AND source_partition IN %(parts)s")
        if partitions == []:
            return ColumnBatch.empty("join_pending", PENDING_COLUMNS)
        selected = ", ".join(_SELECTED.get(name, name) for name in PENDING_COLUMNS)
        columns = self._read(
            f"SELECT {selected} FROM join_pending FINAL WHERE {where}",
            {"parts": tuple(partitions or ())},
            columnar=True,
        )
        columns = [list(c) for c in columns] if columns else [[] for _ in PENDING_COLUMNS]
        return ColumnBatch("join_pending", dict(zip(PENDING_COLUMNS, columns, strict=True)))

    async def _write(self, labeled: ColumnBatch, pending: ColumnBatch) -> None:
        """The labeled rows, completed by ClickHouse with their predictions' features; then the pending rows."""
        made = ExternalColumns("_labeled", tuple(_MADE.items()), [labeled[name] for name in _MADE])
        await self.sink.insert_select("labeled", (*_MADE, *FEATURE_COLUMNS), _WITH_FEATURES, made)
        rejected = await self.sink.write(pending)
        if rejected:  # rows built from validated events: a refusal is a bug worth shouting about
            raise RuntimeError(f"ClickHouse refused {len(rejected)} join_pending rows: {rejected[0].reason}")

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


_KEYS = (("model", "String"), ("request_id", "String"))


def _label(
    outcomes: ColumnBatch, found: Found, regression: Callable[[str], bool] = lambda model: False
) -> tuple[ColumnBatch, list[int], list[int]]:
    """Labeled rows for the outcomes whose predictions were found (:data:`LABELED_ROWS`' columns), the indices
    of those not found, and the index of each labeled row's outcome: a row for each (outcome, prediction)
    pair, made a column at a time."""
    o, p = outcomes.columns, found.columns
    keys = list(zip(o["model"], o["request_id"], strict=True))
    rows = list(map(found.served.get, keys))  # a shadow's rows wait for the served one's
    unmatched = [i for i, row in enumerate(rows) if row is None]
    origins: list[int] = []  # each labeled row's outcome
    chosen: list[int] = []  # and its prediction
    if not found.shadows:
        origins = [i for i, row in enumerate(rows) if row is not None] if unmatched else list(range(len(rows)))
        chosen = list(map(rows.__getitem__, origins))
    else:
        for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
            if row is not None:
                shadows = found.shadows.get(key, [])
                origins += [i] * (1 + len(shadows))
                chosen += [row, *shadows]
    if not chosen:
        return ColumnBatch.empty("labeled", LABELED_ROWS), unmatched, origins

    def outcome(column: Sequence[Any]) -> list[Any]:
        return list(map(column.__getitem__, origins))

    def prediction(column: Sequence[Any]) -> list[Any]:
        return list(map(column.__getitem__, chosen))

    was_served = np.asarray(prediction(p["served"]), dtype=bool)
    versions = prediction(p["model_version"])
    texts, labels = prediction(p["prediction"]), outcome(o["label"])
    predicted = np.asarray(prediction(p["prediction_num"]), dtype=float)
    truth = np.asarray(outcome(o["label_num"]), dtype=float)
    predicted, truth = numbers_beside(predicted, texts, truth), numbers_beside(truth, labels, predicted)
    classification = is_classification(predicted, truth)
    models = outcome(o["model"])
    by_model = {model: regression(model) for model in set(models)}
    if any(by_model.values()):  # a regression by its spec: whole numbers on both sides are values (counts)
        valued = np.fromiter(map(by_model.__getitem__, models), dtype=bool, count=len(models))
        classification &= ~(valued & ~np.isnan(predicted) & ~np.isnan(truth))
    same = same_classes(texts, labels)
    distance = np.abs(predicted - truth)
    correct = np.where(classification, same, distance == 0.0)
    error = np.where(classification, 1.0 - same, distance)
    ts_ms, outcome_ts_ms = prediction(p["ts_ms"]), outcome(o["ts_ms"])
    delay = (np.asarray(outcome_ts_ms, dtype=np.int64) - np.asarray(ts_ms, dtype=np.int64)) / 1000.0
    value = np.asarray(outcome(o["value"]), dtype=float) if "value" in o else np.full(len(chosen), math.nan)
    event_ids = [
        event_id if kept else f"{event_id}@v{version}"
        for event_id, kept, version in zip(outcome(o["event_id"]), was_served.tolist(), versions, strict=True)
    ]
    columns = {
        "event_id": event_ids,
        "prediction_event_id": prediction(p["event_id"]),
        "model": models,
        "model_version": versions,
        "request_id": outcome(o["request_id"]),
        "ts": prediction(p["ts"]),
        "ts_ms": ts_ms,
        "outcome_ts": outcome(o["ts"]),
        "outcome_ts_ms": outcome_ts_ms,
        "prediction": texts,
        "prediction_num": predicted.tolist(),
        "score": prediction(p["score"]),
        "label": labels,
        "label_num": truth.tolist(),
        "correct": correct.astype(np.uint8).tolist(),
        "error": error.tolist(),
        "label_delay_s": delay.tolist(),
        "served": was_served.astype(np.uint8).tolist(),
        "value": np.where(was_served, value, math.nan).tolist(),  # a shadow's decision was not made: no value
        "features": prediction(p["features"]),
    }
    return ColumnBatch("labeled", columns), unmatched, origins


def _pending_rows(outcomes: ColumnBatch, partitions: list[int], now: int, state: str) -> ColumnBatch:
    o = outcomes.columns
    n = len(outcomes)
    revision = time.time_ns() // 1000
    arrived = o.get("arrived_at", [now] * n)
    columns = {
        "event_id": o["event_id"],
        "model": o["model"],
        "request_id": o["request_id"],
        "ts": o["ts"],
        "ts_ms": o["ts_ms"],
        "label": o["label"],
        "label_num": o["label_num"],
        "value": o.get("value", [math.nan] * n),
        "source_partition": partitions,
        "arrived_at": arrived,
        "state": [state] * n,
        "revision": [revision] * n,
    }
    return ColumnBatch("join_pending", columns)
