"""Drift detection in the running worker: alerts reach Kafka, ClickHouse and a webhook; state survives restarts."""

from __future__ import annotations

import json
import math
import random
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from driftloop.analytics.queries import pair_values
from driftloop.infra.clickhouse.client import connect
from driftloop.streams.drift.backtest import backtest
from driftloop.streams.drift.subscribers import WebhookForwarder, alert_stream, forward_alerts
from driftloop.streams.producer import EventProducer
from tests.stack_fixtures import PrivateStack, WorkerProcess, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("specs")


@pytest.fixture(scope="module")
def drift_stack(stack: PrivateStack, specs: Path) -> PrivateStack:
    return stack.with_env(
        DRIFTLOOP_SPECS_DIR=str(specs), DRIFTLOOP_DETECTOR_STATE_INTERVAL_S="1", DRIFTLOOP_BATCH_MAX_WAIT_S="0.2"
    )


@pytest.fixture()
def group() -> str:
    """A consumer group of the test's own: members other tests left behind cannot slow its joins."""
    return "drift-tests-" + uuid.uuid4().hex[:8]


@pytest.fixture()
def worker(drift_stack: PrivateStack, tmp_path: Path, group: str) -> Iterator[WorkerProcess]:
    process = WorkerProcess(drift_stack, tmp_path / "worker.log", DRIFTLOOP_WORKER_GROUP=group)
    yield process
    process.stop()


def spec(specs: Path, warmup: int) -> str:
    model = "drift-" + uuid.uuid4().hex[:8]
    (specs / f"{model}.toml").write_text(f'name = "{model}"\n[monitoring]\nwarmup = {warmup}\n')
    return model


def send(stack: PrivateStack, model: str, start: int, n: int, shift: float = 0.0) -> None:
    rng = random.Random(start)
    with EventProducer(stack.settings, max_events=200) as producer:
        for i in range(start, start + n):
            features = {f"f{j}": rng.gauss(shift if j == 0 else 0.0, 1) for j in range(4)}
            producer.emit_prediction(
                model, request_id=f"r{i}", features=features, prediction=int(rng.random() < 0.5), ts=1_790_000_000 + i
            )


def alerts_in_clickhouse(stack: PrivateStack, model: str) -> list[tuple]:
    return connect(stack.settings.clickhouse).execute(
        "SELECT signal, kind, detector, request_id, change_point_request_id, message "
        "FROM drift_alerts FINAL WHERE model = %(m)s ORDER BY event_ts",
        {"m": model},
    )


class Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(json.loads(body) | {"_key": self.headers["Idempotency-Key"]})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_alert_reaches_kafka_clickhouse_and_a_webhook(
    drift_stack: PrivateStack, worker: WorkerProcess, specs: Path
) -> None:
    model = spec(specs, warmup=500)
    send(drift_stack, model, 0, 2000)
    send(drift_stack, model, 2000, 400, shift=2.0)
    rows = wait_for(lambda: alerts_in_clickhouse(drift_stack, model), timeout_s=150, what="the alert in ClickHouse")
    assert [(r[0], r[1], r[2]) for r in rows] == [("f0", "data", "CUSUM")]
    assert 2000 <= int(rows[0][3][1:]) < 2100 and abs(int(rows[0][4][1:]) - 2000) <= 20

    on_kafka = [
        a for a, _ in alert_stream(drift_stack.settings, from_beginning=True, idle_timeout_s=5) if a.model == model
    ]
    assert [a.signal for a in on_kafka] == ["f0"] and on_kafka[0].message == rows[0][5]

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        forward_alerts(drift_stack.settings, WebhookForwarder([url]), from_beginning=True, idle_timeout_s=3)
    finally:
        server.shutdown()
    delivered = [r for r in Receiver.received if r["model"] == model]
    assert len(delivered) == 1 and delivered[0]["text"] == rows[0][5]
    assert delivered[0]["_key"] == on_kafka[0].alert_id and delivered[0]["kind"] == "data"

    report = backtest(drift_stack.settings, model)
    assert report.predictions == 2400 and [a.signal for a in report.alerts] == ["f0"]
    assert report.alerts[0].request_id == rows[0][3]


