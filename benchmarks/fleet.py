"""A fleet of models in steady state: what each model costs the worker, against one model at the same rate.

    .venv/bin/python -m benchmarks.fleet [--models 200] [--rate 10000] [--seconds 30] [--per-message 50]
                                         [--worker-env DRIFTLOOP_DETECTION_WAIT_S=0]

benchmarks/ingest.py lands backlogs of a few seconds; a worker in production runs at a steady rate for days,
spread over many models, and saves every model's detector state that saw events at each offset commit. This
benchmark starts a private local stack and `driftloop worker`, warms every model up (a backlog of
``--warm-up`` events a model, ten numeric features, landed and detected before anything is measured: past
each model's first reference), then sends ``--rate`` events a second for ``--seconds`` twice: all of them one
model's (the baseline), then spread over ``--models`` models, taking turns, in envelopes of ``--per-message``
events of one model. For each it prints the CPU µs an event of each process (the worker's three, the broker and
ClickHouse, read from ``/proc``), the detector state saved (bytes a second, and a model's save: the worker's
``driftloop_detector_state_bytes`` and ``driftloop_rows_written`` metrics; ``detector_state`` itself keeps a
model's last save only, once merged), the worker's memory, and the fleet's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from dataclasses import dataclass

from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

from benchmarks import load_producer, scrape_metrics, scratch_home
from benchmarks.cpu import cpu_seconds, rss_mb
from benchmarks.ingest import worker_process, worker_processes
from benchmarks.latency import STAMP, templates
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import private_stack_env

console = Console(width=200)
PROCESSES = ("faust", "ingestion", "detection", "broker", "clickhouse")
STATE_BYTES, STATE_ROWS = "driftloop_detector_state_bytes_total", 'driftloop_rows_written_total{table="detector_state"}'


@dataclass(frozen=True)
class Steady:
    """What a steady load cost: CPU µs an event by process, detector state written, the worker's memory."""

    events: int
    seconds: float
    cpu_us: dict[str, float]
    state_bytes: int
    state_rows: int
    worker_mb: float

    @property
    def total_us(self) -> float:
        return sum(self.cpu_us.get(name, 0.0) for name in PROCESSES)


