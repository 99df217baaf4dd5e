from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from driftloop.infra.settings import Settings
from driftloop.streams.app_factory import broker_credentials, create_app
from tests.stack_fixtures import REPO, PrivateStack


def test_the_app_takes_its_options_from_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DRIFTLOOP_KAFKA_BOOTSTRAP": "k1:9092,k2:9093",
            "DRIFTLOOP_HOME": str(tmp_path),
            "DRIFTLOOP_TOPIC_PARTITIONS": "6",
            "DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S": "6",
            "DRIFTLOOP_COMMIT_INTERVAL_S": "12.5",
        }
    )
    app = create_app(settings, app_id="unit")
    conf = app.conf
    assert conf.broker_commit_interval == 12.5  # a fleet of many models saves its state less often
    default = Settings.from_env({"DRIFTLOOP_HOME": str(tmp_path)})
    assert create_app(default, app_id="unit-default").conf.broker_commit_interval == 2.8  # Faust's own
    assert [str(u) for u in conf.broker] == ["kafka://k1:9092", "kafka://k2:9093"]
    assert conf.topic_partitions == 6
    assert conf.broker_session_timeout == 6.0
    assert conf.broker_heartbeat_interval == 2.0
    assert Path(conf.datadir).is_relative_to(tmp_path)
    assert conf.web_enabled is False


def test_sasl_settings_become_faust_credentials() -> None:
    settings = Settings.from_env(
        {
            "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "DRIFTLOOP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "DRIFTLOOP_KAFKA_SASL_USERNAME": "svc",
            "DRIFTLOOP_KAFKA_SASL_PASSWORD": "pw",
        }
    )
    creds = broker_credentials(settings)
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", "pw", "SCRAM-SHA-256")
    assert creds.ssl_context is not None
    assert broker_credentials(Settings.from_env({})) is None


@pytest.mark.integration
def test_a_message_produced_with_kafka_python_reaches_a_faust_agent(stack: PrivateStack, tmp_path: Path) -> None:
    out = tmp_path / "echo.out"
    env = stack.process_env(ECHO_APP_ID=f"echo-{uuid.uuid4().hex[:8]}", ECHO_OUT=str(out))
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "tests.streams.echo_app", "worker", "-l", "warn"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    settings = stack.settings
    producer = KafkaProducer(**settings.kafka_python_config())
    sent = [json.dumps({"n": i, "tag": uuid.uuid4().hex}).encode() for i in range(20)]
    try:
        for value in sent:
            producer.send(settings.topics.predictions, value)
        producer.flush()
        deadline = time.monotonic() + 90  # a group join waits about one session timeout (6 s here)
        while time.monotonic() < deadline and worker.poll() is None:
            got = out.read_bytes().splitlines() if out.exists() else []
            if set(sent) <= set(got):
                break
            time.sleep(0.2)
    finally:
        producer.close()
        worker.terminate()
        try:
            logs = worker.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            worker.kill()
            logs = worker.communicate()[0].decode(errors="replace")
    got = out.read_bytes().splitlines() if out.exists() else []
    assert set(sent) <= set(got), f"the agent received {len(got)} of {len(sent)}; worker said:\n{logs[-3000:]}"
