"""Detection quality of the running worker on streams with known drift points.

    .venv/bin/python -m benchmarks.detection --stationary-events 1000000

Starts a private local stack and `driftloop worker`, publishes one model per scenario, waits until the
worker has taken every event, then reads the alerts from ClickHouse and prints per scenario: detection
delay (events after the true change), false alarms (alerts before the change) per million events, and
whether the drift was missed. Scenarios: stationary N(0,1) (10 features), abrupt and gradual mean shifts,
a variance change, a category shift, and a concept drift on the label (River's Agrawal generator
switching its classification function under a fixed model).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table
from river.datasets import synth

from benchmarks import REPO
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import private_stack_env

console = Console(width=200)
CHANGE = 20_000
TS0 = 1_790_000_000


@dataclass(frozen=True)
class Scenario:
    name: str
    events: int
    change: int | None  # event index of the drift; None: stationary
    make: Callable[[int], Iterator[tuple[dict, object, object | None]]]  # features, prediction, label (or None)
    labeled: bool = False


def gaussian(n: int, seed: int, shift: Callable[[int, int, random.Random], float] | None = None) -> Iterator:
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(10)}
        if shift:
            features["f0"] = shift(i, 0, rng)
        yield features, int(rng.random() < 0.5), None


def categories(n: int, seed: int) -> Iterator:
    rng = random.Random(seed)
    for i in range(n):
        features: dict = {f"f{j}": rng.gauss(0, 1) for j in range(3)}
        features["channel"] = rng.choices(["web", "app", "shop"], [0.6, 0.3, 0.1] if i < CHANGE else [0.4, 0.3, 0.3])[0]
        yield features, int(rng.random() < 0.5), None


def correlation_flip(n: int, seed: int) -> Iterator:
    """Ten N(0,1) features; f8 and f9 correlated +0.8, then -0.8 from the change on: no feature's own
    distribution changes, only how two of them move together."""
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(9)}
        rho = 0.8 if i < CHANGE else -0.8
        features["f9"] = rho * features["f8"] + (1 - rho**2) ** 0.5 * rng.gauss(0, 1)
        yield features, int(rng.random() < 0.5), None


def concept(n: int, seed: int) -> Iterator:
    before = synth.Agrawal(classification_function=0, seed=seed)
    after = synth.Agrawal(classification_function=2, seed=seed + 1)
    for x, y in before.take(CHANGE):
        yield x, _rule(x), y
    for x, y in after.take(n - CHANGE):
        yield x, _rule(x), y


def _rule(x: dict) -> int:
    """The deployed model: Agrawal's function 0 learnt perfectly (it is wrong under function 2)."""
    return int(x["age"] < 40 or x["age"] >= 60)


def scenarios(stationary: int) -> list[Scenario]:
    total = CHANGE + 5_000
    return [
        Scenario("stationary, 10 features", stationary, None, lambda n: gaussian(n, 1)),
        Scenario(
            "abrupt mean shift 1σ",
            total,
            CHANGE,
            lambda n: gaussian(n, 2, lambda i, _, r: r.gauss(1.0 if i >= CHANGE else 0.0, 1)),
        ),
        Scenario(
            "abrupt mean shift 0.5σ",
            total,
            CHANGE,
            lambda n: gaussian(n, 3, lambda i, _, r: r.gauss(0.5 if i >= CHANGE else 0.0, 1)),
        ),
        Scenario(
            "gradual mean shift 0→1σ over 2000",
            total,
            CHANGE,
            lambda n: gaussian(n, 4, lambda i, _, r: r.gauss(min(max(i - CHANGE, 0) / 2000, 1.0), 1)),
        ),
        Scenario(
            "variance 1→3σ",
            total,
            CHANGE,
            lambda n: gaussian(n, 5, lambda i, _, r: r.gauss(0, 3.0 if i >= CHANGE else 1.0)),
        ),
        Scenario("category shift", total, CHANGE, lambda n: categories(n, 6)),
        Scenario("correlation +0.8→-0.8 (joint)", total, CHANGE, lambda n: correlation_flip(n, 8)),
        Scenario("concept drift (Agrawal 0→2), labeled", total, CHANGE, lambda n: concept(n, 7), labeled=True),
    ]


