"""``stack up | down | status``: start the embedded servers, provision topics and schema, report.

>>> from driftloop.infra.settings import Settings
>>> s = Settings.from_env({"DRIFTLOOP_KAFKA_BOOTSTRAP": "kafka.internal:9092"})
>>> [(svc.name, svc.embedded) for svc in services(s)]
[('broker', False), ('clickhouse', True)]
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from driftloop.infra.clickhouse.client import TableSize, provision_schema, recent_rows, table_sizes
from driftloop.infra.clickhouse.migrations import MigrationReport
from driftloop.infra.errors import DriftloopError, PortTakenError, ServiceStartError, UnreachableError
from driftloop.infra.kafka.lag import TopicLag, group_lag
from driftloop.infra.kafka.topics import TopicReport, describe_topics, provision_topics
from driftloop.infra.network import port_is_open
from driftloop.infra.settings import Settings
from driftloop.infra.stack.process import ProcessRecord, ProcessRegistry, tail
from driftloop.infra.stack.services import Broker, ClickHouseServer, EmbeddedService

THROUGHPUT_WINDOW_S = 60

Action = Literal["started", "already running", "external"]


@dataclass(frozen=True)
class ServiceUp:
    """How ``stack up`` found or brought up one service."""

    name: str
    title: str
    address: str
    action: Action
    version: str
    pid: int | None


@dataclass(frozen=True)
class UpReport:
    """Everything ``stack up`` did."""

    services: tuple[ServiceUp, ...]
    topics: TopicReport
    schema: MigrationReport


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``stack status`` sees it."""

    name: str
    title: str
    address: str
    mode: Literal["embedded", "external"]
    up: bool
    pid: int | None
    version: str
    detail: str


@dataclass(frozen=True)
class StackStatus:
    """What runs where, and the state of topics and tables."""

    home: Path
    services: tuple[ServiceStatus, ...]
    topics: dict[str, int] | None  # topic -> partitions, None when the broker is down
    expected_partitions: int
    tables: tuple[TableSize, ...] | None  # None when ClickHouse is down
    database: str
    lag: tuple[TopicLag, ...] = ()  # the worker groups' lag per topic (empty when the broker is down)
    throughput: dict[str, int] | None = None  # rows written per event table in the last THROUGHPUT_WINDOW_S

    @property
    def healthy(self) -> bool:
        return all(s.up for s in self.services)


def services(settings: Settings) -> list[EmbeddedService]:
    """The stack's services, broker first (ClickHouse is slower to start; its wait overlaps nothing)."""
    return [Broker(settings), ClickHouseServer(settings)]


def _registry(settings: Settings) -> ProcessRegistry:
    return ProcessRegistry(settings.home / "run")


def up(settings: Settings) -> UpReport:
    """Start what is embedded and not running, wait until both answer, then provision topics and schema."""
    registry = _registry(settings)
    started: list[ProcessRecord] = []
    outcomes: list[ServiceUp] = []
    try:
        for service in services(settings):
            outcome, record = _bring_up(service, registry, settings)
            outcomes.append(outcome)
            if record is not None:
                started.append(record)
        topics = provision_topics(settings)
        schema = provision_schema(settings.clickhouse)
    except BaseException:
        for record in started:  # leave nothing half-started behind
            registry.stop(record)
        raise
    return UpReport(tuple(outcomes), topics, schema)


def down(settings: Settings) -> list[ProcessRecord]:
    """Stop every server this home's ``stack up`` started (and only those); return the ones that ran."""
    registry = _registry(settings)
    # ClickHouse first: it flushes to disk; the broker holds nothing that survives anyway.
    records = sorted(registry.all(), key=lambda r: r.name != "clickhouse")
    return [record for record in records if registry.stop(record)]


@contextmanager
def running(settings: Settings) -> Iterator[UpReport]:
    """The stack :func:`up` for the block and :func:`down` after it, however the block ends (what the test
    session's stack and the benchmarks run in)."""
    report = up(settings)
    try:
        yield report
    finally:
        down(settings)


def stop_service(settings: Settings, name: str, *, timeout_s: float = 20.0) -> bool:
    """Stop one server ``stack up`` started ("broker" or "clickhouse"): SIGTERM, SIGKILL after ``timeout_s``
    (0: at once, a crash); whether it was running."""
    registry = _registry(settings)
    record = registry.get(name)
    return record is not None and registry.stop(record, timeout_s=timeout_s)


def start_service(settings: Settings, name: str) -> ServiceUp:
    """Start one embedded server ("broker" or "clickhouse") if it is not running, without provisioning
    anything: what a supervisor restarting a crashed server does. ``up`` also provisions."""
    for service in services(settings):
        if service.name == name:
            return _bring_up(service, _registry(settings), settings)[0]
    raise ValueError(f"no service {name!r}: the stack has {', '.join(s.name for s in services(settings))}")


