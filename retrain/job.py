"""One retraining job: fetch → gate the data → train (or tune) → evaluate against the champion → publish,
timed per phase.

The challenger trains on the labeled rows after the drift's estimated change point (the new world; for a
scheduled run, the spec's training window), split by time into train, validation and test
(``retrain.splits``). The data gate (``retrain.data_gate``) refuses a window unfit to train on. Early
stopping, and the hyper-parameter search when the spec asks for one (``retrain.tuning``: every trial a row in
``tuning_trials``), see the validation split only; challenger and champion are judged on the test rows the
champion never saw (:func:`unseen_rows`) by the spec's gate metric (accuracy, ROC AUC, F1, MAE or RMSE). A
challenger at least as good becomes a ``candidate``, which the release controller (``release.controller``)
takes through shadow and canary on live traffic; otherwise it is recorded as rejected, with the reason. One
that cannot be judged offline (too few such rows, or a champion whose artifact does not load) is a candidate.
A model's first version has nothing to be compared with and becomes its champion. Each version records what
made it (``retrain.build``), so that ``driftloop models rebuild`` can train it again.

A model's compute budget (``training.budget_s_per_day``: training seconds in any 24 h) is respected: a job
over it is not started, and a job's training (a search and the chosen configuration's training) stops where
what was left of it runs out, keeping its best epoch so far: the version's spec records the optimiser steps it
took (``training.max_steps``), so that a rebuild trains the same weights. Every run is a row in ``retrain_runs``
(running, then promoted / candidate / rejected / failed / skipped) with the seconds each phase took; a
skipped run has the numbers behind it in ``details``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.contract import column_json
from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec, SpecCatalog, SpecError
from driftloop.models.architectures import ArchitectureError
from driftloop.models.artifacts import ArtifactError, weights_digest, write_artifact
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry, VersionRecord
from driftloop.retrain.build import BuildRecord
from driftloop.retrain.data_gate import check_window
from driftloop.retrain.dataset import LabeledData, count_labels, fetch_labeled, last_complete_second
from driftloop.retrain.evaluation import MetricError, better, evaluate, metric, with_decision_threshold
from driftloop.retrain.splits import SplitRecord, Splits, fingerprint
from driftloop.retrain.training import TrainingError, TrainResult, pick_device, train
from driftloop.retrain.tuning import TrialRecord, check_spec_architecture, search, with_steps

log = logging.getLogger("driftloop.retrain")

#: A classifier's majority share above which accuracy (the default metric) hardly tells a model that finds the rare
#: class from one that always answers the majority: the job says so (:func:`warn_if_accuracy_on_imbalance`).
IMBALANCED_SHARE = 0.9

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
    "trigger",
    "validation_rows",
    "trials",
    "trials_pruned",
    "details",
)
TRIAL_COLUMNS = (
    "run_id",
    "model",
    "trial",
    "state",
    "pruned",
    "params",
    "epochs",
    "validation_loss",
    "metric_name",
    "validation_metric",
    "seconds",
    "device",
    "chosen",
    "started_at",
)
#: Why a run started: an alert, a schedule, the champion worse than its threshold, or a person
#: (``driftloop retrain --now``).
Trigger = Literal["alert", "schedule", "threshold", "manual"]


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
    trigger: Trigger = "alert"


#: Test rows the champion never saw that a fair offline comparison needs (fewer: the live gates judge).
FAIR_ROWS = 100


def unseen_rows(test: LabeledData, champion: VersionRecord) -> LabeledData | None:
    """The rows of ``test`` (in time order) that ``champion`` never saw: those after its validation split (its
    train split, for a version without a build record), on which it may be judged against a challenger; None when
    fewer than :data:`FAIR_ROWS` (and than the whole split) are. A champion trained on a short window (after a
    drift) is otherwise judged on its own training rows by the next job on a longer window (a schedule's), and
    looks better than it is.

    >>> test = LabeledData({}, {}, ["a"] * 300, np.zeros(300), np.arange(1000.0, 1300.0))
    >>> seen_until = {"splits": [{"name": "validation", "rows": 9, "ts_from": 0.0, "ts_to": 1149.0, "fingerprint": ""}]}
    >>> len(unseen_rows(test, VersionRecord("m", 1, "champion", "", "", build=seen_until)))
    150
    >>> unseen_rows(test, VersionRecord("m", 1, "champion", "", "", train_to=1250.0)) is None
    True
    """
    splits = [SplitRecord.from_json(split) for split in champion.build.get("splits", ())]
    validation = next((split for split in splits if split.name == "validation"), None)
    # without a build record, its train split's end (0 for a version registered by hand: every row counts)
    seen_until = validation.ts_to if validation is not None else champion.train_to
    first = int(np.searchsorted(test.ts, seen_until, side="right"))
    unseen = len(test) - first
    if first == 0:
        return test
    return test.slice(first, len(test)) if unseen >= FAIR_ROWS else None


@dataclass(frozen=True)
class Judgement:
    """A challenger against the champion offline: both metrics on the same rows (``champion`` NaN: not judged,
    ``champion_version`` 0: there is none), and the reason the version records."""

    challenger: float
    champion: float
    champion_version: int
    reason: str


@dataclass(frozen=True)
class Budget:
    """A model's training seconds in the last 24 h against its ``training.budget_s_per_day`` (None: no limit)."""

    used_s: float
    limit_s: float | None = None

    @property
    def remaining_s(self) -> float:
        return math.inf if self.limit_s is None else max(0.0, self.limit_s - self.used_s)

    @property
    def exhausted(self) -> bool:
        return self.limit_s is not None and self.used_s >= self.limit_s


@dataclass
class RunReport:
    """The outcome of a job, as written to ``retrain_runs``."""

    request: JobRequest
    status: str = "running"
    device: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float = 0.0
    train_rows: int = 0
    validation_rows: int = 0
    holdout_rows: int = 0
    trials: int = 0
    trials_pruned: int = 0
    details: dict[str, Any] = field(default_factory=dict)
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
            r.trigger,
            self.validation_rows,
            self.trials,
            self.trials_pruned,
            column_json(self.details) if self.details else "",
        )


