"""Detection quality of the running worker on streams with known drift points.

    .venv/bin/python -m benchmarks.detection --stationary-events 1000000 [--only TEXT ...] [--spacing S]

Starts a private local stack and `driftloop worker`, publishes one model per scenario, waits until the worker has
taken every event, then reads the alerts from ClickHouse and prints per scenario: detection delay (events after
the true change), false alarms (alerts before the change) per million events, and whether the drift was missed.
Scenarios: stationary N(0,1) (10 features), stationary heavy-tailed features (lognormal, Pareto, Cauchy), and one
event in a hundred of them sending its amount in another unit, abrupt mean shifts, gradual ones over 2,000, 20,000
and 100,000 events, drifts one after another within a cooldown (a second feature's, a third one's, a feature's
move back, a correlation of two others, and the other way round), a variance change, a category shift, a
correlation flip, a correlation appearing between independent features, a new model version with no drift, a
covariate shift that lowers the classifier's estimated accuracy, and a concept drift on the label (River's Agrawal
generator switching its classification function under a fixed model), its labels sent once every prediction
landed, or each with its prediction at 2,000 events a second (then most outcomes come before their predictions are
written, and wait for them). The change point column is where the alert placed the change (its
``change_point_request_id``), in events from the true change. ``--only`` runs the scenarios whose names hold one
of its texts. ``--spacing``: the seconds of event time between two events (0.01: a cooldown of 900 s is 90,000
events; 1: 900 events); the alerts column says how many alerts each scenario made.

In the same run, River's ADWIN at its defaults is fed the same signal offline (the drifting feature's values,
its spread, the score, the mistakes; all ten features for the stationary stream), and its delay and false
alarms are printed beside the worker's, with the ratio of the delays.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table
from river import drift
from river.datasets import synth

from benchmarks import scratch_home
from benchmarks.ingest import worker_process
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import private_stack_env

console = Console(width=200)
CHANGE = 20_000
LIVE_RATE = 2000  # events a second of a scenario whose labels come with its predictions
TS0 = 1_790_000_000


Event = tuple[dict, object, object | None]  # features, prediction, label (or None); optional 4th: score, version


@dataclass(frozen=True)
class Scenario:
    name: str
    events: int
    change: int | None  # event index of the drift; None: no drift (every alert is a false one)
    make: Callable[[int], Iterator[Event]]
    labeled: bool = False
    #: each outcome sent with its prediction (a server that learns the truth at once), not once all landed,
    #: at :data:`LIVE_RATE` events a second: the worker takes them as they come, and most outcomes come before
    #: their predictions are written
    labels_at_once: bool = False
    #: what River's ADWIN is fed (one value per event per stream), None: no univariate counterpart
    river: Callable[[Event], list[float]] | None = None
    signal: str | None = None  # the alert that counts as the detection (None: any)
    earlier: int | None = None  # the event index of an earlier drift, whose alerts are not false ones


def feature(name: str) -> Callable[[Event], list[float]]:
    return lambda event: [event[0][name]]


def spread(name: str) -> Callable[[Event], list[float]]:
    return lambda event: [abs(event[0][name])]


def every_feature(event: Event) -> list[float]:
    return [v for v in event[0].values() if isinstance(v, float)]


def mistakes(event: Event) -> list[float]:
    return [float(event[1] != event[2])]


def score(event: Event) -> list[float]:
    return [event[3]]  # type: ignore[misc]


def gaussian(n: int, seed: int, shift: Callable[[int, int, random.Random], float] | None = None) -> Iterator:
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(10)}
        if shift:
            features["f0"] = shift(i, 0, rng)
        yield features, int(rng.random() < 0.5), None


def one_after_another(n: int, seed: int, gap: int, shifted: int = 2) -> Iterator:
    """Ten N(0,1) features; the first ``shifted`` of them moved by a deviation ``gap`` events apart, the last at
    ``CHANGE`` (drifts within the cooldown of the first's alert)."""
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(10)}
        for j in range(shifted):
            features[f"f{j}"] += i >= CHANGE - gap * (shifted - 1 - j)
        yield features, int(rng.random() < 0.5), None