def status(settings: Settings) -> StackStatus:
    """Probe every service, and list topics and table sizes where the service answers."""
    registry = _registry(settings)
    rows: list[ServiceStatus] = []
    for service in services(settings):
        record = registry.get(service.name)
        mode: Literal["embedded", "external"] = "embedded" if service.embedded else "external"
        pid = record.pid if record is not None and record.alive else None
        try:
            version, up_, detail = service.ping(), True, ""
        except DriftloopError as exc:
            version, up_, detail = "", False, str(exc)
        if mode == "embedded" and up_ and pid is None:
            detail = "answers, but was not started by this home's `stack up`"
        elif mode == "embedded" and not up_ and record is not None and pid is None:
            detail = "stopped (stale record); run `driftloop stack up`"
        rows.append(
            ServiceStatus(
                service.name, service.title, f"{service.host}:{service.port}", mode, up_, pid, version, detail
            )
        )
    broker_up, clickhouse_up = rows[0].up, rows[1].up
    topics = describe_topics(settings, settings.topics.all()) if broker_up else None
    tables = tuple(table_sizes(settings.clickhouse)) if clickhouse_up else None
    lag: tuple[TopicLag, ...] = ()
    if broker_up and topics:
        t = settings.topics
        lag = tuple(
            group_lag(
                settings, {settings.worker_group: [t.predictions, t.outcomes], settings.groups.retrain: [t.alerts]}
            )
        )
    throughput = recent_rows(settings.clickhouse, THROUGHPUT_WINDOW_S) if clickhouse_up and tables else None
    return StackStatus(
        settings.home,
        tuple(rows),
        topics,
        settings.topic_partitions,
        tables,
        settings.clickhouse.database,
        lag,
        throughput,
    )


def _bring_up(
    service: EmbeddedService, registry: ProcessRegistry, settings: Settings
) -> tuple[ServiceUp, ProcessRecord | None]:
    address = f"{service.host}:{service.port}"
    if not service.embedded:
        try:
            version = _wait_until_up(service, timeout_s=min(settings.stack_start_timeout_s, 15.0))
        except UnreachableError as exc:
            raise UnreachableError(
                f"{service.title} at {address} ({service.setting}) is external (not on this machine, or "
                f"DRIFTLOOP_EMBEDDED=false) and does not answer: {exc}. Start it, or fix {service.setting}."
            ) from None
        return ServiceUp(service.name, service.title, address, "external", version, None), None

    record = registry.get(service.name)
    if record is not None and record.alive:
        version = _wait_until_up(service, timeout_s=settings.stack_start_timeout_s, record=record)
        return ServiceUp(service.name, service.title, address, "already running", version, record.pid), None
    if record is not None:
        registry.forget(service.name)  # stale: the process is gone
    if port_is_open(service.host, service.port):
        raise PortTakenError(
            f"{service.title} cannot start: port {service.port} on {service.host} is already taken by a process "
            f"that this home's `stack up` did not start. Pick a free port ({service.setting}), stop that "
            f"process (`ss -ltnp 'sport = :{service.port}'` names it), or, if it is a {service.title} you run "
            "yourself, set DRIFTLOOP_EMBEDDED=false so `stack up` only provisions it."
        )
    command = service.command()  # resolves the binary: BinaryNotFoundError before anything starts
    service.prepare()
    log_path = settings.home / "log" / f"{service.name}.log"
    record = registry.spawn(
        service.name,
        command,
        host=service.host,
        port=service.port,
        log_path=log_path,
        environment=service.environment(),
    )
    try:
        version = _wait_until_up(service, timeout_s=settings.stack_start_timeout_s, record=record)
    except BaseException:
        registry.stop(record)
        raise
    return ServiceUp(service.name, service.title, address, "started", version, record.pid), record


def _wait_until_up(service: EmbeddedService, *, timeout_s: float, record: ProcessRecord | None = None) -> str:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if record is not None and not record.alive:
            logs = tail(record.log_path) or tail(getattr(service, "error_log", ""))
            raise ServiceStartError(
                f"{service.title} exited right after starting. Its log ({record.log_path}) ends with:\n{logs}"
            )
        try:
            return service.ping()
        except UnreachableError as exc:
            last_error = exc
        time.sleep(0.2)
    raise (
        ServiceStartError(
            f"{service.title} started (pid {record.pid}) but did not answer within {timeout_s:.0f} s "
            f"({last_error}). See {record.log_path}; raise DRIFTLOOP_STACK_START_TIMEOUT_S on a slow machine."
        )
        if record is not None
        else UnreachableError(str(last_error))
    )
