"""A private local stack for tests and benchmarks: free ports, a home of its own, short group timeouts.

>>> from pathlib import Path
>>> env = private_stack_env(Path("/tmp/x"), prefix="bench.")
>>> env["DRIFTLOOP_TOPIC_PREFIX"], PrivateStack(env).with_env(DRIFTLOOP_TOPIC_PREFIX="t.").settings.topic_prefix
('bench.', 't.')
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings

T = TypeVar("T")

# Short group timeouts: on the embedded broker a join waits about one session timeout.
FAST_GROUP_ENV = {"DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S": "6", "DRIFTLOOP_KAFKA_REBALANCE_TIMEOUT_S": "6"}


@dataclass(frozen=True)
class PrivateStack:
    """A stack's settings, and the DRIFTLOOP_* environment that reproduces them in a subprocess."""

    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def with_env(self, **changes: str) -> PrivateStack:
        return PrivateStack({**self.env, **changes})

    def process_env(self, **extra: str) -> dict[str, str]:
        """This process's environment with its DRIFTLOOP_* variables replaced by the stack's (and ``extra``)."""
        return {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")} | self.env | extra

    def run_cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``driftloop ARGS`` in a subprocess with this stack's environment."""
        return subprocess.run(
            [sys.executable, "-m", "driftloop.cli.main", *args],
            env=self.process_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )


def private_stack_env(home: Path, *, database: str = "driftloop", prefix: str = "driftloop.") -> dict[str, str]:
    """Settings for a stack on free ports under ``home``."""
    return {
        "DRIFTLOOP_HOME": str(home),
        "DRIFTLOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://default:@127.0.0.1:{free_port()}/{database}",
        "DRIFTLOOP_TOPIC_PREFIX": prefix,
        "DRIFTLOOP_TOPIC_PARTITIONS": "3",
        "DRIFTLOOP_METRICS_PORT": "0",  # many workers share a machine; whoever reads metrics picks a free port
        "DRIFTLOOP_RETRAIN_METRICS_PORT": "0",
        **FAST_GROUP_ENV,
    }


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout_s: float = 60,
    interval_s: float = 0.25,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` (and ``describe()``, the state
    worth seeing) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    state = f"; {describe()}" if describe is not None else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r}{state})")
