#!/usr/bin/env bash
# Install Debian's ZooKeeper package when it is missing: the ClickHouse cluster test (`make test-cluster`) runs its
# server for the replicated tables (ClickHouse 18.16 keeps replication logs in ZooKeeper).
set -euo pipefail
if [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "zookeeper is missing and this user is not root and has no sudo." >&2
        echo "Install it as root: apt-get install -y zookeeper" >&2
        exit 1
    fi
    SUDO="sudo"
fi
echo "installing zookeeper (Debian package) ..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq zookeeper >/dev/null
test -f /usr/share/java/zookeeper.jar