def test_a_third_drift_within_a_cooldown_is_held_back_and_reaches_clickhouse_when_the_cooldown_ends(
    drift_stack: PrivateStack, worker: WorkerProcess, specs: Path
) -> None:
    """Events a second apart, a cooldown of 300 s: f0, f1 and f2 move by two deviations 100 events apart. The
    cooldown lets f1 through as a new drift, and f2's detection was dropped (its chart took the shifted values
    for its next reference: never reported). Through the worker, the alert gate and ClickHouse now: three
    alerts, f2's placed at its own detection and change, recorded with the event time it went out at, after
    f0's cooldown ended."""
    model = "drift-" + uuid.uuid4().hex[:8]
    (specs / f"{model}.toml").write_text(f'name = "{model}"\n[monitoring]\nwarmup = 500\ncooldown_s = 300\n')
    rng = random.Random(7)
    with EventProducer(drift_stack.settings, max_events=200) as producer:
        for i in range(1800):
            features = {f"f{j}": rng.gauss(2.0 if j < 3 and i >= 1000 + 100 * j else 0.0, 1) for j in range(4)}
            producer.emit_prediction(model, request_id=f"r{i}", features=features, prediction=0, ts=1_790_000_000 + i)

    def three() -> list[tuple]:
        rows = connect(drift_stack.settings.clickhouse).execute(
            "SELECT signal, toUInt64(substring(request_id, 2)), toUInt64(substring(change_point_request_id, 2)), "
            "event_ts_ms, visitParamExtractFloat(evidence, 'held_until_ts') FROM drift_alerts FINAL "
            "WHERE model = %(m)s ORDER BY event_ts",
            {"m": model},
        )
        return rows if len(rows) >= 3 else []

    rows = wait_for(three, timeout_s=150, what="three alerts in ClickHouse")
    assert [r[0] for r in rows] == ["f0", "f1", "f2"]
    for j, (_, at, change, _, _) in enumerate(rows):
        assert 0 <= at - (1000 + 100 * j) < 60 and abs(int(change) - (1000 + 100 * j)) <= 20
    (*_, first_ms, _), (*_, f1_held), (*_, detected_ms, held_until) = rows
    assert f1_held == 0 and held_until >= first_ms / 1000 + 300 > detected_ms / 1000


def test_a_spec_edited_while_the_worker_runs_is_taken(
    drift_stack: PrivateStack, specs: Path, tmp_path: Path, group: str
) -> None:
    """A model changes hands while the worker runs: its spec gains an owner and a runbook. The worker kept the spec
    it first read (alerts without them) until it was restarted. ``model_specs`` shows the spec in force: the first,
    the edited one, and the defaults once the file is removed."""
    stack = drift_stack.with_env(DRIFTLOOP_SPEC_RECHECK_S="0")  # looked at every batch: no timer to wait for
    model = spec(specs, warmup=500)
    worker = WorkerProcess(stack, tmp_path / "worker.log", DRIFTLOOP_WORKER_GROUP=group)
    try:
        send(stack, model, 0, 2000)

        def watched() -> bool:  # the detector state saved: the worker read the spec and watches the model
            rows = connect(stack.settings.clickhouse).execute(
                "SELECT max(events) FROM detector_state WHERE model = %(m)s", {"m": model}
            )
            return bool(rows and rows[0][0] >= 2000)

        wait_for(watched, timeout_s=150, what="the model watched")
        first = ("", "", 1)  # SQL reads the spec in force: no owner yet
        wait_for(lambda: recorded_spec(stack, model) == first, timeout_s=60, what="the spec in model_specs")
        (specs / f"{model}.toml").write_text(
            f'name = "{model}"\nowner = "payments-oncall"\nrunbook = "https://wiki.example.com/{model}"\n'
            "[monitoring]\nwarmup = 500\n"
        )
        send(stack, model, 2000, 400, shift=2.0)
        wait_for(lambda: alerts_in_clickhouse(stack, model), timeout_s=150, what="the alert in ClickHouse")
        edited = ("payments-oncall", f"https://wiki.example.com/{model}", 1)
        wait_for(lambda: recorded_spec(stack, model) == edited, timeout_s=60, what="the edited spec in model_specs")
        (specs / f"{model}.toml").unlink()  # the model goes back to the defaults
        send(stack, model, 2400, 100)
        wait_for(lambda: recorded_spec(stack, model) == ("", "", 0), timeout_s=60, what="the defaults in model_specs")
    finally:
        worker.stop()
    on_kafka = [a for a, _ in alert_stream(stack.settings, from_beginning=True, idle_timeout_s=5) if a.model == model]
    assert [(a.signal, a.owner, a.runbook) for a in on_kafka] == [
        ("f0", "payments-oncall", f"https://wiki.example.com/{model}")
    ]


