"""The mean-shift signal: many features' means moving a little together (``streams.drift.mean_shift``)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from river.datasets import synth

from driftloop.infra.spec import SpecCatalog
from driftloop.streams.drift.cusum import CUSUM
from driftloop.streams.drift.mean_shift import WARM_UP, MeanShift
from driftloop.streams.drift.monitor import DriftMonitor
from driftloop.streams.drift.multivariate import MultivariateSignals
from driftloop.streams.drift.snapshot import restore_model, snapshot_model
from driftloop.streams.drift.state_json import state_text
from tests.streams.test_correlation import (
    channel_features,
    columns_of,
    common_factor,
    events,
    watched,
    with_signal_off,
)


@pytest.fixture()
def monitor(tmp_path: Path) -> DriftMonitor:
    return DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)


def shifted(
    rng: np.random.Generator, start: int, n: int, shift: np.ndarray, at: int | np.ndarray = 20_000
) -> np.ndarray:
    """N(0,1) features (as many as ``shift``), each moved by its ``shift`` from event ``at`` on (each from its
    own, where ``at`` gives one a feature)."""
    rows = rng.normal(size=(n, len(shift)))
    return rows + shift * ((start + np.arange(n))[:, None] >= at)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twenty_features_that_each_move_a_tenth_of_a_deviation_are_a_mean_shift(
    monitor: DriftMonitor, seed: int
) -> None:
    """Each feature's chart is set for 0.2 to 2 deviations, and none of them fired over 100,000 events of this
    before: together it is a shift of 0.45 deviations. An alert on ``mean_shift`` within 1,500 events (some
    250–350 in process), naming the features whose means moved most, each by about a tenth of a deviation."""
    rng = np.random.default_rng(seed)
    alerts = watched(monitor, lambda start, n: shifted(rng, start, n, np.full(20, 0.1)), 40_000)
    assert alerts and all(a.kind == "data" for a in alerts)
    first = alerts[0]
    assert first.signal == "mean_shift" and first.detector == "CUSUM"
    assert 0 <= int(first.request_id[1:]) - 20_000 < 1500
    shifts = first.evidence["shifts"]
    assert len(shifts) == 5 and first.evidence["features"] == [s["feature"] for s in shifts]
    assert all(0.03 < s["sigmas"] < 0.4 and s["category"] is None for s in shifts)
    assert all(abs(s["reference"]) < 0.1 and s["recent"] > s["reference"] for s in shifts)
    assert f"{shifts[0]['feature']} (" in first.message and "σ)" in first.message


@pytest.mark.parametrize("seed", [1, 3])
def test_river_s_moving_centroids_are_caught_sooner_by_the_mean_shift(monitor: DriftMonitor, seed: int) -> None:
    """River's RandomRBF (ten features, twenty centroids), then RandomRBFDrift from the same centroids, each
    moving 0.001 a step: a slow drift of the features together. The first alert is the mean shift's, within
    600 events (some 300–450 here; the code before caught it at 480–530 by one feature, each of four seeds)."""
    shape = {"seed_model": seed, "n_features": 10, "n_centroids": 20}
    before = synth.RandomRBF(seed_sample=seed, **shape).take(20_000)
    after = synth.RandomRBFDrift(seed_sample=seed + 1, change_speed=0.001, n_drift_centroids=20, **shape)
    stream = itertools.chain(before, after.take(20_000))
    alerts = watched(
        monitor, lambda start, n: np.array([list(x.values()) for x, _ in itertools.islice(stream, n)]), 40_000
    )
    assert alerts and alerts[0].signal == "mean_shift" and 0 <= int(alerts[0].request_id[1:]) - 20_000 < 600


@pytest.mark.parametrize("gradual", [False, True])
def test_one_feature_s_shift_is_that_feature_s_alert_and_no_mean_shift(monitor: DriftMonitor, gradual: bool) -> None:
    """One feature of twenty moved by a deviation, at once or over 20,000 events: the mean shift sees it too,
    but the feature carries it whole, and its alert is the feature's own (a mean-shift alert first would take the
    model's cooldown from it)."""
    rng = np.random.default_rng(4)

    def make(start: int, n: int) -> np.ndarray:
        rows = rng.normal(size=(n, 20))
        index = start + np.arange(n)
        rows[:, 3] += np.clip((index - 20_000) / 20_000, 0, 1) if gradual else index >= 20_000
        return rows

    alerts = watched(monitor, make, 60_000)
    assert alerts and alerts[0].signal == "f3"
    assert "mean_shift" not in {a.signal for a in alerts}
    # watching all along: after each of f3's alerts it learns a reference anew and scores the events after
    assert monitor.models["m"].signals["mean_shift"].seen > 15_000


