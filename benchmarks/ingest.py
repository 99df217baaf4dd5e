"""Ingestion throughput on several event shapes: the streams worker against raw consumption, in one run.

    .venv/bin/python -m benchmarks.ingest [--events 500000] [--rounds 3] [--shape hot-model --shape single ...]

For each shape it starts a private local stack (free ports, temp home, topics of four partitions), produces
N prediction events of that shape, then measures on the topic:

  raw      aiokafka getmany with the worker's fetch sizes + msgspec decode of every message (the ceiling for
           any Python consumer)
  bare     a bare Faust agent, stream.take(2000) + json.loads (shapes of one event per message only)
  worker   `driftloop worker`: decode, validate, insert into ClickHouse, detect; first to last row landed
           (for the outcome shape: outcomes joined to their predictions, the labeled rows landed)

and prints the rates and the ratio against raw measured in the same run. With ``--rounds N`` each rate is
measured N times, taking turns, and the medians are compared.

The shapes (each differs from ``four-models`` in what its name says):

  four-models      four models keyed over four partitions, 10 numeric features rounded to six digits,
                   envelopes of 500
  hot-model        one model: all its events on one partition
  full-precision   one model on one partition, features and score as Python prints a double (17 digits)
  50-features      50 numeric features
  categorical      20 categorical features of 1,000 distinct values each, and 5 numeric
  class-scores     a label prediction and a score object per class (4 classes)
  nulls            each feature (8 numeric, 2 categorical of 20 values) null in 2 % of the events
  left-out         each of the 10 features left out of 2 % of the events
  many-models      100 models, each event's model the next in turn
  outcomes         outcome events (envelopes of 500), each labeling a prediction of four-models that landed
                   before the round (its worker reads the outcomes topic only); raw reads that topic
  single           one event per message
  small-envelopes  envelopes of 5 events with 8 numeric and 2 categorical features (of 20 values): a producer
                   that sends what a few milliseconds bring (Kafka's linger)
  rfc3339          times as RFC 3339 text with milliseconds ("2026-12-04T19:40:00.123Z")
  fleet            20 models with features of their own (4 to 11 numeric, 2 categorical of 20 values), envelopes
                   of 5
  optional         8 numeric and 2 categorical features (of 20 values), each left out of 2 % of the events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from rich.console import Console
from rich.table import Table

from benchmarks import REPO, load_producer, scratch_home
from benchmarks.cpu import children, cpu_seconds
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import private_stack_env

console = Console(width=200)

Event = dict[str, object]


@dataclass(frozen=True)
class Shape:
    """One shape of traffic: how an event looks, which model sends it, how many go in a message."""

    name: str
    event: Callable[[random.Random, int], Event]
    models: int = 4
    per_message: int = 500
    outcomes: bool = False  # measured on the outcomes of these predictions, which land before each round


def _numbers(rng: random.Random, n: int, digits: int | None = 6) -> dict[str, float]:
    return {f"f{j}": (round(rng.gauss(0, 1), digits) if digits else rng.gauss(0, 1)) for j in range(n)}


def _base(rng: random.Random, i: int, features: dict[str, object], digits: int | None = 6) -> Event:
    score = rng.random()
    return {
        "request_id": f"r{i}",
        "ts": round(time.time() - 600 + i / 1000, 3),
        "features": features,
        "prediction": int(score < 0.5),
        "score": round(score, digits) if digits else score,
    }


CATEGORIES = [f"c{k:04d}" for k in range(1000)]
CLASSES = ("approve", "review", "decline", "escalate")


def _class_scores(rng: random.Random, i: int) -> Event:
    weights = [rng.random() for _ in CLASSES]
    total = sum(weights)
    scores = {c: round(w / total, 6) for c, w in zip(CLASSES, weights, strict=True)}
    event = _base(rng, i, _numbers(rng, 10))
    return event | {"prediction": max(scores, key=scores.__getitem__), "score": scores}


def _with_nulls(rng: random.Random, i: int) -> Event:
    features: dict[str, object] = _numbers(rng, 8) | {f"k{j}": rng.choice(CATEGORIES[:20]) for j in range(2)}
    return _base(rng, i, {name: None if rng.random() < 0.02 else value for name, value in features.items()})


def _few_categories(rng: random.Random, i: int) -> Event:
    return _base(rng, i, _numbers(rng, 8) | {f"k{j}": rng.choice(CATEGORIES[:20]) for j in range(2)})


def _own_features(rng: random.Random, i: int) -> Event:
    """Model ``i % 20``'s event (as :func:`messages` assigns them): 4 to 11 numeric features of its own and 2
    categorical ones."""
    model = i % 20
    features: dict[str, object] = {f"m{model}.x{j}": round(rng.gauss(0, 1), 6) for j in range(4 + model % 8)}
    return _base(rng, i, features | {f"m{model}.k{j}": rng.choice(CATEGORIES[:20]) for j in range(2)})


def _optional(rng: random.Random, i: int) -> Event:
    features = _numbers(rng, 8) | {f"k{j}": rng.choice(CATEGORIES[:20]) for j in range(2)}
    return _base(rng, i, {name: value for name, value in features.items() if rng.random() >= 0.02})


def _rfc3339(rng: random.Random, i: int) -> Event:
    event = _base(rng, i, _numbers(rng, 10))
    stamp = datetime.fromtimestamp(event["ts"], UTC)  # type: ignore[arg-type]
    return event | {"ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")}


SHAPES = {
    shape.name: shape
    for shape in (
        Shape("four-models", lambda rng, i: _base(rng, i, _numbers(rng, 10))),
        Shape("hot-model", lambda rng, i: _base(rng, i, _numbers(rng, 10)), models=1),
        Shape(
            "full-precision",
            lambda rng, i: _base(rng, i, _numbers(rng, 10, digits=None), digits=None),
            models=1,
        ),
        Shape("50-features", lambda rng, i: _base(rng, i, _numbers(rng, 50))),
        Shape(
            "categorical",
            lambda rng, i: _base(rng, i, _numbers(rng, 5) | {f"k{j}": rng.choice(CATEGORIES) for j in range(20)}),
        ),
        Shape("class-scores", _class_scores),
        Shape("nulls", _with_nulls),
        Shape(
            "left-out",
            lambda rng, i: _base(rng, i, {k: v for k, v in _numbers(rng, 10).items() if rng.random() >= 0.02}),
        ),
        Shape("many-models", lambda rng, i: _base(rng, i, _numbers(rng, 10)), models=100),
        Shape("outcomes", lambda rng, i: _base(rng, i, _numbers(rng, 10)), outcomes=True),
        Shape("single", lambda rng, i: _base(rng, i, _numbers(rng, 10)), per_message=1),
        Shape("small-envelopes", _few_categories, per_message=5),
        Shape("rfc3339", _rfc3339),
        Shape("fleet", _own_features, models=20, per_message=5),
        Shape("optional", _optional),
    )
}


def messages(
    shape: Shape, events: int, event: Callable[[random.Random, int], Event] | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each message: events of one model go in one message, keyed by the model."""
    rng = random.Random(7)
    pending: dict[str, list[bytes]] = {}
    encode = msgspec.json.encode
    make = event or shape.event
    for i in range(events):
        model = f"bench-{i % shape.models}"
        batch = pending.setdefault(model, [])
        batch.append(encode({"model": model, **make(rng, i)}))
        if len(batch) == shape.per_message or i == events - 1:
            value = batch[0] if shape.per_message == 1 else b'{"events":[' + b",".join(batch) + b"]}"
            yield model.encode(), value
            pending[model] = []
    for model, batch in pending.items():
        if batch:
            yield model.encode(), b'{"events":[' + b",".join(batch) + b"]}"


