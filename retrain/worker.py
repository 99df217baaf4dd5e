"""The retraining worker: alerts in, jobs by policy, new versions out.

It consumes ``alerts`` in the consumer group ``driftloop-retrain`` (alerts are keyed by model, so one
model's alerts reach one worker and its jobs never run twice at once). Per the model spec's
``retraining`` section: only the configured alert kinds start a job; alerts closer than ``debounce_s``
make one job (starting from the earliest change point); after a job the model cools down; with too few
labels after the change point the job waits and looks again every ``recheck_s``. Offsets are committed
only when no job is waiting or running, so a worker killed mid-training sees the alert again and
retries; a failed job is retried up to ``max_attempts`` times, and artifacts are written atomically.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from kafka import KafkaConsumer

from infra.errors import DriftloopError
from infra.kafka.topics import RETRAIN_GROUP
from infra.metrics import Histogram
from infra.settings import Settings
from infra.spec import SpecCatalog
from retrain.job import JobRequest, NotEnoughLabels, RetrainJob, RunReport
from streams.drift.alerts import Alert

log = logging.getLogger("driftloop.retrain")


@dataclass
class PendingJob:
    """A job waiting for its debounce, for labels, or for a retry."""

    request: JobRequest
    due: float
    alerts: list[str] = field(default_factory=list)


class RetrainPolicy:
    """Which alerts become jobs, and when those jobs run (see the module docstring)."""

    def __init__(self, specs: SpecCatalog, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.specs = specs
        self.clock = clock
        self.pending: dict[str, PendingJob] = {}
        self._cooldown_until: dict[str, float] = {}

    def offer(self, alert: Alert) -> bool:
        """Take an alert in; whether it starts or joins a job."""
        rules = self.specs.get(alert.model).retraining
        now = self.clock()
        if alert.kind not in rules.kinds or now < self._cooldown_until.get(alert.model, 0.0):
            return False
        job = self.pending.get(alert.model)
        if job is None:
            self.pending[alert.model] = PendingJob(
                JobRequest(alert.model, alert.change_point_ts, alert.alert_id), now + rules.debounce_s, [alert.alert_id]
            )
        else:  # a burst: one job, from the earliest change point
            job.alerts.append(alert.alert_id)
            job.request = replace(job.request, since=min(job.request.since, alert.change_point_ts))
        return True

    def due(self) -> list[PendingJob]:
        now = self.clock()
        return [job for job in self.pending.values() if job.due <= now]

    def wait(self, job: PendingJob) -> None:
        job.due = self.clock() + self.specs.get(job.request.model).retraining.recheck_s

    def retry(self, job: PendingJob) -> bool:
        rules = self.specs.get(job.request.model).retraining
        if job.request.attempt >= rules.max_attempts:
            self.finish(job)
            return False
        job.request = replace(job.request, attempt=job.request.attempt + 1)
        job.due = self.clock() + rules.recheck_s * 2 ** (job.request.attempt - 1)
        return True

    def finish(self, job: PendingJob) -> None:
        self.pending.pop(job.request.model, None)
        self._cooldown_until[job.request.model] = self.clock() + self.specs.get(job.request.model).retraining.cooldown_s


RUN_SECONDS_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass
class RetrainMetrics:
    """The retrain worker's counters (Prometheus reads them: ``retrain.metrics``)."""

    alerts: Counter[str] = field(default_factory=Counter)  # by what happened: accepted, ignored, unreadable
    runs: Counter[str] = field(default_factory=Counter)  # by status: promoted, rejected, failed
    run_seconds: Histogram = field(default_factory=lambda: Histogram(RUN_SECONDS_BUCKETS))


class RetrainWorker:
    """Consumes alerts and runs jobs until stopped."""

    def __init__(self, settings: Settings, *, job: RetrainJob | None = None) -> None:
        self.settings = settings
        self.job = job or RetrainJob(settings)
        self.policy = RetrainPolicy(self.job.specs)
        self.reports: list[RunReport] = []
        self.metrics = RetrainMetrics()
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def run(self, *, idle_exit_s: float | None = None) -> None:
        consumer = KafkaConsumer(
            self.settings.topics.alerts,
            **self.settings.kafka_python_config(),
            group_id=RETRAIN_GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.kafka_session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.kafka_session_timeout_s * 1000 / 3),
            max_poll_interval_ms=30 * 60 * 1000,  # a training run may take a while between polls
        )
        idle_since = time.monotonic()
        try:
            while not self._stop:
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        idle_since = time.monotonic()
                        try:
                            alert = Alert.from_json(json.loads(record.value))
                        except (ValueError, TypeError, KeyError) as exc:
                            log.warning("skipped an unreadable alert", extra={"fields": {"error": str(exc)}})
                            self.metrics.alerts["unreadable"] += 1
                            continue
                        try:
                            accepted = self.policy.offer(alert)
                        except DriftloopError as exc:  # a broken spec file: say so, keep serving the others
                            log.error("alert skipped", extra={"fields": {"model": alert.model, "error": str(exc)}})
                            self.metrics.alerts["unreadable"] += 1
                            continue
                        self.metrics.alerts["accepted" if accepted else "ignored"] += 1
                        if accepted:
                            log.info("alert accepted", extra={"fields": {"model": alert.model, "kind": alert.kind}})
                self.run_due()
                if not self.policy.pending:
                    consumer.commit()  # every accepted alert has had its job: safe to move on
                if idle_exit_s is not None and not self.policy.pending and time.monotonic() - idle_since > idle_exit_s:
                    break
        finally:
            consumer.close()

    def run_due(self) -> None:
        for pending in self.policy.due():
            request = pending.request

            def progress(phase: str, done: float, model: str = request.model) -> None:
                log.info("training", extra={"fields": {"model": model, "progress": f"{done:.0%}"}})

            try:
                report = self.job.run(request, progress=progress)
            except NotEnoughLabels as exc:
                log.info("waiting for labels", extra={"fields": {"model": request.model, "detail": str(exc)}})
                self.policy.wait(pending)
                continue
            except Exception:
                log.exception(
                    "retraining failed", extra={"fields": {"model": request.model, "attempt": request.attempt}}
                )
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
