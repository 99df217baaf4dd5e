"""The streams worker's Prometheus endpoint counts what it did: events, dead letters, rows, batch times, lag."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from benchmarks import scrape_metrics
from driftloop.infra.network import free_port
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.ingestion import IngestionMetrics, ModelActivity
from driftloop.streams.producer import EventProducer
from tests.stack_fixtures import PrivateStack, WorkerProcess, wait_for


@pytest.mark.integration
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
        stamped_early = time.time() - 7200  # ten events stamped two hours before they are sent
        for i in range(500):
            ts = stamped_early if i < 10 else None
            producer.emit_prediction(model, request_id=f"r{i}", features={"x": float(i)}, prediction=1, ts=ts)
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
                samples = last[0] = scrape_metrics(port)
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
        assert samples['driftloop_dead_letters_total{reason="malformed_json"}'] == 3
        assert samples[f'driftloop_model_events_total{{kind="predictions",model="{model}"}}'] == 500
        assert samples[f'driftloop_model_events_total{{kind="outcomes",model="{model}"}}'] == 200
        assert 0 <= samples[f'driftloop_model_seconds_since_last_event{{model="{model}"}}'] < 90
        assert samples['driftloop_rows_written_total{table="predictions"}'] == 500
        assert samples['driftloop_rows_written_total{table="labeled"}'] == 200
        assert samples["driftloop_batch_seconds_count"] >= 2  # at least one batch per topic
        age = 'driftloop_event_age_seconds_bucket{{kind="{}",le="{}"}}'.format
        assert samples[age("predictions", "+Inf")] == 500 and samples[age("outcomes", "+Inf")] == 200
        # sent now, landed within the wait above (the worker started after they were sent); the early ten older
        assert samples[age("predictions", "300.0")] == 490 and samples[age("predictions", "3600.0")] == 490
        assert samples[age("outcomes", "300.0")] == 200
        assert samples['driftloop_event_age_seconds_sum{kind="predictions"}'] >= 10 * 7200
        assert samples["driftloop_batch_errors_total"] == 0
        assert (
            samples["driftloop_detection_batch_errors_total"] == 0 and samples["driftloop_detector_failures_total"] == 0
        )
        assert samples["driftloop_broker_reachable"] == 1
        assert samples["driftloop_broker_incidents_total"] == 0
        saved = wait_for(
            lambda: (n := scrape_metrics(port).get("driftloop_detector_state_bytes_total", 0)) > 1000 and n,
            timeout_s=60,
            what="the model's detector state saved (before a commit)",
        )
        assert saved < 1_000_000  # a model of one feature: some kB a save
        assert scrape_metrics(port)["driftloop_detection_events_waiting"] == 0  # a save detects what waits first
        lag = {k: v for k, v in samples.items() if k.startswith("driftloop_consumer_lag{")}
        assert lag and all(v >= 0 and f'group="metrics-{tag}"' in k for k, v in lag.items()), lag
    finally:
        worker.stop()


def test_event_ages_are_counted_by_kind_from_each_event_s_ts_and_clocks_ahead_count_as_zero() -> None:
    metrics = IngestionMetrics()
    now = 1_700_000_000.0
    metrics.landed("predictions", [int((now - age) * 1000) for age in (0.05, 0.3, 0.3, 2.0, 7200.0)], now)
    metrics.landed("predictions", np.array([int((now + 5) * 1000)], dtype=np.uint64), now)  # a producer ahead
    metrics.landed("outcomes", [int((now - 40) * 1000)], now)
    ages = metrics.event_age_seconds
    assert ages["predictions"].count == 6 and ages["outcomes"].count == 1
    buckets = dict(ages["predictions"].buckets())
    assert (buckets["0.1"], buckets["0.5"], buckets["2.5"], buckets["3600.0"], buckets["+Inf"]) == (2, 4, 5, 5, 6)
    assert ages["predictions"].total == pytest.approx(0.05 + 0.3 + 0.3 + 2.0 + 7200.0, abs=0.01)
    assert dict(ages["outcomes"].buckets())["30.0"] == 0 and dict(ages["outcomes"].buckets())["60.0"] == 1


def test_model_labels_are_bounded_and_the_rest_count_as_other() -> None:
    activity = ModelActivity(max_models=3)
    activity.add("predictions", ["a", "b", "a", "c", "d", "e"])
    activity.add("outcomes", ["a", "e"])
    assert activity.events == {
        ("a", "predictions"): 2,
        ("b", "predictions"): 1,
        ("c", "predictions"): 1,
        ("other", "predictions"): 2,
        ("a", "outcomes"): 1,
        ("other", "outcomes"): 1,
    }
    later = max(activity.last_event.values()) + 30
    assert set(activity.seconds_since_last_event(later)) == {"a", "b", "c", "other"}
    assert min(activity.seconds_since_last_event(later).values()) >= 30
