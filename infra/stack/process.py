"""Server processes the local stack starts, each remembered in a small JSON record under ``home/run``.

The record is what lets ``stack down`` stop only what ``stack up`` started, and ``stack status`` tell a
live server of ours from a stale record or another program on the same port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from driftloop.infra.network import port_is_open


@dataclass(frozen=True)
class ProcessRecord:
    """A server process started by ``stack up``."""

    name: str
    pid: int
    host: str
    port: int
    command: tuple[str, ...]
    log_path: str
    started_at: float

    @property
    def alive(self) -> bool:
        """Whether the pid still runs the command we started (not exited, not a recycled pid)."""
        proc = Path(f"/proc/{self.pid}")
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
        if state in {"Z", "X"}:
            return False  # exited, not yet reaped
        if not cmdline[0]:
            return True  # right after exec the kernel has not published the new argv yet
        return Path(os.fsdecode(cmdline[0])).name == Path(self.command[0]).name


class ProcessRegistry:
    """The records of one stack home (``home/run/<name>.json``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def get(self, name: str) -> ProcessRecord | None:
        try:
            data = json.loads(self.path(name).read_text())
            return ProcessRecord(**{**data, "command": tuple(data["command"])})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def all(self) -> list[ProcessRecord]:
        return [r for p in sorted(self.run_dir.glob("*.json")) if (r := self.get(p.stem)) is not None]

    def spawn(
        self,
        name: str,
        command: list[str],
        *,
        host: str,
        port: int,
        log_path: Path,
        environment: dict[str, str] | None = None,
    ) -> ProcessRecord:
        """Start ``command`` detached from this terminal (it outlives the CLI) and record it; ``environment``:
        variables it gets on top of this process's."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal that ran `stack up` does not reach it
                close_fds=True,
                env=os.environ | environment if environment else None,
            )
        record = ProcessRecord(name, proc.pid, host, port, tuple(command), str(log_path), time.time())
        tmp = self.path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=2))
        tmp.replace(self.path(name))
        return record

    def forget(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def stop(self, record: ProcessRecord, *, timeout_s: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s`` (0: SIGKILL at once, a crash); forget the record. True if
        a live process was stopped; its port is closed when this returns."""
        was_alive = record.alive
        if was_alive:
            if timeout_s > 0:
                _signal(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while record.alive and time.monotonic() < deadline:
                _reap(record.pid)
                time.sleep(0.1)
            if record.alive:
                _signal(record.pid, signal.SIGKILL)
                while record.alive:
                    _reap(record.pid)
                    time.sleep(0.05)
            _reap(record.pid)
            # A killed multi-threaded process reads as exited before its last thread closed the sockets.
            deadline = time.monotonic() + 5.0
            while port_is_open(record.host, record.port, timeout_s=0.2) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.forget(record.name)
        return was_alive


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (in tests), so it does not linger."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path | str, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (empty when there is none)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
