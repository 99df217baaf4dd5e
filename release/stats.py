"""The comparisons a release decides on: non-inferiority bounds on live outcomes, and the classic test beside.

Every comparison orients its numbers so that higher is better for the new version (accuracy, the negated
absolute error, a KPI whose spec says lower is better negated), and gives a one-sided confidence bound on
each side of the difference (new - baseline). With ``tolerance`` the amount the new version may lose:

- ``pass`` when the lower bound is at least -tolerance (not worse beyond the tolerance, with confidence),
- ``fail`` when the upper bound is below -tolerance (worse beyond it, with confidence),
- ``wait`` otherwise, and whenever there are fewer rows than asked for.

>>> c = paired_classes(baseline_only=40, new_only=160, pairs=1000, baseline_accuracy=0.5, min_pairs=300)
>>> c.verdict, c.test, round(c.difference, 3), c.p_value < 1e-10
('pass', 'mcnemar', 0.12, True)
>>> paired_classes(baseline_only=150, new_only=20, pairs=1000, baseline_accuracy=0.9, min_pairs=300).verdict
'fail'
>>> paired_classes(baseline_only=5, new_only=5, pairs=100, baseline_accuracy=0.9, min_pairs=300).verdict
'wait'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Verdict = Literal["pass", "fail", "wait"]


@dataclass(frozen=True)
class Comparison:
    """The new version against a baseline: the difference (new - baseline, higher is better), its bounds, the
    test, and what it means."""

    test: str
    rows: int
    new: float
    baseline: float
    difference: float
    lower: float
    upper: float
    tolerance: float
    statistic: float
    p_value: float
    verdict: Verdict


@dataclass(frozen=True)
class Sample:
    """Rows of one side: how many, their mean and (population) variance."""

    n: int
    mean: float
    variance: float

    def negated(self) -> Sample:
        return Sample(self.n, -self.mean, self.variance)


def z_of(confidence: float) -> float:
    """The one-sided normal quantile of ``confidence`` (1.645 for 0.95)."""
    return NormalDist().inv_cdf(confidence)


def paired_classes(
    *,
    baseline_only: int,
    new_only: int,
    pairs: int,
    baseline_accuracy: float,
    min_pairs: int,
    margin: float = 0.01,
    confidence: float = 0.95,
) -> Comparison:
    """Both versions scored the same labeled requests: ``baseline_only`` were right by the baseline alone,
    ``new_only`` by the new version alone (McNemar's discordant pairs). ``margin``: a fraction of the
    baseline's accuracy the new one may lose."""
    n = max(pairs, 0)
    discordant = baseline_only + new_only
    difference = (new_only - baseline_only) / n if n else 0.0
    variance = max(discordant / n - difference**2, 0.0) / n if n else math.inf
    statistic, p_value = _mcnemar(baseline_only, new_only)
    return _judge(
        "mcnemar",
        n,
        baseline_accuracy + difference,
        baseline_accuracy,
        difference,
        math.sqrt(variance),
        margin * abs(baseline_accuracy),
        statistic,
        p_value,
        min_pairs,
        confidence,
    )


def paired_errors(
    *,
    pairs: int,
    mean_gain: float,
    gain_variance: float,
    baseline_mae: float,
    min_pairs: int,
    margin: float = 0.01,
    confidence: float = 0.95,
) -> Comparison:
    """Both versions scored the same labeled requests (regression); ``gain`` per pair is the baseline's absolute
    error minus the new version's (positive: the new one is closer). A paired z test on it; ``margin``: a
    fraction of the baseline's MAE the new one may lose.

    >>> paired_errors(pairs=500, mean_gain=0.3, gain_variance=1.0, baseline_mae=2.0, min_pairs=100).verdict
    'pass'
    """
    se = math.sqrt(gain_variance / pairs) if pairs else math.inf
    statistic = mean_gain / se if se > 0 else math.copysign(math.inf, mean_gain) if mean_gain else 0.0
    p_value = 2 * (1 - NormalDist().cdf(abs(statistic))) if math.isfinite(statistic) else 0.0
    return _judge(
        "paired-abs-error",
        pairs,
        -(baseline_mae - mean_gain),
        -baseline_mae,
        mean_gain,
        se,
        margin * abs(baseline_mae),
        statistic,
        p_value,
        min_pairs,
        confidence,
    )


def paired_estimates(
    *,
    test: str,
    pairs: int,
    new: float,
    baseline: float,
    se: float,
    min_pairs: int,
    margin: float = 0.01,
    confidence: float = 0.95,
) -> Comparison:
    """Both versions scored the same labeled requests, on a metric that is no mean of per-row values (F1, ROC AUC:
    :mod:`release.class_metrics`): their values and the standard error of the difference. ``margin``: a fraction
    of the baseline's value the new one may lose.

    >>> paired_estimates(test="paired-delong", pairs=900, new=0.93, baseline=0.91, se=0.01, min_pairs=300).verdict
    'pass'
    >>> paired_estimates(test="paired-delong", pairs=900, new=0.5, baseline=0.91, se=0.02, min_pairs=300).verdict
    'fail'
    """
    difference = new - baseline
    known = math.isfinite(difference) and 0 < se < math.inf
    statistic = difference / se if known else 0.0
    p_value = 2 * (1 - NormalDist().cdf(abs(statistic)))
    tolerance = margin * abs(baseline) if math.isfinite(baseline) else 0.0
    return _judge(test, pairs, new, baseline, difference, se, tolerance, statistic, p_value, min_pairs, confidence)


def two_samples(
    new: Sample, baseline: Sample, *, min_rows: int, margin: float = 0.01, confidence: float = 0.95
) -> Comparison:
    """Two versions on the same period but different requests (a canary and its champion): the difference of
    means with Welch's standard error. Both samples oriented higher-is-better.

    >>> two_samples(Sample(400, 0.95, 0.05), Sample(4000, 0.5, 0.25), min_rows=200).verdict
    'pass'
    """
    se = math.sqrt(new.variance / new.n + baseline.variance / baseline.n) if new.n and baseline.n else math.inf
    difference = new.mean - baseline.mean if new.n and baseline.n else 0.0
    statistic = difference / se if 0 < se < math.inf else 0.0
    p_value = 2 * (1 - NormalDist().cdf(abs(statistic)))
    return _judge(
        "two-sample-z",
        min(new.n, baseline.n),
        new.mean,
        baseline.mean,
        difference,
        se,
        margin * abs(baseline.mean),
        statistic,
        p_value,
        min_rows,
        confidence,
    )


def against_reference(
    sample: Sample, reference: float, *, min_rows: int, margin: float = 0.01, confidence: float = 0.95
) -> Comparison:
    """A version's recent rows against a fixed reference (the predecessor's live value): the watch after a
    promotion. Oriented higher-is-better.

    >>> against_reference(Sample(500, 0.6, 0.24), 0.9, min_rows=200).verdict
    'fail'
    """
    se = math.sqrt(sample.variance / sample.n) if sample.n else math.inf
    difference = sample.mean - reference if sample.n else 0.0
    statistic = difference / se if 0 < se < math.inf else 0.0
    p_value = 2 * (1 - NormalDist().cdf(abs(statistic)))
    return _judge(
        "one-sample-z",
        sample.n,
        sample.mean,
        reference,
        difference,
        se,
        margin * abs(reference),
        statistic,
        p_value,
        min_rows,
        confidence,
    )


def combine(comparisons: list[Comparison]) -> Verdict:
    """Several criteria at once: fail if any fails, pass when all pass, else wait."""
    verdicts = {c.verdict for c in comparisons}
    return "fail" if "fail" in verdicts else "pass" if verdicts == {"pass"} else "wait"


def _judge(
    test: str,
    rows: int,
    new: float,
    baseline: float,
    difference: float,
    se: float,
    tolerance: float,
    statistic: float,
    p_value: float,
    min_rows: int,
    confidence: float,
) -> Comparison:
    z = z_of(confidence)
    lower, upper = difference - z * se, difference + z * se
    verdict: Verdict = "wait"
    if rows >= min_rows:
        verdict = "pass" if lower >= -tolerance else "fail" if upper < -tolerance else "wait"
    return Comparison(test, rows, new, baseline, difference, lower, upper, tolerance, statistic, p_value, verdict)


def _mcnemar(b: int, c: int) -> tuple[float, float]:
    """McNemar's statistic (with continuity correction) and two-sided p-value; exact binomial below 25
    discordant pairs.

    >>> _mcnemar(0, 0)
    (0.0, 1.0)
    >>> round(_mcnemar(3, 12)[1], 4)
    0.0352
    """
    n = b + c
    if n == 0:
        return 0.0, 1.0
    statistic = (abs(b - c) - 1) ** 2 / n
    if n < 25:
        tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
        return statistic, min(1.0, 2 * tail)
    return statistic, math.erfc(math.sqrt(statistic / 2))


@dataclass(frozen=True)
class LatencyComparison:
    """A canary's answer times against the champion's over the same spans of time: each side's ``quantile`` of
    ``latency_ms`` over all the rows read, and a sign test over the spans both served in, of whether the canary's
    quantile is beyond ``1 + margin`` times the champion's in most of them.

    Spans, not rows, are its units: the rows of one request batch share its time (and one slow moment of the
    machine slows both sides), so rows are not independent draws; spans of a few seconds nearly are, and a
    pair of them shares the load of its moment. The verdict is ``fail`` (slower in most spans, with
    ``confidence``: ``p_value``), ``pass`` (slower in few, with ``confidence``: ``p_within``) or ``wait``; while
    it waits, the answer times may lean slower (:attr:`leans_slower`), and a canary that passed on its outcomes
    waits with them."""

    quantile: float
    new: float
    baseline: float
    rows: int
    baseline_rows: int
    spans: int
    slower: int
    limit: float  # the multiple of the champion's quantile beyond which a span counts as slower
    span_s: float
    p_value: float  # the sign test's, of most spans slower
    verdict: Verdict
    p_within: float = 1.0  # the sign test's, of few spans slower

    @property
    def leans_slower(self) -> bool:
        """Undecided, and slower so far: beyond the limit in more than half of the spans, or, before a span holds
        enough rows, over all the rows read. A canary twice as slow whose outcomes pass before five spans can
        decide leans slower (nearly always, from its first span: the tests' simulation); one as fast seldom does.

        >>> leaning = slower_spans({0: 30.0}, {0: 10.0}, quantile=0.99, margin=0.5, confidence=0.95)
        >>> leaning.verdict, leaning.leans_slower
        ('wait', True)
        >>> few = {"quantile": 0.99, "margin": 0.5, "confidence": 0.95, "rows": (150, 1350)}  # no span of 200 yet
        >>> [slower_spans({}, {}, overall=(ms, 10.0), **few).leans_slower for ms in (16.0, 12.0)]
        [True, False]
        """
        if self.verdict != "wait":
            return False
        if self.spans:
            return 2 * self.slower > self.spans
        return self.rows > 0 and self.baseline_rows > 0 and self.new > self.limit * self.baseline


def slower_spans(
    new: Mapping[int, float],
    baseline: Mapping[int, float],
    *,
    quantile: float,
    margin: float,
    confidence: float,
    rows: tuple[int, int] = (0, 0),
    overall: tuple[float, float] = (math.nan, math.nan),
    span_s: float = math.nan,
) -> LatencyComparison:
    """Compare the canary's quantile of each span (``new``: span → its quantile) with the champion's
    (``baseline``) in the spans both have; ``rows`` and ``overall`` (each side's row count and quantile over all
    its rows) and ``span_s`` (the spans' length) are reported as they are.

    >>> fast = {span: 10.0 for span in range(8)}
    >>> slow = slower_spans({s: 30.0 for s in range(8)}, fast, quantile=0.99, margin=0.5, confidence=0.95)
    >>> slow.verdict, slow.slower, slow.spans, round(slow.p_value, 4)
    ('fail', 8, 8, 0.0039)
    >>> within = slower_spans({s: 14.0 for s in range(8)}, fast, quantile=0.99, margin=0.5, confidence=0.95)
    >>> within.verdict, within.slower, round(within.p_within, 4)
    ('pass', 0, 0.0039)
    >>> slower_spans({s: 14.0 for s in range(4)}, fast, quantile=0.99, margin=0.5, confidence=0.95).verdict
    'wait'

    Four spans decide nothing at 0.95 (a sign test of four has p = 1/16 at best); five may.
    """
    limit = 1.0 + margin
    shared = sorted(set(new) & set(baseline))
    slower = sum(new[span] > limit * baseline[span] for span in shared)
    p_value = _upper_tail_of_half(slower, len(shared))
    p_within = _upper_tail_of_half(len(shared) - slower, len(shared))  # as many within the limit, or more
    alpha = 1 - confidence
    return LatencyComparison(
        quantile=quantile,
        new=overall[0],
        baseline=overall[1],
        rows=rows[0],
        baseline_rows=rows[1],
        spans=len(shared),
        slower=slower,
        limit=limit,
        span_s=span_s,
        p_value=p_value,
        verdict="fail" if shared and p_value < alpha else "pass" if shared and p_within < alpha else "wait",
        p_within=p_within,
    )


def _upper_tail_of_half(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided sign test's p-value (1 for no spans)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0


def beyond_objective(
    spans: Mapping[int, float],
    objective_ms: float,
    *,
    quantile: float,
    confidence: float,
    rows: int = 0,
    overall: float = math.nan,
    span_s: float = math.nan,
) -> LatencyComparison:
    """One version's quantile of each span against an objective (``latency_slo_ms``): :func:`slower_spans` with the
    objective as the baseline of every span, and no margin.

    >>> beyond_objective({s: 60.0 for s in range(6)}, 50.0, quantile=0.99, confidence=0.95).verdict
    'fail'
    """
    return slower_spans(
        spans,
        dict.fromkeys(spans, objective_ms),
        quantile=quantile,
        margin=0.0,
        confidence=confidence,
        rows=(rows, 0),
        overall=(overall, objective_ms),
        span_s=span_s,
    )
