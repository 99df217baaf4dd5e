"""The retrain worker's Prometheus metrics, read from its counters when ``/metrics`` is scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from driftloop.infra.metrics import counter, gauge
from driftloop.retrain.worker import RetrainWorker


def retrain_metrics(worker: RetrainWorker) -> Iterator[Metric]:
    m = worker.metrics
    yield counter("driftloop_retrain_alerts", "Alerts the retrain worker read, by what it did with them.",
                  {(k,): float(v) for k, v in m.alerts.items()}, ["outcome"])  # fmt: skip
    yield counter("driftloop_retrain_runs", "Retraining runs, by result.",
                  {(k,): float(v) for k, v in m.runs.items()}, ["status"])  # fmt: skip
    yield m.run_seconds.family("driftloop_retrain_duration_seconds", "Seconds from job start to its result.")
    yield gauge("driftloop_retrain_pending_jobs", "Jobs waiting (debounce, labels or retry).",
                {(): float(len(worker.policy.pending))})  # fmt: skip
    budgets = worker.job.budgets
    yield gauge("driftloop_retrain_budget_used_seconds", "Training seconds each model used in the last 24 h.",
                {(m,): b.used_s for m, b in budgets.items()}, ["model"])  # fmt: skip
    yield gauge("driftloop_retrain_budget_seconds", "Each model's training seconds per 24 h (its spec's budget).",
                {(m,): b.limit_s for m, b in budgets.items() if b.limit_s is not None}, ["model"])  # fmt: skip
    yield counter("driftloop_release_stage_changes", "Stage changes the release controller made, by the stage entered.",
                  {(k,): float(v) for k, v in m.releases.items()}, ["stage"])  # fmt: skip
