r"""The schema on a ClickHouse cluster: replicated tables, a ``Distributed`` table over each, DDL ``ON CLUSTER``.

The migrations are written for one server. With ``DRIFTLOOP_CLICKHOUSE_CLUSTER`` set, the migrator translates each
statement (:meth:`ClusterDialect.translate`) so that every query and insert of the project works unchanged:

- a table ``db.t`` (a MergeTree family engine) becomes ``db.t_local`` on every server of the cluster, with the
  engine's replicated form (``ReplicatedReplacingMergeTree('/clickhouse/tables/cluster/{shard}/db/t_local',
  '{replica}', version)``; the servers' ``{shard}`` and ``{replica}`` macros fill in the path), and ``db.t`` becomes a
  ``Distributed`` table over it. Inserts go through ``db.t`` to one replica of a shard and replicate from there;
  reads through ``db.t`` read one replica of every shard.
- **Exactly-once by** ``event_id``: each ``Distributed`` table shards by ``cityHash64`` of its table's sorting key,
  the key the Replacing engine replaces rows by. Every copy of a row (an event delivered twice, an insert retried)
  lands on the same shard, where ``FINAL`` and merges fold it as on one server; a retried insert of the same block
  is also dropped by the replicated engine's block deduplication.
- views read the ``Distributed`` tables; each server of the cluster gets its own (``EACH SERVER``: the migrator
  connects to every server ``system.clusters`` lists, as 18.16's ``ON CLUSTER`` misreads a view whose column and
  subquery share a name). A materialized view reads and writes the ``_local`` tables on each server, created
  ``ON CLUSTER`` (it fires on the replica an insert lands on; the rows it writes replicate).
- ``ALTER`` runs on the ``_local`` table ``ON CLUSTER`` (for a replicated table ClickHouse runs it once a shard
  and replicates it); then the ``Distributed`` table is made again from the new columns (``DISTRIBUTE TABLE``).
- ``REPARTITION`` and ``REORDER`` rebuild the ``_local`` table ``ON CLUSTER`` under a replication path of its
  own, copy every row through the ``Distributed`` tables, wait until every row is counted, and swap the two.

``DISTRIBUTE TABLE db.t`` and ``EACH SERVER statement`` are the migrator's own statements, as ``REPARTITION`` is:
the first (re)creates ``db.t`` as the ``Distributed`` table over ``db.t_local`` when it is missing or differs
(columns, sharding key); the second runs ``statement`` on every server of the cluster (:func:`on_each_server`).

>>> dialect = ClusterDialect("dl", frozenset({"predictions", "prediction_requests"}))
>>> local, distributed = dialect.translate(
...     "CREATE TABLE IF NOT EXISTS db.predictions (model String, event_id String) "
...     "ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (model, event_id)")
>>> print(local.replace(" ENGINE", "\nENGINE").replace(" ORDER", "\nORDER"))
CREATE TABLE IF NOT EXISTS db.predictions_local ON CLUSTER dl (model String, event_id String)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/dl/{shard}/db/predictions_local', '{replica}', ingested_at)
ORDER BY (model, event_id)
>>> distributed
'DISTRIBUTE TABLE db.predictions'
>>> (view,) = dialect.translate("CREATE MATERIALIZED VIEW IF NOT EXISTS db.mv TO db.prediction_requests AS "
...                             "SELECT model FROM db.predictions")
>>> print(view.replace(" AS ", "\nAS "))
CREATE MATERIALIZED VIEW IF NOT EXISTS db.mv ON CLUSTER dl TO db.prediction_requests_local
AS SELECT model FROM db.predictions_local
>>> print(*dialect.translate("ALTER TABLE db.predictions ADD COLUMN served UInt8"), sep="\n")
ALTER TABLE db.predictions_local ON CLUSTER dl ADD COLUMN served UInt8
DISTRIBUTE TABLE db.predictions
>>> sharding_expression("(model, toDate(ts), event_id)")
'cityHash64(model, toDate(ts), event_id)'
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from driftloop.infra.errors import SchemaError

#: The suffix of the replicated table that holds a table's rows on each server.
LOCAL = "_local"
#: Where the replicated tables keep their replication log in ZooKeeper, by cluster, shard (the servers' macro),
#: database and table: two clusters, or two databases, on one ZooKeeper never share a path.
REPLICATION_PATH = "/clickhouse/tables/%s/{shard}/%s/%s"
#: Session settings of every connection to a cluster: an insert returns once each shard has it (so that what the
#: project wrote it can read back at once, and an acknowledged batch is on a replica, not in a server's send
#: queue); a subquery over a ``Distributed`` table inside a query over another runs once, not on every shard.
SESSION_SETTINGS = {"insert_distributed_sync": 1, "distributed_product_mode": "global"}

_CREATE_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS (\w+)$", re.IGNORECASE)
_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) (\(.*\)) ENGINE = (\w*MergeTree)\s*(?:\(([^)]*)\))?(.*)$",
    re.IGNORECASE,
)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS \w+\.\w+ AS ", re.IGNORECASE)
_CREATE_MATERIALIZED = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO (\w+)\.(\w+) AS (.*)$", re.IGNORECASE
)
_ALTER = re.compile(r"^ALTER TABLE (\w+)\.(\w+) (.*)$", re.IGNORECASE)
_DROP = re.compile(r"^DROP TABLE IF EXISTS (\w+)\.(\w+)$", re.IGNORECASE)
_REBUILD = re.compile(r"^(REPARTITION|REORDER) TABLE (\w+)\.(\w+) BY (.+)$", re.IGNORECASE)
_ORDER_BY = re.compile(r" ORDER BY (.+?)(?= PRIMARY KEY | SAMPLE BY | TTL | SETTINGS |$)")
_REPLICATION_PATH_ARG = re.compile(r"(Replicated\w*MergeTree\(\s*)'[^']*'")
_WAIT_FOR_COPY_S = 120.0
#: The prefix of a statement the migrator runs on every server of the cluster, one connection each.
EACH_SERVER = "EACH SERVER "


class QueryRunner(Protocol):
    def execute(self, query: str, params: object = None, **kwargs: object) -> list[tuple]: ...


#: Runs a statement on the server at (host, port): what the migrator is given to reach every server.
ServerRunner = Callable[[str, int, str], None]


def data_tables(statements: Iterable[str]) -> frozenset[str]:
    """The tables the statements create with a MergeTree family engine: those that hold rows (not views)."""
    return frozenset(m.group(2) for s in statements if (m := _CREATE_TABLE.match(s)))


@dataclass(frozen=True)
class ClusterDialect:
    """Translates one-server migration statements for the cluster ``cluster``; ``tables`` are the data tables;
    ``run_on`` reaches each server (for ``EACH SERVER`` statements)."""

    cluster: str
    tables: frozenset[str]
    run_on: ServerRunner | None = None

    def translate(self, statement: str) -> list[str]:
        """The statements that do on the cluster what ``statement`` does on one server."""
        on = f"ON CLUSTER {self.cluster}"
        if m := _CREATE_DATABASE.match(statement):
            return [f"{statement} {on}"]
        if m := _CREATE_TABLE.match(statement):
            database, table, columns, engine, args, rest = m.groups()
            local = table + LOCAL
            path = REPLICATION_PATH % (self.cluster, database, local)
            replicated = ", ".join([f"'{path}'", "'{replica}'", *([args.strip()] if args else [])])
            return [
                f"CREATE TABLE IF NOT EXISTS {database}.{local} {on} {columns} "
                f"ENGINE = Replicated{engine}({replicated}){rest}",
                f"DISTRIBUTE TABLE {database}.{table}",
            ]
        if _CREATE_VIEW.match(statement):
            return [EACH_SERVER + statement]
        if m := _CREATE_MATERIALIZED.match(statement):
            database, view, target_database, target, select = m.groups()
            return [
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{view} {on} "
                f"TO {target_database}.{self._local(target)} AS {self._locals(select)}"
            ]
        if (m := _ALTER.match(statement)) and m.group(2) in self.tables:
            database, table, rest = m.groups()
            return [f"ALTER TABLE {database}.{table}{LOCAL} {on} {rest}", f"DISTRIBUTE TABLE {database}.{table}"]
        if m := _DROP.match(statement):
            database, table = m.groups()
            dropped = [f"DROP TABLE IF EXISTS {database}.{table} {on}"]
            if table in self.tables:
                dropped.append(f"DROP TABLE IF EXISTS {database}.{table}{LOCAL} {on}")
            return dropped
        if (m := _REBUILD.match(statement)) and m.group(3) in self.tables:
            verb, database, table, key = m.groups()
            return [f"{verb} TABLE {database}.{table}{LOCAL} BY {key}", f"DISTRIBUTE TABLE {database}.{table}"]
        raise SchemaError(
            f"no cluster form for the migration statement `{statement[:80]} ...`: write migrations with the "
            "statements infra/clickhouse/cluster.py translates (CREATE TABLE/VIEW/MATERIALIZED VIEW IF NOT EXISTS, "
            "ALTER TABLE, DROP TABLE IF EXISTS, REPARTITION, REORDER)"
        )

    def _local(self, table: str) -> str:
        return table + LOCAL if table in self.tables else table

    def _locals(self, select: str) -> str:
        """``select`` reading the ``_local`` tables (a materialized view fires on the server an insert lands on)."""
        return re.sub(r"\b(\w+)\.(\w+)\b", lambda m: f"{m.group(1)}.{self._local(m.group(2))}", select)


def on_each_server(client: QueryRunner, statement: str, cluster: str, run_on: ServerRunner | None) -> None:
    """Run ``statement`` on every server of ``cluster`` (as ``system.clusters`` lists them), one after another."""
    if run_on is None:
        raise SchemaError(f"`{statement[:60]} ...` runs on every server of the cluster: give the migrator `run_on`")
    servers = client.execute(
        "SELECT DISTINCT host_name, port FROM system.clusters WHERE cluster = %(c)s", {"c": cluster}
    )
    if not servers:
        raise SchemaError(
            f"the server knows no cluster {cluster!r} (system.clusters): DRIFTLOOP_CLICKHOUSE_CLUSTER must name a "
            "cluster of its remote_servers configuration"
        )
    for host, port in servers:
        run_on(str(host), int(port), statement)


def sharding_expression(sorting_key: str) -> str:
    """The ``Distributed`` table's sharding key for a table sorted (and, if Replacing, deduplicated) by
    ``sorting_key``: rows equal in it land on the same shard."""
    key = sorting_key.strip()
    if key.startswith("(") and key.endswith(")") and _closes_at_end(key):
        key = key[1:-1].strip()
    return f"cityHash64({key})"


def _closes_at_end(text: str) -> bool:
    """Whether the parenthesis that opens ``text`` is the one that closes it."""
    depth = 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if depth == 0:
            return i == len(text) - 1
    return False


def distribute(client: QueryRunner, database: str, table: str, cluster: str) -> None:
    """Make ``database.table`` the ``Distributed`` table over ``table_local`` on every server, sharded by the
    local table's sorting key; left alone when it is so already (same engine, same columns)."""
    local = table + LOCAL
    tables = dict(
        client.execute(
            "SELECT name, sorting_key FROM system.tables WHERE database = %(d)s AND name IN (%(t)s, %(l)s)",
            {"d": database, "t": table, "l": local},
        )
    )
    if local not in tables:
        raise SchemaError(f"{database}.{local} does not exist: create it before its Distributed table")
    engine = f"Distributed({cluster}, {database}, {local}, {sharding_expression(str(tables[local]))})"
    if table in tables and _distributed_as(client, database, table, local, engine):
        return
    client.execute(f"DROP TABLE IF EXISTS {database}.{table} ON CLUSTER {cluster}")
    client.execute(f"CREATE TABLE {database}.{table} ON CLUSTER {cluster} AS {database}.{local} ENGINE = {engine}")


