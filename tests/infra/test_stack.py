"""The embedded stack against real servers: provisioning, idempotency, status, and the failure messages."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from pathlib import Path

import pytest

from driftloop.infra.clickhouse.client import connect, provision_schema
from driftloop.infra.clickhouse.migrations import Migration, apply_migrations, discover
from driftloop.infra.errors import SchemaError
from driftloop.infra.kafka.topics import describe_topics
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.process import ProcessRegistry
from driftloop.infra.stack.services import CLICKHOUSE_MALLOC_CONF, ClickHouseServer
from tests.stack_fixtures import PrivateStack, private_stack_env, strict_json

pytestmark = pytest.mark.integration

CORE_TABLES = ("predictions", "outcomes", "labeled", "drift_alerts", "model_versions", "retrain_runs")


def _schema(stack: PrivateStack) -> dict[str, str]:
    client = connect(stack.settings.clickhouse)
    try:
        names = [n for (n,) in client.execute("SHOW TABLES")]
        return {n: client.execute(f"SHOW CREATE TABLE {n}")[0][0] for n in names}
    finally:
        client.disconnect()


def test_topics_exist_with_the_configured_partitions(stack: PrivateStack) -> None:
    settings = stack.settings
    assert describe_topics(settings, settings.topics.all()) == {t: 3 for t in settings.topics.all()}


def test_provisioning_twice_changes_nothing(stack: PrivateStack) -> None:
    before = _schema(stack)
    assert set(CORE_TABLES) | {"schema_migrations"} <= set(before)
    report = local_stack.up(stack.settings)
    assert {s.action for s in report.services} == {"already running"}
    assert report.topics.created == () and report.schema.applied == ()
    assert set(report.schema.already_applied) == {m.name for m in discover()}
    assert _schema(stack) == before
    ledger = connect(stack.settings.clickhouse).execute("SELECT count() FROM schema_migrations FINAL")
    assert ledger == [(len(discover()),)]


def test_a_row_written_with_clickhouse_driver_reads_back_once(stack: PrivateStack) -> None:
    client = connect(stack.settings.clickhouse)
    event_id = uuid.uuid4().hex
    ts = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)
    row = {
        "event_id": event_id,
        "model": "fraud",
        "model_version": 3,
        "request_id": "r-1",
        "ts": ts,
        "ts_ms": 1_795_435_200_000,
        "num.name": ["amount", "age"],
        "num.value": [12.5, float("nan")],
        "cat.name": ["country"],
        "cat.value": ["NL"],
        "missing": ["age"],
        "prediction": "1",
        "prediction_num": 1.0,
        "score": 0.91,
        "scores.label": [],
        "scores.probability": [],
    }
    columns = ", ".join(f"`{c}`" for c in row)
    for _ in range(2):  # at-least-once: the same event delivered twice
        client.execute(f"INSERT INTO predictions ({columns}) VALUES", [row])
    got = client.execute(
        "SELECT model, model_version, request_id, ts, num.name, cat.value, missing, score "
        "FROM predictions FINAL WHERE event_id = %(id)s",
        {"id": event_id},
    )
    assert got == [("fraud", 3, "r-1", ts, ["amount", "age"], ["NL"], ["age"], 0.91)]


def test_status_shows_what_runs_where(stack: PrivateStack) -> None:
    status = local_stack.status(stack.settings)
    assert status.healthy
    broker, clickhouse = status.services
    assert broker.mode == clickhouse.mode == "embedded"
    assert broker.pid and clickhouse.pid
    assert clickhouse.version.startswith("ClickHouse 18.16")
    assert broker.address == stack.settings.kafka_bootstrap
    assert status.topics == {t: 3 for t in stack.settings.topics.all()}
    assert status.tables is not None and {t.name for t in status.tables} >= set(CORE_TABLES)
    out = stack.run_cli("stack", "status")
    assert out.returncode == 0, out.stderr
    for text in (str(clickhouse.pid), "18.16", "predictions", "driftloop.dead-letter"):
        assert text in out.stdout
    scripted = stack.run_cli("stack", "status", "--json")
    data: dict = strict_json(scripted.stdout)  # type: ignore[assignment]
    assert scripted.returncode == 0 and data["healthy"] is True
    assert [s["pid"] for s in data["services"]] == [broker.pid, clickhouse.pid] and data["topics"] == status.topics


def test_the_embedded_clickhouse_keeps_the_blocks_it_frees(
    stack: PrivateStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's jemalloc is set as ClickHouse's own builds set theirs (an insert's buffers are reused, not
    mapped anew a page at a time), and takes the setting without a complaint; a MALLOC_CONF of the user's wins."""
    clickhouse = next(s for s in local_stack.status(stack.settings).services if s.name == "clickhouse")
    environ = Path(f"/proc/{clickhouse.pid}/environ").read_bytes().split(b"\0")
    assert f"MALLOC_CONF={CLICKHOUSE_MALLOC_CONF}".encode() in environ
    record = ProcessRegistry(stack.settings.home / "run").get("clickhouse")
    assert record is not None and "<jemalloc>" not in Path(record.log_path).read_text(errors="replace")
    monkeypatch.setenv("MALLOC_CONF", "narenas:2")
    assert ClickHouseServer(stack.settings).environment() == {}


