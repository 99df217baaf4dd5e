"""A ClickHouse cluster on this machine for the cluster tests: ZooKeeper from Debian's package and ClickHouse
servers (the Debian package's binary) on free ports, each with the cluster's ``remote_servers`` and its macros."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from clickhouse_driver import Client

from driftloop.infra.network import free_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")

_ZOOKEEPER_CONFIG = """tickTime=500
dataDir={home}/data
clientPort={port}
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
"""

_SERVER_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{home}/log/server.log</log>
    <errorlog>{home}/log/server.err.log</errorlog>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{port}</tcp_port>
  <interserver_http_port>{interserver_port}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>{home}/data/</path>
  <tmp_path>{home}/tmp/</tmp_path>
  <user_files_path>{home}/user_files/</user_files_path>
  <format_schema_path>{home}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>134217728</mark_cache_size>
  <uncompressed_cache_size>134217728</uncompressed_cache_size>
  <zookeeper><node><host>127.0.0.1</host><port>{zookeeper_port}</port></node></zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <macros><shard>{shard}</shard><replica>{replica}</replica></macros>
  <remote_servers><{cluster}>{shards}</{cluster}></remote_servers>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


def _wait(check: object, what: str, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise TimeoutError(f"{what} did not come up in {timeout_s:.0f} s\n{tail}")
        time.sleep(0.2)


@dataclass
class ZooKeeper:
    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        config = self.home / "zoo.cfg"
        config.write_text(_ZOOKEEPER_CONFIG.format(home=self.home, port=self.port))
        log = self.home / "zookeeper.log"
        main = "org.apache.zookeeper.server.ZooKeeperServerMain"
        command = ["java", "-Xmx256m", "-cp", f"{ZOOKEEPER_JAR}:/etc/zookeeper/conf", main, str(config)]
        self.process = subprocess.Popen(
            command, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait(self.answers, f"ZooKeeper on port {self.port}", 60, log)

    def answers(self) -> bool:
        """Whether it serves sessions (``ruok`` answers before; ClickHouse 18.16 crashes on a ZooKeeper that
        refuses its first session)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"srvr")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            return b"Mode: standalone" in answer

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)


@dataclass
class ClickHouseNode:
    """One server of the cluster: its ``shard`` and ``replica`` macros, its home, its port."""

    home: Path
    shard: str
    replica: str
    port: int = field(default_factory=free_port)
    interserver_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client("127.0.0.1", port=self.port, connect_timeout=5, send_receive_timeout=60)

    def write_config(self, cluster: str, shards: list[list[ClickHouseNode]], zookeeper: ZooKeeper) -> None:
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        topology = "".join(
            "<shard><internal_replication>true</internal_replication>"
            + "".join(f"<replica><host>127.0.0.1</host><port>{n.port}</port></replica>" for n in replicas)
            + "</shard>"
            for replicas in shards
        )
        (self.home / "config.xml").write_text(
            _SERVER_CONFIG.format(
                home=self.home,
                port=self.port,
                interserver_port=self.interserver_port,
                zookeeper_port=zookeeper.port,
                shard=self.shard,
                replica=self.replica,
                cluster=cluster,
                shards=topology,
            )
        )
        (self.home / "users.xml").write_text(_USERS)

    def start(self) -> None:
        log = self.home / "log" / "stdout.log"
        command = ["clickhouse-server", f"--config-file={self.home / 'config.xml'}"]
        output = log.open("ab")
        self.process = subprocess.Popen(
            command, cwd=self.home, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        errors = self.home / "log" / "server.err.log"
        _wait(lambda: self.client().execute("SELECT 1") == [(1,)], f"ClickHouse {self.address}", 60, errors)

    def kill(self) -> None:
        """Stop the server as a crash does (SIGKILL)."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(20)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


@dataclass
class LocalCluster:
    """``shards`` lists of ClickHouse nodes (each list: one shard's replicas) named ``name``, over ``zookeeper``."""

    name: str
    shards: list[list[ClickHouseNode]]
    zookeeper: ZooKeeper

    @classmethod
    def build(cls, home: Path, zookeeper: ZooKeeper, name: str, shards: int, replicas: int) -> LocalCluster:
        nodes = [
            [ClickHouseNode(home / f"s{s}r{r}", shard=f"{s:02d}", replica=f"r{r}") for r in range(1, replicas + 1)]
            for s in range(1, shards + 1)
        ]
        return cls(name, nodes, zookeeper)

    @property
    def nodes(self) -> list[ClickHouseNode]:
        return [node for shard in self.shards for node in shard]

    def url(self, database: str) -> str:
        """``DRIFTLOOP_CLICKHOUSE_URL``: the first node, the others as ``alt_hosts``."""
        first, *others = self.nodes
        alt = ",".join(n.address for n in others)
        return f"clickhouse://default@{first.address}/{database}" + (f"?alt_hosts={alt}" if alt else "")

    def start(self) -> None:
        for node in self.nodes:
            node.write_config(self.name, self.shards, self.zookeeper)
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
