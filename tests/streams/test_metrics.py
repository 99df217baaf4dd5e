"""The streams worker's Prometheus endpoint counts what it did: events, dead letters, rows, batch times, lag."""

from __future__ import annotations

import re
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from driftloop.infra.network import free_port
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.producer import EventProducer
from tests.stack_fixtures import PrivateStack, WorkerProcess, wait_for

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[str, float]:
    """``{'name{labels}': value}`` from the endpoint's text format."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+|NaN)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_the_worker_serves_its_counters_on_the_metrics_endpoint(stack: PrivateStack, tmp_path: Path) -> None:
    port = free_port()
    tag = uuid.uuid4().hex[:8]
    private = stack.with_env(
        DRIFTLOOP_TOPIC_PREFIX=f"metrics-{tag}.",
        DRIFTLOOP_WORKER_GROUP=f"metrics-{tag}",  # its own group: members other tests left cannot slow the join
        DRIFTLOOP_METRICS_PORT=str(port),
        DRIFTLOOP_BATCH_MAX_WAIT_S="0.2",
    )
    local_stack.up(private.settings)  # the stack runs: this only provisions the test's own topics
    model = "metrics-" + uuid.uuid4().hex[:6]
    with EventProducer(private.settings, max_events=100) as producer:
        for i in range(500):
            producer.emit_prediction(model, request_id=f"r{i}", features={"x": float(i)}, prediction=1)
        for i in range(200):
            producer.emit_outcome(model, request_id=f"r{i}", label=1)
    raw = KafkaProducer(**private.settings.kafka_python_config())
    for _ in range(3):
        raw.send(private.settings.topics.predictions, b"{not json")
    raw.flush()
    raw.close()

    worker = WorkerProcess(private, tmp_path / "worker.log")
    try:
        last: list[dict[str, float]] = [{}]

        def counted() -> dict[str, float] | None:
            assert worker.alive, worker.output()
            try:
                samples = last[0] = scrape(port)
            except OSError:
                return None  # not listening yet
            done = (
                samples.get('driftloop_events_total{kind="predictions"}') == 500
                and samples.get("driftloop_labeled_total") == 200
            )
            return samples if done else None

        samples = wait_for(
            counted, timeout_s=90, what=f"the worker's metrics to count every event; last scrape: {last}"
        )
        assert samples['driftloop_events_total{kind="outcomes"}'] == 200
        assert samples["driftloop_dead_letters_total"] == 3
        assert samples['driftloop_rows_written_total{table="predictions"}'] == 500
        assert samples['driftloop_rows_written_total{table="labeled"}'] == 200
        assert samples["driftloop_batch_seconds_count"] >= 2  # at least one batch per topic
        assert samples["driftloop_batch_errors_total"] == 0
        assert samples["driftloop_broker_reachable"] == 1
        assert samples["driftloop_broker_incidents_total"] == 0
        lag = {k: v for k, v in samples.items() if k.startswith("driftloop_consumer_lag{")}
        assert lag and all(v >= 0 for v in lag.values()), lag
    finally:
        worker.stop()