def recorded_spec(stack: PrivateStack, model: str) -> tuple[str, str, int] | None:
    """The model's spec in force as SQL reads it (``model_specs``): owner, runbook, whether it has a spec file."""
    rows = connect(stack.settings.clickhouse).execute(
        "SELECT owner, runbook, spec_file FROM model_specs FINAL WHERE model = %(m)s", {"m": model}
    )
    return rows[0] if rows else None


def test_detector_state_survives_a_worker_restart(
    drift_stack: PrivateStack, specs: Path, tmp_path: Path, group: str
) -> None:
    model = spec(specs, warmup=2500)  # a detector starting afresh after the restart could not alert in time
    first = WorkerProcess(drift_stack, tmp_path / "first.log", DRIFTLOOP_WORKER_GROUP=group)
    try:
        send(drift_stack, model, 0, 3000)

        def saved_events() -> int:
            rows = connect(drift_stack.settings.clickhouse).execute(
                "SELECT max(events) FROM detector_state WHERE model = %(m)s", {"m": model}
            )
            return rows[0][0] if rows else 0

        wait_for(lambda: saved_events() >= 3000, timeout_s=150, what="the detector state saved")
    finally:
        first.stop()
    second = WorkerProcess(drift_stack, tmp_path / "second.log", DRIFTLOOP_WORKER_GROUP=group)
    try:
        send(drift_stack, model, 3000, 600, shift=2.0)
        rows = wait_for(lambda: alerts_in_clickhouse(drift_stack, model), timeout_s=150, what="the alert after restart")
        assert [r[0] for r in rows] == ["f0"] and int(rows[0][3][1:]) >= 3000  # nothing re-alerted on old data
    finally:
        second.stop()


def send_scored(stack: PrivateStack, model: str, start: int, n: int, *, version: int, sharpness: float) -> None:
    """A calibrated classifier's events: P(y=1) = sigmoid(sharpness * f0); the score is that of the predicted
    class (a sharper model scores higher, and nothing about the data changes)."""
    rng = random.Random(start)
    with EventProducer(stack.settings, max_events=200) as producer:
        for i in range(start, start + n):
            features = {f"f{j}": rng.gauss(0, 1) for j in range(3)}
            p = 1 / (1 + math.exp(-sharpness * features["f0"]))
            producer.emit_prediction(
                model,
                request_id=f"r{i}",
                features=features,
                prediction=int(p > 0.5),
                score=max(p, 1 - p),
                model_version=version,
                ts=1_790_000_000 + i,
            )


def detected_events(stack: PrivateStack, model: str) -> int:
    rows = connect(stack.settings.clickhouse).execute(
        "SELECT argMax(events, revision) FROM detector_state WHERE model = %(m)s GROUP BY model", {"m": model}
    )
    return int(rows[0][0]) if rows else 0


def test_a_deployment_through_the_worker_is_not_a_drift(
    drift_stack: PrivateStack, worker: WorkerProcess, specs: Path
) -> None:
    """v1 serves 2,500 events, then v2 (sharper scores) 2,500: no prediction alert. The same change of scores
    within one version (the control) is one: the scores' shift is there to be seen."""
    deployed, control = spec(specs, warmup=500), spec(specs, warmup=500)
    send_scored(drift_stack, deployed, 0, 2500, version=1, sharpness=2.0)
    send_scored(drift_stack, deployed, 2500, 2500, version=2, sharpness=5.0)
    send_scored(drift_stack, control, 0, 2500, version=1, sharpness=2.0)
    send_scored(drift_stack, control, 2500, 2500, version=1, sharpness=5.0)
    rows = wait_for(lambda: alerts_in_clickhouse(drift_stack, control), timeout_s=150, what="the control's alert")
    assert [(r[0], r[1]) for r in rows][:1] == [("score", "prediction")]
    wait_for(lambda: detected_events(drift_stack, deployed) >= 5000, timeout_s=60, what="detection of every event")
    assert [r for r in alerts_in_clickhouse(drift_stack, deployed) if r[1] == "prediction"] == []


