"""Failure scenarios against the real local stack, sized by the caller: small in `make test`, large in `make soak`.

Each scenario produces a known set of events, breaks something on purpose while the worker runs, waits
for the catch-up and returns a :class:`SoakResult` counted from ClickHouse query results.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from benchmarks.cpu import descendants
from benchmarks.cpu import rss_mb as process_rss_mb
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.kafka.lag import group_lag
from driftloop.infra.kafka.topics import describe_topics
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.drift.subscribers import alert_stream
from driftloop.streams.producer import Delivery, EventProducer
from tests.stack_fixtures import PrivateStack, WorkerProcess, private_stack_env, wait_for

WORKER_ENV = {
    "DRIFTLOOP_BATCH_MAX_WAIT_S": "0.2",
    "DRIFTLOOP_DETECTOR_STATE_INTERVAL_S": "1",
    "DRIFTLOOP_JOIN_SWEEP_INTERVAL_S": "0.5",
    "DRIFTLOOP_LOG_LEVEL": "INFO",
}


@dataclass
class SoakResult:
    """One scenario's ledger: what was sent, what ClickHouse shows, what was broken."""

    scenario: str
    events_sent: int
    predictions_landed: int = 0
    labeled_landed: int = 0
    duplicates: int = 0  # event_ids seen more than once in query results (FINAL)
    faults: int = 0
    worker_restarts: int = 0
    max_rss_mb: float = 0.0
    alerts: int = 0
    detector_events: int = 0  # events the model's restored detectors have seen in total
    lost: int | None = None  # events lost with a broker's memory; None where nothing can be lost
    committed_during_outage: int | None = None  # offsets committed while ClickHouse was down
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def isolated(stack: PrivateStack, name: str, **env: str) -> PrivateStack:
    """The stack with a topic prefix, database and consumer group of the scenario's own (and ``env``),
    provisioned."""
    tag = f"{name}_{uuid.uuid4().hex[:6]}"
    url = stack.env["DRIFTLOOP_CLICKHOUSE_URL"].rsplit("/", 1)[0] + f"/{tag}"
    private = stack.with_env(
        DRIFTLOOP_TOPIC_PREFIX=f"{tag}.", DRIFTLOOP_CLICKHOUSE_URL=url, DRIFTLOOP_WORKER_GROUP=f"{tag}-workers", **env
    )
    local_stack.up(private.settings)
    return private


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it (the worker and its child processes)."""
    return process_rss_mb(descendants(pid))


def produce(
    stack: PrivateStack,
    model: str,
    n: int,
    rate: float | None = None,
    on_delivery: Callable[[Delivery], None] | None = None,
) -> None:
    """``n`` stationary predictions with an outcome each; request ids r0..r{n-1}; about ``rate`` events/s."""
    rng = random.Random(7)
    start = time.monotonic()
    with EventProducer(stack.settings, max_events=200, on_delivery=on_delivery) as producer:
        for i in range(n):
            x = rng.gauss(0, 1)
            producer.emit_prediction(
                model, request_id=f"r{i}", features={"x": x, "y": rng.gauss(0, 1)}, prediction=int(x > 0),
                ts=1_790_000_000 + i / 100,
            )  # fmt: skip
            producer.emit_outcome(model, request_id=f"r{i}", label=int(x > 0), ts=1_790_000_000 + i / 100 + 1)
            if rate and i % 500 == 0:
                time.sleep(max(0.0, i / rate - (time.monotonic() - start)))


def ledger(stack: PrivateStack, model: str, result: SoakResult) -> SoakResult:
    client = connect(stack.settings.clickhouse)
    try:
        p = {"m": model}
        ids = client.execute("SELECT event_id FROM predictions FINAL WHERE model = %(m)s", p)
        result.predictions_landed = len({i for (i,) in ids})
        labeled = client.execute("SELECT event_id FROM labeled FINAL WHERE model = %(m)s", p)
        result.labeled_landed = len({i for (i,) in labeled})
        result.duplicates = (len(ids) - result.predictions_landed) + (len(labeled) - result.labeled_landed)
        result.alerts = client.execute("SELECT count() FROM drift_alerts FINAL WHERE model = %(m)s", p)[0][0]
        result.detector_events = detector_events(client, model)
    finally:
        client.disconnect()
    return result


def wait_until_landed(stack: PrivateStack, model: str, n: int, alive: Callable[[], None], timeout_s: float) -> None:
    def done() -> bool:
        alive()
        client = connect(stack.settings.clickhouse)
        try:
            p = {"m": model}
            predictions = client.execute("SELECT uniqExact(event_id) FROM predictions WHERE model = %(m)s", p)[0][0]
            labeled = client.execute("SELECT uniqExact(event_id) FROM labeled WHERE model = %(m)s", p)[0][0]
        finally:
            client.disconnect()
        return predictions >= n and labeled >= n

    wait_for(done, timeout_s=timeout_s, interval_s=1.0, what=f"{n} predictions and labeled rows of {model}")


def wait_for_detector_state(
    stack: PrivateStack, model: str, n: int, alive: Callable[[], None], timeout_s: float
) -> None:
    """Wait until the newest saved detector state of ``model`` has seen ``n`` events, or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive()
        client = connect(stack.settings.clickhouse)
        try:
            if detector_events(client, model) >= n:
                return
        finally:
            client.disconnect()
        time.sleep(1.0)


