"""The worker's child processes (ingestion, detection) killed mid-stream: nothing lost or doubled, work goes on.

`driftloop worker` is three processes (streams/ingestion_process.py, streams/drift/process.py): Faust, which
holds and acks the messages; ingestion, which writes them; detection. Each child is killed with SIGKILL with
work in hand, against the real broker and ClickHouse.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from driftloop.infra.clickhouse.client import connect
from tests.stack_fixtures import PrivateStack, WorkerProcess, only_child, wait_for

pytestmark = pytest.mark.integration


def send(stack: PrivateStack, model: str, start: int, n: int) -> None:
    producer = KafkaProducer(**stack.settings.kafka_python_config(), linger_ms=5)
    for i in range(start, start + n):
        event = {"model": model, "request_id": f"r{i}", "ts": 1_790_000_000 + i, "features": {"x": i % 7},
                 "prediction": i % 2, "score": 0.5}  # fmt: skip
        producer.send(stack.settings.topics.predictions, json.dumps(event).encode(), key=model.encode())
        if i % 250 == 0:
            time.sleep(0.05)  # a stream, not one burst: the kill lands mid-stream
    producer.flush()
    producer.close()


def landed(stack: PrivateStack, model: str) -> tuple[int, int]:
    """(rows, distinct event ids) of ``model`` in ``predictions``."""
    client = connect(stack.settings.clickhouse)
    try:
        return client.execute(
            "SELECT count(), uniqExact(event_id) FROM predictions FINAL WHERE model = %(m)s", {"m": model}
        )[0]
    finally:
        client.disconnect()


def saved_events(stack: PrivateStack, model: str) -> int:
    client = connect(stack.settings.clickhouse)
    try:
        rows = client.execute("SELECT max(events) FROM detector_state WHERE model = %(m)s", {"m": model})
        return int(rows[0][0]) if rows else 0
    finally:
        client.disconnect()


def test_killed_child_processes_lose_and_double_nothing_and_are_started_again(
    stack: PrivateStack, tmp_path: Path
) -> None:
    model = "child-" + uuid.uuid4().hex[:8]
    worker = WorkerProcess(
        stack,
        tmp_path / "worker.log",
        DRIFTLOOP_WORKER_GROUP="child-kill-" + model,
        DRIFTLOOP_BATCH_MAX_WAIT_S="0.2",
        DRIFTLOOP_DETECTOR_STATE_INTERVAL_S="1",
    )
    try:
        ingestion = only_child(worker.faust_pid(), "the ingestion process")
        detection = only_child(ingestion, "the detection process")
        send(stack, model, 0, 2000)
        wait_for(lambda: landed(stack, model)[0] >= 2000, timeout_s=90, what="the first 2,000 events")

        # ingestion killed holding a batch (stopped first, so that one surely waits in it): the batch is
        # handed to a new ingestion process
        os.kill(ingestion, signal.SIGSTOP)
        send(stack, model, 2000, 3000)
        time.sleep(1.5)  # the worker hands batches over within DRIFTLOOP_BATCH_MAX_WAIT_S
        assert landed(stack, model)[0] == 2000
        os.kill(ingestion, signal.SIGKILL)
        wait_for(lambda: landed(stack, model)[0] >= 5000, timeout_s=120, what="5,000 events after the kill")
        assert worker.alive, worker.output()
        new_ingestion = only_child(worker.faust_pid(), "a new ingestion process")
        assert new_ingestion != ingestion

        # detection killed: ingestion goes on, and a new detection process picks the model up again
        detection = only_child(new_ingestion, "the new ingestion process's detection process")
        before = saved_events(stack, model)
        os.kill(detection, signal.SIGKILL)
        send(stack, model, 5000, 2000)
        wait_for(lambda: landed(stack, model)[0] >= 7000, timeout_s=120, what="7,000 events after both kills")
        wait_for(
            lambda: saved_events(stack, model) > before, timeout_s=60, what="detector state saved by a new process"
        )
        assert only_child(new_ingestion, "a new detection process") != detection
        time.sleep(1)  # anything beyond 7,000 would be a duplicate: give it the chance to show
        assert landed(stack, model) == (7000, 7000)
        assert worker.alive, worker.output()
        assert "child process exited" in worker.output()
    finally:
        worker.stop()
