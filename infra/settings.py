"""The one settings object of driftloop, read once from ``DRIFTLOOP_*`` environment variables.

Every option is an environment variable named ``DRIFTLOOP_`` + the field name in upper case; the defaults
are the embedded local stack's. A bad value raises :class:`~infra.errors.SettingsError` naming the variable.

>>> s = Settings.from_env({"DRIFTLOOP_TOPIC_PREFIX": "acme."})
>>> s.topics.predictions, s.worker_group
('acme.predictions', 'acme.driftloop-streams')
>>> s.clickhouse.database
'driftloop'
>>> Settings.from_env({"DRIFTLOOP_TOPIC_PARTITIONS": "0"})
Traceback (most recent call last):
...
driftloop.infra.errors.SettingsError: DRIFTLOOP_TOPIC_PARTITIONS: Input should be greater than or equal to 1
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from driftloop.infra.clickhouse.retention import parse_retention
from driftloop.infra.errors import SettingsError

ENV_PREFIX = "DRIFTLOOP_"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{0,200}$")
_TRUE = {"1", "true", "yes", "on"}


class ClickHouseEndpoint(BaseModel):
    """Where ClickHouse is and how to log in, parsed from ``DRIFTLOOP_CLICKHOUSE_URL``.

    ``clickhouse://user:password@host:port/database?secure=true&ca_certs=/path&verify=true&alt_hosts=h2:9000``

    ``alt_hosts``: other servers of a cluster to connect to when ``host`` does not answer. ``cluster`` comes from
    ``DRIFTLOOP_CLICKHOUSE_CLUSTER`` (:attr:`Settings.clickhouse`).

    >>> ep = ClickHouseEndpoint.parse("clickhouse://bob:s3cret@ch.internal:9440/analytics?secure=true")
    >>> (ep.host, ep.port, ep.user, ep.database, ep.secure)
    ('ch.internal', 9440, 'bob', 'analytics', True)
    >>> str(ep)
    'clickhouse://bob:***@ch.internal:9440/analytics?secure=true'
    """

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    user: str = "default"
    password: SecretStr = SecretStr("")
    database: str = "driftloop"
    secure: bool = False
    verify: bool = True
    ca_certs: Path | None = None
    alt_hosts: str = ""
    cluster: str = ""

    @classmethod
    def parse(cls, url: str) -> ClickHouseEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in {"clickhouse", "clickhouses"}:
            raise ValueError(f"must start with clickhouse:// (got scheme {parts.scheme!r})")
        if not parts.hostname:
            raise ValueError("has no host (expected clickhouse://user:password@host:port/database)")
        database = parts.path.lstrip("/") or "driftloop"
        if not _IDENTIFIER.fullmatch(database):
            raise ValueError(f"database name {database!r} must match {_IDENTIFIER.pattern}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"secure", "verify", "ca_certs", "alt_hosts"}
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; known: secure, verify, ca_certs, alt_hosts")
        alt_hosts = [h.strip() for h in query.get("alt_hosts", "").split(",") if h.strip()]
        for alt in alt_hosts:
            host, sep, port = alt.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"alt_hosts: {alt!r} is not host:port")
        secure = parts.scheme == "clickhouses" or query.get("secure", "false").lower() in _TRUE
        return cls(
            host=parts.hostname,
            port=parts.port or (9440 if secure else 9000),
            user=unquote(parts.username or "default"),
            password=SecretStr(unquote(parts.password or "")),
            database=database,
            secure=secure,
            verify=query.get("verify", "true").lower() in _TRUE,
            ca_certs=Path(query["ca_certs"]) if "ca_certs" in query else None,
            alt_hosts=",".join(alt_hosts),
        )

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def client_kwargs(self, *, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for :class:`clickhouse_driver.Client` (``database`` overrides the URL's)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "database": database or self.database,
            "secure": self.secure,
            "verify": self.verify,
        }
        if self.ca_certs is not None:
            kwargs["ca_certs"] = str(self.ca_certs)
        if self.alt_hosts:
            kwargs["alt_hosts"] = self.alt_hosts
        return kwargs

    def __str__(self) -> str:
        auth = f"{self.user}:***" if self.password.get_secret_value() else self.user
        suffix = "?secure=true" if self.secure else ""
        return f"clickhouse://{auth}@{self.host}:{self.port}/{self.database}{suffix}"


#: The topic prefix when none is set; its deployment's consumer groups keep the names they always had.
DEFAULT_TOPIC_PREFIX = "driftloop."
#: What every consumer group's name starts with, after the topic prefix where that is not the default.
GROUP_NAMESPACE = "driftloop-"


@dataclass(frozen=True)
class Topics:
    """The contract's Kafka topic names, with the configured prefix.

    >>> Topics("driftloop.").all()
    ('driftloop.predictions', 'driftloop.outcomes', 'driftloop.alerts', 'driftloop.model-versions', \
'driftloop.dead-letter', 'driftloop.detections')
    """

    prefix: str

    @property
    def predictions(self) -> str:
        return self.prefix + "predictions"

    @property
    def outcomes(self) -> str:
        return self.prefix + "outcomes"

    @property
    def alerts(self) -> str:
        return self.prefix + "alerts"

    @property
    def model_versions(self) -> str:
        return self.prefix + "model-versions"

    @property
    def dead_letter(self) -> str:
        return self.prefix + "dead-letter"

    @property
    def detections(self) -> str:
        """Internal: the detectors' findings, keyed by model, on their way to the alert gate."""
        return self.prefix + "detections"

    def all(self) -> tuple[str, ...]:
        return (self.predictions, self.outcomes, self.alerts, self.model_versions, self.dead_letter, self.detections)