def publish(settings: Settings, model: str, scenario: Scenario, *, outcomes_only: bool = False) -> None:
    """Publish the scenario's predictions, or (later: labels arrive after predictions) its outcomes."""
    producer = KafkaProducer(
        **settings.kafka_python_config(), linger_ms=20, batch_size=1 << 20, max_request_size=8 << 20
    )
    predictions: list[str] = []
    outcomes: list[str] = []

    def flush() -> None:
        for topic, batch in ((settings.topics.predictions, predictions), (settings.topics.outcomes, outcomes)):
            if batch:
                producer.send(topic, ('{"events":[' + ",".join(batch) + "]}").encode(), key=model.encode())
                batch.clear()

    for i, (features, prediction, label) in enumerate(scenario.make(scenario.events)):
        if not outcomes_only:
            predictions.append(
                json.dumps(
                    {
                        "model": model,
                        "request_id": f"r{i}",
                        "ts": TS0 + i * 0.01,
                        "features": features,
                        "prediction": prediction,
                    }
                )
            )
        elif label is not None:
            outcomes.append(
                json.dumps({"model": model, "request_id": f"r{i}", "ts": TS0 + i * 0.01 + 5, "label": int(label)})
            )
        if len(predictions) >= 500 or len(outcomes) >= 500:
            flush()
    flush()
    producer.flush()
    producer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stationary-events", type=int, default=1_000_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="driftloop-detect-"))
    env = private_stack_env(home, prefix="detect.") | {"DRIFTLOOP_BATCH_MAX_WAIT_S": "0.2"}
    settings = Settings.from_env(env)
    local_stack.up(settings)
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")} | env
    log = open(home / "worker.log", "ab")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "driftloop.cli.main", "worker"],
        cwd=REPO,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = connect(settings.clickhouse)
    try:
        plan = scenarios(args.stationary_events)
        models = {s.name: f"scenario-{k}" for k, s in enumerate(plan)}
        started = time.monotonic()
        with console.status("publishing scenarios (the worker takes them as they come)"):
            for scenario in plan:
                publish(settings, models[scenario.name], scenario)
        expected = sum(s.events for s in plan)
        outcomes_sent = False
        with console.status("the worker is taking the events") as status:
            while True:
                (landed,), (joined,) = (
                    client.execute("SELECT count() FROM predictions")[0],
                    client.execute("SELECT count() FROM labeled")[0],
                )
                labeled_expected = sum(s.events for s in plan if s.labeled)
                status.update(f"the worker has taken {landed:,} of {expected:,} events, joined {joined:,}")
                if landed >= expected and not outcomes_sent:
                    for scenario in plan:  # the labels become known once the predictions were made
                        if scenario.labeled:
                            publish(settings, models[scenario.name], scenario, outcomes_only=True)
                    outcomes_sent = True
                if landed >= expected and joined >= labeled_expected:
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited; see {home / 'worker.log'}")
                time.sleep(1)
        elapsed = time.monotonic() - started
        time.sleep(3)  # the last batches' detections
        table = Table(
            title=f"drift detection through the worker ({expected:,} events published and taken in {elapsed:.0f} s)"
        )
        for column in ("scenario", "events", "alerts", "detection delay (events)", "false alarms / 1M", "missed"):
            table.add_column(column, justify="right" if column != "scenario" else "left")
        for scenario in plan:
            rows = client.execute(
                "SELECT signal, toUInt64(substring(request_id, 2)) FROM drift_alerts FINAL WHERE model = %(m)s "
                "ORDER BY event_ts",
                {"m": models[scenario.name]},
            )
            change = scenario.change if scenario.change is not None else scenario.events
            false = [r for r in rows if r[1] < change]
            caught = [r for r in rows if r[1] >= change]
            stationary_events = change
            delay = f"{caught[0][1] - change:,} ({caught[0][0]})" if caught else "-"
            table.add_row(
                scenario.name,
                f"{scenario.events:,}",
                str(len(rows)),
                delay,
                f"{len(false) / stationary_events * 1e6:.1f}",
                "-" if scenario.change is None else ("no" if caught else "MISSED"),
            )
        console.print(table)
    finally:
        worker.terminate()
        worker.wait(30)
        client.disconnect()
        local_stack.down(settings)


if __name__ == "__main__":
    main()
