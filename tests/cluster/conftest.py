"""The cluster tests' fixtures: ZooKeeper (Debian's package) and ClickHouse clusters on this machine.

These tests run in `make test-cluster` (`pytest -m cluster tests/cluster`), which installs ZooKeeper first;
`make test` deselects them (they start servers of their own, and take minutes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.local_cluster import ZOOKEEPER_JAR, LocalCluster, ZooKeeper


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeper]:
    if not ZOOKEEPER_JAR.exists():
        pytest.fail(f"{ZOOKEEPER_JAR} is missing: run `make test-cluster` (it installs Debian's zookeeper package)")
    server = ZooKeeper(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    yield server
    server.stop()


def _cluster(home: Path, zookeeper: ZooKeeper, name: str, shards: int, replicas: int) -> Iterator[LocalCluster]:
    cluster = LocalCluster.build(home, zookeeper, name, shards=shards, replicas=replicas)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def two_replicas(tmp_path: Path, zookeeper: ZooKeeper) -> Iterator[LocalCluster]:
    """One shard on two servers, each a replica of the other."""
    yield from _cluster(tmp_path / "replicas", zookeeper, "replicas", shards=1, replicas=2)


@pytest.fixture
def two_shards(tmp_path: Path, zookeeper: ZooKeeper) -> Iterator[LocalCluster]:
    """Two shards, one server each."""
    yield from _cluster(tmp_path / "shards", zookeeper, "shards", shards=2, replicas=1)
