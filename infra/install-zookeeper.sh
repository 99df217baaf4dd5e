#!/usr/bin/env bash
# Install Debian's ZooKeeper package when it is missing: the ClickHouse cluster test (`make test-cluster`) runs its
# server for the replicated tables (ClickHouse 18.16 keeps replication logs in ZooKeeper).
exec bash "$(dirname "$0")/apt-install.sh" "test -f /usr/share/java/zookeeper.jar && command -v java" zookeeper
