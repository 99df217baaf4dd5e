"""Retention on the local ClickHouse 18.16: a database filled by the schema before weekly partitions upgrades in
place without losing a row, then old weeks go and recent ones stay."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.clickhouse.migrations import apply_migrations, discover, table_engine
from driftloop.infra.clickhouse.retention import apply_retention, expired_weeks
from driftloop.infra.settings import Settings, SettingsError
from tests.stack_fixtures import PrivateStack

TODAY = dt.date(2026, 11, 30)  # a Monday
DAYS = 70


def day(k: int) -> int:
    """Epoch seconds at noon UTC, ``k`` days before TODAY."""
    return int(dt.datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=dt.UTC).timestamp()) - k * 86400


def test_weeks_expire_once_their_last_day_is_older_than_the_retention() -> None:
    mondays = [(TODAY - dt.timedelta(weeks=w)).isoformat() for w in range(6)]
    # 14 days: the cutoff is 16 November; the week of 9 November ends on the 15th: it goes, with all before it
    assert expired_weeks(mondays, 14, TODAY) == sorted(mondays[3:])
    assert expired_weeks(mondays, 13, TODAY) == sorted(mondays[3:])  # the week of the 16th ends on the 22nd
    assert expired_weeks(mondays, 1, TODAY) == sorted(mondays[2:])  # the week of the 23rd still has the 29th
    with pytest.raises(SettingsError, match="'labelled' has no retention"):
        Settings.from_env({"DRIFTLOOP_RETENTION_DAYS": "labelled=30"})


@pytest.mark.integration
def test_an_old_database_repartitions_in_place_and_retention_drops_whole_old_weeks(stack: PrivateStack) -> None:
    database = "retention_" + uuid.uuid4().hex[:8]
    client = connect(stack.settings.clickhouse, database="default")
    try:
        before = [m for m in discover() if m.version <= 10]  # the schema of monthly partitions
        apply_migrations(client, database, before)
        assert table_engine(client, database, "predictions")[0] == "toYYYYMM(ts)"
        client.execute(
            f"INSERT INTO {database}.predictions (event_id, model, request_id, ts, ts_ms) VALUES",
            [(f"p{k}", "m", f"r{k}", day(k), day(k) * 1000) for k in range(DAYS)],
        )
        client.execute(
            f"INSERT INTO {database}.dead_letters (source_topic, source_offset, reason, received_at) VALUES",
            [("t", k, "malformed JSON", day(k)) for k in range(DAYS)],
        )
        requests_before = client.execute(f"SELECT count() FROM {database}.prediction_requests")[0][0]
        assert requests_before == DAYS  # the view fed the request index

        report = apply_migrations(client, database)  # the upgrade: 0011 repartitions by week
        assert report.applied[0] == "0011_retention"
        for table, column in (("predictions", "ts"), ("dead_letters", "received_at"), ("labeled", "ts")):
            assert table_engine(client, database, table)[0] == f"toMonday({column})", table
        assert client.execute(f"SELECT count(), sum(ts_ms) FROM {database}.predictions")[0] == (
            DAYS,
            sum(day(k) * 1000 for k in range(DAYS)),
        )
        assert client.execute(f"SELECT count() FROM {database}.dead_letters")[0][0] == DAYS
        leftovers = client.execute(
            "SELECT name FROM system.tables WHERE database = %(d)s AND name LIKE '%%repartition%%'", {"d": database}
        )
        assert leftovers == []
        client.execute(
            f"INSERT INTO {database}.predictions (event_id, model, request_id, ts, ts_ms) VALUES",
            [("new", "m", "r-new", day(0), day(0) * 1000)],
        )
        assert client.execute(f"SELECT count() FROM {database}.prediction_requests")[0][0] == DAYS + 1  # still fed

        dropped = apply_retention(client, database, {"predictions": 14, "dead_letters": 30}, today=TODAY)
        kept = {
            table: {k for k in range(DAYS) if TODAY - dt.timedelta(days=k) >= first}
            for table, first in (("predictions", dt.date(2026, 11, 16)), ("dead_letters", dt.date(2026, 10, 26)))
        }
        (ts_min, rows) = client.execute(f"SELECT min(ts), count() FROM {database}.predictions")[0]
        assert rows == len(kept["predictions"]) + 1 and ts_min.date() == dt.date(2026, 11, 16)
        assert client.execute(f"SELECT count() FROM {database}.dead_letters")[0][0] == len(kept["dead_letters"])
        assert sum(d.rows for d in dropped if d.table == "predictions") == DAYS - len(kept["predictions"])
        assert client.execute(f"SELECT count() FROM {database}.prediction_requests")[0][0] == DAYS + 1  # no retention
        assert apply_retention(client, database, {"predictions": 14, "dead_letters": 30}, today=TODAY) == []
        assert apply_migrations(client, database).applied == ()
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
        client.disconnect()