class RetrainJob:
    """Runs jobs for any model (see the module docstring)."""

    def __init__(self, settings: Settings, registry: ModelRegistry | None = None, specs: SpecCatalog | None = None):
        self.settings = settings
        self.registry = registry or ModelRegistry(settings)
        self.specs = specs or SpecCatalog.of(settings)
        self.budgets: dict[str, Budget] = {}  # each model's, as last looked up (the worker's metrics show them)

    def labels_since(self, request: JobRequest, joined_until: int | None = None) -> int:
        return count_labels(self.settings, request.model, request.since, joined_until=joined_until)

    def _enough_labels(self, request: JobRequest, spec: ModelSpec, joined_until: int | None = None) -> None:
        available = self.labels_since(request, joined_until)
        if available < spec.training.min_labels:
            raise NotEnoughLabels(
                f"{request.model}: {available} labels since the change point, {spec.training.min_labels} needed"
            )

    def run(self, request: JobRequest, *, progress: Callable[[str, float], None] | None = None) -> RunReport:
        """Run the job; raises ``NotEnoughLabels`` (nothing recorded) when it is too early, and a
        :class:`SpecError` (recorded as failed) for an architecture or a search space the spec gets wrong."""
        spec = self.specs.get(request.model)
        self._check_architecture(request, spec)
        self._enough_labels(request, spec)  # a cheap count first: most waiting jobs stop there
        # Labels joined after this second are left to the next run: the count and the fetch see the same rows.
        joined_until = last_complete_second(self.settings)
        if self.labels_since(request, joined_until) < spec.training.min_labels:  # some came this very second
            joined_until = last_complete_second(self.settings, after=joined_until)
        self._enough_labels(request, spec, joined_until)
        report = RunReport(request, device=str(pick_device()), metric_name=spec.gate_metric())
        budget = self.budget(request.model, spec)
        if budget.exhausted:
            return self.record_skipped(
                request,
                f"compute budget: {budget.used_s:.0f} s of training in the last 24 h, "
                f"training.budget_s_per_day is {budget.limit_s:.0f} s",
                {"budget_used_s": budget.used_s, "budget_s_per_day": budget.limit_s},
            )
        self._record(report)
        try:
            self._run(spec, report, budget, joined_until, progress)
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

    def _run(
        self,
        spec: ModelSpec,
        report: RunReport,
        budget: Budget,
        joined_until: int,
        progress: Callable[[str, float], None] | None,
    ) -> None:
        request, config = report.request, spec.training
        phase = time.perf_counter()
        data = fetch_labeled(self.settings, request.model, request.since, config.max_rows, joined_until=joined_until)
        data = data.with_numeric(spec.numeric_features)
        splits = Splits.by_time(data, config.holdout_fraction, config.validation_fraction)
        task = spec.task or _infer_task(data.labels, data.label_num)
        report.train_rows, report.validation_rows, report.holdout_rows = (r.rows for r in splits.records())
        report.phases["fetch"] = time.perf_counter() - phase
        gate = check_window(data, splits, task, config)
        if not gate.passed:
            report.status, report.error, report.details = "skipped", f"data gate: {gate.reason}", {"data": gate.numbers}
            log.warning("retraining skipped", extra={"fields": {"model": request.model, "reason": report.error}})
            return
        fit_rows = splits.train
        pre = Preprocessor.fit(
            fit_rows.numeric, fit_rows.categorical, fit_rows.labels, task, targets=fit_rows.label_num
        )
        metric_name = report.metric_name = spec.gate_metric(task)
        positive = config.positive_class
        warn_if_accuracy_on_imbalance(request.model, metric_name, gate.numbers)
        warn_if_f1_scores_the_majority(request.model, metric_name, gate.numbers, pre.classes, positive)

        phase = time.perf_counter()
        params: dict[str, Any] = {}
        tuning: dict[str, Any] = {}
        if spec.tuning.trials:
            budget_s = min(spec.tuning.timeout_s, budget.remaining_s)
            tick = (lambda done, total: progress("train", done / total)) if progress else None
            try:
                found = search(
                    spec,
                    pre,
                    splits,
                    metric_name=metric_name,
                    budget_s=budget_s,
                    progress=tick,
                    max_seconds=budget.remaining_s,
                )
            except TrainingError as exc:
                report.details = {"tuning": {"trials": len(getattr(exc, "trials", ()))}}
                raise
            finally:
                report.phases["train"] = time.perf_counter() - phase
            result, trained, params = found.result, found.spec, found.params
            report.trials, report.trials_pruned = len(found.trials), found.pruned
            tuning = {
                "trials": len(found.trials),
                "pruned": found.pruned,
                "seconds": found.seconds,
                "budget_s": budget_s,
            }
            self._record_trials(report, found.trials, metric_name)
        else:
            tick = (lambda epoch, total, loss: progress("train", epoch / total)) if progress else None
            result = train(spec, pre, splits.train, splits.validation, progress=tick, max_seconds=budget.remaining_s)
            trained = with_steps(spec, result)
        report.phases["train"] = time.perf_counter() - phase
        if trained.training.max_steps != spec.training.max_steps:  # the compute budget ran out
            report.details["budget"] = {
                "budget_s_per_day": budget.limit_s,
                "used_before_s": budget.used_s,
                "steps": result.steps,
                "epochs": result.epochs,
            }
            log.warning(
                "training stopped where the compute budget ran out; the best epoch so far is kept",
                extra={"fields": {"model": request.model, "steps": result.steps, "epochs": result.epochs}},
            )

        phase = time.perf_counter()
        if spec.tunes_threshold(task):  # on the validation split: the test split stays unseen until judged
            pre = with_decision_threshold(result.network, pre, splits.validation, result.device, positive=positive)
        scores = {
            "validation": evaluate(result.network, pre, splits.validation, result.device, positive=positive),
            "test": evaluate(result.network, pre, splits.test, result.device, positive=positive),
        }
        if metric_name not in scores["test"]:
            raise MetricError(f"training.metric {metric_name!r} does not apply to this {task} model")
        judged = self._against_champion(
            request.model, scores["test"][metric_name], result, pre, splits.test, metric_name, positive
        )
        challenger, champion = judged.challenger, judged.champion
        report.challenger_metric, report.champion_metric = challenger, champion
        report.champion_version = judged.champion_version
        report.phases["evaluate"] = time.perf_counter() - phase

        phase = time.perf_counter()
        wins = math.isnan(champion) or better(metric_name, challenger, champion, config.min_improvement)
        version = self.registry.next_version(request.model)
        network = result.network.cpu()
        build = BuildRecord(
            since=request.since,
            until_ms=round(float(data.ts[-1]) * 1000),
            joined_until=joined_until,
            max_rows=config.max_rows,
            rows=len(data),
            fingerprint=fingerprint(data.event_ids),
            splits=splits.records(),
            task=task,
            spec=trained.model_dump(mode="json"),
            hyperparameters=params,
            seed=config.seed,
            device=result.device,
            threads=torch.get_num_threads(),
            weights_sha256=weights_digest(network.state_dict()),
            metrics=scores,
            tuning=tuning,
            target_standardised=True,
        ).to_json()
        metrics = {
            metric_name: challenger,
            f"champion_{metric_name}": champion,
            "epochs": result.epochs,
            "validation_loss": result.best_validation_loss,
            "device": result.device,
            **({"decision_threshold": pre.threshold} if pre.threshold is not None else {}),
            **{f"{split}_{name}": value for split, values in scores.items() for name, value in values.items()},
        }
        path, sha256 = write_artifact(self.registry.root, trained, version, network, pre, result.inputs, metrics, build)
        first, reason = judged.champion_version == 0, judged.reason
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
                train_from=float(splits.train.ts[0]),
                train_to=float(splits.train.ts[-1]),
                train_rows=len(splits.train),
                metric_name=metric_name,
                metric_value=challenger,
                champion_metric=champion,
                metrics=json.loads(json.dumps(metrics, default=str)),
                reason=reason if wins else f"worse: {reason}",
                traffic_share=1.0 if first else 0.0,
                build=build,
            ),
            path="first" if first else "release",
        )
        report.challenger_version = version
        report.status = {"champion": "promoted", "candidate": "candidate", "rejected": "rejected"}[status]
        report.phases["publish"] = time.perf_counter() - phase

    def _against_champion(
        self,
        model: str,
        challenger: float,
        result: TrainResult,
        pre: Preprocessor,
        test: LabeledData,
        metric_name: str,
        positive: str | None,
    ) -> Judgement:
        """The challenger (``challenger`` on the whole ``test`` split) against the champion, on the test rows the
        champion never saw (:func:`unseen_rows`). Not judged offline, with the reason why: too few such rows, or
        a champion whose artifact does not load (missing, altered: then a person promotes, or the live gates)."""
        record, rows = self.registry.champion(model), len(test)
        on_whole = f"{metric_name} {challenger:.4f} on the {rows} most recent rows"
        if record is None:
            return Judgement(challenger, math.nan, 0, f"first version: {on_whole}")
        unseen = unseen_rows(test, record)
        if unseen is None:
            reason = (
                f"{on_whole}, fewer than {FAIR_ROWS} of which the champion (v{record.version}) never saw: no fair "
                "comparison offline, the live gates judge it"
            )
            return Judgement(challenger, math.nan, record.version, reason)
        try:
            loaded = self.registry.load(record, device=result.device)
        except ArtifactError as exc:
            log.error(
                "the champion's artifact does not load: its challenger is a candidate, not judged offline",
                extra={"fields": {"model": model, "champion": record.version, "error": str(exc)}},
            )
            reason = (
                f"{on_whole}; the champion (v{record.version}) does not load ({exc}): not judged offline, promote it "
                "by hand (`driftloop models promote`) or let the live gates judge it"
            )
            return Judgement(challenger, math.nan, record.version, reason)
        if len(unseen) < rows:
            challenger = metric(metric_name, result.network, pre, unseen, result.device, positive=positive)
        champion = metric(metric_name, loaded.network, loaded.preprocessor, unseen, result.device, positive=positive)
        reason = f"{metric_name} {challenger:.4f} vs champion {champion:.4f} on the {len(unseen)} most recent rows"
        if len(unseen) < rows:
            reason += f" (of {rows}: the champion trained or stopped early on the {rows - len(unseen)} before)"
        return Judgement(challenger, champion, record.version, reason)

    def budget(self, model: str, spec: ModelSpec | None = None) -> Budget:
        """``model``'s training seconds in the last 24 h, against its spec's daily budget."""
        limit = (spec or self.specs.get(model)).training.budget_s_per_day
        client = connect(self.settings.clickhouse)
        try:
            used = client.execute(
                "SELECT sum(train_s) FROM (SELECT run_id, argMax(train_s, revision) AS train_s,"
                " argMax(started_at, revision) AS started FROM retrain_runs WHERE model = %(m)s"
                " AND started_at >= toDateTime(%(since)s) GROUP BY run_id) WHERE started >= toDateTime(%(since)s)",
                {"m": model, "since": int(time.time() - 86400)},
            )[0][0]
        finally:
            client.disconnect()
        budget = Budget(float(used or 0.0), limit)
        self.budgets[model] = budget
        return budget

    def last_scheduled_runs(self) -> dict[str, float]:
        """Each model's latest scheduled run's start (epoch seconds): where its schedule continues from."""
        client = connect(self.settings.clickhouse)
        try:
            rows = client.execute(
                "SELECT model, toUnixTimestamp(max(started_at)) FROM retrain_runs "
                "WHERE trigger = 'schedule' GROUP BY model"
            )
        finally:
            client.disconnect()
        return {model: float(started) for model, started in rows}

    def last_threshold_runs(self) -> dict[str, tuple[int, float]]:
        """Each model's latest run started by its threshold: (the champion it found worse, its start in epoch
        seconds), from which that champion is judged again (``retrain.thresholds``)."""
        client = connect(self.settings.clickhouse)
        try:
            rows = client.execute(
                "SELECT model, argMax(champion_version, started_at), toUnixTimestamp(max(started_at)) "
                "FROM retrain_runs FINAL WHERE trigger = 'threshold' GROUP BY model"
            )
        finally:
            client.disconnect()
        return {model: (int(version), float(started)) for model, version, started in rows}

    def _record_trials(self, report: RunReport, trials: list[TrialRecord], metric_name: str) -> None:
        rows = [
            (
                report.request.run_id,
                report.request.model,
                t.trial,
                t.state,
                int(t.state == "pruned"),
                column_json(t.params),
                t.epochs,
                t.validation_loss,
                metric_name,
                t.validation_metric,
                t.seconds,
                t.device,
                int(t.chosen),
                int(t.started_at),
            )
            for t in trials
        ]
        client = connect(self.settings.clickhouse)
        try:
            client.execute(f"INSERT INTO tuning_trials ({', '.join(TRIAL_COLUMNS)}) VALUES", rows)
        finally:
            client.disconnect()

    def _check_architecture(self, request: JobRequest, spec: ModelSpec) -> None:
        """Before any label is counted: a parameter the architecture does not read (a misspelt name was ignored,
        and the network trained with the default) or refuses (a dropout of 1.5 failed every attempt once the
        window was fetched). The spec file is read again at the next attempt: it may be fixed by then."""
        try:
            check_spec_architecture(spec)
        except ArchitectureError as exc:
            self.specs.forget(request.model)
            error = SpecError(f"{self.specs.path(request.model)}: {exc}")
            now = time.time()
            failed = RunReport(request, status="failed", started_at=now, finished_at=now, error=f"SpecError: {error}")
            self._record(failed)
            raise error from None

    def record_skipped(self, request: JobRequest, reason: str, details: dict[str, Any] | None = None) -> RunReport:
        """Record a job that will not run (``skipped``, with the reason and the numbers behind it)."""
        now = time.time()
        report = RunReport(request, status="skipped", started_at=now, finished_at=now, error=reason)
        report.details = details or {}
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


