from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.infra.clickhouse.migrations import Migration, discover, split_statements
from driftloop.infra.errors import SchemaError


def test_migrations_are_discovered_in_version_order_ledger_first() -> None:
    migrations = discover()
    assert migrations[0].version == 0
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})


def test_statements_split_on_semicolons_outside_quotes_and_comments() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (s String DEFAULT 'a;b') ENGINE = Memory; -- trailing
    INSERT INTO t VALUES ('it''s -- not a comment');
    SELECT 1
    """
    assert split_statements(sql) == [
        "CREATE TABLE t (s String DEFAULT 'a;b') ENGINE = Memory",
        "INSERT INTO t VALUES ('it''s -- not a comment')",
        "SELECT 1",
    ]


def test_database_placeholder_is_filled_and_checked() -> None:
    migration = Migration(1, "0001_x", "CREATE TABLE ${database}.t (x UInt8) ENGINE = Memory;")
    assert migration.statements("analytics") == ["CREATE TABLE analytics.t (x UInt8) ENGINE = Memory"]
    with pytest.raises(SchemaError, match="not a plain identifier"):
        migration.statements("x; DROP DATABASE system")


def test_badly_named_or_duplicate_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0000_ledger.sql").write_text("SELECT 1;")
    (tmp_path / "1_short.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match=r"NNNN_lowercase_name\.sql"):
        discover(tmp_path)
    (tmp_path / "1_short.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match=r"version 1 is used by 0001_a\.sql too"):
        discover(tmp_path)


def test_every_statement_is_idempotent_by_construction() -> None:
    for migration in discover():
        for statement in migration.statements("driftloop"):
            if statement.startswith("CREATE"):
                assert "IF NOT EXISTS" in statement, f"{migration.name}: {statement[:60]}"