@dataclass(frozen=True)
class ConsumerGroups:
    """The Kafka consumer groups of one deployment, named after its topic prefix.

    Deployments that share a Kafka cluster under prefixes of their own (staging beside production, one team's
    beside another's) share no group: members of one group rebalance together, so before, each restart or
    scale-out of one deployment's workers stopped the other's for a rebalance (and so did their alert
    subscribers of one name). The default prefix keeps the names its groups always had;
    ``infra.kafka.groups`` carries a group's committed offsets over from its :meth:`former` name.

    >>> ConsumerGroups("driftloop.").retrain, ConsumerGroups("acme.").retrain
    ('driftloop-retrain', 'acme.driftloop-retrain')
    >>> ConsumerGroups("acme.").webhooks("risk-team"), ConsumerGroups("acme.").webhooks(None)
    ('acme.driftloop-webhooks-risk-team', 'acme.driftloop-webhooks')
    >>> acme, default = ConsumerGroups("acme."), ConsumerGroups("driftloop.")
    >>> acme.former("acme.driftloop-streams"), default.former("driftloop-streams"), acme.former("my-own-group")
    ('driftloop-streams', None, None)
    """

    prefix: str

    @property
    def namespace(self) -> str:
        return GROUP_NAMESPACE if self.prefix == DEFAULT_TOPIC_PREFIX else self.prefix + GROUP_NAMESPACE

    @property
    def streams(self) -> str:
        """The streams workers' group (also their Faust app id), unless ``DRIFTLOOP_WORKER_GROUP`` names one."""
        return self.namespace + "streams"

    @property
    def retrain(self) -> str:
        """The retrain workers' group on ``alerts`` (one model's alerts reach one worker)."""
        return self.namespace + "retrain"

    def webhooks(self, name: str | None) -> str:
        """The group of alert subscriber ``name`` (each gets every alert)."""
        return self.namespace + ("webhooks" if not name else f"webhooks-{name}")

    def former(self, group: str) -> str | None:
        """The name ``group`` had before groups were named after the topic prefix (None: it had this one)."""
        if self.namespace == GROUP_NAMESPACE or not group.startswith(self.namespace):
            return None
        return GROUP_NAMESPACE + group.removeprefix(self.namespace)


