#!/usr/bin/env bash
# Install the Debian ClickHouse server package when it is missing (the embedded stack runs its binary).
exec bash "$(dirname "$0")/apt-install.sh" "command -v clickhouse-server" clickhouse-server clickhouse-client