def test_a_silenced_model_s_alert_is_recorded_and_not_published(
    drift_stack: PrivateStack, worker: WorkerProcess, specs: Path
) -> None:
    """`driftloop alerts silence --model M --for 2h`: the drift is detected and its alert is in drift_alerts,
    marked silenced, and not on the alerts topic (no subscriber, no retraining hears of it); the same drift of
    a model not silenced (the control) is on the topic."""
    model, control = spec(specs, warmup=500), spec(specs, warmup=500)
    result = drift_stack.run_cli("alerts", "silence", "--model", model, "--for", "2h", "--reason", "migration")
    assert result.returncode == 0, result.stderr
    listed = drift_stack.run_cli("alerts", "silences", "--json")
    assert [json.loads(line)["reason"] for line in listed.stdout.splitlines() if model in line] == ["migration"]
    for name in (model, control):
        send(drift_stack, name, 0, 2000)
        send(drift_stack, name, 2000, 400, shift=2.0)

    def recorded() -> dict[str, int]:
        rows = connect(drift_stack.settings.clickhouse).execute(
            "SELECT model, max(silenced) FROM drift_alerts FINAL WHERE model IN %(m)s GROUP BY model",
            {"m": (model, control)},
        )
        return dict(rows) if len(rows) == 2 else {}

    assert wait_for(recorded, timeout_s=150, what="both alerts in ClickHouse") == {model: 1, control: 0}
    published = {a.model for a, _ in alert_stream(drift_stack.settings, from_beginning=True, idle_timeout_s=3)}
    assert control in published and model not in published