class Settings(BaseModel):
    """Everything driftloop can be configured with; build it once with :meth:`from_env` (or :func:`get_settings`).

    Kafka security options are passed through to every client so that real clusters with SASL
    (PLAIN / SCRAM) and TLS work; secrets are ``SecretStr`` and never printed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # --- the public contract (DESIGN.md) ---------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    clickhouse_url: ClickHouseEndpoint = Field(
        ClickHouseEndpoint(host="127.0.0.1", port=9000),
        description="clickhouse://user:password@host:port/database[?secure=true&ca_certs=...]",
    )
    clickhouse_cluster: str = Field(
        "",
        description="ClickHouse cluster (remote_servers) to keep the schema on: replicated tables, a Distributed "
        "table over each, DDL ON CLUSTER (infra/clickhouse/cluster.py); empty: one server",
    )
    topic_prefix: str = Field(
        DEFAULT_TOPIC_PREFIX,
        description="Prefix of every driftloop topic, and of its consumer groups where it is not the default",
    )
    home: Path = Field(Path("./.driftloop"), description="Local stack data, model artifacts and logs")

    # --- topics --------------------------------------------------------------------------------------------
    topic_partitions: int = Field(4, ge=1, le=1024, description="Partitions of each topic `stack up` creates")
    topic_replication: int = Field(1, ge=1, le=16, description="Replication factor of the topics it creates")

    # --- the embedded local stack ------------------------------------------------------------------------
    embedded: bool = Field(
        True,
        description="Start a local broker / ClickHouse when their address is on this machine (loopback); "
        "false: `stack up` only provisions",
    )
    clickhouse_server_bin: str = Field("clickhouse-server", description="ClickHouse server binary (name or path)")
    stack_start_timeout_s: float = Field(60.0, gt=0, description="How long `stack up` waits for a server")

    # --- Kafka client security, passed through to kafka-python, aiokafka and Faust --------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True

    # --- consumer groups ---------------------------------------------------------------------------------
    kafka_session_timeout_s: float = Field(
        30.0, ge=1, description="Consumer group session timeout; a group join waits about this long on Tansu"
    )
    kafka_rebalance_timeout_s: float = Field(30.0, ge=1, description="Consumer group rebalance timeout")
    kafka_fetch_max_wait_s: float = Field(
        0.1,
        gt=0,
        le=10,
        description="Longest a fetch waits for new messages (a floor on landing latency; idle fetches per second)",
    )

    specs_dir: Path | None = Field(None, description="Model spec files <model>.toml (default: HOME/specs)")
    spec_recheck_s: float = Field(
        5.0,
        ge=0,
        description="How often a running worker looks at a model's spec file again: an edit is taken from then on,"
        " without a restart (an edit that breaks the file is not: the last good spec stays)",
    )
    artifacts: str | None = Field(
        None, description="Where model versions are stored: a path or file:// URL (default: HOME/models)"
    )

    # --- the streams worker ------------------------------------------------------------------------------
    worker_group: str = Field(
        "",
        validate_default=True,
        description="Consumer group (Faust app id) of streams workers (default: driftloop-streams, after the topic"
        " prefix where that is not the default)",
    )
    batch_max_messages: int = Field(
        # with one event a message, 2,000 made an insert of 2,000 rows, which cost the ClickHouse server
        # 15.5 us an event against 3.8 for the inserts of 70,000 that bytes bound (benchmarks/ingest.py)
        100_000,
        ge=1,
        le=1_000_000,
        description="Messages an agent takes per batch at most (a batch is also bounded by batch_max_bytes)",
    )
    batch_max_bytes: int = Field(
        24 << 20,
        ge=1 << 16,
        # about 70,000 events of 350 bytes an insert: ClickHouse asks for large, rare inserts, and the
        # server's CPU an event fell from 3.3 to 2.1 us going from 8 MiB (benchmarks/ingest.py)
        description="Bytes of messages decoded and inserted at once (bounds worker memory)",
    )
    batch_max_wait_s: float = Field(
        # 0.35 s, not 0.5: p99 from send to row 0.82-0.96 s at half the maximum throughput, against 1.13-2.15 s,
        # for about 3 inserts a second into all tables together instead of 2.2. 0.25 s (session 34): p99 0.41-0.45
        # s up to 30,000 events/s against 0.51-0.59, but more inserts to merge (ClickHouse 3-4 us an event more at
        # 10,000 /s), and at half the maximum for 20-30 s p99 2.6-2.8 s against 1.9 s (benchmarks/latency.py)
        0.35,
        gt=0,
        description="Longest wait to fill a batch before it is written",
    )
    max_message_bytes: int = Field(1 << 20, ge=1024, description="Larger messages go to dead-letter unread")
    join_window_s: float = Field(
        3600.0, gt=0, description="How long an outcome waits for its prediction before it counts as unmatched"
    )
    join_sweep_interval_s: float = Field(5.0, gt=0, description="How often waiting outcomes are joined again")
    broker_check_interval_s: float = Field(
        2.0, gt=0, description="How often the worker asks Kafka for its cluster id (outages, lost broker instances)"
    )

    detector_state_interval_s: float = Field(
        30.0,
        gt=0,
        description="How often detector state is saved to ClickHouse (and on every rebalance), and the alerts held"
        " back of models that went quiet are let out once their cooldown ends",
    )
    detection_wait_s: float = Field(
        1.0,
        ge=0,
        description="Longest a model's part of a batch with few events (under 256) waits to be detected with its"
        " next ones: a fleet of many models detects in fewer, larger parts; its alerts come up to this much later"
        " (0: none waits)",
    )
    commit_interval_s: float = Field(
        2.8,
        gt=0,
        description="How often the streams worker commits its offsets, each commit after a save of every changed"
        " model's detector state: longer saves less often (a fleet of many models) and reads more events again"
        " after a crash (Faust's default)",
    )

    retention_days: str = Field(
        "",
        description="Days each event table keeps its rows, table=days[,table=days] (e.g. predictions=30,labeled=90;"
        " the rest forever); whole weeks go (infra/clickhouse/retention.py)",
    )
    retention_check_s: float = Field(3600.0, gt=0, description="How often the streams worker applies retention")

    # --- metrics --------------------------------------------------------------------------------------------
    metrics_port: int = Field(9464, ge=0, le=65535, description="Streams worker's Prometheus /metrics port (0: off)")
    retrain_metrics_port: int = Field(
        9465, ge=0, le=65535, description="Retrain worker's Prometheus /metrics port (0: off)"
    )

    # --- logs -----------------------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_format: Literal["console", "json"] = "console"

    @field_validator("clickhouse_url", mode="before")
    @classmethod
    def _parse_clickhouse_url(cls, value: Any) -> Any:
        return ClickHouseEndpoint.parse(value) if isinstance(value, str) else value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _check_cluster(cls, value: str) -> str:
        if value and not _IDENTIFIER.fullmatch(value):
            raise ValueError(f"cluster name {value!r} must match {_IDENTIFIER.pattern}")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port (example: 127.0.0.1:9092)")
        return ",".join(s.strip() for s in value.split(","))

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.fullmatch(value):
            raise ValueError("may only contain letters, digits, '.', '_' and '-'")
        return value

    @field_validator("worker_group")
    @classmethod
    def _default_group(cls, value: str, info: ValidationInfo) -> str:
        return value or ConsumerGroups(info.data.get("topic_prefix", DEFAULT_TOPIC_PREFIX)).streams

    @field_validator("retention_days")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        return ",".join(f"{table}={days}" for table, days in parse_retention(value).items())

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                ENV_PREFIX + name.upper()
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"security protocol {self.kafka_security_protocol} needs {', '.join(missing)}")
        return self

    # --- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: ``os.environ``); a bad value raises ``SettingsError``."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for key, value in env.items():
            if not key.upper().startswith(ENV_PREFIX):
                continue
            field = key[len(ENV_PREFIX) :].lower()
            if field not in cls.model_fields:
                _warn_unknown(key, cls.env_names())
                continue
            # An empty variable unsets an optional option (a secret left blank in a compose file, say).
            if value == "" and cls.model_fields[field].default is None:
                continue
            values[field] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every environment variable driftloop reads."""
        return frozenset(ENV_PREFIX + name.upper() for name in cls.model_fields)

    # --- derived views ---------------------------------------------------------------------------------------
    @property
    def artifact_location(self) -> str:
        return self.artifacts or str(self.home / "models")

    @property
    def spec_directory(self) -> Path:
        return self.specs_dir or self.home / "specs"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def groups(self) -> ConsumerGroups:
        return ConsumerGroups(self.topic_prefix)

    @property
    def clickhouse(self) -> ClickHouseEndpoint:
        """Where ClickHouse is, with the cluster the schema is kept on (if any)."""
        if self.clickhouse_cluster:
            return self.clickhouse_url.model_copy(update={"cluster": self.clickhouse_cluster})
        return self.clickhouse_url

    @property
    def retention(self) -> dict[str, int]:
        """Days per table (``retention_days`` parsed); tables not named keep their rows."""
        return parse_retention(self.retention_days)

    @property
    def kafka_servers(self) -> list[str]:
        return self.kafka_bootstrap.split(",")

    @property
    def kafka_is_loopback(self) -> bool:
        return all(server.rpartition(":")[0].strip("[]") in LOOPBACK_HOSTS for server in self.kafka_servers)

    def kafka_python_config(self) -> dict[str, Any]:
        """Connection and security options for kafka-python clients (producer, consumer, admin)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.kafka_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            assert self.kafka_sasl_password is not None  # checked by _check_security
            config |= {
                "sasl_mechanism": self.kafka_sasl_mechanism,
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": self.kafka_sasl_password.get_secret_value(),
            }
        if self.kafka_security_protocol in {"SSL", "SASL_SSL"}:
            config["ssl_check_hostname"] = self.kafka_ssl_check_hostname
            for option in ("cafile", "certfile", "keyfile"):
                path = getattr(self, f"kafka_ssl_{option}")
                if path is not None:
                    config[f"ssl_{option}"] = str(path)
        return config

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for Kafka clients that take one (aiokafka, Faust); None without TLS."""
        if self.kafka_security_protocol not in {"SSL", "SASL_SSL"}:
            return None
        context = ssl.create_default_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)
        context.check_hostname = self.kafka_ssl_check_hostname
        if self.kafka_ssl_certfile is not None:
            keyfile = str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None
            context.load_cert_chain(str(self.kafka_ssl_certfile), keyfile)
        return context

    def redacted(self) -> dict[str, str]:
        """Every setting as its environment variable and a printable value (secrets masked)."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***" if value.get_secret_value() else ""
            shown[ENV_PREFIX + name.upper()] = "" if value is None else str(value)
        return shown


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        variable = ENV_PREFIX + field.upper() if field else "DRIFTLOOP_* settings"
        lines.append(f"{variable}: {message}")
    return "; ".join(lines)


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()


_log = logging.getLogger("driftloop.settings")
_warned_unknown: set[str] = set()


def _warn_unknown(key: str, known: frozenset[str]) -> None:
    """Warn once per process about a ``DRIFTLOOP_*`` variable that is no setting.

    Not an error: Kubernetes injects ``DRIFTLOOP_SERVICE_HOST``, ``DRIFTLOOP_PORT_...`` into every pod of a
    namespace with a Service named ``driftloop``, and a typo is still worth a hint.
    """
    if key in _warned_unknown:
        return
    _warned_unknown.add(key)
    close = difflib.get_close_matches(key.upper(), sorted(known), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    _log.warning("%s: not a driftloop setting, ignored%s", key, hint)
