"""Retention: each event table keeps its rows for the days ``DRIFTLOOP_RETENTION_DAYS`` gives it, then they go.

The event tables are partitioned by week (``toMonday`` of their time column, UTC; migration 0011), so rows go a
whole week at a time: a week's partition is dropped once its last day is older than the table's retention, so a
table keeps at least its days and at most six more. :func:`apply_retention` drops those partitions (the streams
worker calls it every hour; ``driftloop retention`` once): on ClickHouse 18.16, which has no TTL, that is all.
Where the server has TTL (19.6 and later) it also sets the table's TTL to the same days, and the server removes
older rows in its merges as well (to the day, when a merge runs). On a cluster the weeks go from the replicated
``_local`` tables ``ON CLUSTER`` (the weeks and rows counted are those of the shard the connection reads).

>>> parse_retention("predictions=30, labeled=90")
{'predictions': 30, 'labeled': 90}
>>> expired_weeks(["2026-11-02", "2026-11-09", "2026-11-16"], days=14, today=dt.date(2026, 11, 30))
['2026-11-02', '2026-11-09']
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from driftloop.infra.clickhouse.cluster import LOCAL

log = logging.getLogger("driftloop.retention")

#: Tables that may have a retention, and the time column their weekly partitions are by.
RETENTION_TABLES: dict[str, str] = {
    "predictions": "ts",
    "outcomes": "ts",
    "labeled": "ts",
    "prediction_requests": "ts",
    "detector_stats": "ts",
    "dead_letters": "received_at",
}
#: The first server version with table TTL.
TTL_SINCE = (19, 6)


class QueryRunner(Protocol):
    def execute(self, query: str, params: object = None) -> list[tuple]: ...


def parse_retention(text: str) -> dict[str, int]:
    """``table=days[,table=days]`` → {table: days}; a ``ValueError`` that says what is wrong."""
    retention: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        table, sep, days = item.partition("=")
        table = table.strip()
        if not sep or not days.strip().isdigit():
            raise ValueError(f"{item!r}: write table=days, e.g. predictions=30")
        if table not in RETENTION_TABLES:
            raise ValueError(f"{table!r} has no retention; tables that do: {', '.join(RETENTION_TABLES)}")
        if int(days) < 1:
            raise ValueError(f"{item!r}: keep rows one day at least")
        retention[table] = int(days)
    return retention


def expired_weeks(partitions: Iterable[str], days: int, today: dt.date) -> list[str]:
    """The weekly partitions (each its Monday, ``YYYY-MM-DD``) whose last day is older than ``days`` before
    ``today``."""
    cutoff = today - dt.timedelta(days=days)
    return sorted(p for p in partitions if dt.date.fromisoformat(p) + dt.timedelta(days=6) < cutoff)


@dataclass(frozen=True)
class Dropped:
    """A week of a table that retention dropped, with the rows it held."""

    table: str
    week: str  # its Monday
    rows: int


def server_version(client: QueryRunner) -> tuple[int, int]:
    major, minor, *_ = str(client.execute("SELECT version()")[0][0]).split(".")
    return int(major), int(minor)


def apply_retention(
    client: QueryRunner,
    database: str,
    retention: Mapping[str, int],
    today: dt.date | None = None,
    *,
    cluster: str = "",
) -> list[Dropped]:
    """Drop every week older than each table's retention; set the tables' TTL where the server has TTL.
    ``cluster``: the schema is on that cluster (:mod:`infra.clickhouse.cluster`)."""
    today = today or dt.datetime.now(dt.UTC).date()
    with_ttl = server_version(client) >= TTL_SINCE
    on = f" ON CLUSTER {cluster}" if cluster else ""
    dropped: list[Dropped] = []
    for table, days in retention.items():
        column = RETENTION_TABLES[table]
        stored = f"{table}{LOCAL}" if cluster else table
        if with_ttl:
            client.execute(f"ALTER TABLE {database}.{stored}{on} MODIFY TTL {column} + INTERVAL {int(days)} DAY")
        parts = client.execute(
            "SELECT partition, sum(rows) FROM system.parts WHERE database = %(d)s AND table = %(t)s AND active "
            "GROUP BY partition",
            {"d": database, "t": stored},
        )
        rows = {str(week).strip("'"): int(count) for week, count in parts}
        for week in expired_weeks(rows, days, today):
            client.execute(f"ALTER TABLE {database}.{stored}{on} DROP PARTITION '{week}'")
            dropped.append(Dropped(table, week, rows[week]))
    if dropped:
        log.info(
            "retention dropped old weeks",
            extra={"fields": {"weeks": len(dropped), "rows": sum(d.rows for d in dropped)}},
        )
    return dropped
