"""Test helpers: the private local stack (``driftloop.infra.stack.private``, shared with the benchmarks), a
worker in a subprocess, a TCP proxy that takes a server away, and a topic read to its end."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings
from driftloop.infra.stack.private import FAST_GROUP_ENV, PrivateStack, private_stack_env, wait_for

__all__ = [
    "FAST_GROUP_ENV",
    "REPO",
    "PrivateStack",
    "TcpProxy",
    "WorkerProcess",
    "children",
    "model_records",
    "only_child",
    "private_stack_env",
    "topic_records",
    "wait_for",
]

REPO = Path(__file__).resolve().parent.parent


def topic_records(settings: Settings, topic: str, timeout_s: float = 30) -> list[Any]:
    """Every record of ``topic``, from its beginning to its end as the call finds it (what was flushed before is
    there), in offset order within each partition: read to the end offsets rather than until the consumer has
    been idle a few seconds, which every such read cost."""
    consumer = KafkaConsumer(**settings.kafka_python_config(), enable_auto_commit=False)
    try:
        numbers = wait_for(
            lambda: consumer.partitions_for_topic(topic), timeout_s=timeout_s, what=f"{topic}'s partitions"
        )
        partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(p) < ends[p] for p in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def model_records(settings: Settings, topic: str, model: str) -> list[Any]:
    """The records of ``topic`` keyed by ``model``: its name, or its name and a number (a spread model's keys)."""
    name, spread = model.encode(), f"{model}#".encode()
    return [r for r in topic_records(settings, topic) if r.key == name or (r.key or b"").startswith(spread)]


class WorkerProcess:
    """``driftloop worker`` (or another ``command`` that runs until stopped) in a subprocess on a private stack;
    its output is kept for failure messages."""

    def __init__(
        self, stack: PrivateStack, log_path: Path, *, command: tuple[str, ...] = ("worker",), **env: str
    ) -> None:
        self.log_path = log_path
        full_env = stack.process_env(**env)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli.main", *command],
            env=full_env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def faust_pid(self, timeout_s: float = 60) -> int:
        """The Faust worker's process: the one child of ``driftloop worker``, its supervisor
        (``streams.supervisor``); the ingestion process is its child."""
        return only_child(self.process.pid, "the worker's Faust process", timeout_s)

    def output(self) -> str:
        """The log's end, after its first error and traceback (a crash's cause comes long before its end)."""
        text = self.log_path.read_text(errors="replace")
        first = min((i for i in (text.find(" ERROR "), text.find("Traceback")) if i >= 0), default=-1)
        cause = text[max(first - 500, 0) : first + 3000] + "\n[...]\n" if 0 <= first < len(text) - 4000 else ""
        return cause + text[-4000:]

    def stop(self, timeout_s: float = 30) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def strict_json(text: str) -> object:
    """A command's ``--json`` line read as a strict parser would (JavaScript's, jq's): ``NaN`` and
    ``Infinity`` are not JSON."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` that do driftloop's work: multiprocessing's spawned processes (their command
    line runs ``spawn_main``; its resource tracker does not, nor a process forked but not yet executed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def only_child(pid: int, what: str, timeout_s: float = 60) -> int:
    """The one child of ``pid`` (waiting until there is exactly one)."""
    return int(wait_for(lambda: (c := children(pid)) and len(c) == 1 and c[0], timeout_s=timeout_s, what=what))


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


class WebhookReceiver(BaseHTTPRequestHandler):
    """A webhook's receiving end: takes each POST (204), its body kept in the server's ``received`` and its path
    in ``paths``; answers 429 with ``Retry-After: 1`` to the first ``throttle`` requests (their times in
    ``times``, as every request's)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.times.append(time.monotonic())  # type: ignore[attr-defined]
        if server.throttle > 0:  # type: ignore[attr-defined]
            server.throttle -= 1  # type: ignore[attr-defined]
            self.send_response(429)
            self.send_header("Retry-After", "1")
        else:
            server.received.append(body)  # type: ignore[attr-defined]
            server.paths.append(self.path)  # type: ignore[attr-defined]
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def webhook_receiver() -> Iterator[HTTPServer]:
    """A :class:`WebhookReceiver` on a free local port, serving until the block ends."""
    server = HTTPServer(("127.0.0.1", 0), WebhookReceiver)
    server.received, server.paths, server.times, server.throttle = [], [], [], 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
