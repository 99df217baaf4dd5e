"""Secrets never appear in what driftloop prints: settings, stack status, error messages, workers' logs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from driftloop.infra.network import free_port
from tests.stack_fixtures import REPO, PrivateStack

PASSWORD = "s3cr3t-Pa55word"


def test_passwords_never_show_in_settings_or_stack_status(tmp_path: Path) -> None:
    # nothing listens on these ports: status reports both down, with the addresses but no secret
    stack = PrivateStack(
        {
            "DRIFTLOOP_HOME": str(tmp_path),
            "DRIFTLOOP_EMBEDDED": "false",
            "DRIFTLOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://analyst:{PASSWORD}@127.0.0.1:{free_port()}/driftloop",
            "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "DRIFTLOOP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "DRIFTLOOP_KAFKA_SASL_USERNAME": "producer",
            "DRIFTLOOP_KAFKA_SASL_PASSWORD": PASSWORD,
            "DRIFTLOOP_STACK_START_TIMEOUT_S": "3",  # nothing will answer: `stack up` need not wait long
        }
    )
    for args in (("settings",), ("settings", "--json"), ("stack", "status"), ("stack", "status", "--json"),
                 ("stack", "up"), ("models", "list")):  # fmt: skip
        result = stack.run_cli(*args, timeout_s=120)
        output = result.stdout + result.stderr
        assert PASSWORD not in output, (args, output[-2000:])
    settings = stack.run_cli("settings").stdout
    assert "analyst" in settings and "***" in settings  # the user shows, the password is masked


@contextmanager
def dropping_port() -> Iterator[int]:
    """A port that takes connections and closes them at once. A worker waits for a port where something
    listens before it makes its Kafka client (``infra.kafka.waiting``); on this one its client connects, is
    dropped, and logs that, again and again."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def drop() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                listener.accept()[0].close()

    dropper = threading.Thread(target=drop, daemon=True)
    dropper.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        dropper.join()
        listener.close()


@pytest.mark.parametrize("command", ["worker", "retrain-worker"])
def test_workers_never_log_a_password_even_at_debug_level(stack: PrivateStack, tmp_path: Path, command: str) -> None:
    # The real ClickHouse refuses the password (its user has none) and the Kafka port drops every connection:
    # the worker logs connection and authentication failures for a while, at DEBUG.
    with dropping_port() as kafka_port:
        output = _run_for_a_while(stack, tmp_path, command, kafka_port)
    assert "KafkaConnectionError" in output, output  # it did log (failing to connect) ...
    assert PASSWORD not in output, output[output.index(PASSWORD) - 500 :][:1000]  # ... and said no secret


def _run_for_a_while(stack: PrivateStack, tmp_path: Path, command: str, kafka_port: int) -> str:
    endpoint = stack.settings.clickhouse
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
        | stack.env
        | {
            "DRIFTLOOP_HOME": str(tmp_path),
            "DRIFTLOOP_EMBEDDED": "false",
            "DRIFTLOOP_LOG_LEVEL": "DEBUG",
            "DRIFTLOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "DRIFTLOOP_KAFKA_SASL_MECHANISM": "PLAIN",
            "DRIFTLOOP_KAFKA_SASL_USERNAME": "producer",
            "DRIFTLOOP_KAFKA_SASL_PASSWORD": PASSWORD,
            "DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://default:{PASSWORD}@{endpoint.host}:{endpoint.port}/driftloop",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "driftloop.cli.main", command],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(12)
    process.terminate()
    try:
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0].decode(errors="replace")
    return output
