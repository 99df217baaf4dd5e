"""A server away, or not what driftloop expects: commands say which and what to do, in one line; the services
that run until stopped wait for it and go on when it is back.

Each test talks to real servers: the session's ClickHouse, a private broker started mid-test, or a port on
which nothing listens.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from benchmarks import scrape_metrics
from driftloop.infra.errors import UnreachableError
from driftloop.infra.kafka.topics import provision_topics
from driftloop.infra.network import free_port
from driftloop.infra.service_errors import explain
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from tests.stack_fixtures import PrivateStack, WorkerProcess, private_stack_env, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", [("models", "list"), ("release", "--once")])
def test_a_command_run_while_clickhouse_is_away_names_it_in_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    away = PrivateStack(private_stack_env(tmp_path))  # free ports: nothing listens on them
    port = away.settings.clickhouse.port
    result = away.run_cli(*command)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: ClickHouse at 127.0.0.1:{port} does not answer"), result.stderr
    assert "`driftloop stack up`" in error and "DRIFTLOOP_CLICKHOUSE_URL" in error, error


def test_following_alerts_while_no_broker_listens_names_it_at_once(tmp_path: Path) -> None:
    away = PrivateStack(private_stack_env(tmp_path))
    result = away.run_cli("alerts", "tail", timeout_s=20)  # not the client's bootstrap timeout (30 s)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: Kafka at {away.settings.kafka_bootstrap} does not answer"), result.stderr
    assert "DRIFTLOOP_KAFKA_BOOTSTRAP" in error, error


def test_a_database_without_the_schema_says_to_apply_it(stack: PrivateStack) -> None:
    endpoint = stack.settings.clickhouse
    bare = stack.with_env(DRIFTLOOP_CLICKHOUSE_URL=f"clickhouse://default:@{endpoint.host}:{endpoint.port}/unmigrated")
    result = bare.run_cli("models", "list")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert "has no database unmigrated: its schema was never applied" in result.stderr, result.stderr
    assert "`driftloop stack up` applies it" in result.stderr, result.stderr


def test_a_refused_login_names_the_user_and_the_setting(stack: PrivateStack) -> None:
    endpoint = stack.settings.clickhouse
    wrong = stack.with_env(DRIFTLOOP_CLICKHOUSE_URL=f"clickhouse://default:nope@{endpoint.host}:{endpoint.port}/x")
    result = wrong.run_cli("models", "list")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert "refused user 'default'" in result.stderr and "DRIFTLOOP_CLICKHOUSE_URL" in result.stderr, result.stderr


def test_kafka_pythons_word_that_no_broker_answered_is_explained() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    with pytest.raises(Exception) as raised:  # whatever kafka-python raises: explain must know it
        KafkaConsumer(bootstrap_servers=bootstrap, bootstrap_timeout_ms=1000)
    clear = explain(raised.value, Settings.from_env({"DRIFTLOOP_KAFKA_BOOTSTRAP": bootstrap}))
    assert isinstance(clear, UnreachableError), raised.value
    assert str(clear).startswith(f"Kafka at {bootstrap} does not answer"), clear
    assert "DRIFTLOOP_KAFKA_BOOTSTRAP" in str(clear)
    assert explain(ValueError("a bug"), Settings.from_env({})) is None  # anything else is left whole


def test_the_retrain_worker_started_before_its_broker_waits_and_then_reads_alerts(tmp_path: Path) -> None:
    private = PrivateStack(private_stack_env(tmp_path / "stack"))
    metrics_port = free_port()
    worker = WorkerProcess(
        private, tmp_path / "retrain.log", command=("retrain-worker",), DRIFTLOOP_RETRAIN_METRICS_PORT=str(metrics_port)
    )
    try:
        wait_for(
            lambda: "the retrain worker waits for Kafka" in worker.log_path.read_text(),
            timeout_s=60,
            what="the retrain worker's word that it waits for Kafka",
            describe=worker.output,
        )
        time.sleep(2)  # a few tries of the bootstrap: a worker that waits is still there
        assert worker.alive, worker.output()
        settings = private.settings
        local_stack.start_service(settings, "broker")
        provision_topics(settings)
        producer = KafkaProducer(**settings.kafka_python_config())
        producer.send(settings.topics.alerts, b"not an alert").get(timeout=30)
        producer.close()

        def unreadable() -> float:
            try:
                return scrape_metrics(metrics_port).get('driftloop_retrain_alerts_total{outcome="unreadable"}', 0.0)
            except OSError:
                return 0.0

        assert wait_for(unreadable, timeout_s=90, what="the alert read", describe=worker.output) == 1.0
        assert "Kafka answers" in worker.log_path.read_text()
        assert worker.alive, worker.output()
    finally:
        worker.stop()
        local_stack.stop_service(private.settings, "broker")


def test_the_release_loop_outlives_clickhouse_away_and_says_so_once_a_minute(tmp_path: Path) -> None:
    away = PrivateStack(private_stack_env(tmp_path / "stack"))
    loop = WorkerProcess(away, tmp_path / "release.log", command=("release", "--interval", "0.2"))
    try:
        said = wait_for(
            lambda: loop.log_path.read_text().count("release pass failed"),
            timeout_s=60,
            what="the release loop's word that its pass failed",
            describe=loop.output,
        )
        time.sleep(2)  # ten more passes, each failing
        assert loop.alive, loop.output()
        text = loop.log_path.read_text()
        assert said == 1 and text.count("release pass failed") == 1, text  # not a line every pass
        assert "does not answer" in text and "Traceback" not in text, text
    finally:
        loop.stop()
