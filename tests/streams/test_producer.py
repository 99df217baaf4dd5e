"""The producer SDK against the real broker: envelopes, keys, linger, and errors at the source."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import pickle
import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from driftloop.infra.contract import EventError
from driftloop.streams.producer import EventProducer
from tests.stack_fixtures import PrivateStack, model_records, wait_for

pytestmark = pytest.mark.integration


def read_all(stack: PrivateStack, topic: str, model: str) -> list:
    return model_records(stack.settings, topic, model)


def test_events_are_batched_into_envelopes_keyed_by_model(stack: PrivateStack) -> None:
    model = "sdk-" + uuid.uuid4().hex[:8]
    with EventProducer(stack.settings, max_events=10, linger_s=5) as producer:
        ids = [
            producer.emit_prediction(
                model, request_id=f"r{i}", features={"x": np.float32(i), 3: np.int64(i)}, prediction=np.int64(i % 2)
            )
            for i in range(25)
        ]
    messages = read_all(stack, stack.settings.topics.predictions, model)
    sizes = [len(json.loads(m.value)["events"]) for m in messages]
    assert sorted(sizes) == [5, 10, 10]  # two full envelopes, and the rest flushed on close
    assert len({m.partition for m in messages}) == 1  # one model, one partition: ordered
    events = [e for m in sorted(messages, key=lambda m: m.offset) for e in json.loads(m.value)["events"]]
    assert [e["request_id"] for e in events] == [f"r{i}" for i in range(25)]
    assert events[3]["features"] == {"x": 3.0, "3": 3} and len(set(ids)) == 25


def test_linger_sends_a_partial_envelope_without_a_flush(stack: PrivateStack) -> None:
    model = "sdk-" + uuid.uuid4().hex[:8]
    producer = EventProducer(stack.settings, max_events=1000, linger_s=0.1)
    try:
        producer.emit_outcome(model, request_id="r1", label="yes")
        time.sleep(0.5)
        producer._sender.flush(10)  # only the Kafka client's buffer: the envelope was sent by the linger
        wait_for(lambda: read_all(stack, stack.settings.topics.outcomes, model), timeout_s=10, what="the envelope")
    finally:
        producer.close()


def test_one_event_per_message_without_envelopes(stack: PrivateStack) -> None:
    model = "sdk-" + uuid.uuid4().hex[:8]
    with EventProducer(stack.settings, envelopes=False) as producer:
        for i in range(3):
            producer.emit_outcome(model, request_id=f"r{i}", label=i, ts="2026-11-23T08:00:00Z")
    messages = read_all(stack, stack.settings.topics.outcomes, model)
    assert [json.loads(m.value)["request_id"] for m in messages] == ["r0", "r1", "r2"]


def test_a_bad_event_is_refused_before_it_is_sent(stack: PrivateStack) -> None:
    with EventProducer(stack.settings) as producer:
        with pytest.raises(EventError, match="feature 'x' is longer than 1024 characters"):
            producer.emit_prediction("m", request_id="r", features={"x": "y" * 1025}, prediction=1)
        with pytest.raises(EventError, match="feature 'x' must be a finite number, got inf"):
            producer.emit_prediction("m", request_id="r", features={"x": float("inf")}, prediction=1)
        with pytest.raises(EventError, match='"prediction" must be a finite number, got nan'):
            producer.emit_prediction("m", request_id="r", features={"x": 1.0}, prediction=float("nan"))
        with pytest.raises(EventError, match="is not a number, string, boolean or null"):
            producer.emit_outcome("m", request_id="r", label=object())


def test_a_nan_is_sent_as_null_where_the_contract_takes_a_missing_value(stack: PrivateStack) -> None:
    """pandas and numpy write a missing value as NaN, which is no JSON: a NaN feature goes as ``null`` (missing),
    a NaN score or business value is left out."""
    model = "sdk-" + uuid.uuid4().hex[:8]
    with EventProducer(stack.settings, envelopes=False) as producer:
        producer.emit_prediction(
            model,
            request_id="r",
            features={"x": np.float64("nan"), "y": 2.0},
            prediction=1,
            score=float("nan"),
            latency_ms=float("nan"),  # before: a ValueError out of json.dumps
            model_version=np.float64(2.0),  # a float column's version (a NaN elsewhere in it): version 2
        )
        producer.emit_outcome(model, request_id="r", label=1, value=np.float32("nan"))
    (prediction,) = [json.loads(m.value) for m in read_all(stack, stack.settings.topics.predictions, model)]
    (outcome,) = [json.loads(m.value) for m in read_all(stack, stack.settings.topics.outcomes, model)]
    assert prediction["features"] == {"x": None, "y": 2.0} and "score" not in prediction
    assert "latency_ms" not in prediction and prediction["model_version"] == 2
    assert "value" not in outcome


def test_an_integer_request_id_is_sent_as_its_digits_and_a_fraction_is_refused(stack: PrivateStack) -> None:
    """A pandas column of database ids gives numpy integers: each is sent as the text of its digits, as the
    contract takes an id; a fraction is no id, refused before anything is sent."""
    model = "sdk-" + uuid.uuid4().hex[:8]
    with EventProducer(stack.settings, envelopes=False) as producer:
        producer.emit_prediction(model, request_id=np.int64(12345), features={"x": 1.0}, prediction=1)
        producer.emit_outcome(model, request_id=12345, event_id=np.uint32(7), label=1)
        with pytest.raises(EventError, match='"request_id" must be a string, got a number'):
            producer.emit_prediction(model, request_id=np.float64(1.5), features={"x": 1.0}, prediction=1)
    (prediction,) = [json.loads(m.value) for m in read_all(stack, stack.settings.topics.predictions, model)]
    (outcome,) = [json.loads(m.value) for m in read_all(stack, stack.settings.topics.outcomes, model)]
    assert prediction["request_id"] == "12345" == outcome["request_id"] and outcome["event_id"] == "7"


class Channel(enum.Enum):
    WEB = "web"


def test_values_of_numpy_pandas_and_the_standard_library_go_as_their_json_form(stack: PrivateStack) -> None:
    """What a model server has at hand: scikit-learn's ``predict`` gives ``np.str_`` classes, a database driver
    ``Decimal`` and ``UUID``, pandas' nullable columns ``pd.NA`` and ``NaT``, a time column ``np.datetime64``.
    Each goes as the JSON value it stands for (before: a class or label of ``np.str_`` was refused as "must be
    a number, got a number", the others raised); a value with no JSON form is refused with its type named."""
    model = "sdk-" + uuid.uuid4().hex[:8]
    request = uuid.UUID("6f1c1b7e-8a64-4a44-9d6e-3b1f0a8f1e21")
    with EventProducer(stack.settings, envelopes=False) as producer:
        producer.emit_prediction(
            model,
            request_id=request,
            ts=np.datetime64("2026-11-30T08:00:00.250"),
            features={"amount": decimal.Decimal("12.50"), "age": pd.NA, "seen": pd.NaT, "channel": Channel.WEB},
            prediction=np.array(["fraud", "legit"])[0],
            score={np.str_("fraud"): np.float32(0.75), "legit": 0.25},
        )
        producer.emit_outcome(model, request_id=np.str_(str(request)), label=np.str_("fraud"))
        with pytest.raises(EventError, match=r"Timestamp\('2026-11-30 08:00:00'\) \(Timestamp\) is not a number"):
            producer.emit_prediction(
                model, request_id="r", features={"seen": pd.Timestamp("2026-11-30 08:00")}, prediction=1
            )
        with pytest.raises(EventError, match=r'"ts" must be a datetime.*\(date\)'):
            producer.emit_outcome(model, request_id="r", label=1, ts=dt.date(2026, 11, 30))
        with pytest.raises(EventError, match=r'"request_id" must be a string, got bytes \(no JSON type\)'):
            producer.emit_outcome(model, request_id=b"r-1", label=1)
    (prediction,) = [json.loads(m.value) for m in read_all(stack, stack.settings.topics.predictions, model)]
    (outcome,) = [json.loads(m.value) for m in read_all(stack, stack.settings.topics.outcomes, model)]
    assert prediction["request_id"] == str(request) == outcome["request_id"]
    assert prediction["ts"] == 1796025600.25
    assert prediction["features"] == {"amount": 12.5, "age": None, "seen": None, "channel": "web"}
    assert prediction["prediction"] == "fraud" and prediction["score"] == {"fraud": 0.75, "legit": 0.25}
    assert outcome["label"] == "fraud"


def test_a_producer_made_before_a_fork_sends_each_childs_events_once_and_lets_the_child_exit(
    stack: PrivateStack,
) -> None:
    """gunicorn ``--preload``, uWSGI and Celery's prefork pool fork workers from a process that made the
    producer: a child had none of its threads, so its events waited for a sender that stayed in the parent
    (``flush`` timed out, every event lost). Each child now starts a connection of its own on first use; what
    the parent had not sent at the fork is the parent's to send (once), and a child that exits without closing
    it sends what it holds first (and waits for nothing of the parent's)."""
    model = "fork-" + uuid.uuid4().hex[:8]
    run = subprocess.run(
        [sys.executable, "-m", "tests.streams.forked_producers", "fork", model, "3", "200"],
        env=stack.process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(line["child"] for line in lines if "child" in line) == [0, 1, 2]
    assert all(line["ended"] == "flushed" for line in lines if "child" in line), lines
    assert lines[-1] == {"parent": "closed", "children_exit_codes": [0, 0, 0, 0]}
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr[-2000:]
    messages = read_all(stack, stack.settings.topics.outcomes, model)
    request_ids = [e["request_id"] for m in messages for e in json.loads(m.value)["events"]]
    expected = (
        [f"parent-{i}" for i in range(50)]
        + [f"child{k}-{i}" for k in range(3) for i in [*map(str, range(200)), *(f"late-{j}" for j in range(10))]]
        + [f"worker-{i}" for i in range(10)]
    )
    assert sorted(request_ids) == sorted(expected)  # each once: the parent's not sent again by a child


def test_events_emitted_by_a_process_that_exits_without_closing_its_producer_are_sent(stack: PrivateStack) -> None:
    """A server stopped (a recycled gunicorn worker, a pod rolled) rarely closes a module-level producer: the
    events in its open envelopes were lost at the exit, though ``emit`` had accepted them."""
    model = "exit-" + uuid.uuid4().hex[:8]
    run = subprocess.run(
        [sys.executable, "-m", "tests.streams.forked_producers", "exit", model, "300"],
        env=stack.process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    messages = read_all(stack, stack.settings.topics.outcomes, model)
    request_ids = [e["request_id"] for m in messages for e in json.loads(m.value)["events"]]
    assert sorted(request_ids) == sorted(f"r{i}" for i in range(300))


def test_a_producer_handed_to_another_process_is_made_there_anew_with_its_options(stack: PrivateStack) -> None:
    """multiprocessing's spawn and forkserver starts (macOS's default, and Linux's from Python 3.14) pickle a
    process's arguments: a producer could not be handed over ("Can't pickle local object"). Unpickled (here, in
    this process: what a spawned one does with it), it is a producer of its own with the same options."""
    model = "spawn-" + uuid.uuid4().hex[:8]
    producer = EventProducer(stack.settings, max_events=30, linger_s=60, spread=2)
    with producer, pickle.loads(pickle.dumps(producer)) as again:
        for i in range(100):
            again.emit_prediction(model, request_id=f"again-{i}", features={"x": float(i)}, prediction=1)
    messages = read_all(stack, stack.settings.topics.predictions, model)
    events = [e["request_id"] for m in messages for e in json.loads(m.value)["events"]]
    assert sorted(events) == sorted(f"again-{i}" for i in range(100))
    assert sorted(len(json.loads(m.value)["events"]) for m in messages) == [10, 30, 30, 30]  # max_events travelled
    assert len({m.key for m in messages}) == 2  # and spread
