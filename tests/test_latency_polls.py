"""benchmarks.latency's polls: each landed row counted once, at the poll that first saw it, through merges."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.latency import LandedRows, blocks_inserted

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
