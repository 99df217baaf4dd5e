"""F1 and ROC AUC of live rows, with their standard errors: what a release judges when the spec's metric is one.

Accuracy is a mean of per-row values, so its comparisons need only means and variances. F1 and ROC AUC are not:

- **F1** (of the positive class; macro F1 over the classes in the labels for more) is a ratio of sums,
  ``2 TP / (2 TP + FP + FN)``; its standard error is the delta method's, through each row's influence
  ``(a - F b) / mean(b)`` (``a`` = 2 for a true positive, ``b`` = predicted positive + actually positive).
- **ROC AUC** (binary) is the Mann-Whitney statistic of the positive class's probability; its standard error is
  DeLong's (DeLong, DeLong & Clarke-Pearson 1988), from each positive's and each negative's placement among the
  other class, which for two versions scoring the same rows also gives their covariance.

Both estimates come as a :class:`~driftloop.release.stats.Sample` whose ``variance`` is ``n`` times the squared
standard error, so that the two-sample and one-sample comparisons of :mod:`release.stats` take them as they
take accuracies; two versions on the same rows (a shadow) give their difference and its standard error directly.
An estimate the rows cannot give (no positive among the labels, for ROC AUC) is NaN with an infinite error: its
comparison waits.

>>> y = np.array([0, 0, 1, 1, 0, 1, 0, 0]) == 1
>>> p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.3, 0.6])
>>> round(roc_auc_estimate(p, y).mean, 4)  # 13 of the 15 positive-negative pairs ranked right
0.8667
>>> round(f1_estimate([p > 0.5], [y]).mean, 4)
0.6667
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from driftloop.release.stats import Sample


def f1_influence(predicted: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> tuple[float, np.ndarray]:
    """Macro F1 over the classes given (one boolean array a class: predicted as it, actually it, per row) and
    each row's influence on it (its first-order term: the estimate's error is their mean). Classes never
    predicted nor true in these rows are left out; (NaN, empty) when none is left."""
    rows = len(actual[0]) if actual else 0
    scores: list[float] = []
    influence = np.zeros(rows)
    for said, true in zip(predicted, actual, strict=True):
        a = 2.0 * (said & true)
        b = said.astype(np.float64) + true
        mean_b = b.mean() if rows else 0.0
        if mean_b == 0:
            continue
        f1 = a.mean() / mean_b
        scores.append(f1)
        influence += (a - f1 * b) / mean_b
    if not scores:
        return math.nan, np.empty(0)
    return float(np.mean(scores)), influence / len(scores)


def f1_estimate(predicted: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> Sample:
    """Macro F1 of the rows (one boolean array a class, see :func:`f1_influence`) as a :class:`Sample`."""
    f1, influence = f1_influence(predicted, actual)
    if not len(influence):
        return Sample(len(actual[0]) if actual else 0, math.nan, math.inf)
    return Sample(len(influence), f1, float(np.mean(influence**2)))


def _placements(p: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: each positive's share of negatives scored below it (ties count half), and
    each negative's share of positives scored above it."""
    positives, negatives = p[is_positive], p[~is_positive]
    ranks = rankdata(p)
    among_positives, among_negatives = rankdata(positives), rankdata(negatives)
    v10 = (ranks[is_positive] - among_positives) / len(negatives)
    v01 = 1.0 - (ranks[~is_positive] - among_negatives) / len(positives)
    return v10, v01


def roc_auc_estimate(positive_probability: np.ndarray, is_positive: np.ndarray) -> Sample:
    """ROC AUC with DeLong's standard error, as a :class:`Sample` of the rows."""
    m = int(is_positive.sum())
    n = len(is_positive) - m
    if m < 2 or n < 2:
        return Sample(len(is_positive), math.nan, math.inf)
    v10, v01 = _placements(positive_probability, is_positive)
    se2 = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    return Sample(len(is_positive), float(v10.mean()), len(is_positive) * se2)


