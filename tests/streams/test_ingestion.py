"""Ingestion end to end on the real local stack: producers → Kafka → `driftloop worker` → ClickHouse."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.producer import EventProducer
from tests.stack_fixtures import PrivateStack, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

WORKER_ENV = {
    "DRIFTLOOP_JOIN_WINDOW_S": "4",
    "DRIFTLOOP_JOIN_SWEEP_INTERVAL_S": "0.5",
    "DRIFTLOOP_BATCH_MAX_WAIT_S": "0.2",
}


@pytest.fixture(scope="module")
def worker(stack: PrivateStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    # INFO: its rebalances are in its log ("partitions assigned")
    process = WorkerProcess(
        stack, tmp_path_factory.mktemp("worker") / "worker.log", **WORKER_ENV, DRIFTLOOP_LOG_LEVEL="INFO"
    )
    yield process
    process.stop()


@pytest.fixture()
def model() -> str:
    return "m-" + uuid.uuid4().hex[:10]


def query(stack: PrivateStack, sql: str, params: dict | None = None) -> list[tuple]:
    client = connect(stack.settings.clickhouse)
    try:
        return client.execute(sql, params or {})
    finally:
        client.disconnect()


def count(stack: PrivateStack, table: str, model: str) -> int:
    return query(stack, f"SELECT count() FROM {table} FINAL WHERE model = %(m)s", {"m": model})[0][0]


def wait_count(
    stack: PrivateStack, worker: WorkerProcess, table: str, model: str, n: int, timeout_s: float = 90
) -> None:
    def done() -> bool:
        assert worker.alive, f"the worker died:\n{worker.output()}"
        return count(stack, table, model) >= n

    wait_for(done, timeout_s=timeout_s, what=f"{n} {table} rows of {model}")
    time.sleep(0.5)  # anything beyond n would be a duplicate: give it the chance to show
    assert count(stack, table, model) == n


def raw_producer(stack: PrivateStack) -> KafkaProducer:
    return KafkaProducer(**stack.settings.kafka_python_config(), max_request_size=4 << 20)


def test_a_deployment_under_another_prefix_shares_no_group_and_goes_on_from_its_former_groups_offsets(
    stack: PrivateStack, model: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two deployments on one Kafka cluster (staging beside production, each under a topic prefix of its own)
    read in consumer groups of their own: the other's worker starting and stopping never rebalances this one
    (before, both read in `driftloop-streams`, and each start or stop of one stopped the other for a
    rebalance). Its group, now named after its prefix, goes on from the offsets its former name
    (`driftloop-streams`) committed: what the previous version read is not read again."""
    staging = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=f"staging-{uuid.uuid4().hex[:8]}.")
    settings = staging.settings
    local_stack.up(settings)  # the stack runs: this only provisions the deployment's topics

    def send(deployment: PrivateStack, name: str, numbers: range) -> None:
        with EventProducer(deployment.settings, max_events=10) as producer:
            for i in numbers:
                producer.emit_prediction(
                    name, request_id=f"r{i}", features={"x": float(i)}, prediction=1, ts=1_790_000_000 + i
                )

    send(staging, model, range(100))  # read by the previous version, in the group every deployment shared
    former = KafkaConsumer(
        **settings.kafka_python_config(),
        group_id="driftloop-streams",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    former.assign([TopicPartition(settings.topics.predictions, p) for p in range(settings.topic_partitions)])
    read: list[object] = []
    wait_for(lambda: read.extend(r for rs in former.poll(timeout_ms=200).values() for r in rs) or len(read) >= 10)
    # where it was: after the 10 envelopes. Kafka takes a commit from outside a group only while the group has no
    # member: hence this test comes first in its module, before the module's worker joins that group (and a
    # member another module's worker left behind leaves within a session timeout)

    def committed() -> bool:
        try:
            former.commit()
        except CommitFailedError:
            return False
        return True

    wait_for(committed, what="the former group's commit")
    former.close()
    send(staging, model, range(100, 150))  # sent while it was being upgraded
    worker: WorkerProcess = request.getfixturevalue("worker")  # this deployment's (the default prefix)
    wait_for(lambda: "partitions assigned" in worker.log_path.read_text(), what="this deployment's worker")
    rebalances = worker.log_path.read_text().count("partitions assigned")

    other = WorkerProcess(staging, tmp_path / "staging.log", **WORKER_ENV)
    try:
        wait_count(stack, other, "predictions", model, 50)  # the 50 sent since, and none of the 100 before
    finally:
        other.stop()
    assert query(stack, "SELECT min(request_id) FROM predictions FINAL WHERE model = %(m)s", {"m": model}) == [
        ("r100",)
    ]
    # this deployment's worker read on throughout, in its group alone: not one rebalance
    send(stack, model + "-here", range(1))
    wait_count(stack, worker, "predictions", model + "-here", 1)
    assert worker.log_path.read_text().count("partitions assigned") == rebalances, worker.output()


def test_predictions_and_outcomes_round_trip_in_both_message_forms(
    stack: PrivateStack, worker: WorkerProcess, model: str
) -> None:
    settings = stack.settings
    with (
        EventProducer(settings, max_events=50) as envelopes,
        EventProducer(settings, envelopes=False) as singles,
    ):
        for i in range(300):
            producer = envelopes if i % 2 else singles  # the two forms mixed, on the same topic
            producer.emit_prediction(
                model,
                request_id=f"r{i}",
                features={"x": i / 10, "colour": "red" if i % 3 else "blue", "gap": None},
                prediction=i % 2,
                score=0.75,
                ts=1_790_000_000 + i,
            )
        for i in range(300):
            (singles if i % 2 else envelopes).emit_outcome(model, request_id=f"r{i}", label=1, ts=1_790_000_100 + i)
    wait_count(stack, worker, "predictions", model, 300)
    wait_count(stack, worker, "outcomes", model, 300)
    wait_count(stack, worker, "labeled", model, 300)

    row = query(
        stack,
        "SELECT num.name, num.value, cat.name, cat.value, missing, prediction, score "
        "FROM predictions FINAL WHERE model = %(m)s AND request_id = 'r7'",
        {"m": model},
    )
    assert row == [(["x"], [0.7], ["colour"], ["red"], ["gap"], "1", 0.75)]
    labeled = query(
        stack,
        "SELECT sum(correct), sum(error), min(label_delay_s), max(label_delay_s), uniqExact(prediction_event_id) "
        "FROM labeled FINAL WHERE model = %(m)s",
        {"m": model},
    )
    assert labeled == [(150, 150.0, 100.0, 100.0, 300)]


def test_plain_json_producers_without_the_sdk(stack: PrivateStack, worker: WorkerProcess, model: str) -> None:
    producer = raw_producer(stack)
    topics = stack.settings.topics
    single = {
        "model": model,
        "request_id": "a",
        "ts": "2026-11-23T08:00:00Z",
        "features": {"f": 1},
        "prediction": "cat",
        "score": {"cat": 0.8, "dog": 0.2},
    }
    envelope = {"events": [dict(single, request_id="b", event_id="given-id-b"), dict(single, request_id="c")]}
    producer.send(topics.predictions, json.dumps(single).encode())
    producer.send(topics.predictions, json.dumps(envelope).encode())
    producer.send(
        topics.outcomes, json.dumps({"model": model, "request_id": "a", "ts": 1_795_420_900, "label": "dog"}).encode()
    )
    producer.flush()
    wait_count(stack, worker, "predictions", model, 3)
    wait_count(stack, worker, "labeled", model, 1)
    assert query(
        stack, "SELECT event_id FROM predictions FINAL WHERE model = %(m)s AND request_id = 'b'", {"m": model}
    ) == [("given-id-b",)]
    assert query(
        stack,
        "SELECT scores.label, scores.probability, score FROM predictions FINAL "
        "WHERE model = %(m)s AND request_id = 'a'",
        {"m": model},
    ) == [(["cat", "dog"], [0.8, 0.2], 0.8)]
    assert query(
        stack, "SELECT correct, error, label_delay_s FROM labeled FINAL WHERE model = %(m)s", {"m": model}
    ) == [(0, 1.0, 100.0)]


def test_re_sent_events_count_once(stack: PrivateStack, worker: WorkerProcess, model: str) -> None:
    with EventProducer(stack.settings, max_events=7) as producer:
        for _ in range(3):  # the same events, three times (a producer retrying, say)
            for i in range(40):
                producer.emit_prediction(
                    model, request_id=f"r{i}", features={"x": i}, prediction=0, ts=1_790_000_000 + i
                )
                producer.emit_outcome(model, request_id=f"r{i}", label=0, ts=1_790_000_500 + i)
    wait_count(stack, worker, "predictions", model, 40)
    wait_count(stack, worker, "outcomes", model, 40)
    wait_count(stack, worker, "labeled", model, 40)
    assert query(
        stack, "SELECT count(), uniqExact(event_id) FROM predictions FINAL WHERE model = %(m)s", {"m": model}
    ) == [(40, 40)]


def test_an_outcome_before_its_prediction_is_joined_when_the_prediction_arrives(
    stack: PrivateStack, worker: WorkerProcess, model: str
) -> None:
    with EventProducer(stack.settings) as producer:
        producer.emit_outcome(model, request_id="early", label=1, ts=1_790_000_100)
    wait_for(
        lambda: (
            query(
                stack, "SELECT count() FROM join_pending FINAL WHERE model = %(m)s AND state = 'pending'", {"m": model}
            )[0][0]
            == 1
        ),
        what="the outcome waiting",
    )
    with EventProducer(stack.settings) as producer:
        producer.emit_prediction(model, request_id="early", features={"x": 1.0}, prediction=1, ts=1_790_000_000)
    wait_count(stack, worker, "labeled", model, 1)
    assert query(stack, "SELECT state FROM join_pending FINAL WHERE model = %(m)s", {"m": model}) == [("matched",)]
    assert query(stack, "SELECT count() FROM unmatched_outcomes WHERE model = %(m)s", {"m": model}) == [(0,)]


def test_an_outcome_labels_the_served_and_the_shadow_prediction_of_its_request(
    stack: PrivateStack, worker: WorkerProcess, model: str
) -> None:
    with EventProducer(stack.settings) as producer:
        for i in range(20):  # v1 served, v2 scored in shadow: same request, same time
            features = {"x": float(i)}
            producer.emit_prediction(
                model,
                request_id=f"r{i}",
                features=features,
                prediction=i % 2,
                model_version=1,
                ts=1_790_000_000 + i,
                latency_ms=4.5,
            )
            producer.emit_prediction(
                model,
                request_id=f"r{i}",
                features=features,
                prediction=1,
                model_version=2,
                ts=1_790_000_000 + i,
                served=False,
                latency_ms=6.0,
            )
        # an outcome whose request so far has only its shadow prediction waits for the served one
        producer.emit_prediction(
            model, request_id="late", features={"x": 1.0}, prediction=1, model_version=2, ts=1_790_000_050, served=False
        )
        for i in range(20):
            producer.emit_outcome(model, request_id=f"r{i}", label=1, ts=1_790_000_100 + i, value=10.0 + i)
        producer.emit_outcome(model, request_id="late", label=0, ts=1_790_000_150)
    wait_count(stack, worker, "predictions", model, 41)
    wait_count(stack, worker, "labeled", model, 40)
    assert query(
        stack,
        "SELECT model_version, served, count(), sum(correct), sumIf(value, NOT isNaN(value)), "
        "countIf(isNaN(value)), min(event_id LIKE '%%@v2') "
        "FROM labeled FINAL WHERE model = %(m)s GROUP BY model_version, served ORDER BY model_version",
        {"m": model},
    ) == [(1, 1, 20, 10, 390.0, 0, 0), (2, 0, 20, 20, 0.0, 20, 1)]  # the value is the served decision's
    assert query(
        stack,
        "SELECT served, avg(latency_ms) FROM predictions FINAL WHERE model = %(m)s AND request_id != 'late' "
        "GROUP BY served ORDER BY served",
        {"m": model},
    ) == [(0, 6.0), (1, 4.5)]
    with EventProducer(stack.settings) as producer:
        producer.emit_prediction(
            model, request_id="late", features={"x": 1.0}, prediction=0, model_version=1, ts=1_790_000_050
        )
    wait_count(stack, worker, "labeled", model, 42)
    assert query(
        stack,
        "SELECT model_version, served, correct FROM labeled FINAL WHERE model = %(m)s AND request_id = 'late' "
        "ORDER BY model_version",
        {"m": model},
    ) == [(1, 1, 1), (2, 0, 0)]


def test_an_outcome_that_never_matches_is_counted_as_unmatched(
    stack: PrivateStack, worker: WorkerProcess, model: str
) -> None:
    with EventProducer(stack.settings) as producer:
        producer.emit_outcome(model, request_id="orphan", label=1)
    wait_for(
        lambda: query(stack, "SELECT request_id FROM unmatched_outcomes WHERE model = %(m)s", {"m": model}),
        timeout_s=60,
        what="the orphan outcome to expire",
    )
    # a prediction arriving after the window does not resurrect it
    with EventProducer(stack.settings) as producer:
        producer.emit_prediction(model, request_id="orphan", features={"x": 1.0}, prediction=1)
    wait_count(stack, worker, "predictions", model, 1)
    time.sleep(2)  # several sweeps
    assert count(stack, "labeled", model) == 0
    assert query(stack, "SELECT count() FROM unmatched_outcomes WHERE model = %(m)s", {"m": model}) == [(1,)]


BAD_MESSAGES = {
    b'{"model": "x", "request_id": ': "malformed JSON",
    b"\xff\xfe not utf-8": "not UTF-8",
    b'["a", "list"]': "expected a JSON object",
    b'{"model": "M", "request_id": "r", "ts": 1, "features": {"f": [1, 2]}, "prediction": 1}': "feature 'f' must be",
    b'{"model": "M", "request_id": "r", "ts": 1, "features": {}}': 'missing required field "prediction"',
    b'{"model": "M", "request_id": "r", "ts": "yesterday", "features": {}, "prediction": 1}': "RFC 3339",
    b'{"model": "M", "request_id": "r", "ts": 1, "features": {}, "prediction": NaN}': '"prediction" must be a',
    b'{"model": "bad name; DROP", "request_id": "r", "ts": 1, "features": {}, "prediction": 1}': '"model"',
    b'{"events": {"not": "a list"}}': '"events" must be a list',
    b'{"model": "M", "request_id": "r", "ts": 1, "features": {"f": 1e999}, "prediction": 1}': "finite number",
}


def test_bad_input_goes_to_dead_letter_with_reasons_and_the_worker_keeps_going(
    stack: PrivateStack, worker: WorkerProcess, model: str
) -> None:
    topics = stack.settings.topics
    producer = raw_producer(stack)
    marker = uuid.uuid4().hex
    bad = {msg.replace(b'"M"', json.dumps(model).encode()): why for msg, why in BAD_MESSAGES.items()}
    huge = json.dumps(
        {"model": model, "request_id": marker, "ts": 1, "features": {"pad": "x" * 100}, "prediction": "y" * 1_100_000}
    ).encode()
    bad[huge] = "over the 1,048,576-byte limit"
    good = {"model": model, "request_id": "ok", "ts": 1_790_000_000, "features": {"f": 1}, "prediction": 1}
    mixed = {"events": [good | {"request_id": "ok2"}, {"model": model}, "not an object"]}
    for value in bad:
        producer.send(topics.predictions, value)
    producer.send(topics.predictions, json.dumps(mixed).encode())
    producer.send(topics.predictions, json.dumps(good).encode())
    producer.flush()
    wait_count(stack, worker, "predictions", model, 2)  # the good ones after the bad ones landed

    consumer = KafkaConsumer(topics.dead_letter, **stack.settings.kafka_python_config(), auto_offset_reset="earliest")
    letters: list[dict] = []
    originals = {hashlib.sha256(value).hexdigest(): value for value in bad}
    by_original: dict[bytes, dict] = {}

    def all_dead_lettered() -> bool:
        for records in consumer.poll(timeout_ms=500).values():
            letters.extend(json.loads(r.value) for r in records)
        by_original.update({originals.get(d["original_sha256"], b""): d for d in letters})
        return set(bad) <= set(by_original)

    try:
        wait_for(all_dead_lettered, timeout_s=30, what="every bad message on the dead-letter topic")
    finally:
        consumer.close()
    for value, why in bad.items():
        assert value in by_original, f"no dead letter for {value[:60]!r}"
        letter = by_original[value]
        assert why in letter["reason"], (why, letter["reason"])
        assert letter["source"]["topic"] == topics.predictions and letter["index"] is None
        assert letter["original_size"] == len(value) and letter["truncated"] == (len(value) > 128 * 1024)
    in_envelope = [d for d in letters if d["index"] is not None and model in (d["original"] or "")]
    assert sorted(d["index"] for d in in_envelope) == [1]
    assert "missing required field" in in_envelope[0]["reason"]
    assert any(d["reason"].startswith("envelope item must be an event object") for d in letters)
    stored = query(stack, "SELECT count() FROM dead_letters FINAL WHERE position(original, %(m)s) > 0", {"m": model})[
        0
    ][0]
    # every bad message that names this model, and the bad event of the envelope, also sits in ClickHouse
    assert stored == sum(model.encode() in value for value in bad) + 1
    assert worker.alive


def test_two_workers_in_one_group_land_every_event_exactly_once(
    stack: PrivateStack, worker: WorkerProcess, model: str, tmp_path: Path
) -> None:
    second = WorkerProcess(stack, tmp_path / "second.log", **WORKER_ENV, DRIFTLOOP_LOG_LEVEL="INFO")
    try:
        predictions = stack.settings.topics.predictions
        # the group rebalances: the newcomer must own part of the predictions topic
        owned = wait_for(lambda: _assigned(second.output(), predictions), timeout_s=60, what="a rebalance")
        with EventProducer(stack.settings, max_events=20) as producer:
            for i in range(2000):
                producer.emit_prediction(
                    f"{model}-{i % 8}",
                    request_id=f"r{i}",
                    features={"x": float(i)},
                    prediction=i % 2,
                    ts=1_790_000_000 + i,
                )
        models = [f"{model}-{k}" for k in range(8)]

        def landed() -> int:
            assert worker.alive and second.alive, second.output()
            return query(stack, "SELECT count() FROM predictions FINAL WHERE model IN %(ms)s", {"ms": tuple(models)})[
                0
            ][0]

        wait_for(lambda: landed() >= 2000, timeout_s=120, what="2000 predictions")
        time.sleep(1)
        assert landed() == 2000
        assert query(
            stack, "SELECT uniqExact(event_id) FROM predictions WHERE model IN %(ms)s", {"ms": tuple(models)}
        ) == [(2000,)]
        assert 0 < len(owned) < stack.settings.topic_partitions  # both workers had a share
    finally:
        second.stop()


def _assigned(log: str, topic: str) -> set[str]:
    """The partitions of ``topic`` in the last "partitions assigned" line of a worker's log."""
    lines = [line for line in log.splitlines() if "partitions assigned" in line]
    if not lines:
        return set()
    listed = lines[-1].split("partitions=", 1)[1].split()[0].split(",")
    return {p for p in listed if p.startswith(topic + ":")}
