#!/usr/bin/env bash
# Install the Debian ClickHouse server package when it is missing (the embedded stack runs its binary).
set -euo pipefail
if command -v clickhouse-server >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "clickhouse-server is missing and this user is not root and has no sudo." >&2
        echo "Install it as root: apt-get install -y clickhouse-server clickhouse-client" >&2
        exit 1
    fi
    SUDO="sudo"
fi
echo "installing clickhouse-server (Debian package) ..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
command -v clickhouse-server >/dev/null
