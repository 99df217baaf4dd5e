"""Workers for tests/streams/test_supervisor.py: module-level, so that a spawned child imports them. Each takes
Settings (as the streams worker does) and reads what it should do from DRIFTLOOP_HOME's files."""

from __future__ import annotations

import os
import signal
import sys
import time

from driftloop.infra.settings import Settings
from driftloop.streams.supervisor import restart, supervise


def restarts_once(settings: Settings) -> None:
    """Asks for a fresh worker on its first run; the second run exits 0."""
    runs = settings.home / "runs"
    runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
    if len(runs.read_text()) == 1:
        restart()


def fails(settings: Settings) -> None:
    sys.exit(3)


def waits_for_sigterm(settings: Settings) -> None:
    """Writes its pid, then waits; SIGTERM makes it write ``stopped`` and exit 0."""

    def stop(signum: int, frame: object) -> None:
        (settings.home / "stopped").write_text("yes")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    (settings.home / "pid").write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)


if __name__ == "__main__":  # a supervisor of its own, for the tests that signal it
    sys.exit(supervise("tests.streams.supervised:waits_for_sigterm", Settings.from_env()))