def correlated_and_moved(n: int, seed: int, moved_at: int, correlated_at: int) -> Iterator:
    """Ten N(0,1) features; f0 moved by a deviation from ``moved_at`` on, and f8 and f9 correlated 0.8 from
    ``correlated_at`` on (the later a drift within the cooldown of the earlier's alert)."""
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(10)}
        features["f0"] += i >= moved_at
        if i >= correlated_at:
            features["f9"] = 0.8 * features["f8"] + 0.6 * features["f9"]
        yield features, int(rng.random() < 0.5), None


def moved_and_back(n: int, seed: int, gap: int) -> Iterator:
    """Ten N(0,1) features; f0 moved by a deviation at ``CHANGE - gap`` and back at ``CHANGE`` (a pipeline broken
    and mended: the move back comes while f0's next reference is learnt after its first alert)."""
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(10)}
        features["f0"] += CHANGE - gap <= i < CHANGE
        yield features, int(rng.random() < 0.5), None


def heavy_tailed(n: int, seed: int, units_at: int | None = None) -> Iterator:
    """An amount (lognormal, sigma 2), a duration (Pareto, alpha 1.5) and a ratio (Cauchy): stationary, with
    now and then a value far past anything before it; from ``units_at`` on, one event in a hundred sends its
    amount a thousand times too large (another unit)."""
    rng = random.Random(seed)
    for i in range(n):
        amount = math.exp(rng.gauss(3.0, 2.0))
        if units_at is not None and i >= units_at and rng.random() < 0.01:
            amount *= 1000
        ratio = math.tan(math.pi * (rng.random() - 0.5))
        yield {"amount": amount, "duration": rng.paretovariate(1.5) - 1.0, "ratio": ratio}, int(amount > 20), None


def categories(n: int, seed: int) -> Iterator:
    rng = random.Random(seed)
    for i in range(n):
        features: dict = {f"f{j}": rng.gauss(0, 1) for j in range(3)}
        features["channel"] = rng.choices(["web", "app", "shop"], [0.6, 0.3, 0.1] if i < CHANGE else [0.4, 0.3, 0.3])[0]
        yield features, int(rng.random() < 0.5), None


def correlation_change(n: int, seed: int, before: float, after: float) -> Iterator:
    """Ten N(0,1) features; f8 and f9 correlated ``before``, then ``after`` from the change on: no feature's own
    distribution changes, only how two of them move together."""
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(9)}
        rho = before if i < CHANGE else after
        features["f9"] = rho * features["f8"] + (1 - rho**2) ** 0.5 * rng.gauss(0, 1)
        yield features, int(rng.random() < 0.5), None


def many_small(n: int, seed: int, features: int = 20, shift: float = 0.1) -> Iterator:
    """``features`` N(0,1) features, each moved by ``shift`` deviations from the change on: too little for any
    one feature's chart, a shift of ``shift √features`` deviations together."""
    rng = random.Random(seed)
    for i in range(n):
        moved = shift if i >= CHANGE else 0.0
        yield {f"f{j:02d}": rng.gauss(moved, 1) for j in range(features)}, int(rng.random() < 0.5), None


def channel_amounts(n: int, seed: int) -> Iterator:
    """Amounts that stand apart by channel (N(+1, 1) on the web, N(-1, 1) in the app, N(0, 1) in store), then
    the other way round from the change on: neither the amounts' distribution nor the channels' shares move, only
    how the two relate; three unrelated N(0,1) features."""
    rng = random.Random(seed)
    for i in range(n):
        channel = rng.choices(["web", "app", "store"], [0.4, 0.4, 0.2])[0]
        side = {"web": 1.0, "app": -1.0, "store": 0.0}[channel] * (1 if i < CHANGE else -1)
        features: dict = {f"f{j}": rng.gauss(0, 1) for j in range(3)}
        features |= {"channel": channel, "amount": side + rng.gauss(0, 1)}
        yield features, int(rng.random() < 0.5), None


def regression(n: int, seed: int, spread_after: float) -> Iterator:
    """A regression model over five N(0,1) features predicting 100 + 10 f0 (noise included): from the change on
    its predictions' spread is ``spread_after`` times as large, their mean unchanged (a model that stopped
    telling its cases apart), the features as they were."""
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(5)}
        scale = 10.0 * (spread_after if i >= CHANGE else 1.0)
        yield features, 100 + scale * (0.8 * features["f0"] + 0.6 * rng.gauss(0, 1)), None