def detector_events(client: Any, model: str) -> int:
    """Events the newest saved detector state of ``model`` has seen (0: none saved)."""
    state = client.execute(
        "SELECT argMax(events, revision) FROM detector_state WHERE model = %(m)s GROUP BY model", {"m": model}
    )
    return int(state[0][0]) if state else 0


def crash_loop(stack: PrivateStack, tmp: Path, *, events: int, kills: int, seed: int = 1) -> SoakResult:
    """``kill -9`` the worker ``kills`` times at random points while ``events`` are produced; then catch up."""
    private = isolated(stack, "crash")
    model = "crash-" + uuid.uuid4().hex[:6]
    result = SoakResult("worker kill -9", events)
    rng = random.Random(seed)
    started = time.monotonic()
    producer = threading.Thread(target=produce, args=(private, model, events, max(events / 30, 500)), daemon=True)
    producer.start()
    worker = WorkerProcess(private, tmp / "worker-0.log", **WORKER_ENV)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            result.max_rss_mb = max(result.max_rss_mb, rss_mb(worker.process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for k in range(kills):
            wait_for(
                lambda w=worker: "partitions assigned" in w.log_path.read_text(errors="replace"),
                timeout_s=60,
                what="the worker to join",
            )
            time.sleep(rng.uniform(0.5, 5.0))  # a random point while it works: mid-batch, mid-insert, mid-join
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait()
            worker.stop()
            result.faults += 1
            worker = WorkerProcess(private, tmp / f"worker-{k + 1}.log", **WORKER_ENV)
            result.worker_restarts += 1
        producer.join()

        def alive() -> None:
            assert worker.alive, worker.output()

        wait_until_landed(private, model, events, alive, timeout_s=120 + events / 2000)
        # the last worker killed may have written events whose detection it had not saved (nor their offsets
        # committed): the worker after it detects them again and saves; a state that never covers them is the
        # ledger's to show
        wait_for_detector_state(private, model, events, alive, timeout_s=60)
        time.sleep(2)  # anything beyond would be a duplicate: give it the chance to show
        restored = sum("detector state restored" in (tmp / f"worker-{k}.log").read_text() for k in range(1, kills + 1))
        result.notes.append(f"detector state restored by {restored} of {kills} restarted workers")
    finally:
        sampling.set()
        worker.stop()
    result.seconds = time.monotonic() - started
    return ledger(private, model, result)


def clickhouse_outage(home: Path, tmp: Path, *, events: int, outage_s: float) -> SoakResult:
    """Stop ClickHouse for ``outage_s`` while events stream in; the worker holds back, then everything lands.

    Runs on a stack of its own (``home``): stopping the session's ClickHouse would stop other tests' too.
    """
    private = PrivateStack(private_stack_env(home))
    local_stack.up(private.settings)
    model = "outage-" + uuid.uuid4().hex[:6]
    result = SoakResult(f"ClickHouse down {outage_s:.0f} s", events)
    started = time.monotonic()
    worker = WorkerProcess(private, tmp / "worker.log", **WORKER_ENV)
    try:
        producer = threading.Thread(target=produce, args=(private, model, events, events / 20), daemon=True)
        producer.start()
        time.sleep(4)
        assert local_stack.stop_service(private.settings, "clickhouse"), "ClickHouse was not running"
        result.faults += 1
        time.sleep(4)  # what was written just before the stop may still be committed (every 2.8 s)
        committed_before = _committed(private)
        outage_ends = time.monotonic() + outage_s - 4
        while time.monotonic() < outage_ends:
            assert worker.alive, worker.output()
            result.max_rss_mb = max(result.max_rss_mb, rss_mb(worker.process.pid))
            time.sleep(0.5)
        committed_after = _committed(private)
        result.committed_during_outage = committed_after - committed_before
        local_stack.up(private.settings)  # ClickHouse comes back on the same port and data
        producer.join()

        def alive() -> None:
            assert worker.alive, worker.output()
            result.max_rss_mb = max(result.max_rss_mb, rss_mb(worker.process.pid))

        wait_until_landed(private, model, events, alive, timeout_s=120 + events / 2000)
        time.sleep(2)
        result.seconds = time.monotonic() - started
        return ledger(private, model, result)
    finally:
        worker.stop()
        local_stack.down(private.settings)


def _committed(stack: PrivateStack) -> int:
    settings = stack.settings
    lags = group_lag(settings, {settings.worker_group: [settings.topics.predictions, settings.topics.outcomes]})
    return sum(lag.committed for lag in lags)


def hostile_input(stack: PrivateStack, tmp: Path, *, count: int) -> SoakResult:
    """``count`` generated messages, about half of them hostile, through the worker (see ``hostile.py``).

    ``notes`` name any message kind that was judged wrongly: empty means every bad message was
    dead-lettered with a reason and every good event landed exactly once.
    """
    from tests.reliability.hostile import messages

    private = isolated(stack, "fuzz")
    model = "fuzz-" + uuid.uuid4().hex[:6]
    started = time.monotonic()
    # the worker starts (seconds of imports and a group join) while hypothesis draws the messages
    worker = WorkerProcess(private, tmp / "worker.log", DRIFTLOOP_BATCH_MAX_WAIT_S="0.2")
    topic = private.settings.topics.predictions
    try:
        generated = messages(model, count)
        producer = KafkaProducer(**private.settings.kafka_python_config(), max_request_size=4 << 20, linger_ms=20)
        futures = [(m, producer.send(topic, m.value)) for m in generated]
        producer.flush()
        sent = {}
        for message, future in futures:
            metadata = future.get(timeout=30)
            sent[(metadata.partition, metadata.offset)] = message
        producer.close()
    except BaseException:
        worker.stop()
        raise
    good = {rid for m in generated if m.good for rid in m.request_ids}
    bad = {coordinates for coordinates, m in sent.items() if not m.good}
    result = SoakResult("hostile input", len(good), faults=len(bad))
    client = connect(private.settings.clickhouse)
    try:

        def counts() -> tuple[int, int]:
            assert worker.alive, worker.output()
            result.max_rss_mb = max(result.max_rss_mb, rss_mb(worker.process.pid))
            landed = client.execute("SELECT uniqExact(request_id) FROM predictions WHERE model = %(m)s", {"m": model})
            letters = client.execute("SELECT uniqExact(source_partition, source_offset) FROM dead_letters")
            return landed[0][0], letters[0][0]

        # until everything is accounted for, or nothing has moved for 30 s: then the ledger says what is missing
        deadline, last, still_since = time.monotonic() + 240 + count / 100, (-1, -1), time.monotonic()
        while time.monotonic() < deadline:
            now = counts()
            if now[0] >= len(good) and now[1] >= len(bad):
                break
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since > 30:
                result.notes.append(f"stalled at {now[0]:,} good ids landed and {now[1]:,} dead letters")
                break
            time.sleep(0.5)
        time.sleep(1)
        landed = [
            r for (r,) in client.execute("SELECT request_id FROM predictions FINAL WHERE model = %(m)s", {"m": model})
        ]
        letters = client.execute(
            "SELECT source_partition, source_offset, reason FROM dead_letters FINAL WHERE source_topic = %(t)s",
            {"t": topic},
        )
    finally:
        client.disconnect()
        worker.stop()
    result.predictions_landed = len(set(landed) & good)
    result.duplicates = len(landed) - len(set(landed))
    dead = {(p, o) for p, o, _ in letters}
    if set(landed) - good:
        result.notes.append(f"landed but not sent as good: {len(set(landed) - good)}")
    if wrongly := {sent[c].kind for c in dead - bad}:
        result.notes.append(f"good messages dead-lettered: {sorted(wrongly)}")
    if missing := {sent[c].kind for c in bad - dead}:
        result.notes.append(f"bad messages neither landed nor dead-lettered: {sorted(missing)}")
    if not all(reason.strip() for *_, reason in letters):
        result.notes.append("a dead letter without a reason")
    if failures := worker.log_path.read_text(errors="replace").count("failed; ingestion goes on"):
        result.notes.append(f"an observer (drift detection) failed on {failures} batch(es)")
    result.seconds = time.monotonic() - started
    return result


@dataclass
class HotModelResult:
    """What :func:`hot_model` saw: the ledger, and what the gate made of the partitions' detections."""

    ledger: SoakResult
    alerts: list[tuple[str, str, str, int]]  # (alert_id, kind, signal, the request number it fired at)
    alert_ids_published: set[str]
    detections: int  # handed to the alert gate by every worker's detectors
    partitions_with_state: int  # (model, partition) pairs with saved detector state
    detector_events: int  # events in the newest saved state of each partition's detectors, added up
    restored_by_restarted: bool  # the killed worker, started again, took partitions over with their state
    shift_at: int


def hot_model(stack: PrivateStack, tmp: Path, *, events: int, partitions: int = 4, kill: bool) -> HotModelResult:
    """One busy model whose messages the SDK spreads over ``partitions`` partitions, two workers sharing them,
    and a one-sigma shift of feature ``y`` half-way (``x``, which the prediction follows, stays put). With
    ``kill``, one worker is killed with ``kill -9`` just after the shift, and started again; the last fifth of
    the events is sent once it owns partitions again, so that it restores their state whatever the timing."""
    specs = tmp / "specs"
    specs.mkdir()
    private = isolated(stack, "hot", DRIFTLOOP_TOPIC_PARTITIONS=str(partitions), DRIFTLOOP_SPECS_DIR=str(specs))
    model = "hot-" + uuid.uuid4().hex[:6]
    (specs / f"{model}.toml").write_text(f'name = "{model}"\n[monitoring]\nwarmup = 1000\n')
    result = SoakResult("hot model over partitions" + (", a worker killed" if kill else ""), events)
    started, shift_at = time.monotonic(), events // 2
    workers = [WorkerProcess(private, tmp / "a.log", **WORKER_ENV), WorkerProcess(private, tmp / "b.log", **WORKER_ENV)]
    sent = [0]
    tail = threading.Event()  # the last fifth of the events waits for it: sent once a restarted worker is in
    if not kill:
        tail.set()

    def send() -> None:
        rng = random.Random(11)
        begun = time.monotonic()
        with EventProducer(private.settings, max_events=100, spread=partitions) as producer:
            for i in range(events):
                if i == events - events // 5:
                    tail.wait(180)
                x, y = rng.gauss(0, 1), rng.gauss(1.0 if i >= shift_at else 0.0, 1)
                producer.emit_prediction(model, request_id=f"r{i}", features={"x": x, "y": y},
                                         prediction=int(x > 0), ts=1_790_000_000 + i / 100)  # fmt: skip
                producer.emit_outcome(model, request_id=f"r{i}", label=int(x > 0), ts=1_790_000_000 + i / 100 + 1)
                sent[0] = i + 1
                if i % 500 == 0:
                    time.sleep(max(0.0, i / (events / 15) - (time.monotonic() - begun)))  # over about 15 s

    try:
        for w in workers:
            wait_for(lambda w=w: "partitions assigned" in w.log_path.read_text(errors="replace"), timeout_s=60,
                     what="both workers to join")  # fmt: skip
        producer = threading.Thread(target=send, daemon=True)
        producer.start()
        if kill:
            wait_for(lambda: sent[0] >= shift_at + events // 10, timeout_s=120, what="the shift to be sent")
            workers[0].process.send_signal(signal.SIGKILL)
            workers[0].process.wait()
            workers[0].stop()
            result.faults += 1
            workers[0] = WorkerProcess(private, tmp / "a-again.log", **WORKER_ENV)
            result.worker_restarts += 1
            predictions = private.settings.topics.predictions + ":"

            def rejoined() -> bool:  # the restarted worker owns prediction partitions again
                log = workers[0].log_path.read_text(errors="replace")
                return any("partitions assigned" in line and predictions in line for line in log.splitlines())

            wait_for(rejoined, timeout_s=90, what="the restarted worker to take partitions")
            tail.set()  # the rest of the stream reaches it too: it restores those partitions' state
        producer.join()

        def alive() -> None:
            for w in workers:
                assert w.alive, w.output()

        wait_until_landed(private, model, events, alive, timeout_s=120 + events / 2000)
        time.sleep(3)  # a detection still on its way to the gate, or an alert beyond the first: give it time
    finally:
        tail.set()
        for w in workers:
            w.stop()
    result.seconds = time.monotonic() - started
    ledger(private, model, result)
    client = connect(private.settings.clickhouse)
    try:
        p = {"m": model}
        rows = client.execute(
            "SELECT alert_id, toString(kind), signal, request_id FROM drift_alerts FINAL WHERE model = %(m)s "
            "ORDER BY event_ts_ms", p
        )  # fmt: skip
        newest = client.execute(
            "SELECT partition, argMax(events, revision) FROM detector_state WHERE model = %(m)s GROUP BY partition", p
        )
    finally:
        client.disconnect()
    published = {a.alert_id for a, _ in alert_stream(private.settings, from_beginning=True, idle_timeout_s=3)
                 if a.model == model}  # fmt: skip
    logs = "".join(path.read_text(errors="replace") for path in tmp.glob("*.log"))
    again = tmp / "a-again.log"
    return HotModelResult(
        result,
        [(a, k, sig, int(r[1:])) for a, k, sig, r in rows],
        published,
        logs.count("detection handed to the alert gate"),
        len(newest),
        sum(events for _, events in newest),
        again.exists() and "detector state restored" in again.read_text(errors="replace"),
        shift_at,
    )


def rebalance(stack: PrivateStack, tmp: Path, *, events: int) -> SoakResult:
    """A second worker joins mid-stream, then the first leaves: partitions (and detector state) move twice."""
    private = isolated(stack, "rebalance")
    model = "rebalance-" + uuid.uuid4().hex[:6]
    result = SoakResult("rebalance: join, then leave", events)
    started = time.monotonic()
    producer = threading.Thread(target=produce, args=(private, model, events, events / 40), daemon=True)
    producer.start()
    first = WorkerProcess(private, tmp / "first.log", **WORKER_ENV)
    second: WorkerProcess | None = None
    try:
        wait_for(lambda: "partitions assigned" in first.log_path.read_text(), timeout_s=60, what="the first join")
        time.sleep(3)
        second = WorkerProcess(private, tmp / "second.log", **WORKER_ENV)
        wait_for(lambda: "partitions assigned" in second.log_path.read_text(), timeout_s=60, what="the second join")
        result.faults += 1
        time.sleep(4)
        first.stop()  # a clean leave: it hands its partitions and their detector state over
        result.faults += 1
        producer.join()
        worker = second

        def alive() -> None:
            assert worker.alive, worker.output()

        wait_until_landed(private, model, events, alive, timeout_s=120 + events / 2000)
        time.sleep(2)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    handed = "detector state restored" in (tmp / "second.log").read_text()
    result.notes.append(f"second worker restored the model's detector state: {handed}")
    result.seconds = time.monotonic() - started
    return ledger(private, model, result)


def broker_restart(home: Path, tmp: Path, *, events: int, down_s: float, plain: int = 2000) -> SoakResult:
    """Crash the in-memory broker mid-stream and start it again, empty (as a supervisor would).

    The worker is paused for two seconds before the crash, so the old instance holds messages no worker
    has read. Two producers: the SDK (``events`` predictions and outcomes, before, during and after the
    restart), and a plain Kafka producer that sends ``plain`` single-event messages while the worker is
    paused. Expected: every SDK event lands (the SDK sends its recent messages again when the cluster id
    changes); every plain event lost lies in the loss window the worker reports (``broker_incidents``);
    the topics are provisioned again; the worker and the producers carry on with clear log lines.

    ``notes`` hold any breach (starting with "failed").
    """
    # 4 partitions: what Tansu gives a topic it auto-creates for a reconnecting client (measured)
    private = PrivateStack(private_stack_env(home) | {"DRIFTLOOP_TOPIC_PARTITIONS": "4"})
    local_stack.up(private.settings)
    settings = private.settings
    model, plain_model = "restart-" + uuid.uuid4().hex[:6], "plain-" + uuid.uuid4().hex[:6]
    result = SoakResult(f"broker restart ({down_s:.0f} s down)", events)
    sdk_ids: set[str] = set()
    plain_sent: list[tuple[str, int, int]] = []  # event_id, partition, offset (on the old instance)
    failures: list[BaseException] = []
    started = time.monotonic()
    worker = WorkerProcess(private, tmp / "worker.log", **WORKER_ENV, DRIFTLOOP_BROKER_CHECK_INTERVAL_S="0.5")
    try:
        wait_for(lambda: "partitions assigned" in worker.log_path.read_text(), timeout_s=60, what="the join")

        def send() -> None:
            try:
                produce(private, model, events, events / 20, on_delivery=lambda d: sdk_ids.update(d.event_ids))
            except BaseException as exc:  # reported below
                failures.append(exc)

        producer = threading.Thread(target=send, daemon=True)
        producer.start()
        time.sleep(4)
        paused = worker.faust_pid()
        os.kill(paused, signal.SIGSTOP)  # the old instance now holds messages nobody read
        try:
            plain_sent = _send_plain(settings, plain_model, plain)
            time.sleep(1)
            assert local_stack.stop_service(settings, "broker", timeout_s=0), "the broker was not running"
            result.faults += 1
        finally:
            os.kill(paused, signal.SIGCONT)  # it lives through the outage
        time.sleep(down_s)
        local_stack.start_service(settings, "broker")  # empty: nothing provisioned by the test
        producer.join()
        if failures:
            result.notes.append(f"failed: the SDK producer gave up: {failures[0]!r}"[:300])

        def landed() -> set[str]:
            assert worker.alive, worker.output()
            return _landed_ids(private, model) | _landed_ids(private, plain_model)

        try:
            wait_for(lambda: sdk_ids <= landed(), timeout_s=120 + events / 500, interval_s=1.0,
                     what="every event the SDK sent to land")  # fmt: skip
        except AssertionError:
            result.notes.append(f"failed: {len(sdk_ids - landed()):,} SDK events never landed")
        time.sleep(2)
        ids = landed()
        incidents = _incidents(private)
        if not incidents:
            result.notes.append("failed: no broker incident reported")
        lost_from = {(t, p): o for t, p, o, _ in incidents}
        topic = settings.topics.predictions
        lost = [(p, o) for i, p, o in plain_sent if i not in ids]
        result.lost = len(lost)
        if outside := [(p, o) for p, o in lost if o < lost_from.get((topic, p), 0)]:
            result.notes.append(f"failed: {len(outside)} plain events lost outside the reported window: {outside[:5]}")
        partitions = describe_topics(settings, settings.topics.all())
        if partitions != {name: 4 for name in settings.topics.all()}:
            result.notes.append(f"failed: topics after the restart: {partitions}")
        result = ledger(private, model, result)
        if (joinable := _joinable(private, model)) != result.labeled_landed:
            result.notes.append(f"failed: {joinable:,} requests have both events, {result.labeled_landed:,} labeled")
        log = worker.log_path.read_text(errors="replace")
        for line in ("Kafka does not answer", "Kafka answers again", "came back as a new instance",
                     "starting the worker again"):  # fmt: skip
            if line not in log:
                result.notes.append(f"failed: the worker never logged {line!r}")
        result.notes.append(
            f"{len(lost):,} of {plain:,} plain events sent while the worker was paused were lost "
            f"({len(incidents)} partitions in the reported window); {len(sdk_ids & ids):,} of {len(sdk_ids):,} "
            "SDK events landed"
        )
    finally:
        worker.stop()
        local_stack.down(settings)
    result.seconds = time.monotonic() - started
    return result


def _send_plain(settings: Settings, model: str, n: int) -> list[tuple[str, int, int]]:
    """``n`` predictions, one JSON event per message, from a plain kafka-python producer (no SDK).

    Each carries 3 KB of text: more than one fetch response holds (1 MiB a partition), so a paused
    worker cannot have them all in its socket buffer already.
    """
    producer = KafkaProducer(**settings.kafka_python_config(), enable_idempotence=False, linger_ms=5)
    futures = []
    for i in range(n):
        event = {"model": model, "request_id": f"q{i}", "event_id": f"{model}-{i}", "ts": 1_790_000_000 + i,
                 "features": {"x": 0.5, "note": "n" * 3000}, "prediction": 1}  # fmt: skip
        futures.append((event["event_id"], producer.send(settings.topics.predictions, json.dumps(event).encode())))
    producer.flush()
    sent = [(event_id, (m := future.get(10)).partition, m.offset) for event_id, future in futures]
    producer.close()
    return sent


def _landed_ids(stack: PrivateStack, model: str) -> set[str]:
    client = connect(stack.settings.clickhouse)
    try:
        p = {"m": model}
        rows = client.execute("SELECT event_id FROM predictions WHERE model = %(m)s", p)
        rows += client.execute("SELECT event_id FROM outcomes WHERE model = %(m)s", p)
    finally:
        client.disconnect()
    return {i for (i,) in rows}


def _joinable(stack: PrivateStack, model: str) -> int:
    """Requests of ``model`` whose prediction and outcome both landed."""
    client = connect(stack.settings.clickhouse)
    try:
        p = {"m": model}
        predicted = client.execute("SELECT DISTINCT request_id FROM predictions WHERE model = %(m)s", p)
        resolved = client.execute("SELECT DISTINCT request_id FROM outcomes WHERE model = %(m)s", p)
    finally:
        client.disconnect()
    return len(set(predicted) & set(resolved))


def _incidents(stack: PrivateStack) -> list[tuple[str, int, int, str]]:
    client = connect(stack.settings.clickhouse)
    try:
        return client.execute(
            "SELECT topic, partition, lost_from_offset, new_cluster_id FROM broker_incidents ORDER BY detected_at"
        )
    finally:
        client.disconnect()
