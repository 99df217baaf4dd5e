"""Versioned, idempotent ClickHouse migrations from the SQL files under ``infra/clickhouse/sql``.

A migration is a file ``NNNN_name.sql``: statements separated by ``;`` at the end of a line, each written
to be safe to run twice (``IF NOT EXISTS``), with ``${database}`` where the database name goes. ClickHouse
18.16 knows no ``ADD COLUMN IF NOT EXISTS``: a plain ``ALTER TABLE db.t ADD COLUMN c ...`` is run by
:func:`run_statement` only when the column is missing. ClickHouse cannot change a table's partitioning in
place either: the migrator's own statement ``REPARTITION TABLE db.t BY expr`` does it (:func:`repartition`:
copy, count, swap; a no-op when the table is partitioned so already), and ``REORDER TABLE db.t BY expr``
(``VERSION column``: and a Replacing table's version column) changes a table's sorting key the same way
(:func:`reorder`). On a ClickHouse cluster
(``DRIFTLOOP_CLICKHOUSE_CLUSTER``) every statement is translated to its cluster form first
(:mod:`infra.clickhouse.cluster`). The ledger (``0000_ledger.sql``) records
each applied migration with the sha256 of its text; applying is a no-op for recorded ones, and a recorded
migration whose text changed is refused (add a new file instead).

>>> [m.name for m in discover()][:2]
['0000_ledger', '0001_core_tables']
>>> split_statements("CREATE TABLE a (x UInt8) ENGINE = Memory; -- done\\nSELECT 1;")
['CREATE TABLE a (x UInt8) ENGINE = Memory', 'SELECT 1']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from driftloop.infra.clickhouse import cluster as on_cluster
from driftloop.infra.errors import SchemaError

SQL_DIR = Path(__file__).with_name("sql")
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADD_COLUMN = re.compile(
    r"^\s*ALTER\s+TABLE\s+(\w+)\.(\w+)\s+(?:ON\s+CLUSTER\s+\w+\s+)?ADD\s+COLUMN\s+(\w+)\s", re.IGNORECASE
)
_DISTRIBUTE = re.compile(r"^\s*DISTRIBUTE\s+TABLE\s+(\w+)\.(\w+)\s*$", re.IGNORECASE)
_REPARTITION = re.compile(r"^\s*REPARTITION\s+TABLE\s+(\w+)\.(\w+)\s+BY\s+(.+?)\s*$", re.IGNORECASE)
_REORDER = re.compile(r"^\s*REORDER\s+TABLE\s+(\w+)\.(\w+)\s+BY\s+(.+?)(?:\s+VERSION\s+(\w+))?\s*$", re.IGNORECASE)
#: The version column of a Replacing engine's clause: its only argument, or the third of its replicated form.
_REPLACING_VERSION = re.compile(r"(ReplacingMergeTree\((?:'[^']*',\s*'[^']*',\s*)?)(\w+)\)")
_CLAUSE_AFTER_PARTITION = r"(?= ORDER BY | PRIMARY KEY | SAMPLE BY | TTL | SETTINGS |$)"
_CLAUSE_AFTER_ORDER = r"(?= PRIMARY KEY | SAMPLE BY | TTL | SETTINGS |$)"
LEDGER_VERSION = 0


class QueryRunner(Protocol):
    """What the migrator needs from a ClickHouse client (``clickhouse_driver.Client`` fits)."""

    def execute(self, query: str, params: object = None) -> list[tuple]: ...


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, name, text and checksum."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        """The file's statements with ``${database}`` replaced by ``database``."""
        if not _DATABASE_NAME.match(database):
            raise SchemaError(f"database name {database!r} is not a plain identifier ({_DATABASE_NAME.pattern})")
        return split_statements(self.sql.replace("${database}", database))


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    """Every migration file in ``directory``, in version order."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise SchemaError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise SchemaError(f"{path}: version {version} is used by {migrations[version].name}.sql too")
        migrations[version] = Migration(version, path.stem, path.read_text(encoding="utf-8"))
    if LEDGER_VERSION not in migrations:
        raise SchemaError(f"{directory}: the ledger migration 0000_*.sql is missing")
    return [migrations[v] for v in sorted(migrations)]


def split_statements(sql: str) -> list[str]:
    """Split SQL text into statements: ``--`` comments dropped, ``;`` outside quotes closes one."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(sql):
        char = sql[i]
        if quote:
            current.append(char)
            if char == "\\" and i + 1 < len(sql):
                current.append(sql[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "'`\"":
            quote = char
            current.append(char)
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline == -1 else newline
            continue
        elif char == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current))
    return [" ".join(line.strip() for line in s.strip().splitlines() if line.strip()) for s in statements if s.strip()]


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`apply_migrations` did."""

    applied: tuple[str, ...]
    already_applied: tuple[str, ...]


def applied_versions(client: QueryRunner, database: str) -> dict[int, str]:
    """Version → checksum of every migration recorded in the ledger (empty if there is no ledger yet)."""
    exists = client.execute(
        "SELECT count() FROM system.tables WHERE database = %(db)s AND name = 'schema_migrations'",
        {"db": database},
    )
    if not exists[0][0]:
        return {}
    rows = client.execute(
        f"SELECT version, argMax(checksum, applied_at) FROM {database}.schema_migrations GROUP BY version"
    )
    return {int(version): checksum for version, checksum in rows}


def apply_migrations(
    client: QueryRunner,
    database: str,
    migrations: Sequence[Migration] | None = None,
    *,
    cluster: str = "",
    run_on: on_cluster.ServerRunner | None = None,
) -> MigrationReport:
    """Apply every migration not yet in the ledger, in order; raise ``SchemaError`` on a changed one.

    ``cluster``: the ClickHouse cluster (``remote_servers``) to create the schema on, replicated and distributed
    (:mod:`infra.clickhouse.cluster`); the client's session needs :data:`~infra.clickhouse.cluster.SESSION_SETTINGS`,
    and ``run_on`` runs a statement on one server of it (views are made on each).
    """
    migrations = list(discover() if migrations is None else migrations)
    ledger = next((m for m in migrations if m.version == LEDGER_VERSION), None)
    if ledger is None:
        raise SchemaError("the ledger migration 0000_*.sql is missing from the migrations given")
    dialect = (
        on_cluster.ClusterDialect(cluster, on_cluster.data_tables(render_all(database, migrations)), run_on)
        if cluster
        else None
    )
    _run(client, ledger, database, dialect)  # idempotent by construction; needed before the ledger can be read
    recorded = applied_versions(client, database)
    applied, skipped = [], []
    for migration in migrations:
        checksum = recorded.get(migration.version)
        if checksum == migration.checksum:
            skipped.append(migration.name)
            continue
        if checksum is not None:
            raise SchemaError(
                f"migration {migration.name}.sql was changed after it was applied to {database!r} "
                "(its sha256 differs from the ledger's). Restore the file and add the change as a new "
                "migration file with the next number."
            )
        if migration.version != LEDGER_VERSION:
            _run(client, migration, database, dialect)
        client.execute(
            f"INSERT INTO {database}.schema_migrations (version, name, checksum) VALUES",
            [(migration.version, migration.name, migration.checksum)],
        )
        applied.append(migration.name)
    return MigrationReport(tuple(applied), tuple(skipped))


def run_statement(client: QueryRunner, statement: str, dialect: on_cluster.ClusterDialect | None = None) -> None:
    """Run one migration statement; an ``ADD COLUMN`` whose column exists already is done. ``dialect``: the
    statement is one of :class:`~infra.clickhouse.cluster.ClusterDialect`'s, for its cluster.

    >>> class Server:
    ...     def execute(self, query, params=None):
    ...         print(query.split()[0])
    ...         return [(1,)]  # the column is there
    >>> run_statement(Server(), "ALTER TABLE db.t ADD COLUMN c UInt8")
    SELECT
    """
    cluster = dialect.cluster if dialect else ""
    moved = _REPARTITION.match(statement)
    if moved:
        repartition(client, *moved.groups(), cluster=cluster)
        return
    reordered = _REORDER.match(statement)
    if reordered:
        reorder(client, *reordered.groups(), cluster=cluster)
        return
    distributed = _DISTRIBUTE.match(statement)
    everywhere = statement.startswith(on_cluster.EACH_SERVER)
    if (distributed or everywhere) and dialect is None:
        raise SchemaError(f"`{statement[:60]}` is a cluster statement; no cluster was given")
    if distributed and dialect:
        on_cluster.distribute(client, *distributed.groups(), dialect.cluster)
        return
    if everywhere and dialect:
        on_cluster.on_each_server(client, statement[len(on_cluster.EACH_SERVER) :], dialect.cluster, dialect.run_on)
        return
    added = _ADD_COLUMN.match(statement)
    if added:
        database, table, column = added.groups()
        present = client.execute(
            "SELECT count() FROM system.columns WHERE database = %(d)s AND table = %(t)s AND name = %(c)s",
            {"d": database, "t": table, "c": column},
        )
        if present[0][0]:
            return
    client.execute(statement)


def table_engine(client: QueryRunner, database: str, table: str, key: str = "partition_key") -> tuple[str, str]:
    """(``PARTITION BY`` expression, '' for none, or another of ``system.tables``' ``key`` columns; the whole
    engine clause) as the server reports them."""
    rows = client.execute(
        f"SELECT {key}, engine_full FROM system.tables WHERE database = %(d)s AND name = %(t)s",
        {"d": database, "t": table},
    )
    if not rows:
        raise SchemaError(f"{database}.{table} does not exist: nothing to rebuild")
    found, engine = rows[0]
    return str(found), " ".join(str(engine).split())


def repartition(client: QueryRunner, database: str, table: str, key: str, *, cluster: str = "") -> None:
    """Rebuild ``database.table`` partitioned by ``key`` with every row it holds: a copy partitioned so, the
    row counts compared, then both swapped in one ``RENAME`` and the old one dropped. Idempotent: a table
    partitioned by ``key`` already is left alone (and a crashed earlier run's leftovers are dropped).

    Writers must be stopped meanwhile (migrations run at ``driftloop stack up``, before the workers start):
    rows written to the old table after the copy would be left behind. The copy needs the table's size in
    free disk space while it lasts. ``cluster``: ``table`` is a replicated ``_local`` table, rebuilt on every
    server (:func:`infra.clickhouse.cluster.rebuild`).
    """
    staging, before = f"{database}.{table}__repartition", f"{database}.{table}__before_repartition"
    client.execute(f"DROP TABLE IF EXISTS {staging}")
    current, engine = table_engine(client, database, table)
    if _same_expression(current, key):
        client.execute(f"DROP TABLE IF EXISTS {before}")
        return
    if " PARTITION BY " in f" {engine} ":
        engine = re.sub(r" PARTITION BY .+?" + _CLAUSE_AFTER_PARTITION, f" PARTITION BY {key}", engine, count=1)
    else:
        engine = engine.replace(" ORDER BY ", f" PARTITION BY {key} ORDER BY ", 1)
    _rebuild(client, database, table, engine, staging, before, cluster)


def reorder(
    client: QueryRunner, database: str, table: str, key: str, version: str | None = None, *, cluster: str = ""
) -> None:
    """Rebuild ``database.table`` sorted by ``key`` (for a Replacing table: the key rows are replaced by) and,
    with ``version``, replacing by that column (``REORDER TABLE db.t BY key VERSION column``), as
    :func:`repartition` does; a table sorted and versioned so already is left alone."""
    staging, before = f"{database}.{table}__reorder", f"{database}.{table}__before_reorder"
    client.execute(f"DROP TABLE IF EXISTS {staging}")
    current, engine = table_engine(client, database, table, "sorting_key")
    replaced_by = _REPLACING_VERSION.search(engine)
    if version is not None and replaced_by is None:
        raise SchemaError(f"{database}.{table} is no Replacing table: it has no version column to change")
    same_version = version is None or (replaced_by is not None and replaced_by.group(2) == version)
    if (_same_expression(f"({current})", key) or _same_expression(current, key)) and same_version:
        client.execute(f"DROP TABLE IF EXISTS {before}")
        return
    engine = re.sub(r" ORDER BY .+?" + _CLAUSE_AFTER_ORDER, f" ORDER BY {key}", engine, count=1)
    if version is not None:
        engine = _REPLACING_VERSION.sub(lambda m: f"{m.group(1)}{version})", engine, count=1)
    _rebuild(client, database, table, engine, staging, before, cluster)


def _rebuild(
    client: QueryRunner, database: str, table: str, engine: str, staging: str, before: str, cluster: str
) -> None:
    """Copy ``database.table`` into ``staging`` made with ``engine``, check every row is there, and swap them."""
    if cluster:
        on_cluster.rebuild(client, database, table, engine, cluster)
        return
    client.execute(f"CREATE TABLE {staging} AS {database}.{table} ENGINE = {engine}")
    client.execute(f"INSERT INTO {staging} SELECT * FROM {database}.{table}")
    rows = client.execute(f"SELECT count() FROM {database}.{table}")[0][0]
    copied = client.execute(f"SELECT count() FROM {staging}")[0][0]
    if int(rows) != int(copied):
        client.execute(f"DROP TABLE IF EXISTS {staging}")
        raise SchemaError(
            f"rebuilding {database}.{table}: {copied} rows copied of {rows} (was something writing to it?); "
            "the table is unchanged: stop the workers and run `driftloop stack up` again"
        )
    client.execute(f"DROP TABLE IF EXISTS {before}")
    client.execute(f"RENAME TABLE {database}.{table} TO {before}, {staging} TO {database}.{table}")
    client.execute(f"DROP TABLE {before}")


def _same_expression(a: str, b: str) -> bool:
    return re.sub(r"\s+", "", a).lower() == re.sub(r"\s+", "", b).lower()


def _run(client: QueryRunner, migration: Migration, database: str, dialect: on_cluster.ClusterDialect | None) -> None:
    statements = migration.statements(database)
    if dialect is not None:
        statements = [translated for s in statements for translated in dialect.translate(s)]
    for statement in statements:
        try:
            run_statement(client, statement, dialect)
        except Exception as exc:  # the driver's ServerException carries the server's message
            first_line = statement.splitlines()[0]
            raise SchemaError(
                f"migration {migration.name}.sql failed at `{first_line} ...`: {exc}. "
                "Fix the statement; statements already run are safe to run again."
            ) from exc


def render_all(database: str, migrations: Iterable[Migration] | None = None) -> list[str]:
    """Every statement of every migration, rendered for ``database`` (used to check the SQL on other engines)."""
    return [s for m in (discover() if migrations is None else migrations) for s in m.statements(database)]