def test_starting_twice_says_so_and_succeeds(stack: PrivateStack) -> None:
    out = stack.run_cli("stack", "up")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("already running") == 2


def test_a_changed_migration_is_refused(stack: PrivateStack) -> None:
    database = "changed_" + uuid.uuid4().hex[:8]
    client = connect(stack.settings.clickhouse, database="default")
    ledger, *_ = discover()
    first = Migration(1, "0001_t", "CREATE TABLE IF NOT EXISTS ${database}.t (x UInt8) ENGINE = Memory;")
    try:
        assert apply_migrations(client, database, [ledger, first]).applied == ("0000_ledger", "0001_t")
        edited = Migration(1, "0001_t", first.sql.replace("UInt8", "UInt16"))
        with pytest.raises(SchemaError, match=r"0001_t\.sql was changed after it was applied"):
            apply_migrations(client, database, [ledger, edited])
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
        client.disconnect()


def test_external_services_are_provisioned_not_started(stack: PrivateStack) -> None:
    external = stack.with_env(
        DRIFTLOOP_EMBEDDED="false",
        DRIFTLOOP_TOPIC_PREFIX="ext.",
        DRIFTLOOP_CLICKHOUSE_URL=stack.env["DRIFTLOOP_CLICKHOUSE_URL"].rsplit("/", 1)[0] + "/external_db",
        DRIFTLOOP_HOME=stack.env["DRIFTLOOP_HOME"] + "-external",
    )
    report = local_stack.up(external.settings)
    try:
        assert {s.action for s in report.services} == {"external"}
        assert {s.pid for s in report.services} == {None}
        assert set(report.topics.created) == set(external.settings.topics.all())
        assert {m.name for m in discover()} == set(report.schema.applied)
        assert ProcessRegistry(external.settings.home / "run").all() == []
        assert local_stack.down(external.settings) == []  # nothing of ours to stop
        assert local_stack.status(stack.settings).healthy  # the servers it used still run
    finally:
        connect(stack.settings.clickhouse).execute("DROP DATABASE IF EXISTS external_db")


def test_an_unreachable_external_service_is_a_clear_error(tmp_path: Path) -> None:
    env = private_stack_env(tmp_path) | {"DRIFTLOOP_EMBEDDED": "false", "DRIFTLOOP_STACK_START_TIMEOUT_S": "3"}
    out = PrivateStack(env).run_cli("stack", "up", timeout_s=60)
    assert out.returncode == 1
    assert "is external" in out.stderr and "does not answer" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_taken_port_is_a_clear_error_and_nothing_is_left_running(tmp_path: Path) -> None:
    env = private_stack_env(tmp_path)
    ch_port = int(env["DRIFTLOOP_CLICKHOUSE_URL"].rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ch_port))
        squatter.listen()
        out = PrivateStack(env).run_cli("stack", "up")
    assert out.returncode == 1
    assert f"port {ch_port} on 127.0.0.1 is already taken" in out.stderr
    assert "DRIFTLOOP_CLICKHOUSE_URL" in out.stderr
    assert "Traceback" not in out.stderr
    # the broker it had started is stopped again: a failed `up` leaves nothing half-started
    assert ProcessRegistry(tmp_path / "run").all() == []


def test_a_missing_clickhouse_binary_says_how_to_install_it(tmp_path: Path) -> None:
    env = private_stack_env(tmp_path) | {"DRIFTLOOP_CLICKHOUSE_SERVER_BIN": "no-such-clickhouse-server"}
    out = PrivateStack(env).run_cli("stack", "up")
    assert out.returncode == 1
    assert "make clickhouse" in out.stderr and "Traceback" not in out.stderr
    assert ProcessRegistry(tmp_path / "run").all() == []


def test_down_stops_only_what_up_started(tmp_path: Path, stack: PrivateStack) -> None:
    own = PrivateStack(private_stack_env(tmp_path))
    up = own.run_cli("stack", "up")
    assert up.returncode == 0, up.stderr
    records = ProcessRegistry(tmp_path / "run").all()
    assert {r.name for r in records} == {"broker", "clickhouse"} and all(r.alive for r in records)
    down = own.run_cli("stack", "down")
    assert down.returncode == 0, down.stderr
    assert not any(r.alive for r in records)
    assert "stopped clickhouse" in down.stdout and "stopped broker" in down.stdout
    assert local_stack.status(stack.settings).healthy  # the session's stack is untouched
    again = own.run_cli("stack", "down")
    assert "nothing to stop" in again.stdout
    status = own.run_cli("stack", "status")
    assert status.returncode == 1 and "down" in status.stdout


def test_provision_schema_is_safe_to_call_directly(stack: PrivateStack) -> None:
    assert provision_schema(stack.settings.clickhouse).applied == ()
