"""Training sets from ClickHouse ``labeled`` rows (those served: a shadow's rows repeat their requests), in
event-time order (ties by ``event_id``: the same rows come back in the same order), column by column."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings


@dataclass(frozen=True)
class LabeledData:
    """Labeled rows as columns: numeric features (NaN where absent), categorical features, labels, times."""

    numeric: dict[str, np.ndarray]
    categorical: dict[str, list[str]]
    labels: list[str]
    label_num: np.ndarray
    ts: np.ndarray  # epoch seconds
    event_ids: tuple[str, ...] = ()  # each row's (the outcome's event_id): what a split's fingerprint hashes

    def __len__(self) -> int:
        return len(self.labels)

    def slice(self, start: int, stop: int) -> LabeledData:
        return LabeledData(
            {k: v[start:stop] for k, v in self.numeric.items()},
            {k: v[start:stop] for k, v in self.categorical.items()},
            self.labels[start:stop],
            self.label_num[start:stop],
            self.ts[start:stop],
            self.event_ids[start:stop],
        )

    def with_numeric(self, names: Iterable[str]) -> LabeledData:
        """The features ``names`` (a spec's numeric ones) as numbers only: a text sent for one (``"12.50"``, as
        a service that formats its numbers sends them) is the number it spells, any other text is missing, as the
        serving client reads a numeric feature's text (``models.serving.served_columns``). Sent as text, such a
        feature landed among the texts, and the network learnt each value as a category of its own.

        >>> data = LabeledData({"x": np.array([1.0, np.nan, np.nan])}, {"x": ["", "2.5", "n/a"]}, ["a"] * 3,
        ...                    np.zeros(3), np.zeros(3))
        >>> moved = data.with_numeric(["x"])
        >>> moved.numeric["x"].tolist(), moved.categorical
        ([1.0, 2.5, nan], {})
        """
        moved = [name for name in names if name in self.categorical]
        if not moved:
            return self
        numeric = dict(self.numeric)
        for name in moved:
            spelt = pd.to_numeric(pd.Series(self.categorical[name], dtype=object), errors="coerce")
            texts = spelt.to_numpy(dtype=np.float64, na_value=np.nan)
            sent = numeric.get(name)
            numeric[name] = texts if sent is None else np.where(np.isnan(sent), texts, sent)
        categorical = {k: v for k, v in self.categorical.items() if k not in moved}
        return dataclasses.replace(self, numeric=numeric, categorical=categorical)

    def split(self, fraction: float) -> tuple[LabeledData, LabeledData]:
        """(older, most recent ``fraction``): a split by time, never shuffled."""
        cut = max(1, min(len(self) - 1, round(len(self) * (1 - fraction))))
        return self.slice(0, cut), self.slice(cut, len(self))


def count_labels(settings: Settings, model: str, since: float, *, joined_until: int | None = None) -> int:
    """Labeled rows of ``model`` at or after ``since`` (joined by ``joined_until``: what a fetch bound so sees)."""
    joined = "AND joined_at <= toDateTime(%(joined)s)" if joined_until is not None else ""
    client = connect(settings.clickhouse)
    try:
        return int(
            client.execute(
                "SELECT uniqExact(request_id) FROM labeled "  # a corrected label counts once
                f"WHERE model = %(m)s AND served = 1 AND ts >= toDateTime(%(since)s) {joined}",
                {"m": model, "since": int(max(since, 0)), "joined": joined_until},
            )[0][0]
        )
    finally:
        client.disconnect()


def last_complete_second(settings: Settings, *, after: int | None = None, poll_s: float = 0.05) -> int:
    """The last second (epoch, ClickHouse's clock) that is over: every label joined in it or before is in
    ``labeled`` (``joined_at`` is the server's time). With ``after``, waits until that second is later than
    ``after`` (one second at most)."""
    client = connect(settings.clickhouse)
    try:
        while (second := int(client.execute("SELECT toUInt32(now())")[0][0]) - 1) <= (after or 0):
            time.sleep(poll_s)
        return second
    finally:
        client.disconnect()


def fetch_labeled(
    settings: Settings,
    model: str,
    since: float,
    max_rows: int,
    *,
    until_ms: int | None = None,
    joined_until: int | None = None,
) -> LabeledData:
    """The newest ``max_rows`` labeled rows of ``model`` at or after ``since``, oldest first.

    ``until_ms`` (epoch milliseconds) bounds the rows' event time; ``joined_until`` (epoch seconds, see
    :func:`last_complete_second`) the time their outcome was joined: rows whose label came later are left out,
    so that the same arguments give the same rows however many labels arrive afterwards (a rebuild's fetch).
    Each request counts once, with its latest label joined within the bound (a corrected label: the correction).
    """
    bounds = "AND ts_ms <= %(until)s " if until_ms is not None else ""
    bounds += "AND joined_at <= toDateTime(%(joined)s) " if joined_until is not None else ""
    client = connect(settings.clickhouse)
    try:
        columns = client.execute(
            "SELECT ts_ms, event_id, num.name, num.value, cat.name, cat.value, label, label_num FROM "
            "(SELECT * FROM "
            " (SELECT * FROM labeled WHERE model = %(m)s AND served = 1 AND ts >= toDateTime(%(since)s) "
            f"  {bounds}ORDER BY request_id, outcome_ts_ms DESC, joined_at DESC LIMIT 1 BY request_id) "
            " ORDER BY ts_ms DESC, event_id DESC LIMIT %(n)s) "
            "ORDER BY ts_ms, event_id",
            {"m": model, "since": int(max(since, 0)), "n": max_rows, "until": until_ms, "joined": joined_until},
            columnar=True,
        )
    finally:
        client.disconnect()
    if not columns:
        return LabeledData({}, {}, [], np.zeros(0), np.zeros(0))
    ts_ms, event_ids, num_names, num_values, cat_names, cat_values, labels, label_num = columns
    return LabeledData(
        _pivot_numeric(num_names, num_values),
        _pivot_categorical(cat_names, cat_values),
        list(labels),
        np.asarray(label_num, dtype=np.float64),
        np.asarray(ts_ms, dtype=np.float64) / 1000.0,
        tuple(event_ids),
    )


def _pivot_numeric(names: tuple, values: tuple) -> dict[str, np.ndarray]:
    if not names:
        return {}
    first = names[0]
    if all(n == first for n in names):  # every row sent the same features: one reshape, no per-row work
        matrix = np.asarray(values, dtype=np.float64).reshape(len(values), len(first))
        return {name: matrix[:, j].copy() for j, name in enumerate(first)}
    columns: dict[str, np.ndarray] = {n: np.full(len(names), np.nan) for n in sorted({n for row in names for n in row})}
    for i, (row_names, row_values) in enumerate(zip(names, values, strict=True)):
        for name, value in zip(row_names, row_values, strict=True):
            columns[name][i] = value
    return columns


def _pivot_categorical(names: tuple, values: tuple) -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {n: [""] * len(names) for n in sorted({n for row in names for n in row})}
    for i, (row_names, row_values) in enumerate(zip(names, values, strict=True)):
        for name, value in zip(row_names, row_values, strict=True):
            columns[name][i] = value
    return columns
