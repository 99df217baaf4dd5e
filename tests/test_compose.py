"""docker-compose.yml cannot run here (no Docker engine): check that it agrees with the code instead."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from driftloop.cli.main import cli
from driftloop.infra.settings import Settings
from tests.stack_fixtures import REPO

DRIFTLOOP_SERVICES = ("provision", "worker", "retrain-worker")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with ${VAR:-default} resolved to its default, as compose would."""
    env = service.get("environment") or {}
    return {k: _INTERPOLATION.sub(lambda m: m.group(2) or "", str(v)) for k, v in env.items()}


def _resolve(command: list[str]) -> click.Command | None:
    """The CLI command a command line would run, or None when a word is not a verb."""
    assert command[0] == "driftloop", command
    node: click.Command = cli
    ctx = click.Context(cli)
    for word in command[1:]:
        if word.startswith("-") or not isinstance(node, click.Group):
            break
        node = node.get_command(ctx, word)
        if node is None:
            return None
    return node


def test_the_stack_has_the_designed_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "clickhouse", *DRIFTLOOP_SERVICES, "prometheus", "grafana"}


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image})"


def test_kafka_runs_in_kraft_mode_without_auto_creation(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _env(kafka)
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_clickhouse_is_a_current_lts(compose: dict[str, Any]) -> None:
    image = compose["services"]["clickhouse"]["image"]
    major, minor = (int(x) for x in image.split(":")[1].split(".")[:2])
    assert image.startswith("clickhouse/clickhouse-server:") and major >= 24 and minor in {3, 8}


@pytest.mark.parametrize("name", DRIFTLOOP_SERVICES)
def test_every_driftloop_variable_is_a_setting_and_valid(compose: dict[str, Any], name: str) -> None:
    env = _env(compose["services"][name])
    unknown = {k for k in env if k.startswith("DRIFTLOOP_")} - Settings.env_names()
    assert not unknown, f"{name} sets variables driftloop does not read: {unknown}"
    settings = Settings.from_env(env)  # raises SettingsError on a bad value
    assert not settings.embedded, "in compose the servers are their own containers: `stack up` only provisions"


@pytest.mark.parametrize("name", DRIFTLOOP_SERVICES)
def test_settings_point_at_the_compose_servers(compose: dict[str, Any], name: str) -> None:
    services = compose["services"]
    settings = Settings.from_env(_env(services[name]))
    assert {s.rpartition(":")[0] for s in settings.kafka_servers} == {"kafka"}
    clickhouse = _env(services["clickhouse"])
    assert settings.clickhouse.host == "clickhouse"
    assert settings.clickhouse.user == clickhouse["CLICKHOUSE_USER"]
    assert settings.clickhouse.password.get_secret_value() == clickhouse["CLICKHOUSE_PASSWORD"]
    assert settings.clickhouse.database == clickhouse["CLICKHOUSE_DB"]
    listeners = _env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert urlsplit(listeners.split(",")[0]).netloc in settings.kafka_servers


@pytest.mark.parametrize("name", DRIFTLOOP_SERVICES)
def test_every_command_is_a_real_cli_verb(compose: dict[str, Any], name: str) -> None:
    command = compose["services"][name]["command"]
    resolved = _resolve(command)
    assert resolved is not None and not isinstance(resolved, click.Group), f"{name}: {command}"


def test_workers_start_after_provisioning(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("worker", "retrain-worker"):
        assert services[name]["depends_on"]["provision"]["condition"] == "service_completed_successfully"
    for server in ("kafka", "clickhouse"):
        assert services["provision"]["depends_on"][server]["condition"] == "service_healthy"
        assert "healthcheck" in services[server]


def test_the_stack_starts_without_a_gpu_and_the_override_puts_the_retrain_worker_on_one(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        assert "deploy" not in service, f"{name} reserves a device: the base stack must start on any machine"
        needs = service.get("depends_on") or {}
        assert "retrain-worker" not in needs, f"{name} must not wait for the retrain worker (it may be on a GPU)"
    override = yaml.safe_load((REPO / "docker-compose.gpu.yml").read_text())
    assert set(override["services"]) == {"retrain-worker"}  # the same service, not a second consumer of alerts
    gpu = override["services"]["retrain-worker"]
    assert any("gpu" in d["capabilities"] for d in gpu["deploy"]["resources"]["reservations"]["devices"])
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX_URL"].rsplit("/", 1)[1]  # the CUDA build of the pinned torch


def test_kafka_keeps_its_data_under_a_cluster_id_of_its_own(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"]}
    assert mounted[env["KAFKA_LOG_DIRS"]] == "kafka-data" and "kafka-data" in compose["volumes"]
    assert re.fullmatch(r"\$\{KAFKA_CLUSTER_ID:\?[^}]+\}", env["CLUSTER_ID"])  # required: no id shared by default


def test_model_servers_outside_compose_can_produce(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert (
        set(advertised) == {"PLAINTEXT", "EXTERNAL"}
        and set(listeners) >= set(advertised)
        and set(protocols) >= set(listeners)
    )
    host, port = advertised["EXTERNAL"].rsplit(":", 1)
    assert host == "localhost" and listeners["EXTERNAL"] == f":{port}"
    assert f"{port}:{port}" in compose["services"]["kafka"]["ports"]  # published where it is advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"


def test_ports_and_volumes_are_consistent(compose: dict[str, Any]) -> None:
    published = [p.split(":")[0] for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), published
    named = {
        v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", []) if not v.startswith(".")
    }
    assert named == set(compose["volumes"])  # every named volume declared, every declared one used
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (REPO / volume.split(":")[0]).exists(), volume


def test_prometheus_keeps_its_data_answers_on_a_port_and_loads_the_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "9090:9090" in prometheus["ports"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/prometheus"] == "prometheus-data" and "--storage.tsdb.path=/prometheus" in prometheus["command"]
    config = yaml.safe_load((REPO / "infra/prometheus/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (REPO / mounts[f"/etc/prometheus/{rule_file}"]).is_file()


@pytest.mark.parametrize(("name", "port"), [("worker", "metrics_port"), ("retrain-worker", "retrain_metrics_port")])
def test_the_workers_healthchecks_read_their_metrics_endpoint(compose: dict[str, Any], name: str, port: str) -> None:
    service = compose["services"][name]
    settings = Settings.from_env(_env(service))
    check = " ".join(service["healthcheck"]["test"])
    assert f"http://localhost:{getattr(settings, port)}/metrics" in check and check.startswith("CMD python -c")


def test_the_image_installs_the_pinned_torch() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for folder in packages.values():  # every folder the wheel maps into driftloop.*
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert 'pip install ".[all]"' in dockerfile


def test_prometheus_scrapes_the_workers_metrics_ports(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO / "infra/prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    settings = Settings.from_env(_env(compose["services"]["worker"]))
    assert targets == {f"worker:{settings.metrics_port}", f"retrain-worker:{settings.retrain_metrics_port}"}
    mount = compose["services"]["prometheus"]["volumes"][0].split(":")[0]
    assert (REPO / mount).resolve() == (REPO / "infra/prometheus/prometheus.yml").resolve()


def grafana_dashboard() -> dict[str, Any]:
    return json.loads((REPO / "infra/grafana/dashboards/driftloop.json").read_text())


def test_grafana_is_provisioned_with_both_datasources_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in _env(grafana)["GF_INSTALL_PLUGINS"]
    for volume in grafana["volumes"]:
        assert (REPO / volume.split(":")[0]).is_dir(), volume
    sources = yaml.safe_load((REPO / "infra/grafana/provisioning/datasources/driftloop.yml").read_text())
    by_uid = {s["uid"]: s for s in sources["datasources"]}
    clickhouse = next(s for s in sources["datasources"] if s["type"] == "grafana-clickhouse-datasource")
    settings = Settings.from_env(_env(compose["services"]["worker"]))
    assert clickhouse["jsonData"]["host"] == settings.clickhouse.host
    assert clickhouse["jsonData"]["username"] == settings.clickhouse.user
    assert clickhouse["jsonData"]["defaultDatabase"] == settings.clickhouse.database
    used = {t["datasource"]["uid"] for p in grafana_dashboard()["panels"] for t in p["targets"]}
    assert used == set(by_uid), (used, set(by_uid))


def exposed_metrics() -> set[str]:
    """Every series name the workers' /metrics can show (from the collectors' sources)."""
    names: set[str] = set()
    for path in ("streams/metrics.py", "retrain/metrics.py"):
        source = (REPO / path).read_text()
        names |= {f"{n}_total" for n in re.findall(r'counter\(\s*"(\w+)"', source)}
        names |= set(re.findall(r'gauge\(\s*"(\w+)"', source))
        histograms = re.findall(r'(?:family|histogram)\(\s*"(\w+)"', source)
        names |= {f"{n}{s}" for n in histograms for s in ("_bucket", "_count", "_sum")}
    return names


def test_every_prometheus_panel_reads_a_metric_the_workers_expose() -> None:
    exposed = exposed_metrics()
    assert "driftloop_events_total" in exposed and "driftloop_retrain_runs_total" in exposed
    for panel in grafana_dashboard()["panels"]:
        for target in panel["targets"]:
            if "expr" in target:
                used = set(re.findall(r"driftloop_\w+", target["expr"]))
                assert used and used <= exposed, (panel["title"], used - exposed)


def test_the_alerting_rules_cover_the_operational_layer_with_metrics_the_workers_expose() -> None:
    rules = yaml.safe_load((REPO / "infra/prometheus/rules.yml").read_text())
    by_name = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    for needed in ("DriftloopWorkerDown", "DriftloopConsumerLagGrowing", "DriftloopDeadLettersRising",
                   "DriftloopModelSilent"):  # fmt: skip
        assert needed in by_name, needed
    exposed = exposed_metrics() | {"up"}
    for name, rule in by_name.items():
        used = set(re.findall(r"\b(driftloop_\w+|up)\b(?=[{\[ )]|$)", rule["expr"]))
        assert used and used <= exposed, (name, used - exposed)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"} and rule["annotations"]["summary"], name
        assert rule["expr"].count("(") == rule["expr"].count(")"), name
    assert 'job=~"driftloop-.*"' in by_name["DriftloopWorkerDown"]["expr"]
    jobs = {
        job["job_name"]
        for job in yaml.safe_load((REPO / "infra/prometheus/prometheus.yml").read_text())["scrape_configs"]
    }
    assert all(job.startswith("driftloop-") for job in jobs)
