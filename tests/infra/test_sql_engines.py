"""Every SQL file of the project runs on ClickHouse 18.16 (the local server) and on current ClickHouse (chdb)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from driftloop.analytics.scorecard import one_model_scorecard
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.clickhouse.migrations import discover, run_statement, split_statements, table_engine
from driftloop.infra.clickhouse.retention import apply_retention
from tests.stack_fixtures import REPO, PrivateStack

_SKIP = {".venv", ".git", ".driftloop", "node_modules"}


def project_sql_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.sql") if not _SKIP & set(p.relative_to(REPO).parts))


def project_views() -> list[str]:
    return [
        view
        for path in project_sql_files()
        for view in re.findall(r"CREATE VIEW IF NOT EXISTS \$\{database\}\.(\w+)", path.read_text())
    ]


def rendered(path: Path, database: str) -> list[str]:
    return split_statements(path.read_text().replace("${database}", database))


class ChdbRunner:
    """A chdb session as the migrator's query runner (parameters inlined: plain identifiers and numbers here)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def execute(self, query: str, params: dict[str, str | int] | None = None) -> list[tuple]:
        for name, value in (params or {}).items():
            query = query.replace(f"%({name})s", str(value) if isinstance(value, int) else "'" + value + "'")
        out = self.session.query(query, "CSV").bytes().decode()
        return [tuple(int(v) if v.isdigit() else v for v in row) for row in csv.reader(io.StringIO(out))]


def test_the_project_has_sql_files_to_check() -> None:
    names = {p.name for p in project_sql_files()}
    assert {m.name + ".sql" for m in discover()} <= names


@contextmanager
def migrated_chdb(directory: Path) -> Iterator[tuple[Any, ChdbRunner]]:
    """A chdb session (current ClickHouse) in ``directory`` with the project's schema in ``driftloop``, in use."""
    from chdb import session

    db = session.Session(str(directory / "chdb"))
    runner = ChdbRunner(db)
    try:
        for path in project_sql_files():
            for statement in rendered(path, "driftloop"):
                run_statement(runner, statement)
        db.query("USE driftloop")
        yield db, runner
    finally:
        db.close()


def test_every_sql_file_runs_on_current_clickhouse_twice(tmp_path: Path) -> None:
    from chdb import session

    db = session.Session(str(tmp_path / "chdb"))
    try:
        version = db.query("SELECT version()", "CSV").bytes().decode().strip().strip('"')
        assert int(version.split(".")[0]) >= 24, version
        for _ in range(2):  # the second pass proves the files are idempotent (as the migrator runs them)
            for path in project_sql_files():
                for statement in rendered(path, "driftloop"):
                    run_statement(ChdbRunner(db), statement)
        tables = db.query("SELECT name FROM system.tables WHERE database = 'driftloop'", "CSV").bytes().decode()
        for view in project_views():  # a view is only checked when it is read
            db.query(f"SELECT * FROM driftloop.{view} LIMIT 1", "CSV")
        one_model = one_model_scorecard("driftloop").replace("%(m)s", "'m'")  # the CLI's and the report's query
        db.query(f"SELECT * FROM ({one_model}) LIMIT 1", "CSV")
        assert table_engine(ChdbRunner(db), "driftloop", "predictions")[0] == "toMonday(ts)"  # migration 0011
        apply_retention(ChdbRunner(db), "driftloop", {"predictions": 30, "dead_letters": 7})  # TTL where present
        (engine,) = ChdbRunner(db).execute("SELECT engine_full FROM system.tables WHERE name = 'dead_letters'")[0]
        assert "TTL received_at + toIntervalDay(7)" in engine, engine
    finally:
        db.close()
    for table in ("predictions", "outcomes", "labeled", "drift_alerts", "model_versions", "retrain_runs"):
        assert f'"{table}"' in tables


@pytest.mark.integration
def test_every_sql_file_runs_on_the_local_clickhouse_18_twice(stack: PrivateStack) -> None:
    database = "sqlcheck_" + uuid.uuid4().hex[:8]
    client = connect(stack.settings.clickhouse, database="default")
    try:
        assert client.execute("SELECT version()")[0][0].startswith("18.16")
        for _ in range(2):
            for path in project_sql_files():
                for statement in rendered(path, database):
                    run_statement(client, statement)
        tables = {name for (name,) in client.execute(f"SHOW TABLES FROM {database}")}
        for view in project_views():
            client.execute(f"SELECT * FROM {database}.{view} LIMIT 1")
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
        client.disconnect()
    assert {"predictions", "outcomes", "labeled", "drift_alerts", "model_versions", "retrain_runs"} <= tables


@pytest.mark.integration
def test_every_view_runs_from_the_text_a_restarted_server_reads(stack: PrivateStack) -> None:
    """A restarted 18.16 server reads each view back from the text it stored (``SHOW CREATE TABLE``), not from
    the migration's: that text must run too. 18.16 writes an alias it has written once as the name alone, so a
    subquery named as a column of the same query was stored as a table of that name (migration 0014)."""
    client = connect(stack.settings.clickhouse)
    database = stack.settings.clickhouse.database
    try:
        views = [name for (name,) in client.execute(
            "SELECT name FROM system.tables WHERE database = %(d)s AND engine IN ('View', 'MaterializedView')",
            {"d": database},
        )]  # fmt: skip
        assert {"scorecard", "estimated_performance", "prediction_requests_mv"} <= set(views)
        failed = {}
        for view in views:
            stored = client.execute(f"SHOW CREATE TABLE {database}.{view}")[0][0]
            query = "SELECT " + stored.split(" AS SELECT ", 1)[1]
            try:
                client.execute(f"SELECT * FROM ({query}) LIMIT 1")
            except Exception as error:  # every view's failure is reported at once
                failed[view] = " ".join(str(error).splitlines()[:2])
    finally:
        client.disconnect()
    assert failed == {}
