#!/usr/bin/env bash
# Install Debian packages when a check says they are missing: `apt-install.sh CHECK PACKAGE...` runs CHECK (a
# shell command) and installs the packages (sudo when not root) only when it fails, then runs CHECK again.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: apt-install.sh CHECK PACKAGE..." >&2
    exit 2
fi
check="$1"
shift
if bash -c "$check" >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "$* missing, and this user is not root and has no sudo." >&2
        echo "Install as root: apt-get install -y $*" >&2
        exit 1
    fi
    SUDO="sudo"
fi
echo "installing $* (Debian packages) ..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
bash -c "$check"