def scored(n: int, seed: int, *, shrink_at: int | None = None, version_at: int | None = None) -> Iterator:
    """A calibrated classifier, P(y=1) = sigmoid(2 f0), over five N(0,1) features; the event's score is the
    probability of the predicted class. ``shrink_at``: from there f0 crowds near 0 (sd 0.3, a covariate
    shift) where the model is unsure, so its estimated accuracy falls. ``version_at``: from there version 2
    (a sharper model, sigmoid(3 f0)) serves: its scores differ, and nothing drifts."""
    rng = random.Random(seed)
    for i in range(n):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(5)}
        if shrink_at is not None and i >= shrink_at:
            features["f0"] = rng.gauss(0, 0.3)
        version = 2 if version_at is not None and i >= version_at else 1
        p = 1 / (1 + math.exp(-(3.0 if version == 2 else 2.0) * features["f0"]))
        yield features, int(p > 0.5), None, max(p, 1 - p), version


def moving_centroids(n: int, seed: int, speed: float = 0.001) -> Iterator:
    """River's RandomRBF (ten features, twenty centroids), then from the change on RandomRBFDrift from the same
    centroids, each moving ``speed`` a step: the features' joint distribution drifts slowly; the prediction is
    the generator's class."""
    shape = {"seed_model": seed, "n_features": 10, "n_centroids": 20}
    before = synth.RandomRBF(seed_sample=seed, **shape)
    after = synth.RandomRBFDrift(seed_sample=seed + 1, change_speed=speed, n_drift_centroids=20, **shape)
    for stream, count in ((before, CHANGE), (after, n - CHANGE)):
        for x, y in stream.take(count):
            yield {f"x{k}": v for k, v in x.items()}, int(y), None


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


def gradual(width: int, seed: int) -> Scenario:
    return Scenario(
        f"gradual mean shift 0→1σ over {width:,}",
        CHANGE + width + 5_000,
        CHANGE,
        lambda n: gaussian(n, seed, lambda i, _, r: r.gauss(min(max(i - CHANGE, 0) / width, 1.0), 1)),
        river=feature("f0"),
    )


