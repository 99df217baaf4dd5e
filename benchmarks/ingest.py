"""Ingestion throughput: the streams worker against raw consumption of the same topic, in one run.

    .venv/bin/python -m benchmarks.ingest --events 200000 [--rounds 3]

Starts a private local stack (free ports, temp home), produces N prediction events (10 numeric features)
once as envelopes and once as one event per message, then measures on each topic:

  raw      aiokafka getmany + json.loads of every message (the ceiling for any Python consumer)
  bare     a bare Faust agent, stream.take(2000) + json.loads (single-event topic only)
  worker   `driftloop worker`: decode, validate, insert into ClickHouse, detect; first to last row landed

and prints the rates and the ratios against the baselines measured in the same run. With ``--rounds N`` each
rate is measured N times, taking turns, and the medians are compared.
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
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

from benchmarks import REPO
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import private_stack_env

console = Console(width=200)


def produce(settings: Settings, events: int, per_message: int) -> None:
    producer = KafkaProducer(
        **settings.kafka_python_config(), linger_ms=20, batch_size=1 << 20, max_request_size=8 << 20
    )
    rng = random.Random(7)
    base = time.time() - events / 1000
    batch: list[str] = []
    for i in range(events):
        features = {f"f{j}": round(rng.gauss(0, 1), 6) for j in range(10)}
        batch.append(
            json.dumps(
                {
                    "model": f"bench-{i % 4}",
                    "request_id": f"r{i}",
                    "ts": round(base + i / 1000, 3),
                    "features": features,
                    "prediction": rng.random() < 0.5,
                    "score": rng.random(),
                }
            )
            .replace('"prediction": true', '"prediction": 1')
            .replace('"prediction": false', '"prediction": 0')
        )
        if len(batch) == per_message:
            value = batch[0] if per_message == 1 else '{"events":[' + ",".join(batch) + "]}"
            producer.send(settings.topics.predictions, value.encode(), key=f"bench-{i % 4}".encode())
            batch = []
    producer.flush()
    producer.close()


async def raw_rate(settings: Settings, events: int) -> float:
    consumer = AIOKafkaConsumer(
        settings.topics.predictions,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.batch_max_bytes,  # as the worker fetches
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        seen, first = 0, 0.0
        while seen < events:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                if not first:
                    first = time.perf_counter()
                for record in records:
                    doc = json.loads(record.value)
                    seen += len(doc["events"]) if "events" in doc else 1
        return events / (time.perf_counter() - first)
    finally:
        await consumer.stop()


def subprocess_env(settings_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")} | settings_env | extra


def worker_rate(settings: Settings, env: dict[str, str], events: int, log: Path) -> float:
    client = connect(settings.clickhouse)
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli.main", "worker"],
            cwd=REPO,
            env=subprocess_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        first_t, first_n = 0.0, 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n = client.execute("SELECT count() FROM predictions")[0][0]
            now = time.perf_counter()
            if n and not first_t:
                first_t, first_n = now, n
            if n >= events:
                return (n - first_n) / (now - first_t) if now > first_t else float("nan")
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {log}")
            time.sleep(0.05)
        raise RuntimeError("the worker did not land every event within 10 minutes")
    finally:
        worker.terminate()
        worker.wait(30)
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


def run_scenario(name: str, home: Path, events: int, per_message: int, rounds: int) -> dict[str, list[float]]:
    """Each rate measured ``rounds`` times, the measurements taking turns (raw, bare, worker, raw, ...) so that
    the machine's slow and fast moments fall on all of them alike."""
    env = private_stack_env(home / name, prefix=f"bench-{name}.") | {"DRIFTLOOP_TOPIC_PARTITIONS": "4"}
    settings = Settings.from_env(env)
    local_stack.up(settings)
    result: dict[str, list[float]] = {"raw": [], "bare": [], "worker": []}
    try:
        with console.status(f"{name}: producing {events:,} events ({per_message} per message)"):
            produce(settings, events, per_message)
        with console.status(f"{name}: a first read of the topic, not measured"):
            asyncio.run(raw_rate(settings, events))  # the broker's first read is slower; no round should pay it
        for k in range(1, rounds + 1):
            with console.status(f"{name} ({k}/{rounds}): raw aiokafka consumption"):
                result["raw"].append(asyncio.run(raw_rate(settings, events)))
            if per_message == 1:
                with console.status(f"{name} ({k}/{rounds}): bare Faust agent"):
                    result["bare"].append(bare_faust_rate(env, events, home, f"bench-bare-faust-{k}"))
            with console.status(f"{name} ({k}/{rounds}): driftloop worker → ClickHouse"):
                worker_env = env | {"DRIFTLOOP_WORKER_GROUP": f"bench-worker-{k}"}
                result["worker"].append(worker_rate(settings, worker_env, events, home / f"{name}-worker-{k}.log"))
                client = connect(settings.clickhouse)
                client.execute("TRUNCATE TABLE predictions")  # the next round counts its rows from zero
                client.disconnect()
        return result
    finally:
        local_stack.down(settings)


def rate(values: list[float]) -> str:
    """The median rate, and the range when there were several rounds."""
    median = statistics.median(values)
    return f"{median:,.0f}" + (f" ({min(values):,.0f}–{max(values):,.0f})" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--envelope-size", type=int, default=500, help="events per envelope message")
    parser.add_argument("--rounds", type=int, default=1, help="measure each rate this many times (medians shown)")
    parser.add_argument(
        "--forms", choices=("both", "envelopes", "single"), default="both", help="which message forms to measure"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="driftloop-bench-"))
    none: dict[str, list[float]] = {"raw": [], "bare": [], "worker": []}
    envelopes = (
        run_scenario("envelopes", home, args.events, args.envelope_size, args.rounds)
        if args.forms != "single"
        else none
    )
    singles = run_scenario("single", home, args.events, 1, args.rounds) if args.forms != "envelopes" else none
    median = {
        form: {k: statistics.median(v) for k, v in rates.items() if v}
        for form, rates in {"env": envelopes, "one": singles}.items()
    }

    rounds = f"; median of {args.rounds} rounds, and range" if args.rounds > 1 else ""
    table = Table(title=f"ingest: {args.events:,} prediction events, 10 numeric features (events/s{rounds})")
    for column in (
        "message form",
        "raw getmany+json",
        "bare Faust agent",
        "driftloop worker",
        "worker / baseline",
    ):
        table.add_column(column, justify="right")
    if envelopes["worker"]:
        table.add_row(
            f"envelopes of {args.envelope_size}",
            rate(envelopes["raw"]),
            "-",
            rate(envelopes["worker"]),
            f"{median['env']['worker'] / median['env']['raw']:.2f} × raw (target ≥ 0.60)",
        )
    if singles["worker"]:
        table.add_row(
            "one event per message",
            rate(singles["raw"]),
            rate(singles["bare"]),
            rate(singles["worker"]),
            f"{median['one']['worker'] / median['one']['bare']:.2f} × bare Faust (target ≥ 1.00)",
        )
    console.print(table)


if __name__ == "__main__":
    main()
