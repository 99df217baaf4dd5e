"""The release gates' statistics, simulated with seeds: a version exactly at the tolerance passes at the rate
the confidence allows (not half, not twice), a clearly better one passes, and canary shares hold."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from driftloop.models.serving import canary_bucket
from driftloop.release.class_metrics import Classes, live_estimate, paired_f1, paired_roc_auc
from driftloop.release.stats import (
    Sample,
    against_reference,
    paired_classes,
    paired_errors,
    paired_estimates,
    two_samples,
)
from driftloop.retrain.evaluation import f1_score, roc_auc

TRIALS = 4000
CONFIDENCE = 0.95  # a version exactly at the tolerance passes 5 % of the time


def test_the_paired_class_gate_passes_a_version_at_the_tolerance_at_the_stated_rate() -> None:
    rng = np.random.default_rng(1)
    n, baseline = 2000, 0.9
    tolerance = 0.01 * baseline
    p_baseline_only, p_new_only = 0.06, 0.06 - tolerance  # the new version is worse by exactly the tolerance
    counts = rng.multinomial(n, [p_baseline_only, p_new_only, 1 - p_baseline_only - p_new_only], size=TRIALS)
    passed = [
        paired_classes(baseline_only=int(b), new_only=int(c), pairs=n, baseline_accuracy=baseline, min_pairs=100,
                       confidence=CONFIDENCE).verdict == "pass"
        for b, c, _ in counts
    ]  # fmt: skip
    assert 0.025 < np.mean(passed) < 0.10


def test_the_paired_class_gate_passes_a_clearly_better_version_and_fails_a_clearly_worse_one() -> None:
    rng = np.random.default_rng(2)
    better = rng.multinomial(1000, [0.03, 0.08, 0.89], size=500)
    worse = rng.multinomial(1000, [0.08, 0.03, 0.89], size=500)

    def verdicts(counts: np.ndarray) -> list[str]:
        return [paired_classes(baseline_only=int(b), new_only=int(c), pairs=1000, baseline_accuracy=0.9,
                               min_pairs=300).verdict for b, c, _ in counts]  # fmt: skip

    assert verdicts(better).count("pass") >= 480 and verdicts(worse).count("fail") >= 480  # about 99 % each


def test_the_paired_error_gate_passes_a_regressor_at_the_tolerance_at_the_stated_rate() -> None:
    rng = np.random.default_rng(3)
    n, baseline_mae = 1000, 2.0
    tolerance = 0.01 * baseline_mae
    gains = rng.normal(-tolerance, 0.5, size=(TRIALS, n))  # worse by exactly the tolerance, on average
    passed = [
        paired_errors(pairs=n, mean_gain=float(g.mean()), gain_variance=float(g.var()), baseline_mae=baseline_mae,
                      min_pairs=100).verdict == "pass"
        for g in gains
    ]  # fmt: skip
    assert 0.025 < np.mean(passed) < 0.10


@pytest.mark.parametrize("n", [300, 3000])
def test_the_canary_gate_passes_a_canary_at_the_tolerance_at_the_stated_rate(n: int) -> None:
    rng = np.random.default_rng(n)
    champion_accuracy = 0.8
    canary_accuracy = champion_accuracy * (1 - 0.01)  # worse by exactly the tolerance
    passed = []
    for _ in range(TRIALS):
        canary = rng.random(n) < canary_accuracy
        champion = rng.random(4 * n) < champion_accuracy
        result = two_samples(Sample(n, canary.mean(), canary.var()), Sample(4 * n, champion.mean(), champion.var()),
                             min_rows=100)  # fmt: skip
        passed.append(result.verdict == "pass")
    assert 0.025 < np.mean(passed) < 0.10


def test_the_watch_rolls_back_a_steady_champion_rarely_and_a_degraded_one_surely() -> None:
    rng = np.random.default_rng(4)
    steady = [rng.random(500) < 0.9 for _ in range(2000)]
    degraded = [rng.random(500) < 0.8 for _ in range(500)]

    def verdict(rows: np.ndarray) -> str:
        return against_reference(Sample(500, rows.mean(), rows.var()), 0.9, min_rows=500).verdict

    assert [verdict(r) for r in steady].count("fail") / 2000 < 0.01  # fails only beyond the margin, at 95 %
    assert [verdict(r) for r in degraded].count("fail") >= 495


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5])
def test_the_canary_share_holds_and_is_sticky_per_request(share: float) -> None:
    ids = [f"req-{i}" for i in range(100_000)]
    chosen = [canary_bucket("fraud", r) < share for r in ids]
    sd = (share * (1 - share) / len(ids)) ** 0.5
    assert abs(np.mean(chosen) - share) < 5 * sd
    assert chosen == [canary_bucket("fraud", r) < share for r in ids]  # the same request, the same version
    other = [canary_bucket("scoring", r) < share for r in ids]  # models draw independently
    overlap = np.mean(np.array(chosen) & np.array(other))
    assert abs(overlap - share * share) < 5 * (share * share / len(ids)) ** 0.5 + 1e-4


# --- F1 and ROC AUC: the metrics a spec may name instead of accuracy (release/class_metrics.py) ---------------

CLASS_TRIALS = 1000


def test_live_f1_and_roc_auc_are_the_offline_gates_metrics() -> None:
    rng = np.random.default_rng(5)
    labels = np.where(rng.random(2000) < 0.1, "1", "0").astype(object)
    p_positive = np.clip(rng.normal(np.where(labels == "1", 0.7, 0.3), 0.2).round(2), 0.01, 0.99)  # ties
    predictions = np.where(p_positive > 0.5, "1", "0").astype(object)
    scores = np.where(predictions == "1", p_positive, 1 - p_positive)
    binary = Classes.of(["0", "1"])
    assert live_estimate("roc_auc", labels, predictions, scores, binary).mean == pytest.approx(
        roc_auc(p_positive, labels == "1"), abs=1e-12
    )
    assert live_estimate("f1", labels, predictions, scores, binary).mean == pytest.approx(
        f1_score(predictions, labels, "1"), abs=1e-12
    )
    # a side none of whose rows is positive is still scored on the model's positive class
    negatives = labels == "0"
    assert live_estimate("f1", labels[negatives], predictions[negatives], scores[negatives], binary).mean == 0.0
    three = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 900)]
    guessed = np.where(rng.random(900) < 0.7, three, "a").astype(object)
    macro = np.mean([f1_score(guessed, three, c) for c in ("a", "b", "c")])
    classes = Classes.of(three)
    assert live_estimate("f1", three, guessed, np.full(900, np.nan), classes).mean == pytest.approx(macro, abs=1e-12)
    assert np.isnan(live_estimate("roc_auc", three, guessed, np.full(900, 0.5), classes).mean)  # binary only


def binormal(rng: np.random.Generator, n: int, separations: tuple[float, float], rho: float) -> tuple[np.ndarray, ...]:
    """``n`` rows, a fifth positive, scored by two versions whose scores are N(separation, 1) for positives and
    N(0, 1) for negatives (ROC AUC Φ(separation / √2)), correlated ``rho``."""
    positive = rng.random(n) < 0.2
    first, own = rng.normal(size=n), rng.normal(size=n)
    baseline = separations[0] * positive + first
    new = separations[1] * positive + rho * first + np.sqrt(1 - rho**2) * own
    return positive, baseline, new


def separation(auc: float) -> float:
    return float(np.sqrt(2) * NormalDist().inv_cdf(auc))


def test_the_paired_roc_auc_gate_passes_a_shadow_at_the_tolerance_at_the_stated_rate() -> None:
    rng = np.random.default_rng(6)
    baseline_auc = 0.85
    separations = (separation(baseline_auc), separation(baseline_auc * (1 - 0.01)))  # worse by the tolerance
    passed, differences, errors = [], [], []
    for _ in range(CLASS_TRIALS):
        positive, baseline, new = binormal(rng, 3000, separations, rho=0.7)
        new_auc, old_auc, se = paired_roc_auc(new, baseline, positive)
        result = paired_estimates(test="paired-delong", pairs=3000, new=new_auc, baseline=old_auc, se=se,
                                  min_pairs=300)  # fmt: skip
        passed.append(result.verdict == "pass")
        differences.append(new_auc - old_auc)
        errors.append(se)
    assert 0.025 < np.mean(passed) < 0.10
    assert 0.8 < np.mean(errors) / np.std(differences) < 1.25  # DeLong's error is the difference's spread


def test_the_paired_f1_gate_passes_a_shadow_at_the_tolerance_at_the_stated_rate() -> None:
    rng = np.random.default_rng(7)
    # a tenth positive; both versions find 80 % of them; the baseline flags 2 % of the rest (F1 0.808), the new one
    # 2.2 % (F1 0.800: worse by exactly the tolerance); the two flag the same rows half the time
    n, passed, differences, errors = 3000, [], [], []
    for _ in range(CLASS_TRIALS):
        actual = rng.random(n) < 0.1
        shared = rng.random(n)
        own = np.where(rng.random(n) < 0.5, shared, rng.random(n))
        baseline = shared < np.where(actual, 0.8, 0.02)
        new = own < np.where(actual, 0.8, 0.02 / 0.9)
        new_f1, old_f1, se = paired_f1([new], [baseline], [actual])
        result = paired_estimates(test="paired-f1-delta", pairs=n, new=new_f1, baseline=old_f1, se=se, min_pairs=300)
        passed.append(result.verdict == "pass")
        differences.append(new_f1 - old_f1)
        errors.append(se)
    assert 0.025 < np.mean(passed) < 0.10
    assert 0.8 < np.mean(errors) / np.std(differences) < 1.25


@pytest.mark.parametrize("metric", ["f1", "roc_auc"])
def test_the_canary_gate_on_f1_or_roc_auc_passes_a_canary_at_the_tolerance_at_the_stated_rate(metric: str) -> None:
    rng = np.random.default_rng(8)
    n, passed = 3000, []
    baseline_auc = 0.85
    separations = (separation(baseline_auc), separation(baseline_auc * (1 - 0.01)))
    for _ in range(CLASS_TRIALS):
        sides = []
        for version, rows in ((0, n), (1, 2 * n)):  # the canary, then its champion (more rows)
            if metric == "roc_auc":
                positive, *scores = binormal(rng, rows, separations, rho=0.0)
                p = 1 / (1 + np.exp(-scores[1 - version]))
            else:
                positive = rng.random(rows) < 0.1
                p = np.where(rng.random(rows) < np.where(positive, 0.8, [0.02 / 0.9, 0.02][version]), 0.9, 0.1)
            labels = np.where(positive, "1", "0").astype(object)
            predictions = np.where(p > 0.5, "1", "0").astype(object)
            sides.append(live_estimate(metric, labels, predictions, np.where(p > 0.5, p, 1 - p), Classes.of("01")))
        passed.append(two_samples(sides[0], sides[1], min_rows=100).verdict == "pass")
    assert 0.025 < np.mean(passed) < 0.10