def test_a_shift_that_looks_like_one_feature_s_when_detected_is_held_for_its_alert_and_goes_out_without_it(
    monitor: DriftMonitor,
) -> None:
    """Five features of ten moved 0.08 of a deviation each (0.18 together): when the score's chart fired, one
    feature's running mean (noisy, some 0.04 each) held half of the shift's squared length, and the alert was
    dropped as that feature's; the chart took the shifted values for its next reference and nothing was ever
    reported (none in 60,000 events). Now it is held for that feature's own alert, which does not come, and goes
    out 2,000 events later, naming the feature it waited for; a state saved while it is held lets it go alike."""
    rng = np.random.default_rng(1)
    moved = np.r_[np.full(5, 0.08), np.zeros(5)]
    assert watched(monitor, lambda start, n: shifted(rng, start, n, moved), 24_000) == []
    held = monitor.models["m"].held_shift
    assert held is not None and held.feature in {f"f{j}" for j in range(5)} and held.release_at == 26_000
    twin = DriftMonitor(monitor.specs, clock=lambda: 1.0)
    restore_model(twin, "m", json.loads(state_text(snapshot_model(monitor, "m"))))
    later = shifted(rng, 24_000, 2000, moved)
    (alert,) = monitor.process_predictions(events(later, 24_000))
    assert twin.process_predictions(events(later, 24_000)) == [alert]
    assert alert.signal == "mean_shift" and alert.kind == "data" and alert.request_id == held.alert.request_id
    assert 0 < int(alert.request_id[1:]) - 20_000 < 4000 and alert.evidence["held_for"] == held.feature
    assert f"held 2,000 events for {held.feature}'s own alert, which did not come" in alert.message
    assert {s["feature"] for s in alert.evidence["shifts"]} & {f"f{j}" for j in range(5)}
    assert monitor.models["m"].held_shift is None


@pytest.mark.parametrize("seed", [0, 1])
def test_after_one_feature_s_drift_a_small_shift_of_the_others_is_a_mean_shift(
    monitor: DriftMonitor, seed: int
) -> None:
    """``f0`` moves by a deviation at event 20,000 and stays there (its alert); the nineteen others move 0.1 each
    at 40,000. The mean shift's reference was learnt once: ``f0``'s deviation held its running mean for good,
    every later shift looked like ``f0``'s, and the nineteen went unseen by it (their own charts caught them one
    by one, 1,800 to 3,000 events later). After a feature's alert it learns a reference anew: the second drift
    is a mean-shift alert within 1,500 events (some 600–700 here)."""
    rng = np.random.default_rng(seed)
    moves, starts = np.r_[1.0, np.full(19, 0.1)], np.r_[20_000, np.full(19, 40_000)]
    alerts = watched(monitor, lambda start, n: shifted(rng, start, n, moves, at=starts), 44_000)
    assert alerts and alerts[0].signal == "f0" and 0 <= int(alerts[0].request_id[1:]) - 20_000 < 200
    later = [a for a in alerts if int(a.request_id[1:]) >= 40_000]
    assert later and later[0].signal == "mean_shift" and int(later[0].request_id[1:]) - 40_000 < 1500