def test_a_correlation_that_appears_is_an_alert_naming_the_pair_and_the_report_draws_it(
    drift_stack: PrivateStack, worker: WorkerProcess, specs: Path, tmp_path: Path
) -> None:
    """Four independent N(0,1) features, then f2 and f3 correlated 0.8 from request 5,000 on (each stays N(0,1));
    and, of a second model, amounts high on the web and low in the app, then the other way round (the amounts'
    distribution and the channels' shares unchanged). Each model's alert is on ``correlation``, naming the pair
    (the channel with its category) and both correlations in its evidence, and ``driftloop report`` draws the
    pair before and after the change point (the two numbers against each other; the amount by channel)."""
    numbers, channels = spec(specs, warmup=500), spec(specs, warmup=500)
    rng = random.Random(7)
    with EventProducer(drift_stack.settings, max_events=500) as producer:
        for i in range(8000):
            features = {f"f{j}": rng.gauss(0, 1) for j in range(4)}
            if i >= 5000:
                features["f3"] = 0.8 * features["f2"] + 0.6 * features["f3"]
            producer.emit_prediction(numbers, request_id=f"r{i}", features=features, prediction=0, ts=1_790_000_000 + i)
            channel = rng.choice(["web", "app", "store"])
            side = {"web": 1.0, "app": -1.0, "store": 0.0}[channel] * (1 if i < 5000 else -1)
            features = {"channel": channel, "amount": side + rng.gauss(0, 1), "x": rng.gauss(0, 1)}
            producer.emit_prediction(
                channels, request_id=f"r{i}", features=features, prediction=0, ts=1_790_000_000 + i
            )
    client = connect(drift_stack.settings.clickhouse)
    for model, pair, categories in ((numbers, ["f2", "f3"], [None, None]), (channels, ["amount", "channel"], None)):
        rows = wait_for(
            lambda m=model: alerts_in_clickhouse(drift_stack, m), timeout_s=150, what="the alert in ClickHouse"
        )
        assert [(r[0], r[1]) for r in rows[:1]] == [("correlation", "data")] and 5000 <= int(rows[0][3][1:]) < 6000
        (evidence,) = client.execute(
            "SELECT evidence FROM drift_alerts FINAL WHERE model = %(m)s AND signal = 'correlation'", {"m": model}
        )[0]
        first = json.loads(evidence)["pairs"][0]
        assert first["features"] == pair and abs(first["recent"] - first["reference"]) > 0.5
        assert first["categories"] == categories or first["categories"][1] in ("web", "app")
        out = tmp_path / f"{model}.html"
        result = drift_stack.run_cli("report", "--model", model, "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert f'alt="{pair[0]} and {pair[1]} before/after"' in out.read_text()
    before, after = pair_values(drift_stack.settings, channels, ("amount", "channel"), 1_790_000_000, 1_790_005_000,
                                1_790_008_000)  # fmt: skip
    assert len(before) == 5000 and len(after) == 3000  # the report's halves: a number and texts, by channel
    assert after.groupby("channel")["amount"].mean().round().to_dict() == {"app": 1.0, "store": 0.0, "web": -1.0}


def test_many_features_moving_a_little_together_are_a_mean_shift_and_the_report_draws_two_of_them(
    drift_stack: PrivateStack, worker: WorkerProcess, specs: Path, tmp_path: Path
) -> None:
    """Twenty N(0,1) features, each moved 0.15σ from request 5,000 on (too little for each one's chart): the
    worker's first alert is on ``mean_shift``, its evidence names the five features whose means moved most, each
    by about that, and ``driftloop report`` draws the first two before and after the change point."""
    model = spec(specs, warmup=500)
    rng = random.Random(8)
    with EventProducer(drift_stack.settings, max_events=500) as producer:
        for i in range(9000):
            moved = 0.15 if i >= 5000 else 0.0
            features = {f"f{j:02d}": rng.gauss(moved, 1) for j in range(20)}
            producer.emit_prediction(model, request_id=f"r{i}", features=features, prediction=0, ts=1_790_000_000 + i)
    rows = wait_for(lambda: alerts_in_clickhouse(drift_stack, model), timeout_s=150, what="the alert in ClickHouse")
    assert [(r[0], r[1]) for r in rows[:1]] == [("mean_shift", "data")] and 5000 <= int(rows[0][3][1:]) < 7000
    (evidence,) = connect(drift_stack.settings.clickhouse).execute(
        "SELECT evidence FROM drift_alerts FINAL WHERE model = %(m)s AND signal = 'mean_shift'", {"m": model}
    )[0]
    shifts = json.loads(evidence)["shifts"]
    assert len(shifts) == 5 and all(0.05 < s["sigmas"] < 0.5 and s["feature"].startswith("f") for s in shifts)
    out = tmp_path / "report.html"
    result = drift_stack.run_cli("report", "--model", model, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert all(f'alt="{s["feature"]} before/after"' in out.read_text() for s in shifts[:2])


def test_a_feature_rounded_to_whole_numbers_is_a_shape_alert_and_the_report_draws_it(
    drift_stack: PrivateStack, worker: WorkerProcess, specs: Path, tmp_path: Path
) -> None:
    """Four N(0,1) features, f0 rounded to whole numbers from request 5,000 on (its mean and variance kept): the
    worker's first alert is on ``f0:shape``, its evidence's bins (ten, open at both ends) say the bin of 0 filled,
    and ``driftloop report`` draws f0 before and after the change point. The events come in three parts, each
    detected before the next is sent: a shape signal starts at the part after its feature's reference is learnt
    (the first), and learns its own from the next 2,000 values (the second)."""
    model = spec(specs, warmup=500)
    rng = random.Random(9)
    client = connect(drift_stack.settings.clickhouse)
    for start, end in ((0, 1000), (1000, 5000), (5000, 7000)):
        with EventProducer(drift_stack.settings, max_events=500) as producer:
            for i in range(start, end):
                features = {f"f{j}": rng.gauss(0, 1) for j in range(4)}
                if i >= 5000:
                    features["f0"] = float(round(features["f0"]))
                producer.emit_prediction(
                    model, request_id=f"r{i}", features=features, prediction=0, ts=1_790_000_000 + i
                )
        wait_for(
            lambda end=end: (
                client.execute("SELECT max(events) FROM detector_state FINAL WHERE model = %(m)s", {"m": model})[0][0]
                >= end
            ),
            timeout_s=120,
            what=f"the first {end:,} events detected",
        )
    rows = wait_for(lambda: alerts_in_clickhouse(drift_stack, model), timeout_s=150, what="the alert in ClickHouse")
    assert [(r[0], r[1], r[2]) for r in rows[:1]] == [("f0:shape", "data", "CategoricalShift")]
    assert 5000 <= int(rows[0][3][1:]) < 6000
    (evidence,) = client.execute(
        "SELECT evidence FROM drift_alerts FINAL WHERE model = %(m)s AND signal = 'f0:shape'", {"m": model}
    )[0]
    bins = json.loads(evidence)["bins"]
    assert len(bins) == 10 and bins[0]["low"] is None and bins[-1]["high"] is None
    zero = next(b for b in bins if b["low"] is not None and b["low"] < 0 <= b["high"])
    assert zero["recent"] > zero["reference"] + 0.05
    out = tmp_path / "report.html"
    result = drift_stack.run_cli("report", "--model", model, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert 'alt="f0 before/after"' in out.read_text()