def scenarios(stationary: int) -> list[Scenario]:
    total = CHANGE + 5_000
    return [
        Scenario("stationary, 10 features", stationary, None, lambda n: gaussian(n, 1), river=every_feature),
        Scenario(
            "stationary, heavy tails (lognormal, Pareto, Cauchy)",
            stationary,
            None,
            lambda n: heavy_tailed(n, 13),
            river=every_feature,
        ),
        Scenario(
            "1% of amounts in another unit (x1000), heavy tails",
            total,
            CHANGE,
            lambda n: heavy_tailed(n, 14, units_at=CHANGE),
            river=feature("amount"),
        ),
        Scenario(
            "abrupt mean shift 1σ",
            total,
            CHANGE,
            lambda n: gaussian(n, 2, lambda i, _, r: r.gauss(1.0 if i >= CHANGE else 0.0, 1)),
            river=feature("f0"),
        ),
        Scenario(
            "abrupt mean shift 0.5σ",
            total,
            CHANGE,
            lambda n: gaussian(n, 3, lambda i, _, r: r.gauss(0.5 if i >= CHANGE else 0.0, 1)),
            river=feature("f0"),
        ),
        gradual(2_000, 4),
        gradual(20_000, 9),
        gradual(100_000, 10),
        Scenario(
            "variance 1→3σ",
            total,
            CHANGE,
            lambda n: gaussian(n, 5, lambda i, _, r: r.gauss(0, 3.0 if i >= CHANGE else 1.0)),
            river=spread("f0"),
        ),
        Scenario(
            "f0 turned uniform, mean and variance kept",
            total,
            CHANGE,
            lambda n: gaussian(n, 19, lambda i, _, r: r.uniform(-(3**0.5), 3**0.5) if i >= CHANGE else r.gauss(0, 1)),
            river=feature("f0"),
        ),
        Scenario(
            "f0 rounded to whole numbers",
            total,
            CHANGE,
            lambda n: gaussian(n, 20, lambda i, _, r: float(round(r.gauss(0, 1))) if i >= CHANGE else r.gauss(0, 1)),
            river=feature("f0"),
        ),
        Scenario("category shift", total, CHANGE, lambda n: categories(n, 6)),
        Scenario("correlation +0.8→-0.8 (joint)", total, CHANGE, lambda n: correlation_change(n, 8, 0.8, -0.8)),
        Scenario("correlation 0→+0.6, independent before", total, CHANGE, lambda n: correlation_change(n, 15, 0, 0.6)),
        Scenario("amounts by channel swapped", total, CHANGE, lambda n: channel_amounts(n, 16)),
        Scenario("20 features each +0.1σ", total, CHANGE, lambda n: many_small(n, 17)),
        Scenario("RandomRBF centroids moving (0.001)", total, CHANGE, lambda n: moving_centroids(n, 18)),
        Scenario(
            "f1 +1σ 500 events after f0 +1σ (within its alert's cooldown)",
            total,
            CHANGE,
            lambda n: one_after_another(n, 22, 500),
            river=feature("f1"),
            signal="f1",
            earlier=CHANGE - 500,
        ),
        Scenario(
            "f2 +1σ 400 events after f1 +1σ, 800 after f0 +1σ (a third drift within a cooldown: held to its end)",
            CHANGE + 100_000,  # events 0.01 s apart: the cooldown of f0's alert (900 s) ends 90,000 events after it
            CHANGE,
            lambda n: one_after_another(n, 23, 400, shifted=3),
            river=feature("f2"),
            signal="f2",
            earlier=CHANGE - 800,
        ),
        Scenario(
            "f8, f9 correlated 0→0.8 500 events after f0 +1σ (within its alert's cooldown)",
            total,
            CHANGE,
            lambda n: correlated_and_moved(n, 25, CHANGE - 500, CHANGE),
            signal="correlation",
            earlier=CHANGE - 500,
        ),
        Scenario(
            "f0 +1σ 500 events after f8, f9 correlated 0→0.8 (within the correlation alert's cooldown)",
            total,
            CHANGE,
            lambda n: correlated_and_moved(n, 26, CHANGE, CHANGE - 500),
            river=feature("f0"),
            signal="f0",
            earlier=CHANGE - 500,
        ),
        Scenario(
            "f0 +1σ, and back 400 events later (while its next reference is learnt: held to the cooldown's end)",
            CHANGE + 100_000,  # events 0.01 s apart: the cooldown of the first alert (900 s) ends 90,000 events on
            CHANGE,
            lambda n: moved_and_back(n, 24, 400),
            river=feature("f0"),
            signal="f0",
            earlier=CHANGE - 400,
        ),
        Scenario(
            "regression predictions crowd near their mean (deviation 10 → 3)",
            total,
            CHANGE,
            lambda n: regression(n, 21, 0.3),
            river=lambda event: [event[1]],
        ),
        Scenario("new version v1→v2, no drift", total, None, lambda n: scored(n, 11, version_at=CHANGE), river=score),
        Scenario(
            "covariate shift, estimated accuracy falls",
            total,
            CHANGE,
            lambda n: scored(n, 12, shrink_at=CHANGE),
            river=score,
            signal="score",
        ),
        Scenario(
            "concept drift (Agrawal 0→2), labeled",
            total,
            CHANGE,
            lambda n: concept(n, 7),
            labeled=True,
            river=mistakes,
        ),
        Scenario(
            "concept drift (Agrawal 0→2), each label sent with its prediction",
            total,
            CHANGE,
            lambda n: concept(n, 9),
            labeled=True,
            labels_at_once=True,
            river=mistakes,
        ),
    ]


@dataclass(frozen=True)
class RiverResult:
    delay: int | None  # events after the change to ADWIN's first detection there (None: none)
    false_alarms: int  # detections before the change, over every stream fed