@pytest.mark.parametrize("kind", ["gaussian", "correlated", "heavy", "discrete", "categories"])
def test_the_score_s_false_alarms_come_at_the_rate_its_cusum_is_set_to(kind: str) -> None:
    """On the reference distribution the score has mean 0 and variance 1 whatever the features' distribution:
    a CUSUM set to a run length of 20,000 events alarms at that rate on 1,200,000 stationary events (tolerance
    a factor of two either way), of Gaussian, correlated (0.5), heavy-tailed (lognormal σ 2, Pareto 1.5, Cauchy),
    discrete (0–2, Poisson, a 5 % flag) features, and categories with numbers (indicator columns)."""
    rng = np.random.default_rng(9)

    def make(n: int) -> tuple[dict, dict]:
        if kind == "categories":
            every = list(range(n))
            features = channel_features(rng, n)
            numeric = {"amount": (every, np.array([f["amount"] for f in features])), "x": (every, rng.normal(size=n))}
            return numeric, {"channel": (every, [f["channel"] for f in features]),
                             "device": (every, [f["device"] for f in features])}  # fmt: skip
        rows = {
            "gaussian": lambda: rng.normal(size=(n, 8)),
            "correlated": lambda: common_factor(rng, n, 0.5),
            "heavy": lambda: np.column_stack(
                [np.exp(rng.normal(3, 2, n)), rng.pareto(1.5, n), rng.standard_cauchy(n), rng.normal(size=n)]
            ),
            "discrete": lambda: np.column_stack(
                [rng.integers(0, 3, n), rng.poisson(2, n), rng.random(n) < 0.05, rng.normal(size=n)]
            ).astype(float),
        }[kind]()
        return columns_of(rows)

    signal = MultivariateSignals(reference_size=2000)
    signal.update(2000, *make(2000))
    cusum = CUSUM(run_length=20_000, reference=2000, direction="up")
    scores = [signal.update(10_000, *make(10_000)).mean_shift for _ in range(120)]
    alarms = sum(len(cusum.update_many(part)) for part in scores)
    assert 0.5 <= alarms / (1_200_000 / 20_000) <= 2.0
    every = np.concatenate(scores)
    assert abs(every.mean()) < 0.15 and 0.85 < every.var() < 1.15


def test_the_score_rises_with_the_length_of_the_shift_and_names_the_columns_that_moved() -> None:
    """In process: the score's mean after a shift is about the shift's length in deviations (0.45 for twenty
    features moved 0.1; 1 for one moved by 1, which is that feature's, not spread)."""
    rng = np.random.default_rng(2)
    spread, single = MeanShift(20), MeanShift(20)
    for shift in (spread, single):
        shift.fit(rng.normal(size=(2000, 20)))
        assert len(shift.update(rng.normal(size=(WARM_UP, 20)))) == 0
    assert 0.25 < spread.update(rng.normal(0.1, 1, size=(20_000, 20)))[2000:].mean() < 0.6 and spread.carrier() is None
    one = np.zeros(20)
    one[7] = 1.0
    assert 0.8 < single.update(rng.normal(size=(20_000, 20)) + one)[2000:].mean() < 1.2 and single.carrier() == 7
    (first, *_) = single.moved()
    assert first.column == 7 and 0.8 < first.sigmas < 1.2


@pytest.mark.parametrize(("off", "watched_signals"), [("mean_shift", {"correlation"}), ("correlation", {"mean_shift"})])
def test_a_spec_turns_the_mean_shift_off_and_the_correlation_each_alone(
    tmp_path: Path, off: str, watched_signals: set[str]
) -> None:
    monitor = with_signal_off(tmp_path, off)
    rng = np.random.default_rng(6)
    alerts, before_the_shift = [], set()
    for start in range(0, 16_000, 2000):
        alerts += monitor.process_predictions(events(shifted(rng, start, 2000, np.full(20, 0.1), at=10_000), start))
        if start + 2000 == 10_000:  # a feature's alert (f12's, at 11,919) has them learn a reference anew
            before_the_shift = set(monitor.models["m"].signals) & {"correlation", "mean_shift"}
    assert ("mean_shift" in {a.signal for a in alerts}) == (off != "mean_shift")
    assert before_the_shift == watched_signals
