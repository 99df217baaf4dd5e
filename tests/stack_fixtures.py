"""Test helpers: a private local stack (free ports, a temp home) and the environment that points at it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.network import free_port
from infra.settings import Settings

REPO = Path(__file__).resolve().parent.parent
# Short group timeouts: on the embedded broker a join waits about one session timeout.
FAST_GROUP_ENV = {"DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S": "6", "DRIFTLOOP_KAFKA_REBALANCE_TIMEOUT_S": "6"}


@dataclass(frozen=True)
class PrivateStack:
    """A stack for tests: its settings, and the DRIFTLOOP_* environment that reproduces them in a subprocess."""

    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def with_env(self, **changes: str) -> PrivateStack:
        return PrivateStack({**self.env, **changes})

    def run_cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``driftloop ARGS`` in a subprocess with this stack's environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")} | self.env
        return subprocess.run(
            [sys.executable, "-m", "infra.cli.main", *args],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip


def private_stack_env(home: Path, *, database: str = "driftloop", prefix: str = "driftloop.") -> dict[str, str]:
    """Settings for a stack on free ports under ``home``."""
    return {
        "DRIFTLOOP_HOME": str(home),
        "DRIFTLOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://default:@127.0.0.1:{free_port()}/{database}",
        "DRIFTLOOP_TOPIC_PREFIX": prefix,
        "DRIFTLOOP_TOPIC_PARTITIONS": "3",
        **FAST_GROUP_ENV,
    }
