"""Connections to ClickHouse over the native protocol (clickhouse-driver)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clickhouse_driver import Client

from driftloop.infra.clickhouse.cluster import SESSION_SETTINGS
from driftloop.infra.clickhouse.columnar_insert import ColumnarInsertClient
from driftloop.infra.clickhouse.migrations import MigrationReport, apply_migrations
from driftloop.infra.clickhouse.retention import Dropped, apply_retention
from driftloop.infra.errors import UnreachableError
from driftloop.infra.network import port_is_open
from driftloop.infra.settings import ClickHouseEndpoint


def connect(endpoint: ClickHouseEndpoint, *, database: str | None = None, timeout_s: float = 10.0) -> Client:
    """A client for ``endpoint``; ``database="default"`` works before the driftloop database exists.

    Its columnar inserts write their data in one pass a column (:mod:`infra.clickhouse.columnar_insert`). On a
    cluster its session has the cluster's settings (:data:`infra.clickhouse.cluster.SESSION_SETTINGS`).
    """
    return ColumnarInsertClient(
        **endpoint.client_kwargs(database=database),
        connect_timeout=timeout_s,
        send_receive_timeout=max(timeout_s, 30.0),
        settings={"use_numpy": False, **(SESSION_SETTINGS if endpoint.cluster else {})},
    )


class SharedClient:
    """One lazily opened connection that threads take turns on; a failed query drops it, the next reopens it.

    The workers' long-lived readers and writers (sink, outcome join, detector state) hold one each.
    """

    def __init__(self, endpoint: ClickHouseEndpoint) -> None:
        self.endpoint = endpoint
        self._client: Client | None = None
        self._lock = threading.Lock()

    def execute(self, query: str, params: object = None, **kwargs: Any) -> Any:
        with self._lock:
            if self._client is None:
                self._client = connect(self.endpoint)
            try:
                return self._client.execute(query, params, **kwargs)
            except Exception:
                self._drop()
                raise

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            finally:
                self._client = None


def ping(endpoint: ClickHouseEndpoint, *, timeout_s: float = 2.0) -> str:
    """The server's version string; ``UnreachableError`` when it does not answer."""
    if not port_is_open(endpoint.host, endpoint.port, timeout_s=timeout_s):
        raise UnreachableError(f"nothing listens on {endpoint.host}:{endpoint.port}")
    client = connect(endpoint, database="default", timeout_s=timeout_s)
    try:
        return str(client.execute("SELECT version()")[0][0])
    except Exception as exc:
        raise UnreachableError(f"ClickHouse at {endpoint.host}:{endpoint.port} does not answer: {exc}") from exc
    finally:
        client.disconnect()


def provision_schema(endpoint: ClickHouseEndpoint) -> MigrationReport:
    """Create the database and apply every pending migration (idempotent); on a cluster, on all of its servers."""

    def run_on(host: str, port: int, statement: str) -> None:
        server = connect(endpoint.model_copy(update={"host": host, "port": port, "alt_hosts": ""}), database="default")
        try:
            server.execute(statement)
        finally:
            server.disconnect()

    client = connect(endpoint, database="default")
    try:
        return apply_migrations(client, endpoint.database, cluster=endpoint.cluster, run_on=run_on)
    finally:
        client.disconnect()


def enforce_retention(endpoint: ClickHouseEndpoint, retention: Mapping[str, int]) -> list[Dropped]:
    """One retention pass (:mod:`infra.clickhouse.retention`) over the driftloop database."""
    client = connect(endpoint, database="default")
    try:
        return apply_retention(client, endpoint.database, retention, cluster=endpoint.cluster)
    finally:
        client.disconnect()


@dataclass(frozen=True)
class TableSize:
    """Rows and bytes a table holds on disk (active parts; duplicates not yet merged are counted)."""

    name: str
    rows: int
    bytes: int


def table_sizes(endpoint: ClickHouseEndpoint) -> list[TableSize]:
    """Every table of the driftloop database with its stored rows and bytes, by name."""
    client = connect(endpoint, database="default")
    try:
        rows = client.execute(
            "SELECT t.name, sum(p.rows), sum(p.bytes_on_disk) FROM system.tables AS t "
            "LEFT JOIN (SELECT table, rows, bytes_on_disk FROM system.parts "
            "           WHERE database = %(db)s AND active) AS p ON p.table = t.name "
            "WHERE t.database = %(db)s AND t.engine NOT IN ('View', 'MaterializedView') "
            "GROUP BY t.name ORDER BY t.name",
            {"db": endpoint.database},
        )
    finally:
        client.disconnect()
    return [TableSize(name, int(n or 0), int(b or 0)) for name, n, b in rows]


# Tables the streams worker writes, with the column that says when a row arrived.
_ARRIVAL_COLUMNS = {"predictions": "ingested_at", "outcomes": "ingested_at", "labeled": "joined_at"}


def recent_rows(endpoint: ClickHouseEndpoint, seconds: int = 60) -> dict[str, int]:
    """Rows written to the event tables in the last ``seconds`` (throughput, as ClickHouse saw it)."""
    client = connect(endpoint)
    try:
        return {
            table: client.execute(f"SELECT count() FROM {table} WHERE {column} >= now() - %(s)s", {"s": int(seconds)})[
                0
            ][0]
            for table, column in _ARRIVAL_COLUMNS.items()
        }
    finally:
        client.disconnect()
