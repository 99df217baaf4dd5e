"""The streams worker's Prometheus metrics, read from its counters when ``/metrics`` is scraped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from driftloop.infra.metrics import counter, gauge, histogram


def worker_metrics(app: Any) -> Iterator[Metric]:
    """Families for a worker app built by :func:`streams.worker.build_worker_app`."""
    ingestion = app.ingestion
    m, drift = ingestion.metrics, ingestion.drift_metrics
    yield counter("driftloop_messages", "Kafka messages consumed, by topic kind.", _by(m.messages), ["kind"])
    yield counter("driftloop_events", "Events accepted and written, by kind.", _by(m.events), ["kind"])
    yield counter("driftloop_dead_letters", "Messages or events sent to the dead-letter topic, by kind of problem.",
                  _by(m.dead_letter_reasons), ["reason"])  # fmt: skip
    yield counter("driftloop_model_events", "Events accepted and written, by model (the first 200; then 'other').",
                  {pair: float(n) for pair, n in m.models.events.items()}, ["model", "kind"])  # fmt: skip
    yield gauge("driftloop_model_seconds_since_last_event", "Seconds since each model last sent an event here.",
                {(model,): s for model, s in m.models.seconds_since_last_event().items()}, ["model"])  # fmt: skip
    yield counter(
        "driftloop_unreadable_offsets",
        "Offsets of record batches the consumer could not read (corrupt, or compressed with a codec it lacks);"
        " each range is in dead_letters.",
        {(): m.unreadable_offsets},
    )
    yield counter("driftloop_labeled", "Outcomes joined to their prediction.", {(): m.labeled})
    yield counter("driftloop_outcomes_expired", "Outcomes whose prediction never came in the window.",
                  {(): m.expired_outcomes})  # fmt: skip
    yield counter(
        "driftloop_batch_errors", "Batches that failed and stay unacknowledged.", {(): ingestion.batch_errors}
    )
    yield m.batch_seconds.family("driftloop_batch_seconds", "Seconds to decode, write and observe one batch.")
    yield histogram(
        "driftloop_event_age_seconds",
        "Seconds from each event's ts to its row written to ClickHouse, by kind (landing latency, with the "
        "producer's own delay; 0 for events stamped ahead of the worker's clock).",
        {(kind,): ages for kind, ages in m.event_age_seconds.items()},
        ["kind"],
    )
    rows: dict[tuple[str, ...], float] = {}
    retries, waiting = 0, 0
    for sink in (*ingestion.sink_metrics.values(), drift):
        for table, written in sink.rows_written.items():
            rows[(table,)] = rows.get((table,), 0) + written
        retries += sink.retries
        waiting += sink.rows_waiting
    yield counter("driftloop_rows_written", "Rows written to ClickHouse, by table.", rows, ["table"])
    yield counter("driftloop_sink_retries", "ClickHouse inserts retried (server unavailable or failing).",
                  {(): retries})  # fmt: skip
    yield gauge("driftloop_sink_rows_waiting", "Rows held while ClickHouse is retried.", {(): waiting})
    gate = app.alert_gate
    yield counter("driftloop_alerts", "Drift alerts let through the alert gate, by kind.", _by(gate.alerts_by_kind),
                  ["kind"])  # fmt: skip
    yield counter("driftloop_detections", "Detections handed to the alert gate, by kind.",
                  _by(drift.detections_by_kind), ["kind"])  # fmt: skip
    yield counter("driftloop_alerts_folded", "Detections folded into an alert of the same drift by the alert gate.",
                  {(): gate.folded})  # fmt: skip
    yield counter("driftloop_detector_state_bytes", "Bytes of detector state saved to ClickHouse (its JSON text).",
                  {(): drift.state_bytes})  # fmt: skip
    yield gauge("driftloop_detection_events_waiting",
                "Events held in the detection process, to be detected with their model's next ones.",
                {(): drift.events_waiting})  # fmt: skip
    yield counter("driftloop_detection_batch_errors", "Batches the drift detectors failed on (ingestion went on).",
                  {(): drift.batch_errors})  # fmt: skip
    yield counter("driftloop_detector_failures", "Times a detector raised on its values: its signal started again.",
                  {(): drift.detector_failures})  # fmt: skip
    yield counter("driftloop_detection_batches_lost", "Batches a lost detection process held (written, not detected).",
                  {(): drift.batches_lost})  # fmt: skip
    yield counter("driftloop_ingestion_restarts", "Times the ingestion process exited unasked and was started again.",
                  {(): ingestion.restarts})  # fmt: skip
    yield counter("driftloop_detection_restarts", "Times the detection process exited unasked and was started again.",
                  {(): drift.restarts})  # fmt: skip
    watch = app.broker_watch.metrics
    yield gauge("driftloop_broker_reachable", "1 while Kafka answers the worker's checks.",
                {(): float(watch.reachable)})  # fmt: skip
    yield counter("driftloop_broker_outages", "Times Kafka stopped answering.", {(): watch.outages})
    yield counter("driftloop_broker_incidents", "Times Kafka came back as a new instance that had lost its data.",
                  {(): watch.incidents})  # fmt: skip
    yield gauge("driftloop_consumer_lag", "Messages behind the end of each owned partition (end - committed).",
                consumer_lag(app), ["group", "topic", "partition"])  # fmt: skip


def consumer_lag(app: Any) -> dict[tuple[str, ...], float]:
    """End offset minus committed offset per partition, as Faust's monitor last saw them, with the consumer
    group (the app's id)."""
    monitor, group = app.monitor, str(app.conf.id)
    ends, committed = dict(monitor.tp_end_offsets or {}), dict(monitor.tp_committed_offsets or {})
    return {(group, tp.topic, str(tp.partition)): float(max(0, end - committed.get(tp, 0))) for tp, end in ends.items()}


def _by(values: Any) -> dict[tuple[str, ...], float]:
    return {(str(k),): float(v) for k, v in values.items()}