def send_steadily(
    producer: KafkaProducer, topic: str, messages: dict[str, list[bytes]], rate: float, seconds: float
) -> int:
    """Send the models' messages in turn, each when its time comes for ``rate`` messages a second, stamped with
    that moment, for ``seconds``: how many were sent."""
    models = list(messages)
    start, sent = time.time(), 0
    while True:
        due = start + sent / rate
        if due - start >= seconds:
            break
        if (wait := due - time.time()) > 0:
            time.sleep(wait)
        model = models[sent % len(models)]
        value = messages[model][(sent // len(models)) % len(messages[model])]
        producer.send(topic, value.replace(STAMP, f"{time.time():014.3f}".encode()), key=model.encode())
        sent += 1
    producer.flush()
    return sent


def warm_up(
    settings: Settings, producer: KafkaProducer, models: list[str], events_each: int, worker: subprocess.Popen[bytes]
) -> None:
    """A backlog of ``events_each`` events a model, waited for until every model's state is saved past it."""
    batch = 500
    backlog = {model: templates(batch, model, count=4, seed=i) for i, model in enumerate(models)}
    rounds = -(-events_each // batch)
    for k in range(rounds):
        for model in models:
            value = backlog[model][k % len(backlog[model])].replace(STAMP, f"{time.time():014.3f}".encode())
            producer.send(settings.topics.predictions, value, key=model.encode())
    producer.flush()
    client = connect(settings.clickhouse)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            saved = client.execute(
                "SELECT count() FROM (SELECT model, argMax(events, revision) AS seen FROM detector_state "
                "GROUP BY model) WHERE seen >= %(n)s",
                {"n": rounds * batch},
            )[0][0]
            if saved >= len(models):
                return
            if worker.poll() is not None:
                raise RuntimeError("the worker exited while warming up")
            time.sleep(0.5)
        raise RuntimeError("the models did not warm up within 10 minutes")
    finally:
        client.disconnect()


def measure(
    settings: Settings,
    producer: KafkaProducer,
    worker: subprocess.Popen[bytes],
    services: dict[str, int],
    messages: dict[str, list[bytes]],
    rate: float,
    per_message: int,
    seconds: float,
    port: int,
) -> Steady:
    """Send ``messages`` (``per_message`` events each) at ``rate`` events a second for ``seconds``; what the
    worker spent meanwhile."""
    processes = worker_processes(worker.pid, services)
    before = {name: cpu_seconds(pids) for name, pids in processes.items()}
    before_metrics, began = scrape_metrics(port), time.monotonic()
    sent = send_steadily(producer, settings.topics.predictions, messages, rate / per_message, seconds)
    took = time.monotonic() - began
    cpu = {name: cpu_seconds(pids) - before[name] for name, pids in processes.items()}
    after = scrape_metrics(port)
    size = after.get(STATE_BYTES, 0.0) - before_metrics.get(STATE_BYTES, 0.0)
    rows = after.get(STATE_ROWS, 0.0) - before_metrics.get(STATE_ROWS, 0.0)
    events = sent * per_message
    memory = rss_mb(pid for pids in processes.values() for pid in pids if pid not in services.values())
    return Steady(events, took, {n: s / events * 1e6 for n, s in cpu.items()}, int(size or 0), int(rows), memory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=200, help="models the fleet's load is spread over")
    parser.add_argument("--rate", type=float, default=10_000, help="events a second, in all")
    parser.add_argument("--seconds", type=float, default=30, help="how long each load is sent")
    parser.add_argument("--per-message", type=int, default=50, help="events an envelope (of one model)")
    parser.add_argument("--warm-up", type=int, default=3000, help="events a model before measuring")
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the worker (repeat)"
    )
    args = parser.parse_args()
    with scratch_home("driftloop-fleet-") as home:
        env = private_stack_env(home, prefix="fleet.") | {"DRIFTLOOP_TOPIC_PARTITIONS": "4"}
        settings = Settings.from_env(env)
        with local_stack.running(settings) as report:
            services = {service.name: service.pid for service in report.services if service.pid}
            fleet = [f"fleet-{i:04d}" for i in range(args.models)]
            producer = load_producer(settings, linger_ms=5)
            port = free_port()
            worker_env = env | {"DRIFTLOOP_WORKER_GROUP": "fleet", "DRIFTLOOP_METRICS_PORT": str(port)}
            worker_env |= dict(v.split("=", 1) for v in args.worker_env)
            with worker_process(worker_env, home / "worker.log") as worker:
                with console.status(f"warming up {args.models + 1} models ({args.warm_up:,} events each)"):
                    warm_up(settings, producer, ["alone", *fleet], args.warm_up, worker)
                loads = {
                    "one model": {"alone": templates(args.per_message, "alone", count=4)},
                    f"{args.models} models": {
                        m: templates(args.per_message, m, count=4, seed=i) for i, m in enumerate(fleet)
                    },
                }
                results = {}
                for name, messages in loads.items():
                    with console.status(f"{name}: {args.rate:,.0f} events/s for {args.seconds:.0f} s"):
                        results[name] = measure(
                            settings,
                            producer,
                            worker,
                            services,
                            messages,
                            args.rate,
                            args.per_message,
                            args.seconds,
                            port,
                        )
            producer.close()
        baseline = results["one model"]
        title = f"{args.rate:,.0f} events/s for {args.seconds:.0f} s, envelopes of {args.per_message}: CPU µs an event"
        table = Table(title=title)
        for column in (
            "load",
            "events",
            *PROCESSES,
            "total",
            "× one model",
            "state saved",
            "saves",
            "a save",
            "worker RSS",
        ):
            table.add_column(column, justify="right")
        for name, steady in results.items():
            saves = f"{steady.state_bytes / steady.state_rows / 1000:.0f} kB" if steady.state_rows else "-"
            table.add_row(
                name,
                f"{steady.events:,}",
                *(f"{steady.cpu_us.get(p, 0.0):.1f}" for p in PROCESSES),
                f"{steady.total_us:.1f}",
                f"{steady.total_us / baseline.total_us:.2f}",
                f"{steady.state_bytes / steady.seconds / 1000:,.0f} kB/s",
                f"{steady.state_rows:,}",
                saves,
                f"{steady.worker_mb:,.0f} MB",
            )
        console.print(table)


if __name__ == "__main__":
    main()
