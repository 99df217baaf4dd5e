"""Landing latency: from an event's send time to its row in ClickHouse, at several rates, in one run.

    .venv/bin/python -m benchmarks.latency [--seconds 20] [--max-rate N]

Starts a private local stack (free ports, temp home) and `driftloop worker`, then for each load produces
events at a steady rate for ``--seconds`` (each event's ``ts`` is the moment its message is sent) while it
polls ClickHouse every 50 ms; an event's latency is the poll that first saw its row minus its ``ts``. The
loads:

  1,000 events/s, one event per message
  5,000, 10,000, 20,000 and 30,000 events/s in envelopes of 100
  half of the worker's maximum throughput, in envelopes of 100 (the maximum is measured first, in the same
  run, on a backlog of these loads' own messages, as benchmarks/ingest.py measures a shape; or given with
  ``--max-rate``)

and prints p50 / p90 / p99 / max per load, the p99 that the worker's own ``driftloop_event_age_seconds`` gives
for the same events (what a deployment watches: its buckets' bounds interpolated, as Prometheus's
``histogram_quantile`` does), with the inserts a second into ``predictions`` meanwhile (the
blocks its parts were numbered with: ``system.parts``) and the ``INSERT`` queries a second into every table
(``system.events``) — the price of low latency — and the CPU each process used (100 % is one core; the
machine's cores are shared by the broker, ClickHouse, the worker and the load itself).
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks import load_producer, scrape_metrics, scratch_home
from benchmarks.cpu import cpu_seconds
from benchmarks.ingest import skip_predictions, worker_process, worker_processes, worker_rate
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import private_stack_env

console = Console(width=200)
POLL_S = 0.05
TARGET_P99_S = 1.0
AGE_BUCKET = 'driftloop_event_age_seconds_bucket{kind="predictions",le="'  # the worker's own landing latency


@dataclass(frozen=True)
class Load:
    name: str
    rate: int  # events a second
    per_message: int


STAMP = b"0000000000.000"  # where each message's send time goes: encoded once, stamped per message


def templates(per_message: int, model: str, count: int = 64, seed: int = 3) -> list[bytes]:
    """``count`` messages of ``per_message`` events of ``model`` (ten N(0, 1) features), their ``ts`` a
    placeholder: the sender stamps and sends them, so that it costs little CPU beside the worker even at tens
    of thousands of events a second."""
    rng = np.random.default_rng(seed)
    out = []
    for m in range(count):
        events = [
            {
                "model": model,
                "request_id": f"r{m}-{k}",
                "ts": 0,
                "features": {f"f{j}": v for j, v in enumerate(row)},
                "prediction": int(row[0] > 0),
                "score": 0.5,
            }
            for k, row in enumerate(rng.normal(size=(per_message, 10)).round(6).tolist())
        ]
        value = msgspec.json.encode(events[0] if per_message == 1 else {"events": events})
        out.append(value.replace(b'"ts":0,', b'"ts":' + STAMP + b","))
    return out


def send_steadily(
    settings: Settings, load: Load, seconds: float, model: str, stop: threading.Event, stamps: list[int]
) -> None:
    """Sends ``load`` for ``seconds``: each message when its time comes, its events stamped with that moment
    (request ids repeat from message to message; the stamp makes each event's id its own). Each message's
    stamp (ms) goes into ``stamps`` once sent."""
    # 5 ms of linger, as a serving process's client would: a produce request per message costs the
    # broker more CPU than the worker needs to read them
    producer = load_producer(settings, linger_ms=5)
    messages = templates(load.per_message, model)
    messages_per_s = load.rate / load.per_message
    start, sent = time.time(), 0
    while not stop.is_set():
        due = start + sent / messages_per_s
        if due - start >= seconds:
            break
        if (wait := due - time.time()) > 0:
            time.sleep(wait)
        stamp = f"{time.time():014.3f}"
        producer.send(
            settings.topics.predictions,
            messages[sent % len(messages)].replace(STAMP, stamp.encode()),
            key=model.encode(),
        )
        stamps.append(round(float(stamp) * 1000))
        sent += 1
    producer.flush()
    producer.close()


@dataclass(frozen=True)
class Measured:
    latencies: np.ndarray  # seconds, one an event
    table_inserts_per_s: float  # inserts into predictions a second
    inserts_per_s: float  # INSERT queries the server ran a second (every table)
    cores: dict[str, float]  # CPU a second of each process group meanwhile
    metric_p99: float  # p99 of the worker's driftloop_event_age_seconds over the load's events


def measure(
    settings: Settings, load: Load, seconds: float, processes: dict[str, list[int]], metrics_port: int | None
) -> Measured:
    """Latencies of every event of ``load``, the server's inserts a second, and the CPU of ``processes``
    (name → pids) while it was sent (polls: :class:`LandedRows`); and the p99 of the same events' ages by the
    worker's own metric (on ``metrics_port``; None: not read, as while the worker starts)."""
    model = f"latency-{load.name}"
    client = connect(settings.clickhouse)
    stamps: list[int] = []  # each sent message's ts (ms), in sending order
    landed = LandedRows(client, model)
    seen = landed.seen
    latencies: list[np.ndarray] = []
    stop = threading.Event()
    inserts_before, blocks_before = _inserts(client), blocks_inserted(client, landed.table)
    ages_before = age_buckets(metrics_port) if metrics_port else {}
    cpu_before = {name: cpu_seconds(pids) for name, pids in processes.items()}
    began = time.monotonic()
    sender = threading.Thread(target=send_steadily, args=(settings, load, seconds, model, stop, stamps))
    sender.start()
    try:
        oldest, deadline = 0, time.monotonic() + seconds + 60  # oldest: stamps[oldest] is not in whole yet
        while (sender.is_alive() or oldest < len(stamps)) and time.monotonic() < deadline:
            started = time.monotonic()
            gained = landed.poll()
            now = time.time()
            for ts_ms, new in gained.items():
                latencies.append(np.full(new, now - ts_ms / 1000))
            expected = Counter(stamps[oldest:])
            while oldest < len(stamps) and seen.get(stamps[oldest], 0) >= expected[stamps[oldest]] * load.per_message:
                oldest += 1
            time.sleep(max(0.0, POLL_S - (time.monotonic() - started)))
    finally:
        stop.set()
        sender.join()
    took = time.monotonic() - began
    cores = {name: (cpu_seconds(pids) - cpu_before[name]) / took for name, pids in processes.items()}
    inserts = (_inserts(client) - inserts_before) / took
    table_inserts = (blocks_inserted(client, landed.table) - blocks_before) / took
    client.disconnect()
    if oldest < len(stamps):
        missing = len(stamps) * load.per_message - sum(seen.values())
        raise RuntimeError(f"{load.name}: {missing} events did not land within a minute")
    ages = _counted_by_the_worker(metrics_port, ages_before, len(stamps) * load.per_message) if metrics_port else {}
    return Measured(np.concatenate(latencies), table_inserts, inserts, cores, histogram_quantile(0.99, ages))


def age_buckets(port: int) -> dict[float, float]:
    """The worker's cumulative ``driftloop_event_age_seconds`` buckets of predictions: upper bound → events."""
    return {
        float(name[len(AGE_BUCKET) : -2].replace("+Inf", "inf")): value
        for name, value in scrape_metrics(port).items()
        if name.startswith(AGE_BUCKET)
    }


def _counted_by_the_worker(port: int, before: dict[float, float], events: int) -> dict[float, float]:
    """The buckets of the ``events`` landed since ``before``, once the worker's metric counts them all (its
    Faust process hears of a batch with the ingestion process's next answer)."""
    deadline = time.monotonic() + 10
    while True:
        now = {bound: count - before.get(bound, 0.0) for bound, count in age_buckets(port).items()}
        if now.get(math.inf, 0.0) >= events or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's ``histogram_quantile``: the ``q`` quantile of cumulative ``buckets`` (upper bound → count),
    interpolated within its bucket; the highest finite bound when it falls in ``+Inf``'s; NaN for no counts.

    >>> histogram_quantile(0.5, {0.5: 10, 1.0: 30, math.inf: 40})
    0.75
    >>> histogram_quantile(0.99, {0.5: 10, 1.0: 30, math.inf: 40})
    1.0
    """
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if not total:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-12)
        lower, below = bound, buckets[bound]
    return lower


class LandedRows:
    """The rows of ``model`` in ``predictions``, counted by ``ts_ms``, each part of the table read once.

    A poll that read the model's rows by time (``ts >= t``) read whole parts: the table is sorted by event id
    within a model's day, and merged parts hold every time they merged. Once a load's rows had merged into
    parts of a million, each poll of the half-maximum load read them all (30 ms a poll over 1.7 million rows:
    up to 0.6 of a core at twenty polls a second, more the further the worker fell behind). A poll now lists the
    active parts and reads only those it has not read (``_part``); a part that merged away takes its counts
    with it, and the part it merged into brings them back. A row counts as landed once: ``seen`` only rises."""

    def __init__(self, client: Any, model: str, table: str = "predictions") -> None:
        self.client = client
        self.model = model
        self.table = table
        self.seen: Counter[int] = Counter()  # ts_ms → the most rows seen at once
        self._held: Counter[int] = Counter()  # ts_ms → rows in the parts read and still active
        self._parts: dict[str, Counter[int]] = {}  # active part → its rows of the model by ts_ms

    def poll(self) -> Counter[int]:
        """What landed since the last poll: ts_ms → rows newly seen."""
        active = {
            name
            for (name,) in self.client.execute(
                "SELECT name FROM system.parts WHERE database = currentDatabase() AND table = %(table)s AND active",
                {"table": self.table},
            )
        }
        for name in self._parts.keys() - active:  # merged into a part read below (or a later poll)
            self._held.subtract(self._parts.pop(name))
        new = sorted(active - self._parts.keys())
        gained: Counter[int] = Counter()
        if new:
            for name in new:
                self._parts[name] = Counter()
            rows = self.client.execute(
                f"SELECT _part, ts_ms, count() FROM {self.table} WHERE model = %(model)s AND _part IN %(parts)s "
                "GROUP BY _part, ts_ms",
                {"model": self.model, "parts": tuple(new)},
            )
            for part, ts_ms, count in rows:
                self._parts[part][ts_ms] += count
                self._held[ts_ms] += count
            for ts_ms in {ts_ms for _, ts_ms, _ in rows}:
                if self._held[ts_ms] > self.seen[ts_ms]:
                    gained[ts_ms] = self._held[ts_ms] - self.seen[ts_ms]
                    self.seen[ts_ms] = self._held[ts_ms]
        return gained


def _inserts(client: object) -> int:
    """``INSERT`` queries the server has run so far, into any table (``system.events``)."""
    rows = client.execute("SELECT value FROM system.events WHERE event = 'InsertQuery'")  # type: ignore[attr-defined]
    return int(rows[0][0]) if rows else 0


def blocks_inserted(client: object, table: str) -> int:
    """Blocks inserted into ``table`` so far: each insert numbers its part (one a partition it writes to) with
    the table's next block number, and a merged part keeps the highest of its parts' (a table that is not
    replicated numbers its blocks across partitions)."""
    rows = client.execute(  # type: ignore[attr-defined]
        "SELECT max(max_block_number) FROM system.parts WHERE database = currentDatabase() AND table = %(table)s",
        {"table": table},
    )
    return int(rows[0][0]) if rows else 0


def max_rate(settings: Settings, env: dict[str, str], home: Path, events: int = 600_000) -> float:
    """The worker's landing rate on a backlog of the loads' own messages (one model, envelopes of 100; each
    message stamped a millisecond after the one before, so every event is its own), measured as
    benchmarks/ingest.py measures a shape's. A cheaper shape's maximum (ingest's four models in envelopes of
    500) would put the "half the maximum" load above half of what the worker takes of this one."""
    model, per_message = "latency-max", 100
    messages = templates(per_message, model)
    producer = load_producer(settings, linger_ms=20)
    first = round(time.time() * 1000) - events // per_message
    with console.status(f"the maximum throughput: producing {events:,} events"):
        for m in range(events // per_message):
            stamp = f"{(first + m) / 1000:014.3f}".encode()
            producer.send(
                settings.topics.predictions, messages[m % len(messages)].replace(STAMP, stamp), key=model.encode()
            )
        producer.flush()
        producer.close()
    with console.status("the maximum throughput: the worker on the backlog"):
        rate = worker_rate(settings, env | {"DRIFTLOOP_WORKER_GROUP": "latency-max"}, events, home / "max.log").rate
    client = connect(settings.clickhouse)
    client.execute("TRUNCATE TABLE predictions")
    client.disconnect()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each load is sent")
    parser.add_argument("--max-rate", type=int, help="the worker's maximum throughput (events/s); default: measure")
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the worker (repeat)"
    )
    args = parser.parse_args()
    with scratch_home("driftloop-latency-") as home:
        env = private_stack_env(home, prefix="latency.") | {"DRIFTLOOP_TOPIC_PARTITIONS": "4"}
        settings = Settings.from_env(env)
        with local_stack.running(settings) as report:
            top = args.max_rate or max_rate(settings, env, home)
            console.print(f"maximum throughput: {top:,.0f} events/s")
            loads = [
                Load("single-1000", 1000, 1),
                Load("envelopes-5000", 5000, 100),
                *(Load(f"envelopes-{rate}", rate, 100) for rate in (10_000, 20_000, 30_000) if rate < top / 2),
                Load(f"half-max-{int(top / 2)}", int(top / 2) // 100 * 100, 100),
            ]
            port = free_port()
            skip_predictions(settings, "latency")  # the maximum's backlog: landed, and not the loads' to land again
            worker_env = env | {"DRIFTLOOP_WORKER_GROUP": "latency", "DRIFTLOOP_METRICS_PORT": str(port)}
            worker_env |= dict(v.split("=", 1) for v in args.worker_env)
            with worker_process(worker_env, home / "worker.log") as worker:
                services = {service.name: service.pid for service in report.services if service.pid}
                warm = Load("warm-up", 1000, 100)
                with console.status("waiting for the worker (a warm-up load lands)"):
                    measure(settings, warm, 2.0, {}, None)
                # its processes by now (detection starts at a first batch); the services are no children of ours
                processes = worker_processes(worker.pid, services) | {"load + polls": [os.getpid()]}
                table = Table(
                    title=f"latency: send → row in ClickHouse, {args.seconds:.0f} s a load, polled every 50 ms"
                )
                columns = ("load", "events", "p50", "p90", "p99", "max", "p99 by the worker", "inserts/s")
                columns += ("all inserts/s", "p99 ≤ 1 s", *processes)
                for column in columns:
                    table.add_column(column if column not in processes else f"{column} CPU", justify="right")
                for load in loads:
                    with console.status(f"{load.name}: {load.rate:,} events/s for {args.seconds:.0f} s"):
                        measured = measure(settings, load, args.seconds, processes, port)
                    latencies = measured.latencies
                    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
                    table.add_row(
                        f"{load.rate:,}/s, {load.per_message} a message",
                        f"{len(latencies):,}",
                        f"{p50:.2f} s",
                        f"{p90:.2f} s",
                        f"{p99:.2f} s",
                        f"{latencies.max():.2f} s",
                        f"{measured.metric_p99:.2f} s",
                        f"{measured.table_inserts_per_s:.1f}",
                        f"{measured.inserts_per_s:.1f}",
                        "yes" if p99 <= TARGET_P99_S else "no",
                        *(f"{measured.cores[name]:.0%}" for name in processes),
                    )
                    by_worker = f"{measured.metric_p99:.2f} s by the worker's metric"
                    console.print(f"{load.name}: p50 {p50:.2f} s, p99 {p99:.2f} s ({by_worker})")
                console.print(table)


if __name__ == "__main__":
    main()