def river_adwin(scenario: Scenario) -> RiverResult | None:
    """River's ADWIN at its defaults, one per stream of ``scenario.river`` (the same values the worker saw)."""
    if scenario.river is None:
        return None
    change = scenario.change if scenario.change is not None else scenario.events
    detectors: list[drift.ADWIN] = []
    delay, false_alarms = None, 0
    for i, event in enumerate(scenario.make(scenario.events)):
        values = scenario.river(event)
        while len(detectors) < len(values):
            detectors.append(drift.ADWIN())
        for detector, value in zip(detectors, values, strict=False):
            detector.update(value)
            if detector.drift_detected:
                if i < change:
                    false_alarms += 1
                elif delay is None:
                    delay = i - change
    return RiverResult(delay, false_alarms)


def publish(
    settings: Settings, model: str, scenario: Scenario, *, spacing: float = 0.01, outcomes_only: bool = False
) -> None:
    """Publish the scenario's predictions, ``spacing`` seconds of event time apart (and with ``labels_at_once``
    each one's outcome right after it, in the next envelope of outcomes), or (later: labels arrive after
    predictions) its outcomes."""
    producer = KafkaProducer(
        **settings.kafka_python_config(), linger_ms=20, batch_size=1 << 20, max_request_size=8 << 20
    )
    predictions: list[str] = []
    outcomes: list[str] = []
    started = time.monotonic()

    def flush() -> None:
        for topic, batch in ((settings.topics.predictions, predictions), (settings.topics.outcomes, outcomes)):
            if batch:
                producer.send(topic, ('{"events":[' + ",".join(batch) + "]}").encode(), key=model.encode())
                batch.clear()

    for i, (features, prediction, label, *extra) in enumerate(scenario.make(scenario.events)):
        if not outcomes_only:
            event = {"model": model, "request_id": f"r{i}", "ts": TS0 + i * spacing, "features": features}
            event["prediction"] = prediction
            if extra:
                event["score"], event["model_version"] = extra
            predictions.append(json.dumps(event))
        if label is not None and outcomes_only != scenario.labels_at_once:
            outcomes.append(
                json.dumps({"model": model, "request_id": f"r{i}", "ts": TS0 + i * spacing + 5, "label": int(label)})
            )
        if scenario.labels_at_once and not outcomes_only and i % 100 == 99:
            flush()  # envelopes of 100, at the live rate
            time.sleep(max(0.0, started + (i + 1) / LIVE_RATE - time.monotonic()))
        if len(predictions) >= 500 or len(outcomes) >= 500:
            flush()
    flush()
    producer.flush()
    producer.close()