def _outcome(rng: random.Random, i: int) -> Event:
    """The outcome of ``_base``'s prediction ``i``, ten minutes after it."""
    return {"request_id": f"r{i}", "ts": round(time.time() + i / 1000, 3), "label": int(rng.random() < 0.5)}


def produce(settings: Settings, shape: Shape, events: int, *, outcomes: bool = False) -> None:
    producer = load_producer(settings, linger_ms=20)
    topic = settings.topics.outcomes if outcomes else settings.topics.predictions
    for key, value in messages(shape, events, _outcome if outcomes else None):
        producer.send(topic, value, key=key)
    producer.flush()
    producer.close()


def skip_predictions(settings: Settings, group: str) -> None:
    """Commit the end of the predictions topic for ``group``: its worker then reads the outcomes only."""
    consumer = KafkaConsumer(group_id=group, enable_auto_commit=False, **settings.kafka_python_config())
    try:
        partitions = [
            TopicPartition(settings.topics.predictions, p)
            for p in consumer.partitions_for_topic(settings.topics.predictions) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in partitions})
    finally:
        consumer.close()


async def raw_rate(settings: Settings, events: int, topic: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.batch_max_bytes,  # as the worker fetches
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        seen, first = 0, 0.0
        decode = msgspec.json.Decoder().decode
        while seen < events:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                if not first:
                    first = time.perf_counter()
                for record in records:
                    doc = decode(record.value)
                    seen += len(doc["events"]) if "events" in doc else 1
        return events / (time.perf_counter() - first)
    finally:
        await consumer.stop()


def subprocess_env(settings_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")} | settings_env | extra


@dataclass(frozen=True)
class WorkerRun:
    """The worker's landing rate, and the CPU each process spent a landed event meanwhile (µs)."""

    rate: float
    cpu_us: dict[str, float]


def worker_processes(worker: int, services: dict[str, int]) -> dict[str, list[int]]:
    """The worker's processes (``driftloop worker``, the supervisor, counted with Faust, its child; ingestion,
    Faust's child; detection, ingestion's child) and the stack's."""
    faust = children(worker, marker="spawn_main")
    ingestion = [pid for parent in faust for pid in children(parent, marker="spawn_main")]
    detection = [pid for parent in ingestion for pid in children(parent, marker="spawn_main")]
    return {"faust": [worker, *faust], "ingestion": ingestion, "detection": detection} | {
        name: [pid] for name, pid in services.items()
    }


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``driftloop worker`` running with ``env`` (its output in ``log``), terminated on leaving."""
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli.main", "worker"],
            cwd=REPO,
            env=subprocess_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(30)


def land(settings: Settings, env: dict[str, str], events: int, log: Path) -> None:
    """Run a worker until ``events`` predictions are in ClickHouse (not measured)."""
    client = connect(settings.clickhouse)
    try:
        with worker_process(env, log) as worker:
            deadline = time.monotonic() + 600
            while client.execute("SELECT count() FROM predictions")[0][0] < events:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the predictions did not land; see {log}")
                time.sleep(0.2)
    finally:
        client.disconnect()


def worker_rate(
    settings: Settings,
    env: dict[str, str],
    events: int,
    log: Path,
    services: dict[str, int] | None = None,
    table: str = "predictions",
    first_table: str | None = None,
) -> WorkerRun:
    """The worker on the topic's backlog, from its first row landed in ``first_table`` (``table``: its first
    insert is not counted, since it began before) to its last in ``table``; CPU per process over the same span
    (``services``: name → pid of the stack's servers, to count as well)."""
    client = connect(settings.clickhouse)

    def count(name: str) -> int:
        return int(client.execute(f"SELECT count() FROM {name}")[0][0])

    try:
        with worker_process(env, log) as worker:
            first_t, first_n = 0.0, 0
            cpu_first: dict[str, float] = {}
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                n = count(table)
                now = time.perf_counter()
                if not first_t and (count(first_table) if first_table else n):
                    processes = worker_processes(worker.pid, services or {})
                    if first_table or processes["detection"] or n >= events:  # detection starts at a first batch
                        first_t, first_n = now, n
                        cpu_first = {name: cpu_seconds(pids) for name, pids in processes.items()}
                if n >= events:
                    landed = n - first_n
                    if not landed:
                        raise RuntimeError(f"{table}: every row landed at once; measure more --events than that")
                    processes = worker_processes(worker.pid, services or {})  # and those started since
                    cpu = {name: cpu_seconds(pids) - cpu_first.get(name, 0.0) for name, pids in processes.items()}
                    return WorkerRun(landed / (now - first_t), {name: s / landed * 1e6 for name, s in cpu.items()})
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited; see {log}")
                time.sleep(0.05)
            raise RuntimeError("the worker did not land every event within 10 minutes")
    finally:
        client.disconnect()


def bare_faust_rate(env: dict[str, str], events: int, home: Path, group: str) -> float:
    out = home / f"{group}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "benchmarks.bare_faust_app", "worker", "-l", "warn"],
        cwd=REPO,
        env=subprocess_env(env, BENCH_EVENTS=str(events), BENCH_OUT=str(out), BENCH_GROUP=group),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        result = json.loads(out.read_text())
        return float(result["events"] / (result["last"] - result["first"]))
    finally:
        proc.terminate()
        proc.wait(30)


def run_shape(shape: Shape, home: Path, events: int, rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each rate measured ``rounds`` times, the measurements taking turns (raw, bare, worker, raw, ...) so that
    the machine's slow and fast moments fall on all of them alike; and the CPU (µs) each process spent a
    landed event while the worker ran (medians over the rounds)."""
    env = private_stack_env(home / shape.name, prefix=f"bench-{shape.name}.") | {"DRIFTLOOP_TOPIC_PARTITIONS": "4"}
    settings = Settings.from_env(env)
    with local_stack.running(settings) as report:
        services = {service.name: service.pid for service in report.services if service.pid}
        result: dict[str, list[float]] = {"raw": [], "bare": [], "worker": []}
        cpu: dict[str, list[float]] = {}
        with console.status(f"{shape.name}: producing {events:,} events"):
            produce(settings, shape, events)
        table, topic = (
            ("labeled", settings.topics.outcomes) if shape.outcomes else ("predictions", settings.topics.predictions)
        )
        if shape.outcomes:
            with console.status(f"{shape.name}: landing the predictions, then producing their outcomes"):
                land(settings, env | {"DRIFTLOOP_WORKER_GROUP": "bench-predictions"}, events, home / "predictions.log")
                produce(settings, shape, events, outcomes=True)
        with console.status(f"{shape.name}: a first read of the topic, not measured"):
            asyncio.run(raw_rate(settings, events, topic))  # the broker's first read is slower; no round should pay it
        for k in range(1, rounds + 1):
            with console.status(f"{shape.name} ({k}/{rounds}): raw aiokafka consumption"):
                result["raw"].append(asyncio.run(raw_rate(settings, events, topic)))
            if shape.per_message == 1:
                with console.status(f"{shape.name} ({k}/{rounds}): bare Faust agent"):
                    result["bare"].append(bare_faust_rate(env, events, home, f"bench-bare-faust-{k}"))
            with console.status(f"{shape.name} ({k}/{rounds}): driftloop worker → ClickHouse"):
                worker_env = env | {"DRIFTLOOP_WORKER_GROUP": f"bench-worker-{k}"}
                if shape.outcomes:
                    skip_predictions(settings, f"bench-worker-{k}")
                log = home / f"{shape.name}-worker-{k}.log"
                run = worker_rate(
                    settings, worker_env, events, log, services, table, "outcomes" if shape.outcomes else None
                )
                result["worker"].append(run.rate)
                for name, us in run.cpu_us.items():
                    cpu.setdefault(name, []).append(us)
                client = connect(settings.clickhouse)
                for landed in (table, "outcomes"):  # the next round counts its rows from zero
                    client.execute(f"TRUNCATE TABLE {landed}")
                client.disconnect()
        return result, {name: statistics.median(values) for name, values in cpu.items()}


def rate(values: list[float]) -> str:
    """The median rate, and the range when there were several rounds."""
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:,.0f}" + (f" ({min(values):,.0f}–{max(values):,.0f})" if len(values) > 1 else "")


TARGET = 0.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000, help="prediction events per shape")
    parser.add_argument("--rounds", type=int, default=1, help="measure each rate this many times (medians shown)")
    parser.add_argument(
        "--shape",
        action="append",
        choices=sorted(SHAPES),
        help="a shape to measure (repeat for several; default: every shape)",
    )
    args = parser.parse_args()
    with scratch_home("driftloop-bench-") as home:
        rounds = f"; median of {args.rounds} rounds, and range" if args.rounds > 1 else ""
        table = Table(title=f"ingest: {args.events:,} prediction events a shape (events/s{rounds})")
        for column in ("shape", "raw getmany+msgspec", "bare Faust agent", "driftloop worker", "worker / raw"):
            table.add_column(column, justify="right")
        where = Table(title="where the time goes: CPU µs a landed event, by process, while the worker ran")
        where.add_column("shape", justify="right")
        for name in args.shape or list(SHAPES):
            rates, cpu = run_shape(SHAPES[name], home, args.events, args.rounds)
            ratio = statistics.median(rates["worker"]) / statistics.median(rates["raw"])
            verdict = "" if ratio >= TARGET else f" (target ≥ {TARGET:.2f})"
            table.add_row(name, rate(rates["raw"]), rate(rates["bare"]), rate(rates["worker"]), f"{ratio:.2f}{verdict}")
            if not where.rows:
                for process in cpu:
                    where.add_column(process, justify="right")
                where.add_column("total", justify="right")
            where.add_row(name, *(f"{us:.1f}" for us in cpu.values()), f"{sum(cpu.values()):.1f}")
            console.print(
                f"{name}: worker {ratio:.2f} × raw; " + ", ".join(f"{p} {us:.1f} µs" for p, us in cpu.items())
            )
        console.print(table)
        console.print(where)


if __name__ == "__main__":
    main()
