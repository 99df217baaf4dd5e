"""Secrets never appear in what driftloop prints: settings, stack status, error messages."""

from __future__ import annotations

from pathlib import Path

from infra.network import free_port
from tests.stack_fixtures import PrivateStack

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
        }
    )
    for args in (("settings",), ("stack", "status"), ("stack", "up"), ("models", "list")):
        result = stack.run_cli(*args, timeout_s=120)
        output = result.stdout + result.stderr
        assert PASSWORD not in output, (args, output[-2000:])
    settings = stack.run_cli("settings").stdout
    assert "analyst" in settings and "***" in settings  # the user shows, the password is masked
