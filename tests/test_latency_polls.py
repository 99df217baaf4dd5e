"""benchmarks.latency's measurements: its polls (each landed row counted once, at the poll that first saw it,
through merges), and the p99 it reads from the worker's histogram of event ages."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from benchmarks.latency import LandedRows, blocks_inserted, histogram_quantile
from driftloop.infra.metrics import Histogram
from driftloop.streams.ingestion import EVENT_AGE_BUCKETS

TABLE = "latency_polls"


def _land(client, model: str, stamps: dict[int, int], salt: int) -> None:  # type: ignore[no-untyped-def]
    """One insert: ``count`` rows of ``model`` for each ts_ms of ``stamps``."""
    for ts_ms, count in stamps.items():
        client.execute(
            f"INSERT INTO {TABLE} (event_id, model, request_id, ts, ts_ms, prediction) "
            f"SELECT toString(cityHash64(number, {ts_ms}, {salt})), '{model}', toString(number), "
            f"toDateTime({ts_ms // 1000}), {ts_ms}, '1' FROM system.numbers LIMIT {count}"
        )


@pytest.fixture()
def table(clickhouse):  # type: ignore[no-untyped-def]
    clickhouse.execute(f"DROP TABLE IF EXISTS {TABLE}")
    clickhouse.execute(f"CREATE TABLE {TABLE} AS predictions")
    yield clickhouse
    clickhouse.execute(f"DROP TABLE IF EXISTS {TABLE}")


def test_rows_count_once_at_the_poll_that_first_sees_them_whatever_merges_them(table) -> None:  # type: ignore[no-untyped-def]
    landed = LandedRows(table, "m", table=TABLE)
    assert landed.poll() == Counter()
    _land(table, "m", {1_790_000_000_000: 100, 1_790_000_000_250: 100}, salt=1)
    _land(table, "other", {1_790_000_000_000: 7}, salt=2)  # another model's rows are not counted
    assert landed.poll() == Counter({1_790_000_000_000: 100, 1_790_000_000_250: 100})
    assert landed.poll() == Counter()  # nothing new: nothing gained, and the parts are not read again
    _land(table, "m", {1_790_000_000_500: 100, 1_790_000_000_000: 3}, salt=3)
    assert landed.poll() == Counter({1_790_000_000_500: 100, 1_790_000_000_000: 3})
    table.execute(f"OPTIMIZE TABLE {TABLE} FINAL")  # every part merged into one: the same rows, no new ones
    assert len(table.execute(f"SELECT name FROM system.parts WHERE table = '{TABLE}' AND active")) == 1
    assert landed.poll() == Counter()
    assert landed.seen == Counter({1_790_000_000_000: 103, 1_790_000_000_250: 100, 1_790_000_000_500: 100})
    _land(table, "m", {1_790_000_000_750: 50}, salt=4)
    assert landed.poll() == Counter({1_790_000_000_750: 50})
    table.execute(f"TRUNCATE TABLE {TABLE}")  # parts gone with nothing in their place: what was seen stays seen
    assert landed.poll() == Counter()
    _land(table, "m", {1_790_000_000_750: 10}, salt=5)  # fewer than were seen of that stamp: nothing new
    assert landed.poll() == Counter()
    assert landed.seen[1_790_000_000_750] == 50


def test_inserts_into_the_table_are_counted_by_its_block_numbers_through_merges(table) -> None:  # type: ignore[no-untyped-def]
    _land(table, "m", {1_790_000_000_000: 10}, salt=1)
    before = blocks_inserted(table, TABLE)
    _land(table, "m", {1_790_000_000_000: 10, 1_790_000_000_250: 10, 1_790_000_000_500: 10}, salt=2)  # three
    assert blocks_inserted(table, TABLE) - before == 3
    table.execute(f"OPTIMIZE TABLE {TABLE} FINAL")  # merged: no insert more, none less
    assert blocks_inserted(table, TABLE) - before == 3
    _land(table, "other", {1_790_000_000_750: 10}, salt=3)
    assert blocks_inserted(table, TABLE) - before == 4


@pytest.mark.parametrize("seed", range(5))
def test_the_p99_read_from_the_worker_s_histogram_lies_in_the_bucket_of_the_true_p99(seed: int) -> None:
    ages = np.random.default_rng(seed).lognormal(mean=math.log(0.5), sigma=0.6, size=20_000)  # a landing's ages
    observed = Histogram(EVENT_AGE_BUCKETS)
    observed.observe_many(ages[:7_000])
    observed.observe_many(ages[7_000:])  # batch after batch, as the worker counts them
    buckets = {math.inf if le == "+Inf" else float(le): count for le, count in observed.buckets()}
    true_p99 = float(np.quantile(ages, 0.99))
    bounds = (0.0, *EVENT_AGE_BUCKETS, math.inf)
    upper = next(k for k in range(1, len(bounds)) if true_p99 <= bounds[k])
    assert bounds[upper - 1] <= histogram_quantile(0.99, buckets) <= bounds[upper], (true_p99, buckets)
    one_by_one = Histogram(EVENT_AGE_BUCKETS)
    for age in ages:
        one_by_one.observe(float(age))
    assert one_by_one.buckets() == observed.buckets() and one_by_one.total == pytest.approx(observed.total)


def test_the_quantile_is_interpolated_within_its_bucket_as_prometheus_does() -> None:
    buckets = {0.5: 10.0, 1.0: 30.0, math.inf: 40.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.75)  # rank 20: halfway through (0.5, 1.0]
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.2)  # rank 4 of the first bucket, from 0
    assert histogram_quantile(0.99, buckets) == 1.0  # in +Inf's bucket: the highest finite bound
    assert math.isnan(histogram_quantile(0.99, {}))  # no events
