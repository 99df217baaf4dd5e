"""The release controller: moves each new version through shadow and canary to champion on live evidence,
and takes a champion back when it disappoints. Its state is the registry's, in ClickHouse.

On every :meth:`ReleaseController.tick`, for each model it owns (one owner per model: the retrain worker that
holds the model's ``alerts`` partition):

1. **A new candidate** (the newest; older ones and a version still in shadow or canary are superseded) goes to
   ``shadow``, or, when the spec says no shadow, to ``canary``. A model without a champion makes it the
   champion. When the champion is already failing badly (its live metric worse than the spec's ``floor``),
   the spec's ``urgent_path`` is taken (by default straight to a canary with ``urgent_canary_share``), and
   the record says so (``path = urgent``).
2. **Shadow → canary**: on the labeled requests both versions scored since the shadow began, a paired
   comparison (McNemar for classes, a paired z test on absolute error for regression; DeLong's test for a
   spec whose metric is ``roc_auc``, the delta method's for ``f1``: :mod:`release.class_metrics`) with at least
   ``shadow_min_pairs`` pairs; passes when the shadow is not worse than the champion beyond ``margin``
   with ``confidence``, fails when it is worse beyond it (``release.stats``).
3. **Canary → champion**: the canary's and the champion's served rows of the same period, the model metric
   and, when the spec names a KPI, the business value: each must pass; any failure rejects the canary
   and its traffic returns to the champion. So does answering slower: the canary's quantile of
   ``latency_ms`` beyond ``1 + latency_margin`` times the champion's in most spans of the period, with
   confidence, or beyond the spec's objective (``latency_slo_ms``) where the champion keeps to it. A step that
   passes on its outcomes while its answer times lean slower (beyond the limit in more than half of its spans so
   far) waits for them to decide, until its deadline (``on_deadline``). With
   ``canary_steps`` the canary widens step by step: each step is judged on the rows served since it began, and
   passing the last makes it champion.
4. **The watch**: for ``watch_s`` after a promotion by the controller, the champion's most recent
   ``watch_rows`` labeled rows are held against its predecessor's live metric from the canary; worse beyond
   the margin with confidence, and the predecessor is brought back (``rolled_back``); so it is when the champion
   breaks the spec's answer-time objective (``latency_slo_ms``) in most spans since its promotion, where its
   predecessor kept to it.

A stage that has not decided by its deadline ends as the spec says: ``reject``, or ``extend`` (one more
deadline, recorded as a change to the same stage). Every change is written with its evidence to
``version_changes`` and announced on ``model-versions`` by the registry; since nothing lives in this
object, a controller that restarts resumes each stage where it was, with the evidence gathered so far.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from clickhouse_driver import Client

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec, ReleaseSpec, SpecCatalog, SpecError
from driftloop.models.registry import Evidence, ModelRegistry, StageChange, VersionRecord
from driftloop.release.evidence import (
    CLASS_METRICS,
    label_delay_s,
    latencies,
    live_rows,
    paired,
    paired_class_metric,
    predictions_landed,
)
from driftloop.release.stats import (
    Comparison,
    LatencyComparison,
    against_reference,
    beyond_objective,
    combine,
    paired_classes,
    paired_errors,
    paired_estimates,
    slower_spans,
    two_samples,
)

log = logging.getLogger("driftloop.release")

#: A shadow or canary none of whose predictions has landed this long after its stage began is said to be unserved.
UNSERVED_AFTER_S = 300.0
#: What to do about a stage whose version's predictions never land, by stage.
UNSERVED_HINTS = {
    "shadow": "the serving code does not score the shadow (ModelClient(emit=True) does; a server of its own "
    "publishes the shadow's answers with served = false and the request's request_id), or set release.shadow = false",
    "canary": "the serving code does not send the canary its traffic_share of the requests (ModelClient does; a "
    "server of its own routes them as docs/events.md says)",
}


@dataclass(frozen=True)
class AnswerTimes:
    """A canary's answer times against the champion's (``relative``), and, where the spec sets an objective
    (``latency_slo_ms``), the canary's and the champion's against it, over the same spans."""

    relative: LatencyComparison
    objective: LatencyComparison | None = None
    champion_objective: LatencyComparison | None = None

    @property
    def breaks_objective(self) -> bool:
        """The canary breaks the objective in most spans (with confidence) where the champion keeps to it in most:
        a champion that breaks it too points at the servers, not at the version."""
        kept = self.champion_objective
        broken = self.objective is not None and self.objective.verdict == "fail"
        return broken and kept is not None and 2 * kept.slower <= kept.spans

    @property
    def fails(self) -> bool:
        return self.relative.verdict == "fail" or self.breaks_objective


@dataclass(frozen=True)
class Decision:
    """What the controller did for a model: the version, the stage it went to, and why."""

    model: str
    version: int
    to_stage: str
    reason: str


class ReleaseController:
    """See the module docstring. ``clock``: wall-clock seconds (stage times are compared with it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: ModelRegistry | None = None,
        specs: SpecCatalog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry or ModelRegistry(settings, clock=clock)
        self.specs = specs or SpecCatalog.of(settings)
        self.clock = clock
        self._broken: dict[str, str] = {}  # model -> the spec error last reported
        self._tasks: dict[tuple[str, int], str | None] = {}  # (model, version) -> the task it was trained for
        self._without_kpi: set[tuple[str, int]] = set()  # canaries whose waiting for a KPI no outcome carries was said
        self._unmeasured: set[tuple[str, int]] = set()  # versions whose metric their rows cannot give, said once
        self._landed: set[tuple[str, int]] = set()  # shadows and canaries some of whose predictions have landed
        self._said_unserved: set[tuple[str, int]] = set()  # ... and those none of whose had, said once
        self._timing: set[tuple[str, int, float]] = set()  # canary steps that passed on outcomes, said once

    def tick(self, owns: Callable[[str], bool] = lambda model: True) -> list[Decision]:
        """One pass over the models with a release in flight (or a champion under watch) that this one owns."""
        decisions: list[Decision] = []
        for model in self._active_models():
            if not owns(model):
                continue
            try:
                decisions += self.step(model)
            except SpecError as exc:  # said once per error, not every tick
                if self._broken.get(model) != str(exc):
                    self._broken[model] = str(exc)
                    log.error("release waits for the model's spec to be fixed", extra={"fields": {"error": str(exc)}})
            except Exception:  # one model's trouble (ClickHouse away, say) must not stop the others
                log.exception("release step failed; tried again next tick", extra={"fields": {"model": model}})
        return decisions

    def step(self, model: str) -> list[Decision]:
        """Decide what ``model``'s versions may do now (see the module docstring)."""
        versions = self.registry.versions(model)
        spec = self._with_task(self.specs.get(model), versions)
        decisions: list[Decision] = []
        candidates = sorted((r for r in versions if r.status == "candidate"), key=lambda r: r.version)
        if candidates:
            newest = candidates[-1]
            for stale in [*candidates[:-1], *(r for r in versions if r.status in ("shadow", "canary"))]:
                decisions.append(
                    self._move(
                        stale, "rejected", f"superseded by v{newest.version}", "release", Evidence(result="superseded")
                    )
                )
            decisions.append(self._start(spec, newest))
            return decisions
        routing = self.registry.routing(model, versions)
        if routing.champion is None:
            return decisions
        if routing.shadow is not None:
            decisions += self._judge_shadow(spec, routing.shadow, routing.champion)
        if routing.canary is not None:
            decisions += self._judge_canary(spec, routing.canary, routing.champion)
        if routing.shadow is None and routing.canary is None:
            decisions += self._watch(spec, routing.champion)
        return decisions

    def _with_task(self, spec: ModelSpec, versions: Sequence[VersionRecord]) -> ModelSpec:
        """``spec`` with the task its versions were trained for, when it names neither a task nor a metric: a
        regression's releases are judged on absolute error. (Without it they were judged on accuracy, which is 0
        on every regression row, and every challenger passed shadow and canary, however much worse.)"""
        if spec.task is not None or spec.training.metric is not None:
            return spec
        for record in sorted(versions, key=lambda r: -r.version):
            key = (record.model, record.version)
            if key not in self._tasks:
                self._tasks[key] = self._trained_task(record)
            if self._tasks[key] is not None:
                return spec.model_copy(update={"task": self._tasks[key]})
        return spec

    def _trained_task(self, record: VersionRecord) -> str | None:
        """The task a version's preprocessing was fitted for (its artifact's ``preprocess.json``); None unread."""
        try:
            path = self.registry.artifact_path(record) / "preprocess.json"
            preprocess = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning(
                "a version's task could not be read from its artifact",
                extra={"fields": {"model": record.model, "version": record.version, "error": str(exc)}},
            )
            return None
        task = preprocess.get("task") if isinstance(preprocess, dict) else None
        return task if isinstance(task, str) else None

    # --- the stages ------------------------------------------------------------------------------------

    def _start(self, spec: ModelSpec, candidate: VersionRecord) -> Decision:
        rules = spec.release
        champion = self.registry.routing(candidate.model).champion
        if champion is None:
            return self._move(candidate, "champion", "no champion to compare with: the first to serve", "first")
        if rules.floor is not None:
            comparison = self._below_floor(spec, champion)
            if comparison is not None and rules.urgent_path != "normal":
                evidence = _evidence(spec, comparison, champion.version, "urgent")
                reason = (
                    f"urgent path: the champion v{champion.version}'s live {spec.metric} "
                    f"{_raw(spec, comparison.new):.4f} is worse than the floor {rules.floor}"
                )
                if rules.urgent_path == "champion":
                    return self._move(candidate, "champion", reason, "urgent", evidence)
                return self._move(candidate, "canary", reason, "urgent", evidence, rules.urgent_canary_share)
        if rules.shadow:
            return self._move(candidate, "shadow", "passed the offline gate: scoring live requests unserved")
        return self._move(
            candidate, "canary", "passed the offline gate (no shadow in the spec)", share=rules.canary_shares[0]
        )

    def _judge_shadow(self, spec: ModelSpec, shadow: VersionRecord, champion: VersionRecord) -> list[Decision]:
        rules = spec.release
        since, last = self._stage_times(shadow)
        comparison = self._shadow_comparison(spec, shadow, champion, round(since * 1000))
        self._warn_unmeasured(spec, shadow, comparison, rules.shadow_min_pairs)
        self._warn_unserved(shadow, since, comparison.rows < rules.shadow_min_pairs)
        evidence = _evidence(spec, comparison, champion.version, comparison.verdict)
        summary = _summary(spec, comparison, "pairs", champion.version)
        if comparison.verdict == "pass":
            share = rules.canary_shares[0]
            return [self._move(shadow, "canary", f"shadow passed: {summary}", "release", evidence, share)]
        if comparison.verdict == "fail":
            return [self._move(shadow, "rejected", f"worse in shadow: {summary}", "release", evidence)]
        return self._deadline(
            shadow, last, rules.shadow_deadline_s, rules.on_deadline, summary, evidence, rules.shadow_min_pairs
        )

    def _shadow_comparison(
        self, spec: ModelSpec, shadow: VersionRecord, champion: VersionRecord, since_ms: int
    ) -> Comparison:
        """The shadow against the champion on the labeled requests both scored since ``since_ms``, paired: McNemar
        on accuracy, a paired z test on absolute error, DeLong's on ROC AUC, the delta method's on F1."""
        rules = spec.release
        judged = {"min_pairs": rules.shadow_min_pairs, "margin": rules.margin, "confidence": rules.confidence}
        with self._client() as client:
            if spec.metric in CLASS_METRICS:
                on_rows = paired_class_metric(
                    client,
                    shadow.model,
                    champion.version,
                    shadow.version,
                    since_ms,
                    metric=spec.metric,
                    positive=spec.training.positive_class,
                )
                test = "paired-delong" if spec.metric == "roc_auc" else "paired-f1-delta"
                return paired_estimates(
                    test=test, pairs=on_rows.pairs, new=on_rows.new, baseline=on_rows.baseline, se=on_rows.se, **judged
                )
            pairs = paired(client, shadow.model, champion.version, shadow.version, since_ms)
        if spec.metric == "mae":
            return paired_errors(
                pairs=pairs.pairs,
                mean_gain=pairs.mean_gain,
                gain_variance=pairs.gain_variance,
                baseline_mae=pairs.baseline_mae,
                **judged,
            )
        return paired_classes(
            baseline_only=pairs.baseline_only,
            new_only=pairs.new_only,
            pairs=pairs.pairs,
            baseline_accuracy=pairs.baseline_accuracy,
            **judged,
        )

    def _judge_canary(self, spec: ModelSpec, canary: VersionRecord, champion: VersionRecord) -> list[Decision]:
        rules = spec.release
        since, last = self._stage_times(canary)
        higher = spec.kpi.higher_is_better if spec.kpi else True
        with self._client() as client:
            new, old = (
                live_rows(
                    client,
                    canary.model,
                    v,
                    round(since * 1000),
                    metric=spec.metric,
                    kpi_higher_is_better=higher,
                    positive=spec.training.positive_class,
                )
                for v in (canary.version, champion.version)
            )
            times = self._answer_times(client, rules, canary, champion, since)
        latency = times.relative if times is not None else None
        options = {"min_rows": rules.canary_min_rows, "margin": rules.margin, "confidence": rules.confidence}
        on_metric = two_samples(new.metric, old.metric, **options)
        self._warn_unmeasured(spec, canary, on_metric, rules.canary_min_rows)
        self._warn_unserved(canary, since, on_metric.rows < rules.canary_min_rows)
        comparisons = [on_metric]
        on_kpi = two_samples(new.kpi, old.kpi, **options) if spec.kpi is not None else None
        if on_kpi is not None:
            comparisons.append(on_kpi)
        verdict = "fail" if times is not None and times.fails else combine(comparisons)
        evidence = _evidence(spec, on_metric, champion.version, verdict, kpi=on_kpi, higher=higher, times=times)
        summary = _summary(spec, on_metric, "rows each", champion.version)
        if on_kpi is not None:
            summary += self._kpi_summary(spec, canary, on_kpi, on_metric, higher)
        at = _step(rules, canary.traffic_share)
        if times is not None and latency is not None and latency.rows and latency.baseline_rows:
            said = _latency_summary(latency, champion.version)
            lost = None
            if latency.verdict == "fail":
                lost = latency, f"answers slower: {said}"
            elif times.breaks_objective and times.objective is not None and times.champion_objective is not None:
                kept = times.champion_objective
                lost = (
                    times.objective,
                    (
                        f"breaks the answer-time objective: {_objective_summary(times.objective)}, where "
                        f"v{champion.version} kept to it in {kept.spans - kept.slower} of {kept.spans}"
                    ),
                )
            if lost is not None:  # the evidence is the answer times' (the outcomes' are in its details)
                test, reason = lost
                slower = replace(evidence, test="sign", rows=test.rows, statistic=test.slower, p_value=test.p_value)
                return [self._move(canary, "rejected", f"canary lost{at}: {reason}", "release", slower)]
            summary += f"; {said}"
            if verdict == "pass" and latency.leans_slower:  # passed on outcomes; its answer times may not
                self._say_timing(canary, said)
                verdict = "wait"  # until they decide, or the step's deadline
        if verdict == "pass":
            if (wider := rules.canary_step_after(canary.traffic_share)) is not None:
                reason = f"canary passed{at}, widened to {wider * 100:g}% of requests: {summary}"
                return [self._move(canary, "canary", reason, "release", evidence, wider)]
            return [self._move(canary, "champion", f"canary passed{at}: {summary}", "release", evidence)]
        if verdict == "fail":
            return [self._move(canary, "rejected", f"canary lost{at}: {summary}", "release", evidence)]
        return self._deadline(
            canary, last, rules.canary_deadline_s, rules.on_deadline, summary, evidence, rules.canary_min_rows
        )

    def _answer_times(
        self, client: Client, rules: ReleaseSpec, canary: VersionRecord, champion: VersionRecord, since: float
    ) -> AnswerTimes | None:
        """The canary's answer times against the champion's since ``since``, and both against the spec's objective
        (None: the spec judges none)."""
        if math.isinf(rules.latency_margin) and rules.latency_slo_ms is None:
            return None
        new, old = latencies(
            client,
            canary.model,
            (canary.version, champion.version),
            round(since * 1000),
            until_ms=round(self.clock() * 1000),
            quantile=rules.latency_quantile,
            span_s=rules.latency_span_s,
        )
        relative = slower_spans(
            new.by_span,
            old.by_span,
            quantile=rules.latency_quantile,
            margin=rules.latency_margin,  # inf: no span is slower, the verdict waits
            confidence=rules.confidence,
            rows=(new.rows, old.rows),
            overall=(new.overall, old.overall),
            span_s=new.span_s,
        )
        if rules.latency_slo_ms is None:
            return AnswerTimes(relative)
        shared = set(new.by_span) & set(old.by_span)  # the spans both served in, as the comparison's
        objective, kept = (
            beyond_objective(
                {s: q for s, q in side.by_span.items() if s in shared},
                rules.latency_slo_ms,
                quantile=rules.latency_quantile,
                confidence=rules.confidence,
                rows=side.rows,
                overall=side.overall,
                span_s=side.span_s,
            )
            for side in (new, old)
        )
        return AnswerTimes(relative, objective, kept)

    def _say_timing(self, canary: VersionRecord, said: str) -> None:
        """A canary step that passed on its outcomes waits while its answer times lean slower: said once a step."""
        key = (canary.model, canary.version, canary.traffic_share)
        if key not in self._timing:
            self._timing.add(key)
            log.info(
                f"the canary passed on its outcomes and waits while its answer times lean slower: {said}",
                extra={"fields": {"model": canary.model, "version": canary.version}},
            )

    def _warn_unmeasured(self, spec: ModelSpec, record: VersionRecord, comparison: Comparison, needed: int) -> None:
        """A stage with the rows it needs whose metric they cannot give (ROC AUC of predictions sent without a
        ``score``, or of one class only) waits for its deadline: a WARNING says why, once a version."""
        key = (record.model, record.version)
        measured = math.isfinite(comparison.new) and math.isfinite(comparison.baseline)
        if measured or comparison.rows < needed or key in self._unmeasured:
            return
        self._unmeasured.add(key)
        hint = (
            "its rows carry no `score`, or labels of one class only: send each prediction's `score` (its class's "
            'probability), or set training.metric = "f1"'
            if spec.metric == "roc_auc"
            else "its labeled rows hold no class to score"
        )
        log.warning(
            f"the {record.status} cannot be judged on {spec.metric}: {hint}; it waits for its deadline",
            extra={"fields": {"model": record.model, "version": record.version, "rows": comparison.rows}},
        )

    def _unserved_hint(self, record: VersionRecord, since: float) -> str | None:
        """What to do about a shadow or canary none of whose predictions has landed since ``since``; None once some
        have (remembered: asked no more)."""
        key = (record.model, record.version)
        if key in self._landed or record.status not in UNSERVED_HINTS:
            return None
        with self._client() as client:
            served = record.status == "canary"
            landed = predictions_landed(client, *key, served=served, since_ms=round(since * 1000))
        if landed:
            self._landed.add(key)
            return None
        return UNSERVED_HINTS[record.status]

    def _warn_unserved(self, record: VersionRecord, since: float, short: bool) -> None:
        """A stage short of its rows whose version's predictions have not landed :data:`UNSERVED_AFTER_S` after it
        began: a WARNING says what to do, once a version (it would wait for its deadline, and be rejected)."""
        key = (record.model, record.version)
        if not short or key in self._said_unserved or self.clock() - since < UNSERVED_AFTER_S:
            return
        hint = self._unserved_hint(record, since)
        if hint is not None:
            self._said_unserved.add(key)
            log.warning(
                f"no prediction of the {record.status} has landed since it began: {hint}",
                extra={"fields": {"model": record.model, "version": record.version}},
            )

    def _kpi_summary(
        self, spec: ModelSpec, canary: VersionRecord, on_kpi: Comparison, on_metric: Comparison, higher: bool
    ) -> str:
        """The KPI's part of a canary's reason. Too few rows with a ``value`` are said as such, and a canary whose
        metric has its rows while no outcome carries a value (a producer that does not send it) is a WARNING, once:
        it cannot be judged on the KPI its spec names."""
        name = spec.kpi.name if spec.kpi else "value"
        needed = spec.release.canary_min_rows
        if on_kpi.rows >= needed:
            new, baseline = _oriented(on_kpi.new, higher), _oriented(on_kpi.baseline, higher)
            return f"; {name} {new:.4g} vs {baseline:.4g} ({on_kpi.verdict})"
        if on_kpi.rows == 0 and on_metric.rows >= needed and (canary.model, canary.version) not in self._without_kpi:
            self._without_kpi.add((canary.model, canary.version))
            log.warning(
                "the canary waits for its KPI, and no outcome since it began carries a `value`: send the decision's "
                "value with each outcome, or remove the spec's [kpi]",
                extra={"fields": {"model": canary.model, "version": canary.version, "kpi": name}},
            )
        return f"; {name}: {on_kpi.rows} rows each with a `value` of the {needed} needed (outcomes carry it in `value`)"

    def _watch(self, spec: ModelSpec, champion: VersionRecord) -> list[Decision]:
        rules = spec.release
        promotion = next(
            (c for c in reversed(self.registry.changes(champion.model, champion.version)) if c.to_stage == "champion"),
            None,
        )
        if promotion is None or promotion.path not in ("release", "urgent"):
            return []  # a first version, or one a person promoted: no predecessor to hold it to
        if self.clock() - promotion.changed_at > rules.watch_s or not promotion.evidence.baseline_version:
            return []
        if rules.latency_slo_ms is not None and (slow := self._beyond_objective(spec, champion, promotion)):
            return slow
        reference = promotion.evidence.baseline_metric
        if math.isnan(reference) or promotion.evidence.metric_name not in ("", spec.metric):
            return []  # no predecessor's value, or one of another metric (the spec's changed since)
        with self._client() as client:
            recent = live_rows(
                client,
                champion.model,
                champion.version,
                round(promotion.changed_at * 1000),
                metric=spec.metric,
                last=rules.watch_rows,
                positive=spec.training.positive_class,
            )
        comparison = against_reference(
            recent.metric,
            _oriented_metric(spec, reference),
            min_rows=rules.watch_rows,
            margin=rules.margin,
            confidence=rules.confidence,
        )
        if comparison.verdict != "fail":
            return []
        predecessor = promotion.evidence.baseline_version
        evidence = _evidence(spec, comparison, predecessor, "fail")
        reason = f"degraded after promotion: {_summary(spec, comparison, 'recent rows', predecessor)}"
        return self._roll_back(champion, predecessor, reason, evidence)

    def _roll_back(self, champion: VersionRecord, predecessor: int, reason: str, evidence: Evidence) -> list[Decision]:
        self.registry.rollback(champion.model, reason, to_version=predecessor, path="release", evidence=evidence)
        log.warning(
            "rolled back",
            extra={"fields": {"model": champion.model, "from": champion.version, "to": predecessor, "reason": reason}},
        )
        return [Decision(champion.model, champion.version, "rolled_back", reason)]

    def _beyond_objective(self, spec: ModelSpec, champion: VersionRecord, promotion: StageChange) -> list[Decision]:
        """A champion in its watch that breaks the answer-time objective in most spans since its promotion (with
        confidence), where its predecessor kept to it as the canary's baseline (its quantile in the promotion's
        evidence): rolled back. Full traffic is where a version too costly for its servers shows it; at a
        canary's share it may not have."""
        rules, objective = spec.release, spec.release.latency_slo_ms
        before = promotion.evidence.details.get("baseline_latency_ms")
        if objective is None or not isinstance(before, float | int) or not before <= objective:
            return []  # the predecessor's answer times unknown, or it broke the objective too
        with self._client() as client:
            since = round(promotion.changed_at * 1000)
            own, _ = latencies(
                client,
                champion.model,
                (champion.version, champion.version),  # one version: its own spans, unsampled
                since,
                until_ms=round(self.clock() * 1000),
                quantile=rules.latency_quantile,
                span_s=rules.latency_span_s,
            )
        broken = beyond_objective(
            own.by_span,
            objective,
            quantile=rules.latency_quantile,
            confidence=rules.confidence,
            rows=own.rows,
            overall=own.overall,
            span_s=own.span_s,
        )
        if broken.verdict != "fail":
            return []
        predecessor = promotion.evidence.baseline_version
        reason = (
            f"breaks the answer-time objective since its promotion: {_objective_summary(broken)}, where "
            f"v{predecessor} kept to it as the canary's baseline (p{broken.quantile * 100:g} {float(before):.3g} ms)"
        )
        evidence = Evidence(
            baseline_version=predecessor,
            rows=broken.rows,
            test="sign",
            statistic=broken.slower,
            p_value=broken.p_value,
            result="fail",
            details={
                "latency_ms": broken.new,
                "baseline_latency_ms": float(before),
                "latency_slo_ms": objective,
                "slo_spans": broken.spans,
                "slo_broken_spans": broken.slower,
                "latency_span_s": broken.span_s,
            },
        )
        return self._roll_back(champion, predecessor, reason, evidence)

    def _deadline(
        self,
        record: VersionRecord,
        began: float,
        deadline_s: float,
        on_deadline: str,
        summary: str,
        evidence: Evidence,
        needed: int,
    ) -> list[Decision]:
        """A stage undecided ``deadline_s`` after it ``began``: extended or rejected as ``on_deadline`` says. Short
        of its rows, the reason says how many it had, and where the model's labels come later than half the
        deadline after their predictions, how much later (a deadline that leaves its labels no time)."""
        if self.clock() < began + deadline_s:
            return []
        if evidence.rows < needed:
            summary += f"; {evidence.rows} of the {needed} labeled rows needed"
            if (hint := self._unserved_hint(record, began)) is not None:
                summary += f"; none of v{record.version}'s predictions has landed since the stage began: {hint}"
            with self._client() as client:
                delay = label_delay_s(client, record.model)
            if delay > deadline_s / 2:
                summary += (
                    f": the model's labels come {delay:,.0f} s after their predictions (median), the stage's "
                    f"deadline is {deadline_s:,.0f} s (raise the spec's {record.status}_deadline_s)"
                )
        evidence = replace(evidence, result="deadline")
        if on_deadline == "extend":
            reason = f"deadline extended, evidence so far: {summary}"
            return [self._move(record, record.status, reason, "release", evidence, record.traffic_share)]  # type: ignore[arg-type]
        return [self._move(record, "rejected", f"deadline passed without a decision: {summary}", "release", evidence)]

    def _below_floor(self, spec: ModelSpec, champion: VersionRecord) -> Comparison | None:
        """The champion's recent live metric against the floor, when it is worse beyond doubt; else None."""
        assert spec.release.floor is not None
        return self.worse_than(spec, champion, spec.release.floor, spec.release.floor_rows)

    def worse_than(
        self, spec: ModelSpec, champion: VersionRecord, level: float, rows: int, *, since_ms: int = 0
    ) -> Comparison | None:
        """The champion's live metric (``spec.metric``) over its most recent ``rows`` labeled rows (predicted at
        or after ``since_ms``) against ``level`` (the metric below it, MAE above it), when it is worse beyond doubt at
        the release's confidence; else None (not worse, or fewer rows)."""
        with self._client() as client:
            recent = live_rows(
                client,
                champion.model,
                champion.version,
                since_ms,
                metric=spec.metric,
                last=rows,
                positive=spec.training.positive_class,
            )
        comparison = against_reference(
            recent.metric, _oriented_metric(spec, level), min_rows=rows, margin=0.0, confidence=spec.release.confidence
        )
        return comparison if comparison.verdict == "fail" else None

    # --- plumbing --------------------------------------------------------------------------------------

    def _move(
        self,
        record: VersionRecord,
        to: str,
        reason: str,
        path: str = "release",
        evidence: Evidence | None = None,
        share: float = 0.0,
    ) -> Decision:
        self.registry.transition(
            record.model,
            record.version,
            to,
            reason=reason,
            path=path,  # type: ignore[arg-type]
            evidence=evidence,
            traffic_share=share,
        )
        log.warning(
            f"v{record.version} {record.status} → {to}", extra={"fields": {"model": record.model, "reason": reason}}
        )
        return Decision(record.model, record.version, to, reason)

    def _stage_times(self, record: VersionRecord) -> tuple[float, float]:
        """When ``record`` entered its stage (a canary: its current step, its share widened), whose rows are its
        evidence, and when its stage last changed (a deadline extended, a step begun), whence its deadline."""
        changes: list[StageChange] = self.registry.changes(record.model, record.version)
        since, share = record.updated_at, None
        for change in (c for c in changes if c.to_stage == record.status):
            if change.from_stage != record.status or change.traffic_share != share:
                since = change.changed_at  # entered, or a step begun (an extension keeps the share)
            share = change.traffic_share
        last = max([since, *(c.changed_at for c in changes if c.to_stage == record.status)])
        return since, last

    def _active_models(self) -> list[str]:
        """Models with a candidate, a shadow or a canary, or a champion promoted recently enough to be watched."""
        with self._client() as client:
            rows = client.execute(
                "SELECT model, toString(status), toUnixTimestamp(updated_at) FROM model_versions FINAL "
                "WHERE status IN ('candidate', 'shadow', 'canary', 'champion')"
            )
        now = self.clock()
        active = set()
        for model, status, updated_at in rows:
            if status != "champion" or now - updated_at <= self._watch_s(model):
                active.add(model)
        return sorted(active)

    def _watch_s(self, model: str) -> float:
        try:
            return self.specs.get(model).release.watch_s
        except SpecError:  # a broken spec: the champion is not watched until the file is fixed
            return 0.0

    @contextlib.contextmanager
    def _client(self) -> Iterator[Client]:
        client = connect(self.settings.clickhouse)
        try:
            yield client
        finally:
            client.disconnect()


def _oriented_metric(spec: ModelSpec, value: float) -> float:
    return -value if spec.metric == "mae" else value


def _raw(spec: ModelSpec, oriented: float) -> float:
    return -oriented if spec.metric == "mae" else oriented


def _oriented(value: float, higher_is_better: bool) -> float:
    return value if higher_is_better else -value


def _evidence(
    spec: ModelSpec,
    comparison: Comparison,
    baseline_version: int,
    result: str,
    *,
    kpi: Comparison | None = None,
    higher: bool = True,
    times: AnswerTimes | None = None,
) -> Evidence:
    details: dict[str, object] = {
        "difference": comparison.difference,
        "lower": comparison.lower,
        "upper": comparison.upper,
        "tolerance": comparison.tolerance,
        "verdict": comparison.verdict,
    }
    if kpi is not None:
        details |= {
            "kpi_rows": kpi.rows,
            "kpi_verdict": kpi.verdict,
            "kpi_lower": kpi.lower,
            "kpi_upper": kpi.upper,
            "kpi_p_value": kpi.p_value,
        }
    if times is not None:
        latency = times.relative
        details |= {
            "latency_quantile": latency.quantile,
            "latency_ms": latency.new,
            "baseline_latency_ms": latency.baseline,
            "latency_rows": latency.rows,
            "baseline_latency_rows": latency.baseline_rows,
            "latency_spans": latency.spans,
            "latency_slower_spans": latency.slower,
            "latency_limit": latency.limit,
            "latency_span_s": latency.span_s,
            "latency_p_value": latency.p_value,
            "latency_p_within": latency.p_within,
            "latency_verdict": latency.verdict,
        }
        if times.objective is not None and times.champion_objective is not None:
            details |= {
                "latency_slo_ms": times.objective.baseline,
                "slo_spans": times.objective.spans,
                "slo_broken_spans": times.objective.slower,
                "slo_p_value": times.objective.p_value,
                "baseline_slo_broken_spans": times.champion_objective.slower,
            }
    return Evidence(
        baseline_version=baseline_version,
        metric_name=spec.metric,
        metric=_raw(spec, comparison.new),
        baseline_metric=_raw(spec, comparison.baseline),
        kpi=_oriented(kpi.new, higher) if kpi is not None else math.nan,
        baseline_kpi=_oriented(kpi.baseline, higher) if kpi is not None else math.nan,
        rows=comparison.rows,
        test=comparison.test,
        statistic=comparison.statistic,
        p_value=comparison.p_value,
        result=result,
        details=details,
    )


def _step(rules: ReleaseSpec, share: float) -> str:
    """Which of the spec's canary steps a canary serving ``share`` is on, in words; empty without steps."""
    shares = rules.canary_shares
    if len(shares) < 2:
        return ""
    on = next((i for i, step in enumerate(shares, start=1) if abs(step - share) < 1e-9), None)
    at = f" at {share * 100:g}%"
    return f"{at} (step {on} of {len(shares)})" if on else at


def _latency_summary(latency: LatencyComparison, baseline_version: int) -> str:
    """The answer times in words: each side's quantile, and the spans the canary was slower in."""
    said = (
        f"p{latency.quantile * 100:g} latency {latency.new:.3g} ms vs v{baseline_version} {latency.baseline:.3g} ms "
        f"on {latency.rows} and {latency.baseline_rows} requests"
    )
    if math.isinf(latency.limit):  # latency_margin = inf: judged against an objective only
        return said
    test = (
        f"not slower, sign test p={latency.p_within:.3g}"
        if latency.verdict == "pass"
        else f"sign test p={latency.p_value:.3g}"
    )
    return (
        f"{said}, beyond {latency.limit:g} times v{baseline_version}'s in {latency.slower} of {latency.spans} spans "
        f"of {latency.span_s:.3g} s ({test})"
    )


def _objective_summary(objective: LatencyComparison) -> str:
    """A version's answer times against the objective, in words."""
    return (
        f"p{objective.quantile * 100:g} latency {objective.new:.3g} ms on {objective.rows} requests, above the "
        f"{objective.baseline:g} ms objective in {objective.slower} of {objective.spans} spans of "
        f"{objective.span_s:.3g} s (sign test p={objective.p_value:.3g})"
    )


def _summary(spec: ModelSpec, comparison: Comparison, unit: str, baseline_version: int) -> str:
    return (
        f"{spec.metric} {_raw(spec, comparison.new):.4f} vs v{baseline_version} {_raw(spec, comparison.baseline):.4f} "
        f"on {comparison.rows} {unit} ({comparison.test} p={comparison.p_value:.3g}, difference "
        f"{comparison.difference:+.4f} in [{comparison.lower:+.4f}, {comparison.upper:+.4f}], "
        f"tolerance {comparison.tolerance:.4f})"
    )
