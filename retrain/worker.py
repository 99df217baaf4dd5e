"""The retraining worker: alerts in, jobs by policy, new versions out.

It consumes ``alerts`` in the consumer group ``driftloop-retrain`` (alerts are keyed by model, so one
model's alerts reach one worker and its jobs never run twice at once). Per the model spec's
``retraining`` section: only the configured alert kinds start a job; alerts closer than ``debounce_s``
make one job (starting from the earliest change point); after a job the model cools down; with too few
labels after the change point the job waits and looks again every ``recheck_s``, for ``max_wait_s`` at
most: then it gives up, recorded in ``retrain_runs`` as ``skipped`` with the reason. A failed job is
retried up to ``max_attempts`` times, and artifacts are written atomically.

Offsets are committed per partition up to the first alert of a job still waiting or running on it, so a
worker killed mid-training reads that alert again and retries, while every other alert moves on. What
the policy remembers survives a restart: the alerts of a burst not yet trained on are read again (one
job), and cooldowns are read back from ``retrain_runs`` (wall clock).

The release controller (``release.controller``), the schedules (``retrain.schedules``: the spec's cron
expression or interval) and the thresholds (``retrain.thresholds``: the champion's live metric worse than the
spec's ``threshold``) run in the same loop, every ``release_check_s``, for the models whose ``alerts``
partition this worker holds: one owner per model, handed over with the partition. A scheduled or threshold job
trains on the spec's whole training window.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from driftloop.infra.contract import Alert
from driftloop.infra.errors import DriftloopError
from driftloop.infra.kafka.groups import take_over_offsets
from driftloop.infra.kafka.partitioner import default_partition
from driftloop.infra.kafka.waiting import when_kafka_answers
from driftloop.infra.metrics import Histogram
from driftloop.infra.settings import Settings
from driftloop.infra.spec import RetrainingSpec, SpecCatalog, SpecError
from driftloop.release.controller import ReleaseController
from driftloop.retrain.job import FinishedRun, JobRequest, NotEnoughLabels, RetrainJob, RunReport, Trigger
from driftloop.retrain.schedules import Scheduler
from driftloop.retrain.thresholds import ThresholdWatch

log = logging.getLogger("driftloop.retrain")


#: Where an alert was read: (topic, partition, offset).
Position = tuple[str, int, int]


@dataclass
class PendingJob:
    """A job waiting for its debounce, for labels, or for a retry.

    ``since_s``: when it was first offered (the clock's time), from which the wait for labels is bounded;
    ``first_read``: where its first alert was read (offsets are committed up to there only).
    """

    request: JobRequest
    due: float
    alerts: list[str] = field(default_factory=list)
    since_s: float = 0.0
    first_read: Position | None = None


class RetrainPolicy:
    """Which alerts become jobs, and when those jobs run (see the module docstring).

    ``clock`` is wall-clock seconds, so that cooldowns read back from ``retrain_runs`` mean the same after a
    restart (:meth:`restore`).
    """

    def __init__(self, specs: SpecCatalog, clock: Callable[[], float] = time.time) -> None:
        self.specs = specs
        self.clock = clock
        self.pending: dict[str, PendingJob] = {}
        self._cooldown_until: dict[str, float] = {}

    def offer(self, alert: Alert, read_at: Position | None = None) -> bool:
        """Take an alert in (``read_at``: where it was read); whether it starts or joins a job.

        A broken spec file raises :class:`~infra.spec.SpecError` (the caller skips the alert and says so).
        """
        rules = self.specs.get(alert.model).retraining
        now = self.clock()
        if alert.kind not in rules.kinds or now < self._cooldown_until.get(alert.model, 0.0):
            return False
        job = self.pending.get(alert.model)
        if job is None:
            self.pending[alert.model] = PendingJob(
                JobRequest(alert.model, alert.change_point_ts, alert.alert_id),
                now + rules.debounce_s,
                [alert.alert_id],
                since_s=now,
                first_read=read_at,
            )
        else:  # a burst: one job, from the earliest change point
            job.alerts.append(alert.alert_id)
            job.request = replace(job.request, since=min(job.request.since, alert.change_point_ts))
        return True

    def offer_run(self, model: str, since: float, trigger: Trigger) -> bool:
        """A run of ``model`` from ``since`` that no alert asked for (a schedule's, a threshold's): a job due now,
        unless one is pending already."""
        if model in self.pending:
            return False
        now = self.clock()
        self.pending[model] = PendingJob(JobRequest(model, since, trigger=trigger), now, since_s=now)
        return True

    def busy(self, model: str) -> bool:
        """Whether ``model`` has a job pending, or is cooling down after one."""
        return model in self.pending or self.clock() < self._cooldown_until.get(model, 0.0)

    def due(self) -> list[PendingJob]:
        now = self.clock()
        return [job for job in self.pending.values() if job.due <= now]

    def wait(self, job: PendingJob) -> bool:
        """Look again after ``recheck_s``; False, and the job is finished, once it waited ``max_wait_s``."""
        rules = self._rules(job.request.model)
        if self.clock() - job.since_s >= rules.max_wait_s:
            self.finish(job)
            return False
        job.due = self.clock() + rules.recheck_s
        return True

    def held(self) -> dict[tuple[str, int], int]:
        """(topic, partition) → the offset of the first alert a pending job still needs: commit no further."""
        held: dict[tuple[str, int], int] = {}
        for job in self.pending.values():
            if job.first_read is not None:
                topic, partition, offset = job.first_read
                held[(topic, partition)] = min(offset, held.get((topic, partition), offset))
        return held

    def forget_all_but(self, partitions: set[tuple[str, int]]) -> list[str]:
        """Drop the pending jobs whose first alert was read from a partition not in ``partitions``; their models."""
        gone = [m for m, job in self.pending.items() if job.first_read and job.first_read[:2] not in partitions]
        for model in gone:
            del self.pending[model]
        return gone

    def restore(self, finished: Iterable[FinishedRun]) -> None:
        """Cooldowns from the runs that ended before this process started (``retrain_runs``)."""
        for run in finished:
            rules = self._rules(run.model)
            if run.status == "failed" and run.attempt < rules.max_attempts:
                continue  # a retry was still due: the alert is read again and the job retried
            until = run.finished_at + rules.cooldown_s
            if until > self._cooldown_until.get(run.model, 0.0):
                self._cooldown_until[run.model] = until

    def retry(self, job: PendingJob) -> bool:
        rules = self._rules(job.request.model)
        if job.request.attempt >= rules.max_attempts:
            self.finish(job)
            return False
        job.request = replace(job.request, attempt=job.request.attempt + 1)
        job.due = self.clock() + rules.recheck_s * 2 ** (job.request.attempt - 1)
        return True

    def finish(self, job: PendingJob) -> None:
        self.pending.pop(job.request.model, None)
        self._cooldown_until[job.request.model] = self.clock() + self._rules(job.request.model).cooldown_s

    def _rules(self, model: str) -> RetrainingSpec:
        """The model's retraining rules; the defaults while its spec file is broken (the job itself fails)."""
        try:
            return self.specs.get(model).retraining
        except SpecError:
            return RetrainingSpec()


RUN_SECONDS_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass
class RetrainMetrics:
    """The retrain worker's counters (Prometheus reads them: ``retrain.metrics``)."""

    alerts: Counter[str] = field(default_factory=Counter)  # by what happened: accepted, ignored, unreadable
    runs: Counter[str] = field(default_factory=Counter)  # by status: promoted, candidate, rejected, failed, skipped
    releases: Counter[str] = field(default_factory=Counter)  # stage changes the release controller made, by stage
    run_seconds: Histogram = field(default_factory=lambda: Histogram(RUN_SECONDS_BUCKETS))


class RetrainWorker:
    """Consumes alerts and runs jobs until stopped."""

    def __init__(self, settings: Settings, *, job: RetrainJob | None = None, release_check_s: float = 2.0) -> None:
        self.settings = settings
        self.job = job or RetrainJob(settings)
        self.policy = RetrainPolicy(self.job.specs)
        self.release = ReleaseController(settings, registry=self.job.registry, specs=self.job.specs)
        self.scheduler = Scheduler(self.job.specs)
        self.thresholds = ThresholdWatch(self.job.specs, self.release)
        self.release_check_s = release_check_s
        self.reports: list[RunReport] = []
        self.metrics = RetrainMetrics()
        self._stop = False
        self._released_at = 0.0

    def stop(self) -> None:
        self._stop = True

    def _consumer(self) -> KafkaConsumer:
        group = self.settings.groups.retrain
        take_over_offsets(self.settings, group, [self.settings.topics.alerts])
        return KafkaConsumer(
            **self.settings.kafka_python_config(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.kafka_session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.kafka_session_timeout_s * 1000 / 3),
            max_poll_interval_ms=30 * 60 * 1000,  # a training run may take a while between polls
        )

    def run(self, *, idle_exit_s: float | None = None) -> None:
        consumer = when_kafka_answers(
            self._consumer,
            self.settings,
            who="the retrain worker",
            stop=lambda: self._stop,
        )
        if consumer is None:  # stopped before a broker answered
            return
        try:
            self.policy.restore(self.job.finished_runs())
            self.scheduler.restore(self.job.last_scheduled_runs())
            self.thresholds.restore(self.job.last_threshold_runs())
        except Exception:  # ClickHouse away at start: run on, without the cooldowns of earlier runs
            log.error("could not read earlier runs from ClickHouse; their cooldowns are not restored", exc_info=True)
        read: dict[TopicPartition, int] = {}  # the next offset of each partition read from
        committed: dict[TopicPartition, int] = {}
        consumer.subscribe([self.settings.topics.alerts], listener=_HandOver(self, consumer, read, committed))
        idle_since = time.monotonic()
        try:
            while not self._stop:
                for tp, records in consumer.poll(timeout_ms=500).items():
                    for record in records:
                        read[tp] = record.offset + 1
                        idle_since = time.monotonic()
                        try:
                            alert = Alert.from_json(json.loads(record.value))
                        except (ValueError, TypeError, KeyError) as exc:
                            log.warning("skipped an unreadable alert", extra={"fields": {"error": str(exc)}})
                            self.metrics.alerts["unreadable"] += 1
                            continue
                        try:
                            accepted = self.policy.offer(alert, (record.topic, record.partition, record.offset))
                        except DriftloopError as exc:  # a broken spec file: say so, keep serving the others
                            log.error("alert skipped", extra={"fields": {"model": alert.model, "error": str(exc)}})
                            self.metrics.alerts["unreadable"] += 1
                            continue
                        self.metrics.alerts["accepted" if accepted else "ignored"] += 1
                        if accepted:
                            log.info("alert accepted", extra={"fields": {"model": alert.model, "kind": alert.kind}})
                self.run_due()
                self._commit(consumer, read, committed)
                self.owned_due(consumer)
                if idle_exit_s is not None and not self.policy.pending and time.monotonic() - idle_since > idle_exit_s:
                    break
        finally:
            consumer.close()

    def _commit(
        self, consumer: KafkaConsumer, read: dict[TopicPartition, int], committed: dict[TopicPartition, int]
    ) -> None:
        """Commit each partition up to what was read, or to the first alert a pending job still needs."""
        held = self.policy.held()
        offsets = {}
        for tp, next_offset in read.items():
            offset = min(next_offset, held.get((tp.topic, tp.partition), next_offset))
            if committed.get(tp) != offset:
                offsets[tp] = OffsetAndMetadata(offset, "", -1)
        if offsets:
            try:
                consumer.commit(offsets)
            except CommitFailedError:  # the group rebalanced meanwhile: the new owner reads those alerts again
                log.warning("could not commit alert offsets; the group is rebalancing", exc_info=True)
                return
            except KafkaError as exc:  # the broker away (or back empty): committed at the next pass
                log.warning("could not commit alert offsets", extra={"fields": {"error": repr(exc)}})
                return
            committed.update((tp, o.offset) for tp, o in offsets.items())

    def owned_due(self, consumer: KafkaConsumer) -> None:
        """Every ``release_check_s``, for the models this worker owns: a pass of the release controller, and the
        scheduled runs that are due."""
        if time.monotonic() - self._released_at < self.release_check_s:
            return
        self._released_at = time.monotonic()
        topic = self.settings.topics.alerts
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
        count = len(consumer.partitions_for_topic(topic) or ())
        if not owned or not count:
            return

        def owns(model: str) -> bool:  # where the model's alerts go: kafka-python's default partitioner
            return default_partition(model.encode(), count) in owned

        try:
            for decision in self.release.tick(owns):
                self.metrics.releases[decision.to_stage] += 1
        except Exception:  # ClickHouse away: try again at the next pass
            log.error("release pass failed", exc_info=True)
        for model in self.scheduler.due(owns):
            if self.policy.offer_run(model, self._window_start(model), "schedule"):
                log.info("scheduled retraining due", extra={"fields": {"model": model}})
            self.scheduler.started(model)
        try:
            below = self.thresholds.due(owns, self.policy.busy)
        except Exception:  # ClickHouse away: look again at the next pass
            log.error("threshold pass failed", exc_info=True)
            below = []
        for found in below:
            if self.policy.offer_run(found.model, self._window_start(found.model), "threshold"):
                self.thresholds.started(found)
                comparison = found.comparison
                log.warning(
                    "the champion is worse than its retraining threshold: retraining",
                    extra={"fields": {"model": found.model, "version": found.version, "threshold": found.threshold,
                                      "live": round(abs(comparison.new), 4), "rows": comparison.rows}},
                )  # fmt: skip

    def _window_start(self, model: str) -> float:
        """The start of ``model``'s whole training window (a run no alert asked for trains on all of it)."""
        return self.policy.clock() - self.job.specs.get(model).training.window_days * 86400

    def run_due(self) -> None:
        for pending in self.policy.due():
            request = pending.request

            def progress(phase: str, done: float, model: str = request.model) -> None:
                log.info("training", extra={"fields": {"model": model, "progress": f"{done:.0%}"}})

            try:
                report = self.job.run(request, progress=progress)
            except NotEnoughLabels as exc:
                if self.policy.wait(pending):
                    log.info("waiting for labels", extra={"fields": {"model": request.model, "detail": str(exc)}})
                else:
                    reason = f"gave up waiting for labels after {self.policy.clock() - pending.since_s:.0f} s: {exc}"
                    self.job.record_skipped(request, reason)
                    self.metrics.runs["skipped"] += 1
                    log.warning("retraining skipped", extra={"fields": {"model": request.model, "reason": reason}})
                continue
            except Exception as exc:
                fields = {"model": request.model, "attempt": request.attempt}
                if isinstance(exc, DriftloopError):  # a spec to fix, a server away: the message says it all
                    log.error("retraining failed", extra={"fields": {**fields, "error": str(exc)}})
                else:
                    log.exception("retraining failed", extra={"fields": fields})
                self.metrics.runs["failed"] += 1
                self.policy.retry(pending)
                continue
            self.reports.append(report)
            self.metrics.runs[report.status] += 1
            self.metrics.run_seconds.observe(report.finished_at - report.started_at)
            self.policy.finish(pending)
            log.warning(
                f"retraining {report.status}",
                extra={
                    "fields": {
                        "model": request.model,
                        "version": report.challenger_version,
                        report.metric_name: round(report.challenger_metric, 4),
                        "champion": round(report.champion_metric, 4),
                    }
                },
            )


class _HandOver(ConsumerRebalanceListener):
    """Partitions of ``alerts`` moving between workers: commit what is done before they go, and forget the
    pending jobs of those that went to another worker (it reads their alerts again from the committed
    offset, the first one a job still needs). kafka-python revokes every partition and assigns anew; a
    partition this worker keeps keeps its jobs and its position."""

    def __init__(
        self,
        worker: RetrainWorker,
        consumer: KafkaConsumer,
        read: dict[TopicPartition, int],
        committed: dict[TopicPartition, int],
    ) -> None:
        self.worker, self.consumer, self.read, self.committed = worker, consumer, read, committed

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        gone = set(revoked)
        try:
            self.worker._commit(self.consumer, {tp: o for tp, o in self.read.items() if tp in gone}, self.committed)
        except RuntimeError as exc:
            # kafka-python 3 calls this from its I/O thread, where a blocking commit raises (and, raised here, the
            # exception stopped the worker): the next owner reads the alerts since the last commit again, which
            # the retraining policy's cooldowns take as the same drift
            log.warning(
                "alert offsets not committed before a hand-over; their alerts are read again",
                extra={"fields": {"error": str(exc)[:200]}},
            )

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        """Partitions taken away without a hand-over (the broker restarted, the worker's session expired): no
        commit can succeed for them; whoever owns them next reads from the last commit."""

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        kept = set(assigned)
        for tp in [tp for tp in self.read if tp not in kept]:
            self.read.pop(tp, None)
            self.committed.pop(tp, None)
        dropped = self.worker.policy.forget_all_but({(tp.topic, tp.partition) for tp in kept})
        if dropped:
            log.info("partitions moved: their pending jobs go to the new owner", extra={"fields": {"jobs": dropped}})
