"""The release gates' statistics, simulated with seeds: a version exactly at the tolerance passes at the rate
the confidence allows (not half, not twice), a clearly better one passes, and canary shares hold."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.models.serving import canary_bucket
from driftloop.release.stats import Sample, against_reference, paired_classes, paired_errors, two_samples

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