def warn_if_accuracy_on_imbalance(model: str, metric_name: str, numbers: dict[str, Any]) -> None:
    """A WARNING when a classifier is judged on accuracy while one class holds most of its labels: a version
    that never predicts the rare class (the fraud, the churner) is then nearly as accurate as one that finds it,
    offline and live (docs/release.md, "The live metric")."""
    share = numbers.get("majority_share")
    if metric_name == "accuracy" and share is not None and share > IMBALANCED_SHARE:
        log.warning(
            "judged on accuracy with imbalanced classes: a version that always answers the majority class scores "
            'its share; set training.metric = "f1" or "roc_auc" in the model\'s spec',
            extra={"fields": {"model": model, "majority_class": numbers["majority_class"], "majority_share": share}},
        )


def warn_if_f1_scores_the_majority(
    model: str, metric_name: str, numbers: dict[str, Any], classes: Sequence[str], configured: str | None
) -> None:
    """A WARNING when a binary classifier's F1 is that of its majority class: the default positive class is the
    last label in sorted order (``1`` of 0/1, ``true`` of false/true), which for labels such as ``fraud`` and
    ``legit`` is the common one, whose F1 hardly moves when the rare class is never found."""
    if metric_name != "f1" or configured is not None or len(classes) != 2:
        return
    if numbers.get("majority_class") == classes[-1] and numbers.get("majority_share", 0.0) > 0.5:
        log.warning(
            "judged on the F1 of the majority class (the last label in sorted order): name the rare class in "
            "the spec's training.positive_class",
            extra={"fields": {"model": model, "scored_class": classes[-1], "other_class": classes[0]}},
        )