def paired_roc_auc(new: np.ndarray, baseline: np.ndarray, is_positive: np.ndarray) -> tuple[float, float, float]:
    """Two versions' probabilities of the positive class on the same rows: (new AUC, baseline AUC, the standard
    error of their difference, DeLong's with the versions' covariance). NaN AUCs and an infinite error where
    either class has fewer than two rows."""
    m = int(is_positive.sum())
    n = len(is_positive) - m
    if m < 2 or n < 2:
        return math.nan, math.nan, math.inf
    new10, new01 = _placements(new, is_positive)
    old10, old01 = _placements(baseline, is_positive)
    se2 = np.var(new10 - old10, ddof=1) / m + np.var(new01 - old01, ddof=1) / n
    return float(new10.mean()), float(old10.mean()), math.sqrt(max(se2, 0.0))


def paired_f1(
    new: Sequence[np.ndarray], baseline: Sequence[np.ndarray], actual: Sequence[np.ndarray]
) -> tuple[float, float, float]:
    """Two versions' predictions on the same rows (one boolean array a class each, see :func:`f1_influence`):
    (new F1, baseline F1, the standard error of their difference, from the rows' paired influences)."""
    new_f1, new_influence = f1_influence(new, actual)
    old_f1, old_influence = f1_influence(baseline, actual)
    if not len(new_influence) or not len(old_influence):
        return new_f1, old_f1, math.inf
    gain = new_influence - old_influence
    return new_f1, old_f1, math.sqrt(float(np.mean(gain**2)) / len(gain))


@dataclass(frozen=True)
class Classes:
    """A classifier's classes (every label its model was given, on both sides of a comparison alike) and the one
    F1 and ROC AUC score: the spec's ``training.positive_class``, else the last in sorted order, as training
    takes it. Taken from each side's own rows instead, a canary none of whose few rows was fraud would be
    scored on the other class."""

    labels: tuple[str, ...]
    positive: str

    @classmethod
    def of(cls, labels: Iterable[str], positive: str | None = None) -> Classes:
        present = tuple(sorted(set(labels)))
        return cls(present, positive if positive is not None else (present[-1] if present else ""))

    @property
    def binary(self) -> bool:
        return len(self.labels) <= 2

    @property
    def averaged(self) -> list[str]:
        """The classes F1 averages over: the positive one for two classes, every one for more (macro F1)."""
        return [self.positive] if self.binary else list(self.labels)


def _positive_probability(predictions: np.ndarray, scores: np.ndarray, positive: str) -> np.ndarray:
    """The positive class's probability from each row's score (its predicted class's probability)."""
    return np.where(predictions == positive, scores, 1.0 - scores)


def live_estimate(
    metric: str, labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray, classes: Classes
) -> Sample:
    """One version's ``f1`` or ``roc_auc`` on its rows (labels and predictions as text, scores the predicted
    class's probability, NaN where none was sent: those rows are left out of ``roc_auc``)."""
    if metric == "f1":
        return f1_estimate([predictions == c for c in classes.averaged], [labels == c for c in classes.averaged])
    if metric != "roc_auc":
        raise ValueError(f"{metric!r}: live_estimate gives f1 or roc_auc")
    if not classes.binary:
        return Sample(len(labels), math.nan, math.inf)  # roc_auc is a binary model's
    scored = ~np.isnan(scores)
    if not scored.any():
        return Sample(len(labels), math.nan, math.inf)  # judged rows, none of them with a score
    positive = classes.positive
    return roc_auc_estimate(_positive_probability(predictions, scores, positive)[scored], (labels == positive)[scored])


def paired_estimate(
    metric: str,
    labels: np.ndarray,
    new: tuple[np.ndarray, np.ndarray],
    baseline: tuple[np.ndarray, np.ndarray],
    classes: Classes,
) -> tuple[float, float, float]:
    """Two versions' ``f1`` or ``roc_auc`` on the same rows: ``new`` and ``baseline`` are each (predictions,
    scores); (new, baseline, the standard error of new - baseline)."""
    averaged = classes.averaged
    if metric == "f1":
        actual = [labels == c for c in averaged]
        return paired_f1([new[0] == c for c in averaged], [baseline[0] == c for c in averaged], actual)
    if metric != "roc_auc":
        raise ValueError(f"{metric!r}: paired_estimate gives f1 or roc_auc")
    if not classes.binary:
        return math.nan, math.nan, math.inf
    scored = ~(np.isnan(new[1]) | np.isnan(baseline[1]))
    positive = classes.positive
    return paired_roc_auc(
        _positive_probability(*new, positive)[scored],
        _positive_probability(*baseline, positive)[scored],
        (labels == positive)[scored],
    )
