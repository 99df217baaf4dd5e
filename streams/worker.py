"""The streams worker: the Faust app whose agents take batches of messages and hand them to ingestion.

``driftloop worker`` and ``faust -A driftloop.streams.app worker`` both run :func:`build_worker_app`'s app. The app's
process runs Faust; ingestion (decode, write, join, dead letters) runs in a child process and drift
detection in another (``streams.ingestion_process``, ``streams.drift.process``), so that Faust's thread
does little more than a bare agent's. One more agent, the alert gate, reads the detections topic and lets
one alert per drift through (``streams.drift.gate``).

Before offsets are committed the detector state is saved (``checkpoint``): a committed event is always in
the saved detectors' history.

Offsets: the worker's topics are *record lanes* (``streams.record_lanes``): the consumer puts each
partition's fetched records into the topic's lane, past Faust's streams, and each agent takes batches from
its lane and hands them to ingestion. A batch is acknowledged only after the ingestion process answers that
ClickHouse and the dead-letter topic have everything; a batch that fails or is interrupted stays
unacknowledged, Faust does not commit past it, and it is delivered again after a restart or rebalance. A
rebalance waits for the batches handed on to be written and acknowledged (``drain_record_lanes``) before
Faust commits and the partitions go.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import faust
from faust.types import StreamT

from driftloop.infra.clickhouse.client import SharedClient, enforce_retention
from driftloop.infra.contract import Alert
from driftloop.infra.kafka.groups import take_over_offsets
from driftloop.infra.kafka.waiting import when_kafka_answers
from driftloop.infra.metrics import serve_metrics
from driftloop.infra.settings import Settings
from driftloop.infra.spec import SpecCatalog
from driftloop.streams.app_factory import create_app
from driftloop.streams.batch_writer import BatchWriter, Submit, written_on_return
from driftloop.streams.broker_watch import BrokerIncident, BrokerWatch, WrittenOffsets, worker_name
from driftloop.streams.drift.gate import AlertGate, GateKeeper, read_detections
from driftloop.streams.drift.silences import Silence, active_silences
from driftloop.streams.gc_tuning import collect_less_often
from driftloop.streams.ingestion_process import IngestionProcess, KafkaMessage
from driftloop.streams.malloc_tuning import keep_freed_memory
from driftloop.streams.metrics import worker_metrics
from driftloop.streams.record_lanes import RecordLane
from driftloop.streams.supervisor import restart
from driftloop.streams.topic_publisher import KafkaTopicPublisher

log = logging.getLogger("driftloop.worker")


def build_worker_app(settings: Settings) -> faust.App:
    """The streams worker's Faust app: ingestion, the outcome join and drift detection.

    ``app.ingestion`` is the ingestion process (its handlers, and its metrics as of its last answer);
    ``app.broker_watch`` the watch on the Kafka cluster (``streams.broker_watch``).
    """
    app = create_app(settings, app_id=settings.worker_group)
    ingestion = IngestionProcess(settings)
    written = WrittenOffsets()
    writers: list[BatchWriter] = []

    async def start_clean(incident: BrokerIncident) -> None:
        # The consumer's positions and acknowledged offsets belong to the lost instance: write what was
        # read, store the report and the detector state, then run this worker again from the start.
        for writer in writers:
            writer.freeze()
        await ingestion.write(incident.rows(worker_name(), settings.kafka_bootstrap))
        for writer in writers:
            await writer.drain()
        await ingestion.hand_over_detectors()
        log.warning("starting the worker again on the new broker instance")
        restart()

    broker_watch = BrokerWatch(settings, written, start_clean)
    app.ingestion = ingestion  # type: ignore[attr-defined]
    app.broker_watch = broker_watch  # type: ignore[attr-defined]
    app.commit_guard = broker_watch.check  # type: ignore[attr-defined]

    async def checkpoint() -> bool:
        # Every acknowledged batch was handed to detection before its ack, and the save runs after the
        # batches handed over before it: the saved state covers every offset about to be committed.
        try:
            await ingestion.save_detectors()
        except Exception:
            log.warning("could not save detector state; the offsets wait for the next commit", exc_info=True)
            return False
        return True

    app.checkpoint = checkpoint  # type: ignore[attr-defined]
    outcomes_topic = settings.topics.outcomes
    source_topics = {settings.topics.predictions, outcomes_topic}

    gate, close_gate = _alert_gate(settings, ingestion)
    app.alert_gate = gate.gate  # type: ignore[attr-defined]

    async def pass_detections(messages: Sequence[KafkaMessage]) -> None:
        await gate.handle(read_detections([m.value for m in messages]))

    lanes = {
        topic: RecordLane(
            max_records=settings.batch_max_messages,
            max_bytes=settings.batch_max_bytes,
            max_wait_s=settings.batch_max_wait_s,
        )
        for topic in (settings.topics.predictions, outcomes_topic, settings.topics.detections)
    }
    app.record_lanes = lanes  # type: ignore[attr-defined]

    async def drain_record_lanes() -> None:
        for writer in writers:
            await writer.drain()

    app.drain_record_lanes = drain_record_lanes  # type: ignore[attr-defined]

    def count_failure() -> None:
        ingestion.batch_errors += 1

    async def consume(topic: str, submit: Submit) -> None:
        # Taking the next batch, and handing it on, overlap with writing the one before; ``depth`` bounds
        # the batches handed on and not yet written.
        lane = lanes[topic]
        pipeline = BatchWriter(submit, lane, app.consumer.acknowledge, written.update, count_failure, depth=2)
        writers.append(pipeline)
        try:
            while True:
                await pipeline.put(await lane.take())
        finally:
            writers.remove(pipeline)
            await pipeline.close()

    # The agents subscribe the worker to its topics; their streams stay empty (the records go to the lanes).
    @app.agent(app.topic(settings.topics.predictions), name="ingest-predictions", concurrency=1)
    async def ingest_predictions(stream: StreamT) -> None:
        await consume(settings.topics.predictions, ingestion.submit_predictions)

    @app.agent(app.topic(outcomes_topic), name="ingest-outcomes", concurrency=1)
    async def ingest_outcomes(stream: StreamT) -> None:
        await consume(outcomes_topic, ingestion.submit_outcomes)

    @app.agent(app.topic(settings.topics.detections), name="alert-gate", concurrency=1)
    async def alert_gate(stream: StreamT) -> None:
        await consume(settings.topics.detections, written_on_return(pass_detections))

    @app.timer(settings.join_sweep_interval_s, name="join-sweep")
    async def join_sweep() -> None:
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == outcomes_topic}
        if owned:
            try:
                await ingestion.sweep(owned)
            except Exception:
                log.exception("join sweep failed; the next one retries")

    @app.on_partitions_revoked.connect
    async def hand_over_detector_state(sender: object, revoked: set, **kwargs: object) -> None:
        # whoever gets these partitions next reads the state (and the gate its memory) from ClickHouse
        gate.gate.forget()
        try:
            await ingestion.hand_over_detectors()
        except Exception:
            log.exception("could not save detector state before the rebalance")

    @app.on_partitions_assigned.connect
    async def on_assignment(sender: object, assigned: set, **kwargs: object) -> None:
        # A broker that lost its data forces a new assignment: find out before the new instance's
        # messages flow, so that the loss window is measured on the old instance's offsets alone.
        await broker_watch.check()
        owned = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned if tp.topic in source_topics)
        log.info("partitions assigned", extra={"fields": {"partitions": ",".join(owned) or "none"}})

    @app.task
    async def start_ingestion() -> None:
        ingestion.start()  # now, not at the first batch: the child processes take seconds to import

    @app.on_before_shutdown.connect
    async def stop_ingestion(sender: object, **kwargs: object) -> None:
        await ingestion.close()  # after the partitions' hand-over: the consumer has stopped
        close_gate()

    @app.timer(settings.broker_check_interval_s, name="broker-watch")
    async def watch_broker() -> None:
        await broker_watch.check()

    @app.timer(settings.detector_state_interval_s, name="detector-state")
    async def save_detector_state() -> None:
        try:
            await ingestion.save_detectors()
        except Exception:
            log.exception("could not save detector state; the next interval retries")

    if settings.retention:

        @app.timer(settings.retention_check_s, name="retention", on_leader=True)
        async def apply_retention() -> None:  # one worker of the group: the leader
            try:
                await asyncio.to_thread(enforce_retention, settings.clickhouse, settings.retention)
            except Exception:
                log.exception("retention failed; the next check retries")

    @app.timer(60.0, name="ingestion-metrics")
    async def report_metrics() -> None:
        m, sinks = ingestion.metrics, ingestion.sink_metrics.values()
        log.info(
            "ingestion",
            extra={
                "fields": {
                    "events": dict(m.events),
                    "dead_letters": m.dead_letters,
                    "labeled": m.labeled,
                    "expired_outcomes": m.expired_outcomes,
                    "rows_written": dict(sum((s.rows_written for s in sinks), Counter())),
                    "sink_retries": sum(s.retries for s in sinks),
                }
            },
        )

    return app


def _alert_gate(settings: Settings, ingestion: IngestionProcess) -> tuple[GateKeeper, Callable[[], None]]:
    """The alert gate as the worker runs it (ClickHouse read in threads, alerts published with kafka-python,
    ``drift_alerts`` written by the ingestion process), and what closes its connections."""
    reader = SharedClient(settings.clickhouse)
    publisher = KafkaTopicPublisher[Alert](settings, settings.topics.alerts, key=lambda alert: alert.model)

    async def silences(models: list[str], now: float) -> list[Silence]:
        # none when ClickHouse cannot say: an alert sent during a silence is a nuisance, one lost is worse
        try:
            return await asyncio.to_thread(active_silences, reader, models, now)
        except Exception:
            log.warning("could not read alert silences; the alerts are published", exc_info=True)
            return []

    async def read(query: Callable[[SharedClient], Any]) -> Any:
        return await asyncio.to_thread(query, reader)

    def close() -> None:
        publisher.close()
        reader.close()

    gate = GateKeeper(AlertGate(SpecCatalog.of(settings)), read, publisher.publish, ingestion.write, silences)
    return gate, close


def serve_worker(settings: Settings) -> None:
    """The worker itself: the Faust app, its metrics, in this process (``streams.supervisor.run_worker`` runs it
    in a child process of its own)."""
    app = build_worker_app(settings)
    serve_metrics(settings.metrics_port, lambda: worker_metrics(app))
    topics = settings.topics
    when_kafka_answers(  # a group renamed after the topic prefix goes on from its former name's offsets
        lambda: take_over_offsets(
            settings, settings.worker_group, [topics.predictions, topics.outcomes, topics.detections]
        ),
        settings,
        who="the streams worker",
    )
    collect_less_often()
    keep_freed_memory()
    worker = faust.Worker(
        app, loglevel=settings.log_level.lower(), override_logging=False, quiet=True, redirect_stdouts=False
    )
    worker.execute_from_commandline()
