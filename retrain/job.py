"""One retraining job: fetch → train → evaluate against the champion → publish, timed per phase.

The challenger trains on the labeled rows after the drift's estimated change point (the new world), and
is judged with the champion on the same most recent holdout. If it is at least as good by the spec's metric
it becomes a ``candidate``, which the release controller (``release.controller``) takes through shadow and
canary on live traffic; otherwise it is recorded as rejected, with the reason. A model's first version has
nothing to be compared with and becomes its champion. Every run is a row in ``retrain_runs`` (running, then
promoted / candidate / rejected / failed) with the seconds each phase took.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec, SpecCatalog
from driftloop.models.artifacts import write_artifact
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry, VersionRecord
from driftloop.retrain.dataset import count_labels, fetch_labeled
from driftloop.retrain.training import TrainingError, better, metric, pick_device, train

log = logging.getLogger("driftloop.retrain")

RUN_COLUMNS = (
    "run_id",
    "model",
    "trigger_alert_id",
    "status",
    "attempt",
    "device",
    "started_at",
    "finished_at",
    "train_rows",
    "holdout_rows",
    "fetch_s",
    "train_s",
    "evaluate_s",
    "publish_s",
    "champion_version",
    "challenger_version",
    "metric_name",
    "champion_metric",
    "challenger_metric",
    "error",
    "revision",
)


@dataclass(frozen=True)
class FinishedRun:
    """A run's last row in ``retrain_runs``: enough to know when its model's cooldown ends."""

    model: str
    status: str
    attempt: int
    finished_at: float


class NotEnoughLabels(DriftloopError):
    """Too few labels after the change point yet: wait and look again."""


@dataclass(frozen=True)
class JobRequest:
    """What to retrain and why: the model, the alert that triggered it, and where the new world begins."""

    model: str
    since: float  # epoch seconds: the change point (or the start of the training window)
    trigger_alert_id: str = ""
    attempt: int = 1
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class RunReport:
    """The outcome of a job, as written to ``retrain_runs``."""

    request: JobRequest
    status: str = "running"
    device: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float = 0.0
    train_rows: int = 0
    holdout_rows: int = 0
    phases: dict[str, float] = field(
        default_factory=lambda: {"fetch": 0.0, "train": 0.0, "evaluate": 0.0, "publish": 0.0}
    )
    champion_version: int = 0
    challenger_version: int = 0
    metric_name: str = ""
    champion_metric: float = math.nan
    challenger_metric: float = math.nan
    error: str = ""

    def row(self) -> tuple:
        r = self.request
        return (
            r.run_id,
            r.model,
            r.trigger_alert_id,
            self.status,
            r.attempt,
            self.device,
            int(self.started_at),
            int(self.finished_at),
            self.train_rows,
            self.holdout_rows,
            self.phases["fetch"],
            self.phases["train"],
            self.phases["evaluate"],
            self.phases["publish"],
            self.champion_version,
            self.challenger_version,
            self.metric_name,
            self.champion_metric,
            self.challenger_metric,
            self.error[:2000],
            time.time_ns() // 1000,
        )


class RetrainJob:
    """Runs jobs for any model (see the module docstring)."""

    def __init__(self, settings: Settings, registry: ModelRegistry | None = None, specs: SpecCatalog | None = None):
        self.settings = settings
        self.registry = registry or ModelRegistry(settings)
        self.specs = specs or SpecCatalog(settings.spec_directory)

    def labels_since(self, request: JobRequest) -> int:
        return count_labels(self.settings, request.model, request.since)

    def run(self, request: JobRequest, *, progress: Callable[[str, float], None] | None = None) -> RunReport:
        """Run the job; raises ``NotEnoughLabels`` (nothing recorded) when it is too early."""
        spec = self.specs.get(request.model)
        available = self.labels_since(request)
        if available < spec.training.min_labels:
            raise NotEnoughLabels(
                f"{request.model}: {available} labels since the change point, {spec.training.min_labels} needed"
            )
        report = RunReport(request, device=str(pick_device()), metric_name=spec.metric)
        self._record(report)
        try:
            self._run(spec, report, progress)
        except Exception as exc:
            report.status = "rejected" if isinstance(exc, TrainingError) else "failed"
            report.error = f"{type(exc).__name__}: {exc}"
            report.finished_at = time.time()
            self._record(report)
            if report.status == "failed":
                raise
            log.warning("challenger rejected", extra={"fields": {"model": request.model, "reason": report.error}})
            return report
        report.finished_at = time.time()
        self._record(report)
        return report

    def _run(self, spec: ModelSpec, report: RunReport, progress: Callable[[str, float], None] | None) -> None:
        request, config = report.request, spec.training
        phase = time.perf_counter()
        data = fetch_labeled(self.settings, request.model, request.since, config.max_rows)
        history, holdout = data.split(config.holdout_fraction)
        fit, validation = history.split(config.validation_fraction)
        task = spec.task or _infer_task(data.labels, data.label_num)
        pre = Preprocessor.fit(fit.numeric, fit.categorical, fit.labels, task)
        report.train_rows, report.holdout_rows = len(fit), len(holdout)
        report.phases["fetch"] = time.perf_counter() - phase

        phase = time.perf_counter()
        tick = (lambda epoch, total, loss: progress("train", epoch / total)) if progress else None
        result = train(spec, pre, fit, validation, progress=tick)
        report.phases["train"] = time.perf_counter() - phase

        phase = time.perf_counter()
        challenger = metric(spec.metric, result.network, pre, holdout, result.device)
        report.challenger_metric = challenger
        champion_record = self.registry.champion(request.model)
        champion = math.nan
        if champion_record is not None:
            loaded = self.registry.load(champion_record, device=result.device)
            champion = metric(spec.metric, loaded.network, loaded.preprocessor, holdout, result.device)
            report.champion_version = champion_record.version
        report.champion_metric = champion
        report.phases["evaluate"] = time.perf_counter() - phase

        phase = time.perf_counter()
        wins = math.isnan(champion) or better(spec.metric, challenger, champion, config.min_improvement)
        version = self.registry.next_version(request.model)
        metrics = {
            spec.metric: challenger,
            f"champion_{spec.metric}": champion,
            "epochs": result.epochs,
            "validation_loss": result.best_validation_loss,
            "device": result.device,
        }
        path, sha256 = write_artifact(
            self.registry.root, spec, version, result.network.cpu(), pre, result.inputs, metrics
        )
        reason = (
            f"{spec.metric} {challenger:.4f} vs champion {champion:.4f} on {len(holdout)} recent rows"
            if champion_record
            else f"first version: {spec.metric} {challenger:.4f}"
        )
        first = champion_record is None
        status = "champion" if first else "candidate" if wins else "rejected"
        self.registry.add(
            VersionRecord(
                model=request.model,
                version=version,
                status=status,
                artifact_uri=str(path),
                sha256=sha256,
                parent_version=report.champion_version,
                trigger_alert_id=request.trigger_alert_id,
                train_from=float(fit.ts[0]),
                train_to=float(fit.ts[-1]),
                train_rows=len(fit),
                metric_name=spec.metric,
                metric_value=challenger,
                champion_metric=champion,
                metrics=json.loads(json.dumps(metrics, default=str)),
                reason=reason if wins else f"worse: {reason}",
                traffic_share=1.0 if first else 0.0,
            ),
            path="first" if first else "release",
        )
        report.challenger_version = version
        report.status = {"champion": "promoted", "candidate": "candidate", "rejected": "rejected"}[status]
        report.phases["publish"] = time.perf_counter() - phase

    def record_skipped(self, request: JobRequest, reason: str) -> RunReport:
        """Record a job that will not run (``skipped``, with the reason)."""
        now = time.time()
        report = RunReport(request, status="skipped", started_at=now, finished_at=now, error=reason)
        self._record(report)
        return report

    def finished_runs(self, within_s: float = 7 * 86400) -> list[FinishedRun]:
        """Runs that ended in the last ``within_s`` seconds, each as of its last row; not those of a model whose
        champion a person (or its first registration) set since: their cooldowns belonged to another lineage."""
        client = connect(self.settings.clickhouse)
        try:
            rows = client.execute(
                "SELECT model, status, attempt, toUnixTimestamp(finished_at) FROM ("
                " SELECT model, run_id, argMax(toString(status), revision) AS status,"
                " argMax(attempt, revision) AS attempt, argMax(finished_at, revision) AS finished_at"
                " FROM retrain_runs GROUP BY model, run_id)"
                " WHERE status NOT IN ('queued', 'running') AND finished_at >= %(since)s",
                {"since": int(time.time() - within_s)},
            )
            deployed = dict(
                client.execute(
                    "SELECT model, toUnixTimestamp(max(changed_at)) FROM version_changes "
                    "WHERE to_stage = 'champion' AND path IN ('manual', 'first') GROUP BY model"
                )
            )
        finally:
            client.disconnect()
        return [FinishedRun(m, s, int(a), float(f)) for m, s, a, f in rows if f >= deployed.get(m, 0.0)]

    def _record(self, report: RunReport) -> None:
        client = connect(self.settings.clickhouse)
        try:
            client.execute(f"INSERT INTO retrain_runs ({', '.join(RUN_COLUMNS)}) VALUES", [report.row()])
        finally:
            client.disconnect()


def _infer_task(labels: list[str], label_num: object) -> str:
    numbers = np.asarray(label_num, dtype=np.float64)
    if np.isnan(numbers).any() or np.all(numbers == np.round(numbers)):
        return "binary" if len(set(labels)) <= 2 else "multiclass"
    return "regression"
