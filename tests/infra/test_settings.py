from __future__ import annotations

import logging
from pathlib import Path

import pytest

from driftloop.infra.errors import SettingsError
from driftloop.infra.settings import Settings


def test_defaults_are_the_contracts() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert str(s.clickhouse) == "clickhouse://default@127.0.0.1:9000/driftloop"
    assert s.topic_prefix == "driftloop."
    assert s.home == Path("./.driftloop").absolute()
    assert s.topics.all() == tuple(
        "driftloop." + t for t in ("predictions", "outcomes", "alerts", "model-versions", "dead-letter", "detections")
    )


def test_reads_every_contract_variable() -> None:
    s = Settings.from_env(
        {
            "DRIFTLOOP_KAFKA_BOOTSTRAP": "k1:9093, k2:9094",
            "DRIFTLOOP_CLICKHOUSE_URL": "clickhouse://ana:p%40ss@ch:9440/metrics?secure=true&verify=false",
            "DRIFTLOOP_TOPIC_PREFIX": "prod.ml.",
            "DRIFTLOOP_HOME": "/srv/driftloop",
        }
    )
    assert s.kafka_servers == ["k1:9093", "k2:9094"]
    assert (s.clickhouse.user, s.clickhouse.password.get_secret_value()) == ("ana", "p@ss")
    assert (s.clickhouse.host, s.clickhouse.port, s.clickhouse.database) == ("ch", 9440, "metrics")
    assert s.clickhouse.secure and not s.clickhouse.verify
    assert s.topics.alerts == "prod.ml.alerts"
    assert s.home == Path("/srv/driftloop")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DRIFTLOOP_KAFKA_BOOTSTRAP", "localhost", "not host:port"),
        ("DRIFTLOOP_KAFKA_BOOTSTRAP", "h:99999", "not host:port"),
        ("DRIFTLOOP_CLICKHOUSE_URL", "http://ch:8123/db", "must start with clickhouse://"),
        ("DRIFTLOOP_CLICKHOUSE_URL", "clickhouse://ch:9000/bad-name", "database name"),
        ("DRIFTLOOP_CLICKHOUSE_URL", "clickhouse://ch:9000/db?compress=1", "unknown option"),
        ("DRIFTLOOP_TOPIC_PREFIX", "a b", "may only contain"),
        ("DRIFTLOOP_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("DRIFTLOOP_EMBEDDED", "maybe", "valid boolean"),
        ("DRIFTLOOP_KAFKA_SECURITY_PROTOCOL", "TLS", "PLAINTEXT"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    assert str(info.value).startswith(variable + ":")
    assert says in str(info.value)


def test_an_unknown_variable_is_ignored_with_a_warning_that_suggests_the_right_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="driftloop.settings"):
        settings = Settings.from_env({"DRIFTLOOP_KAFKA_BOOTSTRAPZ": "k:9092"})
        Settings.from_env({"DRIFTLOOP_KAFKA_BOOTSTRAPZ": "k:9092"})  # warned once per process
    assert settings.kafka_bootstrap == "127.0.0.1:9092"  # ignored, not taken for the setting it resembles
    warnings = [r.getMessage() for r in caplog.records if "BOOTSTRAPZ" in r.getMessage()]
    assert warnings == [
        "DRIFTLOOP_KAFKA_BOOTSTRAPZ: not a driftloop setting, ignored; did you mean DRIFTLOOP_KAFKA_BOOTSTRAP?"
    ]


def test_kubernetes_service_variables_are_not_fatal_and_known_ones_still_checked() -> None:
    # Kubernetes injects these into every pod when a Service is named "driftloop".
    injected = {
        "DRIFTLOOP_SERVICE_HOST": "10.0.0.7",
        "DRIFTLOOP_SERVICE_PORT": "9108",
        "DRIFTLOOP_PORT": "tcp://10.0.0.7:9108",
        "DRIFTLOOP_PORT_9108_TCP_ADDR": "10.0.0.7",
    }
    assert Settings.from_env(injected | {"DRIFTLOOP_TOPIC_PARTITIONS": "6"}).topic_partitions == 6
    with pytest.raises(SettingsError, match="DRIFTLOOP_TOPIC_PARTITIONS"):
        Settings.from_env(injected | {"DRIFTLOOP_TOPIC_PARTITIONS": "zero"})


def test_sasl_needs_mechanism_user_and_password() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"DRIFTLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DRIFTLOOP_KAFKA_SASL_USERNAME": "u"})
    assert "DRIFTLOOP_KAFKA_SASL_MECHANISM" in str(info.value)
    assert "DRIFTLOOP_KAFKA_SASL_PASSWORD" in str(info.value)
    assert "DRIFTLOOP_KAFKA_SASL_USERNAME" not in str(info.value)


def test_security_options_reach_the_kafka_clients(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "DRIFTLOOP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "DRIFTLOOP_KAFKA_SASL_USERNAME": "svc",
            "DRIFTLOOP_KAFKA_SASL_PASSWORD": "hunter2",
            "DRIFTLOOP_KAFKA_SSL_CHECK_HOSTNAME": "false",
        }
    )
    config = s.kafka_python_config()
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("svc", "hunter2")
    assert config["ssl_check_hostname"] is False
    context = s.kafka_ssl_context()
    assert context is not None and context.check_hostname is False
    assert Settings.from_env({}).kafka_ssl_context() is None


def test_secrets_never_show() -> None:
    s = Settings.from_env(
        {
            "DRIFTLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "DRIFTLOOP_KAFKA_SASL_MECHANISM": "PLAIN",
            "DRIFTLOOP_KAFKA_SASL_USERNAME": "svc",
            "DRIFTLOOP_KAFKA_SASL_PASSWORD": "hunter2",
            "DRIFTLOOP_CLICKHOUSE_URL": "clickhouse://ana:t0psecret@ch:9000/db",
        }
    )
    shown = " ".join(s.redacted().values()) + repr(s) + str(s)
    assert "hunter2" not in shown and "t0psecret" not in shown
    assert s.redacted()["DRIFTLOOP_KAFKA_SASL_PASSWORD"] == "***"


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(ValueError, match="frozen"):
        s.topic_prefix = "other."  # type: ignore[misc]


def test_env_names_cover_the_contract() -> None:
    assert {
        "DRIFTLOOP_KAFKA_BOOTSTRAP",
        "DRIFTLOOP_CLICKHOUSE_URL",
        "DRIFTLOOP_TOPIC_PREFIX",
        "DRIFTLOOP_HOME",
    } <= Settings.env_names()