def wait_for_detection(client: Any, scenarios: dict[str, Scenario], worker: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Until every model's saved detector state has seen all its events (and labels): the detection process
    runs behind the landing of events."""
    while True:
        done = set()
        seen: dict[str, Counter[str]] = defaultdict(Counter)  # model -> events and labels over its partitions
        query = "SELECT model, argMax(state, revision) FROM detector_state GROUP BY model, partition"
        for model, raw in client.execute(query):
            state = json.loads(raw) or {}
            seen[model].update({"events": state.get("events", 0), "labeled": state.get("labeled", 0)})
        for model, counts in seen.items():
            scenario = scenarios.get(model)
            labeled = not scenario or not scenario.labeled or counts["labeled"] >= scenario.events
            if scenario and counts["events"] >= scenario.events and labeled:
                done.add(model)
        if done >= set(scenarios):
            return
        if worker.poll() is not None:
            raise RuntimeError("the worker exited before detection was done")
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stationary-events", type=int, default=1_000_000)
    parser.add_argument("--only", action="append", default=[], help="the scenarios whose names hold this text")
    parser.add_argument("--spacing", type=float, default=0.01, help="seconds of event time between two events")
    args = parser.parse_args()
    with scratch_home("driftloop-detect-") as home:
        env = private_stack_env(home, prefix="detect.") | {
            "DRIFTLOOP_BATCH_MAX_WAIT_S": "0.2",
            "DRIFTLOOP_DETECTOR_STATE_INTERVAL_S": "1",  # how far detection has come: its saved state says
        }
        settings = Settings.from_env(env)
        with (
            local_stack.running(settings),
            connect(settings.clickhouse) as client,
            worker_process(env, home / "worker.log") as worker,
        ):
            plan = [
                s for s in scenarios(args.stationary_events) if not args.only or any(t in s.name for t in args.only)
            ]
            models = {s.name: f"scenario-{k}" for k, s in enumerate(plan)}
            started = time.monotonic()
            with console.status("publishing scenarios (the worker takes them as they come)"):
                for scenario in plan:
                    publish(settings, models[scenario.name], scenario, spacing=args.spacing)
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
                            if scenario.labeled and not scenario.labels_at_once:
                                publish(
                                    settings, models[scenario.name], scenario, spacing=args.spacing, outcomes_only=True
                                )
                        outcomes_sent = True
                    if landed >= expected and joined >= labeled_expected:
                        break
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker exited; see {home / 'worker.log'}")
                    time.sleep(1)
            elapsed = time.monotonic() - started
            with console.status("the detectors are taking the last events"):
                wait_for_detection(client, {models[s.name]: s for s in plan}, worker)
            taken = (
                f"{expected:,} events {args.spacing:g} s of event time apart, published and taken in {elapsed:.0f} s"
            )
            table = Table(title=f"drift detection through the worker ({taken})")
            columns = (
                "scenario",
                "events",
                "alerts",
                "delay (events)",
                "change point (events)",
                "false alarms / 1M",
                "missed",
                "ADWIN delay",
                "ADWIN false alarms / 1M",
                "delay / ADWIN's",
            )
            for column in columns:
                table.add_column(column, justify="right" if column != "scenario" else "left")
            notes = []
            with console.status("River's ADWIN at its defaults on the same signals"):
                river = {scenario.name: river_adwin(scenario) for scenario in plan}
            for scenario in plan:
                rows = client.execute(
                    "SELECT signal, toUInt64(substring(request_id, 2)), evidence, "
                    "toInt64(substring(change_point_request_id, 2)), event_ts_ms FROM drift_alerts FINAL "
                    "WHERE model = %(m)s ORDER BY event_ts",
                    {"m": models[scenario.name]},
                )
                total = scenario.events
                change = scenario.change if scenario.change is not None else total
                false = [r for r in rows if r[1] < (change if scenario.earlier is None else scenario.earlier)]
                caught = [r for r in rows if r[1] >= change and scenario.signal in (None, r[0])]
                delay = caught[0][1] - change if caught else None
                adwin = river[scenario.name]
                ratio = "-"
                if adwin is not None and adwin.delay is not None and delay is not None and scenario.change is not None:
                    ratio = f"{delay / max(adwin.delay, 1):.2f}"
                table.add_row(
                    scenario.name,
                    f"{scenario.events:,}",
                    str(len(rows)),
                    f"{delay:,} ({caught[0][0]})" if caught else "-",
                    f"{caught[0][3] - change:+,}" if caught else "-",
                    f"{len(false) / change * 1e6:.1f}",
                    "-" if scenario.change is None else ("no" if caught else "MISSED"),
                    "n/a"
                    if adwin is None
                    else f"{adwin.delay:,}"
                    if adwin.delay is not None and change < total
                    else "-",
                    "n/a" if adwin is None else f"{adwin.false_alarms / change * 1e6:.1f}",
                    ratio,
                )
                if len(rows) > 1:  # which, where (events from the change) and their changes placed
                    made = ", ".join(f"{r[0]} at {r[1] - change:+,} (change {r[3] - change:+,})" for r in rows)
                    notes.append(f"{scenario.name}: {len(rows)} alerts: {made}")
                for signal, _, evidence, _, event_ts_ms in caught[:1]:
                    estimate = json.loads(evidence)
                    if "held_until_ts" in estimate:
                        held = estimate["held_until_ts"] - event_ts_ms / 1000
                        notes.append(
                            f"{scenario.name}: the {signal} alert was held back {held:,.0f} s of event time by the "
                            "alert policy, and went out when the cooldown of the alerts before it ended"
                        )
                    if "estimated_accuracy_before" in estimate:
                        before, after = estimate["estimated_accuracy_before"], estimate["estimated_accuracy_after"]
                        notes.append(
                            f"{scenario.name}: the {signal} alert estimates accuracy (CBPE, before any label) "
                            f"{before:.3f} → {after:.3f}"
                        )
            console.print(table)
            for note in notes:
                console.print(note)


if __name__ == "__main__":
    main()