def _distributed_as(client: QueryRunner, database: str, table: str, local: str, engine: str) -> bool:
    found = client.execute(
        "SELECT engine_full FROM system.tables WHERE database = %(d)s AND name = %(t)s", {"d": database, "t": table}
    )
    columns = client.execute(
        "SELECT table, groupArray(name), groupArray(type) FROM system.columns "
        "WHERE database = %(d)s AND table IN (%(t)s, %(l)s) GROUP BY table",
        {"d": database, "t": table, "l": local},
    )
    described = {name: (list(names), list(types)) for name, names, types in columns}
    return _squeeze(found[0][0]) == _squeeze(engine) and described.get(table) == described.get(local)


def rebuild(client: QueryRunner, database: str, local: str, engine: str, cluster: str) -> None:
    """Rebuild the replicated ``database.local`` on every server with ``engine`` (a new partitioning or sorting
    key): a copy under a replication path of its own, every row copied through ``Distributed`` tables (sharded
    by the new key), counted, and the two swapped ``ON CLUSTER``. Writers must be stopped meanwhile."""
    if not local.endswith(LOCAL):
        raise SchemaError(f"{database}.{local}: on a cluster only the {LOCAL} tables are rebuilt")
    table = local[: -len(LOCAL)]
    staging, before = f"{table}__rebuild", f"{local}__before_rebuild"
    staging_local = staging + LOCAL
    on = f"ON CLUSTER {cluster}"
    for leftover in (staging, staging_local, before):
        client.execute(f"DROP TABLE IF EXISTS {database}.{leftover} {on}")
    # A path of its own: the old table's path is removed from ZooKeeper when it is dropped.
    path = REPLICATION_PATH % (cluster, database, f"{local}_{uuid.uuid4().hex[:12]}")
    engine = _REPLICATION_PATH_ARG.sub(lambda m: f"{m.group(1)}'{path}'", engine, count=1)
    client.execute(f"CREATE TABLE {database}.{staging_local} {on} AS {database}.{local} ENGINE = {engine}")
    distribute(client, database, staging, cluster)
    client.execute(f"INSERT INTO {database}.{staging} SELECT * FROM {database}.{table}")
    rows = int(client.execute(f"SELECT count() FROM {database}.{table}")[0][0])
    deadline, copied = time.monotonic() + _WAIT_FOR_COPY_S, -1
    while copied != rows:  # replicas that have not fetched every part yet answer less
        copied = int(client.execute(f"SELECT count() FROM {database}.{staging}")[0][0])
        if copied != rows and time.monotonic() > deadline:
            client.execute(f"DROP TABLE IF EXISTS {database}.{staging} {on}")
            client.execute(f"DROP TABLE IF EXISTS {database}.{staging_local} {on}")
            raise SchemaError(
                f"rebuilding {database}.{local} on cluster {cluster}: {copied} rows copied of {rows} after "
                f"{_WAIT_FOR_COPY_S:.0f} s (was something writing to it, or is a replica down?); the table is "
                "unchanged: stop the workers, check system.replicas, and run `driftloop stack up` again"
            )
        if copied != rows:
            time.sleep(0.5)
    client.execute(f"DROP TABLE {database}.{staging} {on}")
    client.execute(
        f"RENAME TABLE {database}.{local} TO {database}.{before}, {database}.{staging_local} TO {database}.{local} {on}"
    )
    client.execute(f"DROP TABLE {database}.{before} {on}")


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", str(text)).lower()
