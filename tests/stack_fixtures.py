"""Test helpers: a private local stack (free ports, a temp home) and the environment that points at it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings

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
            [sys.executable, "-m", "driftloop.cli.main", *args],
            env=env,
            cwd=REPO,
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
        "DRIFTLOOP_METRICS_PORT": "0",  # many workers share this machine; metrics tests pick a free port
        "DRIFTLOOP_RETRAIN_METRICS_PORT": "0",
        **FAST_GROUP_ENV,
    }


class WorkerProcess:
    """``driftloop worker`` in a subprocess on a private stack; its output is kept for failure messages."""

    def __init__(self, stack: PrivateStack, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")} | stack.env | env
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli.main", "worker"],
            env=full_env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 30) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def wait_for(predicate, *, timeout_s: float = 60, interval_s: float = 0.25, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    import time

    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


class TcpProxy:
    """A TCP forwarder from a local port to a real server: start and stop it to take the server "away".

    With ``cut_after_bytes``, a connection whose server has sent more than that is cut in the middle of
    the answer (a server failing during a large result).
    """

    def __init__(self, target_port: int, port: int | None = None, *, cut_after_bytes: int | None = None) -> None:
        import socket as socket_module
        import threading

        self.target_port = target_port
        self.port = port or free_port()
        self.cut_after_bytes = cut_after_bytes
        self.cuts = 0
        self._socket_module = socket_module
        self._threading = threading
        self._server: socket_module.socket | None = None
        self._connections: list[socket_module.socket] = []

    def start(self) -> None:
        server = self._socket_module.socket()
        server.setsockopt(self._socket_module.SOL_SOCKET, self._socket_module.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen()
        self._server = server
        self._threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept()
                self._server.shutdown(self._socket_module.SHUT_RDWR)
            self._server.close()
            self._server = None
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.shutdown(self._socket_module.SHUT_RDWR)
            conn.close()
        self._connections.clear()

    def _accept(self, server) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = self._socket_module.create_connection(("127.0.0.1", self.target_port))
            self._connections += [client, upstream]
            for a, b, limit in ((client, upstream, None), (upstream, client, self.cut_after_bytes)):
                self._threading.Thread(target=self._pipe, args=(a, b, limit), daemon=True).start()

    def _pipe(self, source, target, limit: int | None) -> None:  # type: ignore[no-untyped-def]
        sent = 0
        try:
            while data := source.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    target.sendall(data[: max(0, limit - sent)])
                    self.cuts += 1
                    with contextlib.suppress(OSError):
                        source.shutdown(2)
                    break
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(2)
