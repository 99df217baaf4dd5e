"""The drift monitor and its alert policy on generated streams (no broker needed: the monitor is pure)."""

from __future__ import annotations

import gc
import json
import math
import random
import sys
import tracemalloc
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from driftloop.infra.spec import ModelSpec, MonitoringSpec, SpecCatalog, SpecError, load_spec
from driftloop.streams.batch import ColumnBatch, NumberRows
from driftloop.streams.decode import Incoming, decode_predictions
from driftloop.streams.drift.evidence import Evidence
from driftloop.streams.drift.joint import HALF_LIFE, ROUNDING, JointDrift, running_mean
from driftloop.streams.drift.monitor import DriftMonitor, output_version
from driftloop.streams.drift.policy import AlertPolicy, Detected, Verdict
from driftloop.streams.drift.signal_names import feature_of
from driftloop.streams.drift.signals import EventRing
from driftloop.streams.drift.snapshot import restore_model, snapshot_model
from driftloop.streams.drift.state_json import state_text


def predictions(rng: random.Random, start: int, n: int, shift: dict | None = None, model: str = "m") -> ColumnBatch:
    """n events of 10 N(0,1) features; ``shift`` from event index ``shift['at']`` on changes one of them."""
    return _decoded(prediction_events(rng, start, n, shift, model))


def _decoded(events: list[dict]) -> ColumnBatch:
    envelopes = [events[i : i + 2000] for i in range(0, len(events), 2000)]  # each under the message size limit
    messages = [Incoming(json.dumps({"events": e}).encode(), "p", 0, k) for k, e in enumerate(envelopes)]
    return decode_predictions(messages).rows


def prediction_events(rng: random.Random, start: int, n: int, shift: dict | None = None, model: str = "m") -> list:
    """The events of :func:`predictions`."""
    events = []
    for i in range(start, start + n):
        features: dict = {f"f{j}": rng.gauss(0, 1) for j in range(10)}
        features["colour"] = rng.choice("rrgb")
        if shift and i >= shift["at"]:
            if "mean" in shift:
                features["f0"] += shift["mean"]
            if "units" in shift and rng.random() < shift["units"]:
                features["f0"] *= 1000
            if "scale" in shift:
                features["f0"] *= shift["scale"]
            if shift.get("null"):
                features["f3"] = None if rng.random() < 0.3 else features["f3"]
            if "colour" in shift:
                features["colour"] = shift["colour"]
        events.append(
            {
                "model": model,
                "request_id": f"r{i}",
                "ts": 1_790_000_000 + i,
                "features": features,
                "prediction": int(rng.random() < 0.3),
                "score": rng.random(),
            }
        )
    return events


def labeled(rng: random.Random, start: int, n: int, error_after: float, at: int, model: str = "m") -> ColumnBatch:
    errors = [float(rng.random() < (error_after if i >= at else 0.1)) for i in range(start, start + n)]
    return ColumnBatch(
        "labeled",
        {
            "model": [model] * n,
            "request_id": [f"r{i}" for i in range(start, start + n)],
            "ts_ms": [(1_790_000_000 + i) * 1000 for i in range(start, start + n)],
            "error": errors,
        },
    )


def run(monitor: DriftMonitor, rng: random.Random, total: int, shift: dict | None = None, batch: int = 2000) -> list:
    alerts = []
    for start in range(0, total, batch):
        alerts += monitor.process_predictions(predictions(rng, start, batch, shift))
    return alerts


@pytest.fixture()
def monitor(tmp_path: Path) -> DriftMonitor:
    return DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)


def test_stationary_traffic_raises_no_alert(monitor: DriftMonitor) -> None:
    assert run(monitor, random.Random(1), 100_000) == []
    # 11 features, the spread, outlier rate and shape of the 10 numeric ones, 11 null rates, score and its shape,
    # prediction, how they move together (joint, correlation, mean_shift)
    assert len(monitor.models["m"].signals) == 58


def test_a_one_sigma_shift_is_caught_within_500_events_with_its_change_point(monitor: DriftMonitor) -> None:
    alerts = run(monitor, random.Random(2), 30_000, shift={"at": 20_000, "mean": 1.0})
    assert len(alerts) == 1
    (alert,) = alerts
    assert (alert.model, alert.kind, alert.signal, alert.detector) == ("m", "data", "f0", "CUSUM")
    delay = int(alert.request_id[1:]) - 20_000
    assert 0 <= delay < 500
    assert abs(int(alert.change_point_request_id[1:]) - 20_000) <= 30
    assert alert.severity == "critical" and alert.statistic > alert.threshold
    assert alert.evidence["window_mean"] == pytest.approx(1.0, abs=0.4)


def heavy_tailed(seed: int, start: int, n: int) -> ColumnBatch:
    """Events of three heavy-tailed features: an amount, a duration, a ratio."""
    rng = np.random.default_rng([seed, start])
    amount, duration, ratio = rng.lognormal(3.0, 2.0, n), rng.pareto(1.5, n), rng.standard_cauchy(n)
    events = [
        {"model": "m", "request_id": f"r{start + i}", "ts": 1_790_000_000 + start + i, "prediction": 1,
         "features": {"amount": a, "duration": d, "ratio": r}}
        for i, (a, d, r) in enumerate(zip(amount.tolist(), duration.tolist(), ratio.tolist(), strict=True))
    ]  # fmt: skip
    return _decoded(events)


def test_heavy_tailed_features_raise_no_alert(monitor: DriftMonitor) -> None:
    """A lognormal amount, a Pareto duration and a Cauchy ratio, 200,000 stationary events: no alert. Before
    the detectors held values within their references' ranges, one value far past a reference was an alert
    (on `ratio`, `duration`, `amount:spread`, `joint`: 3 to 10 alerts a million events, seeds 3 to 7)."""
    alerts = []
    for start in range(0, 200_000, 5000):
        alerts += monitor.process_predictions(heavy_tailed(3, start, 5000))
    assert [(a.signal, a.request_id) for a in alerts] == []


def test_values_sent_in_other_units_are_a_drift_of_the_feature_s_outliers(monitor: DriftMonitor) -> None:
    """One event in a hundred sends ``f0`` a thousand times too large (another unit): held within the
    reference's range, ``f0``'s values barely move, but the rate of values far past that range does."""
    alerts = run(monitor, random.Random(5), 24_000, shift={"at": 20_000, "units": 0.01})
    assert [(a.signal, a.kind) for a in alerts] == [("f0:outliers", "data")]
    assert 0 <= int(alerts[0].request_id[1:]) - 20_000 < 1000
    assert alerts[0].evidence["window_mean"] > 0.005 > alerts[0].evidence["reference_mean"]


def test_a_batch_s_detections_reach_the_policy_in_event_order(monitor: DriftMonitor) -> None:
    """``f0``'s spread triples in the middle of a batch of 4,000 events: its spread fires within a few dozen
    events, its values (each held within the reference's range) a few hundred later, in the same batch. The
    model's first data alert is the spread's: fed first, the values' alert once took the cooldown and held
    the spread's back, an alert 292 events late."""
    alerts = run(monitor, random.Random(6), 24_000, shift={"at": 20_000, "scale": 3.0}, batch=4000)
    assert alerts, "no alert"
    assert alerts[0].signal == "f0:spread" and 0 <= int(alerts[0].request_id[1:]) - 20_000 < 100


def test_a_rising_null_rate_is_drift(monitor: DriftMonitor) -> None:
    (alert,) = run(monitor, random.Random(3), 24_000, shift={"at": 20_000, "null": True})
    assert alert.signal == "f3:null_rate" and 20_000 <= int(alert.request_id[1:]) < 20_500
    assert alert.evidence["window_mean"] > 0.15 > alert.evidence["reference_mean"]


def test_a_new_category_is_drift(monitor: DriftMonitor) -> None:
    (alert,) = run(monitor, random.Random(3), 24_000, shift={"at": 20_000, "colour": "purple"})
    assert alert.signal == "colour" and alert.evidence["new_categories"] == ["purple"]
    assert 20_000 <= int(alert.request_id[1:]) < 20_500 and alert.severity in {"warning", "critical"}


def test_a_concept_drift_on_labels_is_caught_within_1000_labeled_events(monitor: DriftMonitor) -> None:
    rng = random.Random(4)
    alerts = []
    for start in range(0, 15_000, 1000):
        alerts += monitor.process_labeled(labeled(rng, start, 1000, error_after=0.4, at=10_000))
    (alert,) = alerts
    assert (alert.kind, alert.signal) == ("performance", "error")
    assert 0 <= int(alert.request_id[1:]) - 10_000 < 1000


@pytest.mark.parametrize("seed", [0, 1])
def test_an_error_that_rises_again_within_the_cooldown_is_a_second_alert_when_it_ends(
    monitor: DriftMonitor, seed: int
) -> None:
    """Labeled events a second apart: the error rate goes from 0.1 to 0.3 at 10,000, and to 0.6 at 10,400. The
    second rise came while the error's next reference was learnt, and an output's detection within a cooldown
    was folded: never reported. Now it is found in that reference, its change within 60 events of 10,400, held
    back, and sent from the labeled rows once the first alert's cooldown (900 s) ends."""
    rng = random.Random(seed)
    alerts = []
    for start in range(0, 12_000, 500):
        rows = labeled(rng, start, 500, error_after=0.3, at=10_000)
        rows.columns["error"] = [
            float(rng.random() < 0.6) if start + i >= 10_400 else e for i, e in enumerate(rows["error"])
        ]
        alerts += monitor.process_labeled(rows)
    first, again = alerts
    assert (first.signal, again.signal) == ("error", "error") and 0 <= int(first.request_id[1:]) - 10_000 < 300
    assert abs(int(again.change_point_request_id[1:]) - 10_400) <= 60
    assert again.evidence["window_mean"] - again.evidence["reference_mean"] > 0.2
    assert again.evidence["held_until_ts"] >= first.event_ts + 900 > again.event_ts


def test_labels_that_came_late_do_not_place_the_change_before_it_began(monitor: DriftMonitor) -> None:
    """Labeled rows come in the order of their labels: here 20 requests from before a concept drift (r9500 to
    r9519, right answers) are labeled only with the rows after it, and the detector's window opens on the
    last of them. The alert places the change where it began, not at those requests (a retraining would
    learn from the old world's rows)."""
    rng = random.Random(4)
    late = set(range(9500, 9520))
    alerts = []
    for start in range(0, 14_000, 1000):
        rows = labeled(rng, start, 1000, error_after=0.4, at=10_000)
        order = [i for i in range(1000) if start + i not in late]
        if start == 10_000:  # the late ones, labeled now (right answers: the charts rest on them)
            rows = rows.concat(labeled(rng, 9500, 20, error_after=0.0, at=0))
            order += range(1000, 1020)
        alerts += monitor.process_labeled(rows.take(order))
    (alert,) = alerts
    assert 10_000 <= int(alert.change_point_request_id[1:]) < 10_300
    assert 10_000 <= alert.change_point_ts - 1_790_000_000 < 10_300


def test_an_error_that_falls_is_no_performance_drift(monitor: DriftMonitor) -> None:
    """Mistakes falling from 10 % to 2 % (a better model, or easier traffic) raise nothing: a performance alert
    pages a model's owner and starts a retraining, and only a rise asks for that."""
    rng = random.Random(5)
    alerts = []
    for start in range(0, 30_000, 1000):
        alerts += monitor.process_labeled(labeled(rng, start, 1000, error_after=0.02, at=10_000))
    assert alerts == []
    (signal,) = (s for name, s in monitor.models["m"].signals.items() if name.startswith("error"))
    assert signal.detector.direction == "up"


def test_a_model_s_saved_state_holds_the_values_its_detectors_may_read_again(monitor: DriftMonitor) -> None:
    """Saved at every offset commit, for every model that saw events: with each signal's 2,000 reference
    and 2,000 recent values a model of 10 features wrote some 1.4 MB each time. Its detectors now keep the
    values a later alarm or calibration can read (tests/streams/test_cusum.py: the same alarms after a
    restore), a few dozen kB in a stationary stream, whatever its traffic."""
    sizes = []
    for total in (2_000, 20_000, 80_000):
        assert run(monitor, random.Random(total), total) == []
        sizes.append(len(state_text(snapshot_model(monitor, "m"))))
    assert max(sizes) < 150_000, sizes


def test_a_model_s_detectors_hold_only_the_reference_values_they_may_read_again(monitor: DriftMonitor) -> None:
    """Each CUSUM held its reference's first 2,000 values as Python floats (32 bytes each) for good, some 2 MB
    for a model of ten features: a numeric reference is not read again once calibrated, and a rate's is read
    as the 0s and 1s it is (tests/streams/test_cusum.py: the same alarms whatever a detector let go of)."""
    assert run(monitor, random.Random(12), 20_000) == []
    cusums = {name: s.detector for name, s in monitor.models["m"].signals.items() if s.detector.name == "CUSUM"}
    rates = {name for name, detector in cusums.items() if detector.calibration.rate}  # type: ignore[attr-defined]
    numeric = [f"f{j}" for j in range(10)]
    assert rates == {f"{feature}:null_rate" for feature in ("colour", *numeric)} | {f"{f}:outliers" for f in numeric}
    for name, detector in cusums.items():
        learning = detector._learning  # type: ignore[attr-defined]
        if name in rates:
            assert isinstance(learning, np.ndarray) and learning.dtype == bool and len(learning) == 2000
        else:
            assert len(learning) == 0, name


def test_cooldown_holds_back_a_second_alert_of_the_same_kind() -> None:
    policy = AlertPolicy(MonitoringSpec(cooldown_s=600, max_alerts_per_hour=2))
    assert policy.judge("m", "data", Detected(1000.0)) is Verdict.PASS
    assert policy.judge("m", "data", Detected(1300.0)) is Verdict.FOLD  # in cooldown (of what, not known: the same)
    assert policy.judge("m", "performance", Detected(1300.0)) is Verdict.PASS  # another kind is not
    assert policy.judge("m", "data", Detected(1700.0)) is Verdict.HOLD  # the hourly limit of 2 is reached
    assert policy.judge("m", "data", Detected(1000.0 + 3600)) is Verdict.PASS and policy.suppressed == 2


@pytest.mark.parametrize("seed", [0, 1])
def test_a_second_feature_s_shift_within_the_cooldown_is_an_alert_and_five_shifted_at_once_are_one(
    tmp_path: Path, seed: int
) -> None:
    """Events a second apart, eight N(0,1) features. ``f0`` moves by a deviation at event 20,000 and ``f1`` at
    20,500, within the 900 s cooldown of ``f0``'s alert: ``f1``'s detection was folded into that alert, its chart
    took the shifted values for its next reference, and its shift was never reported (none in 40,000 events).
    Now it is an alert of its own, within 100 events of its start. Five features moved at the same moment are
    one drift: one alert. ``f0``'s null rate rising 500 events after its values moved is another drift too (a
    pipeline that stopped filling it)."""
    from tests.streams.test_correlation import watched
    from tests.streams.test_mean_shift import shifted as moved_from

    def shifted(moves: dict[int, int]) -> Callable[[int, int], np.ndarray]:
        """Eight N(0,1) features, each of ``moves`` by a deviation from its event on."""
        rng, starts = np.random.default_rng(seed), np.full(8, np.inf)
        starts[list(moves)] = list(moves.values())
        return lambda start, n: moved_from(rng, start, n, np.isfinite(starts).astype(float), at=starts)

    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    alerts = watched(monitor, shifted({0: 20_000, 1: 20_500}), 40_000)
    assert [a.signal for a in alerts] == ["f0", "f1"]
    assert 0 <= int(alerts[1].request_id[1:]) - 20_500 < 100
    assert alerts[1].event_ts - alerts[0].event_ts < 900  # within the cooldown
    at_once = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    (alert,) = watched(at_once, shifted({j: 20_000 for j in range(5)}), 40_000)
    assert alert.signal in {f"f{j}" for j in range(5)} and 0 <= int(alert.request_id[1:]) - 20_000 < 100

    moved = shifted({0: 20_000})
    rng = np.random.default_rng(seed)

    def then_missing(start: int, n: int) -> np.ndarray:  # f0 left null in 30 % of the events from 20,500 on
        rows = moved(start, n)
        rows[(start + np.arange(n) >= 20_500) & (rng.random(n) < 0.3), 0] = np.nan
        return rows

    nulls = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    alerts = watched(nulls, then_missing, 24_000)
    assert [a.signal for a in alerts] == ["f0", "f0:null_rate"]  # its values' drift, then its pipeline's
    assert 0 <= int(alerts[1].request_id[1:]) - 20_500 < 100


def one_after_another(seed: int, starts: dict[int, int]) -> Callable[[int, int], np.ndarray]:
    """Eight N(0,1) features, each of ``starts`` moved by a deviation from its event on."""
    from tests.streams.test_mean_shift import shifted

    rng, at = np.random.default_rng(seed), np.full(8, np.inf)
    at[list(starts)] = list(starts.values())
    return lambda start, n: shifted(rng, start, n, np.isfinite(at).astype(float), at=at)


@pytest.mark.parametrize("seed", [0, 1])
def test_features_that_move_one_after_another_are_an_alert_each_those_held_back_when_the_cooldown_allows(
    tmp_path: Path, seed: int
) -> None:
    """Events a second apart, eight features, each moved by a deviation 400 events after the one before: a
    cooldown (900 s) lets one new drift through, and the detections beyond it were folded into the alerts before
    while their charts took the shifted values for their next reference: two of the eight were never reported.
    Now each feature is one alert, placed at its own detection and change; those the policy held back go out when
    the cooldown allows, saying so (``held_until_ts``), never more than two alerts out within a cooldown. A state
    saved while one is held back lets it out alike."""
    from tests.streams.test_correlation import events

    starts = {j: 10_000 + 400 * j for j in range(8)}
    make = one_after_another(seed, starts)
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    restarted: DriftMonitor | None = None
    alerts, alike = [], []
    for start in range(0, 16_000, 500):
        batch = events(make(start, 500), start)
        alerts += monitor.process_predictions(batch)
        if restarted is not None:
            alike += restarted.process_predictions(batch)
        elif monitor.models["m"].deferred:  # one held back: a restart now
            restarted = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
            restore_model(restarted, "m", json.loads(state_text(snapshot_model(monitor, "m"))))
            alike = list(alerts)
    assert restarted is not None  # the policy held one back
    assert sorted(a.signal for a in alerts) == [f"f{j}" for j in range(8)]
    assert [a.alert_id for a in alike] == [a.alert_id for a in alerts]
    for alert in alerts:
        start = starts[int(alert.signal[1:])]
        assert 0 <= int(alert.request_id[1:]) - start < 100 and abs(int(alert.change_point_request_id[1:]) - start) < 60
    held = [a for a in alerts if "held_until_ts" in a.evidence]
    assert held and all("held back" in a.message and a.evidence["held_until_ts"] > a.event_ts for a in held)
    out = sorted(a.evidence.get("held_until_ts", a.event_ts) for a in alerts)
    assert all(later - earlier >= 900 for earlier, later in zip(out, out[2:], strict=False))


@pytest.mark.parametrize("batch", [500, 4000, 9000])
def test_a_drift_held_back_goes_out_at_its_cooldown_s_end_in_event_time_whatever_the_batch(
    tmp_path: Path, batch: int
) -> None:
    """Events a second apart, ``f0``, ``f1`` and ``f2`` moved by a deviation 300 events apart: ``f2``'s drift is
    held back until ``f0``'s cooldown (900 s) ends. It was asked again at the end of each batch, and went out at
    the event time of the first batch end past the cooldown's (a backlog taken in batches of 9,000 events: 3,000
    s late), the cooldown of the alerts after it counted from there. Now it goes out at the cooldown's end, in
    event time, whatever the batch."""
    from tests.streams.test_correlation import events

    make = one_after_another(0, {0: 5_000, 1: 5_300, 2: 5_600})
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    alerts = []
    for start in range(0, 9000, batch):
        alerts += monitor.process_predictions(events(make(start, batch), start))
    first, second, held = alerts
    assert [a.signal for a in alerts] == ["f0", "f1", "f2"] and "held_until_ts" not in second.evidence
    assert held.evidence["held_until_ts"] == first.event_ts + 900 and "held back" in held.message
    assert 0 <= int(held.request_id[1:]) - 5_600 < 100


def test_a_drift_held_back_goes_out_when_its_cooldown_ends_though_the_model_went_quiet(tmp_path: Path) -> None:
    """Events a second apart, ``f0``, ``f1`` and ``f2`` moved by a deviation 300 events apart, and the model
    sends nothing once ``f2``'s drift is held back by ``f0``'s cooldown (900 s), which ends some 200 s of event
    time after the last event. It waited until the model sent again; now the model's event time goes on with
    the clock since its last events came: held on while the clock is short of the cooldown's end, let out once
    past it, once, with its own detection and change point; from a state saved while it was held, once the
    clock has gone as far again after the restore."""
    from tests.streams.test_correlation import events

    starts = {0: 5_000, 1: 5_300, 2: 5_600}
    make = one_after_another(0, starts)
    clock = [1000.0]
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: clock[0])
    alerts, sent = [], 0
    while not monitor.models.get("m") or not monitor.models["m"].deferred:
        alerts += monitor.process_predictions(events(make(sent, 100), sent))
        sent += 100
    assert [a.signal for a in alerts] == ["f0", "f1"] and set(monitor.models["m"].deferred) == {"f2"}
    cooldown_ends = alerts[0].event_ts + 900
    quiet_for = cooldown_ends - (1_790_000_000 + sent - 1)  # of event time, after the last event
    assert quiet_for > 100
    saved = json.loads(state_text(snapshot_model(monitor, "m")))

    clock[0] += quiet_for - 10
    assert monitor.release_quiet() == []
    clock[0] += 20
    (held,) = monitor.release_quiet()
    assert held.signal == "f2" and 0 <= int(held.request_id[1:]) - 5_600 < 100
    assert abs(int(held.change_point_request_id[1:]) - 5_600) < 60
    assert cooldown_ends <= held.evidence["held_until_ts"] < cooldown_ends + 11 and "held back" in held.message
    assert monitor.release_quiet() == [] and not monitor.models["m"].deferred

    restarted = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: clock[0])
    restore_model(restarted, "m", saved)
    assert restarted.release_quiet() == []  # its quiet counted from the restore on
    clock[0] += quiet_for + 10
    (again,) = restarted.release_quiet()
    assert again.alert_id == held.alert_id


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_feature_whose_spread_tripled_is_one_alert_though_its_values_chart_sees_wider_values(
    tmp_path: Path, seed: int
) -> None:
    """Events a second apart, ten N(0,1) features, ``f3``'s spread tripled at 5,000: its spread's alert within
    30 events. Its values' chart, set for a spread of one, alarmed on the wider values 1,300 to 1,900 events
    later, past the 900 s cooldown, its change placed there: a second alert of one drift (these seeds). A
    feature's other numeric signals chart its values anew once one of them has detected its drift."""
    from tests.streams.test_correlation import watched

    rng = np.random.default_rng(seed)

    def wider(start: int, n: int) -> np.ndarray:
        x = rng.normal(size=(n, 10))
        x[start + np.arange(n) >= 5_000, 3] *= 3.0
        return x

    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    (alert,) = watched(monitor, wider, 12_000)
    assert alert.signal == "f3:spread" and 0 <= int(alert.request_id[1:]) - 5_000 < 30


def first_moved(seed: int, width: int, moved: int, by: float) -> Callable[[int, int], np.ndarray]:
    """``width`` N(0,1) features, the first ``moved`` shifted by ``by`` deviations from event 5,000 on."""
    rng = np.random.default_rng(seed)

    def rows(start: int, n: int) -> np.ndarray:
        x = rng.normal(size=(n, width))
        x[start + np.arange(n) >= 5_000, :moved] += by
        return x

    return rows


@pytest.mark.parametrize(("moved", "by", "seed"), [(5, 1.0, 0), (5, 1.0, 1), (3, 2.0, 0), (5, 0.5, 0)])
def test_features_moved_at_once_are_one_alert_though_one_s_shape_is_caught_after_the_cooldown(
    tmp_path: Path, moved: int, by: float, seed: int
) -> None:
    """Events a second apart, ten N(0,1) features, ``moved`` of them shifted by ``by`` deviations at 5,000: one
    alert (a feature's, or ``mean_shift``'s), the others' detections folded into it. Then another of them's shape
    was caught a thousand events later, past the cooldown, its change at 5,000: a second alert of the same drift
    (these four runs). A later signal of a feature whose detection was folded into another's alert, its change
    begun before that fold, is folded too."""
    from tests.streams.test_correlation import watched

    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    (alert,) = watched(monitor, first_moved(seed, 10, moved, by), 12_000, batch=500)
    assert alert.signal in {*(f"f{j}" for j in range(moved)), "mean_shift"}
    assert 0 <= int(alert.request_id[1:]) - 5_000 < 200


@pytest.mark.parametrize(("moved", "by", "seed"), [(10, 0.3, 0), (10, 0.3, 1), (20, 0.1, 0)])
def test_many_features_moved_a_little_are_one_mean_shift_alert_though_their_own_charts_catch_up(
    tmp_path: Path, moved: int, by: float, seed: int
) -> None:
    """Events a second apart, twenty N(0,1) features, ``moved`` of them shifted by ``by`` deviations at 5,000:
    the mean shift's alert within 800 events. Then one or two of the features' own charts caught up 900 to
    5,000 events later, past the cooldown, their changes placed hundreds of events late, or a shape's placed at
    5,000: second alerts of one drift (these three runs). After a ``mean_shift`` alert the features' values
    and shape charts learn their reference again, and a feature's detection that may have begun before that
    alert is folded into it."""
    from tests.streams.test_correlation import watched

    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    (alert,) = watched(monitor, first_moved(seed, 20, moved, by), 12_000, batch=500)
    assert alert.signal == "mean_shift" and 0 <= int(alert.request_id[1:]) - 5_000 < 800


@pytest.mark.parametrize("seed", [0, 1])
def test_a_feature_s_drift_is_one_alert_though_its_shape_is_caught_after_the_cooldown(
    tmp_path: Path, seed: int
) -> None:
    """Events a second apart: ``f0`` moved by a deviation. Its values' chart fires within some 40 events; its
    shape's (the shares of its reference's deciles) a thousand events later, past the 900 s cooldown, and that
    was a second alert of the same drift, placed at the same change. A detection whose change began before an
    alert of its feature was detected is that alert's, whenever it comes."""
    from tests.streams.test_correlation import watched

    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    (alert,) = watched(monitor, one_after_another(seed, {0: 5_000}), 12_000)
    assert alert.signal == "f0" and 0 <= int(alert.request_id[1:]) - 5_000 < 100


@pytest.mark.parametrize("seed", [0, 1])
def test_a_feature_that_moves_and_comes_back_within_the_cooldown_is_two_alerts(tmp_path: Path, seed: int) -> None:
    """Events a second apart: ``f0`` moves by a deviation at 10,000 and comes back at 10,400 (a pipeline broken
    and mended). The move back came while ``f0``'s next reference was learnt from those very values, its charts
    off: it was never reported (and in one seed of three the mixed reference made an alert 2,600 events later,
    its change placed there). Now it is an alert of its own, its change within 60 events of 10,400, held back
    until the cooldown of the first alert (900 s) ended."""
    from tests.streams.test_correlation import watched

    rng = np.random.default_rng(seed)

    def moved_and_back(start: int, n: int) -> np.ndarray:
        rows, t = rng.normal(size=(n, 8)), start + np.arange(n)
        rows[:, 0] += (t >= 10_000) & (t < 10_400)
        return rows

    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    first, back = watched(monitor, moved_and_back, 16_000, batch=250)
    assert (first.signal, back.signal) == ("f0", "f0") and 0 <= int(first.request_id[1:]) - 10_000 < 100
    assert abs(int(back.change_point_request_id[1:]) - 10_400) <= 60
    assert back.evidence["window_mean"] < back.evidence["reference_mean"] - 0.5
    assert back.evidence["held_until_ts"] >= first.event_ts + 900 > back.event_ts


@pytest.mark.parametrize("seed", [0, 1])
def test_a_category_mix_that_comes_back_within_the_cooldown_is_two_alerts(tmp_path: Path, seed: int) -> None:
    """Events a second apart: a feature's categories move from 50/30/20 % to 30/30/40 % at 10,000 and come back
    at 11,000, while its next reference is learnt after the first alert (the 2,000 values after it): never
    reported before. Now a second alert of the feature, its change within 100 events of 11,000."""
    from tests.streams.test_correlation import watched

    rng = np.random.default_rng(seed)

    def mixed(start: int, n: int) -> list[dict]:
        t = start + np.arange(n)
        moved = (t >= 10_000) & (t < 11_000)
        draws = rng.random(n)
        a, b = np.where(moved, 0.3, 0.5), np.where(moved, 0.6, 0.8)
        colour = np.where(draws < a, "a", np.where(draws < b, "b", "c"))
        return [{"x": float(x), "colour": str(c)} for x, c in zip(rng.normal(size=n), colour, strict=True)]

    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    first, back = watched(monitor, mixed, 16_000, batch=500)
    assert (first.signal, back.signal) == ("colour", "colour") and 0 <= int(first.request_id[1:]) - 10_000 < 500
    assert abs(int(back.change_point_request_id[1:]) - 11_000) <= 100
    assert back.evidence["found_in"] == "the reference learnt after an alarm"


def test_a_drift_the_cooldown_or_the_hourly_limit_holds_back_goes_out_when_they_allow() -> None:
    """Beyond the new drifts a cooldown lets through, a feature's change after its own alert within the cooldown,
    and beyond the hourly limit, a drift of its own is held back, not dropped (its chart has taken the values
    after the change for its next reference); asked again as event time goes on, it goes out when they allow,
    and its cooldown counts from then. The same drift (another signal of an alert's feature, or a change of the
    same moment) is folded whenever it comes."""
    policy = AlertPolicy(MonitoringSpec(cooldown_s=600, max_alerts_per_hour=10))
    assert policy.judge("m", "data", Detected(1000.0, "a", "a", 990.0)) is Verdict.PASS
    assert policy.judge("m", "data", Detected(1100.0, "b", "b", 1090.0)) is Verdict.PASS  # a new drift
    third = Detected(1200.0, "c", "c", 1190.0)
    assert policy.judge("m", "data", third) is Verdict.HOLD  # a second one
    assert policy.judge("m", "data", third, now=1599.0) is Verdict.HOLD  # a's cooldown ends at 1600
    assert policy.judge("m", "data", third, now=1600.0) is Verdict.PASS
    assert policy.judge("m", "data", Detected(1850.0, "c", "c", 1840.0)) is Verdict.HOLD  # c again, from 1600
    assert policy.judge("m", "data", Detected(1860.0, "d", "d", 1150.0)) is Verdict.FOLD  # c's moment, and b's
    assert policy.judge("m", "data", Detected(4000.0, "a", "a:shape", 980.0)) is Verdict.FOLD  # a's shape, late
    assert policy.suppressed == 5

    hourly = AlertPolicy(MonitoringSpec(cooldown_s=60, max_alerts_per_hour=2))
    assert hourly.judge("m", "data", Detected(1000.0, "a", "a", 990.0)) is Verdict.PASS
    assert hourly.judge("m", "data", Detected(1100.0, "b", "b", 1090.0)) is Verdict.PASS
    assert hourly.judge("m", "data", third) is Verdict.HOLD
    assert hourly.judge("m", "data", third, now=4599.0) is Verdict.HOLD  # a's hour ends at 4600
    assert hourly.judge("m", "data", third, now=4600.0) is Verdict.PASS


def test_a_later_signal_of_a_feature_folded_into_another_s_alert_is_folded_when_its_change_began_before() -> None:
    """``b`` moved when ``a`` did: its detection folded into ``a``'s alert. Its shape caught past the cooldown,
    its change before that fold, is the same drift (folded; and from a state saved meanwhile); a change of ``b``
    begun after the fold is a drift of its own; a detection held back since before the fold is not folded by it."""
    policy = AlertPolicy(MonitoringSpec(cooldown_s=600, max_alerts_per_hour=10))
    assert policy.judge("m", "data", Detected(1000.0, "a", "a", 990.0)) is Verdict.PASS
    assert policy.judge("m", "data", Detected(1020.0, "b", "b", 992.0)) is Verdict.FOLD  # the same moment
    restored = AlertPolicy(MonitoringSpec(cooldown_s=600, max_alerts_per_hour=10))
    restored.restore(json.loads(json.dumps(policy.snapshot())))
    for p in (policy, restored):
        assert p.judge("m", "data", Detected(2000.0, "b", "b:shape", 995.0)) is Verdict.FOLD
    assert policy.judge("m", "data", Detected(2100.0, "b", "b", 2050.0)) is Verdict.PASS  # b moved again
    other = AlertPolicy(MonitoringSpec(cooldown_s=600, max_alerts_per_hour=10))
    assert other.judge("m", "data", Detected(1000.0, "a", "a", 990.0)) is Verdict.PASS
    assert other.judge("m", "data", Detected(1100.0, "c", "c", 1090.0)) is Verdict.PASS
    held = Detected(1200.0, "b", "b", 1190.0)
    assert other.judge("m", "data", held) is Verdict.HOLD
    assert other.judge("m", "data", Detected(1500.0, "b", "b:shape", 1040.0)) is Verdict.FOLD  # a's moment
    assert other.judge("m", "data", held, now=1600.0) is Verdict.PASS


def test_a_correlation_or_mean_shift_within_a_feature_s_cooldown_is_a_drift_of_its_own_unless_it_names_a_move() -> None:
    """A ``correlation`` or ``mean_shift`` detection within the cooldown of ``a``'s alert was folded into it
    whatever it named, as the model's own signals were into any alert of their cooldown: a correlation of two
    other features that appeared 600 events after ``a`` moved was never an alert. Now one that names none of the
    features that moved (an alert's, or one folded into another's) is a new drift, let through as a feature's
    is (held beyond the cooldown's new drifts); one that names a feature that moved within a cooldown of its
    change, or began at an alert's moment, is of that move; one that names nothing folds as before. And a
    feature's drift after such an alert, which folded into it whatever it was, is judged by the features the
    alert named."""
    policy = AlertPolicy(MonitoringSpec(cooldown_s=900, max_alerts_per_hour=10))
    assert policy.judge("m", "data", Detected(1000.0, "a", "a", 990.0)) is Verdict.PASS
    assert policy.judge("m", "data", Detected(1010.0, "b", "b", 995.0)) is Verdict.FOLD  # b moved with a
    pair = Detected(1600.0, "", "correlation", 1350.0, ("f8", "f9"))
    for named in (("a", "f9"), ("f8", "b")):  # a's move, b's (folded)
        assert policy.judge("m", "data", pair._replace(named=named)) is Verdict.FOLD
    assert policy.judge("m", "data", pair._replace(change_ts=1000.0)) is Verdict.FOLD  # a's moment
    assert policy.judge("m", "data", pair._replace(named=())) is Verdict.FOLD  # names nothing
    assert policy.judge("m", "data", pair) is Verdict.PASS  # a drift of its own
    shift = Detected(1700.0, "", "mean_shift", 1500.0, ("d", "e", "g"))
    assert policy.judge("m", "data", shift) is Verdict.FOLD  # after the correlation's alert, of the model's own
    later = AlertPolicy(MonitoringSpec(cooldown_s=900, max_alerts_per_hour=10))
    assert later.judge("m", "data", Detected(1000.0, "a", "a", 990.0)) is Verdict.PASS
    assert later.judge("m", "data", Detected(1100.0, "c", "c", 1090.0)) is Verdict.PASS
    assert later.judge("m", "data", shift) is Verdict.HOLD  # a third new drift in a cooldown
    assert later.judge("m", "data", shift, now=1900.0) is Verdict.PASS
    assert later.judge("m", "data", shift._replace(event_ts=3000.0, change_ts=2900.0, named=("a",))) is Verdict.PASS
    # after a correlation's alert, another feature's drift is one of its own, its pair's later change held back,
    # and a signal of its pair's whose change began before it was found folded into it
    pairs = AlertPolicy(MonitoringSpec(cooldown_s=900, max_alerts_per_hour=10))
    assert pairs.judge("m", "data", Detected(1000.0, "", "correlation", 950.0, ("f8", "f9"))) is Verdict.PASS
    assert pairs.judge("m", "data", Detected(1300.0, "f0", "f0", 1280.0)) is Verdict.PASS
    assert pairs.judge("m", "data", Detected(1250.0, "", "correlation", 1200.0, ("f9", "f8"))) is Verdict.HOLD
    assert pairs.judge("m", "data", Detected(1310.0, "f8", "f8:shape", 960.0)) is Verdict.FOLD


def test_the_budget_is_shared_by_the_signals_and_evidence_is_required() -> None:
    policy = AlertPolicy(MonitoringSpec(false_alarm_budget=0.01, warmup=100, min_evidence=30))
    assert policy.signal_alpha(20) == pytest.approx(0.0005)
    evidence = Evidence(1.0, 0.5, reference_size=500, window_size=40, change_offset=40)
    assert policy.admissible(evidence, seen=1000)
    assert not policy.admissible(evidence, seen=99)  # warm-up
    assert not policy.admissible(Evidence(1.0, 0.5, 10, 40, 40), seen=1000)  # too little reference


def test_detector_state_survives_a_restart(monitor: DriftMonitor, tmp_path: Path) -> None:
    rng = random.Random(6)
    assert run(monitor, rng, 10_000) == []
    saved = json.loads(state_text(snapshot_model(monitor, "m")))  # what goes to ClickHouse and back
    restarted = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    restore_model(restarted, "m", saved)
    assert restarted.models["m"].far == monitor.models["m"].far and len(monitor.models["m"].far) == 10
    # no warm-up again, no re-alert on more of the same, and a shift right after the restart is caught
    alerts = []
    for start in range(10_000, 11_000, 250):
        alerts += restarted.process_predictions(predictions(rng, start, 250, {"at": 10_200, "mean": 1.5}))
    assert [a.signal for a in alerts] == ["f0"]
    fresh = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng2 = random.Random(6)
    assert all(
        fresh.process_predictions(predictions(rng2, s, 250, {"at": 10_200, "mean": 1.5})) == []
        for s in range(10_000, 11_000, 250)
    )  # without the saved state the same shift is still inside the warm-up


def test_a_saved_state_waits_for_a_spec_its_detectors_can_run(monitor: DriftMonitor, tmp_path: Path) -> None:
    """A spec edited while no worker ran, to detector parameters River refuses: the restore raised a ValueError,
    which the worker took for an unreadable state and dropped (the model started afresh once the file was fixed).
    It is a SpecError now, before anything is restored: the saved state waits for the fix."""
    assert run(monitor, random.Random(7), 4000) == []
    saved = json.loads(state_text(snapshot_model(monitor, "m")))
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "m.toml").write_text(
        'name = "m"\n[monitoring.signals.f0]\ndetector = { name = "KSWIN", params = { alpha = 2.0 } }\n'
    )
    restarted = DriftMonitor(SpecCatalog(specs), clock=lambda: 1.0)
    with pytest.raises(SpecError, match=r"monitoring\.signals\.f0\.detector: KSWIN"):
        restore_model(restarted, "m", saved)
    assert "m" not in restarted.models
    (specs / "m.toml").write_text('name = "m"\n')
    restore_model(restarted, "m", saved)
    assert restarted.models["m"].events == 4000


def test_a_spec_configures_detectors_and_signals(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(
        'name = "m"\n[features]\ncolour = "categorical"\n'
        "[monitoring]\nwarmup = 500\n"
        '[monitoring.signals.f1]\nenabled = false\n[monitoring.signals."f1:null_rate"]\nenabled = false\n'
        '[monitoring.detectors]\nnumeric = { name = "KSWIN", params = { alpha = 0.00001, seed = 1 } }\n'
    )
    monitor = DriftMonitor(SpecCatalog(tmp_path))
    monitor.process_predictions(predictions(random.Random(7), 0, 100))
    signals = monitor.models["m"].signals
    assert "f1" not in signals and signals["f0"].detector.name == "KSWIN"
    assert signals["colour"].detector.name == "CategoricalShift"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('name = "m"\ntask = "ranking"', "task: Input should be 'binary', 'multiclass' or 'regression'"),
        (
            'name = "m"\n[monitoring.detectors]\nnumeric = { name = "ADWINN" }',
            "monitoring.detectors.numeric.name: unknown detector 'ADWINN'",
        ),
        ('name = "m"\n[monitoring]\nwarmup = -1', "monitoring.warmup: Input should be greater than or equal to 0"),
        ('name = "m"\n[monitoring]\nwarm_up = 5', "monitoring.warm_up: Extra inputs are not permitted"),
        ('name = "other"', "name: the spec of 'other' must be in other.toml"),
        ('name = "m"\n[training]\nholdout_fraction = 2', "training.holdout_fraction: Input should be less than 0.9"),
        ('name = "m"\n[retraining]\nkinds = ["everything"]', "retraining.kinds.0: Input should be 'data'"),
        ("name = ", "not valid TOML"),
        # a detector that cannot take its signal's values (River's raised on every batch, or took numbers as texts)
        (
            'name = "m"\n[monitoring.detectors]\nnumeric = { name = "CategoricalShift" }',
            "monitoring.detectors.numeric: CategoricalShift takes categories and numeric values are numbers",
        ),
        (
            'name = "m"\n[monitoring.detectors]\ncategorical = { name = "ADWIN" }',
            "monitoring.detectors.categorical: ADWIN takes numbers and categorical values are categories",
        ),
        (
            'name = "m"\n[monitoring.detectors]\nscore = { name = "DDM" }',
            "monitoring.detectors.score: DDM takes 0/1 values only and score values are any number",
        ),
        (
            'name = "m"\ntask = "regression"\n[monitoring.detectors]\nerror = { name = "HDDM_A" }',
            "monitoring.detectors.error: HDDM_A takes 0/1 values only and error values are any number",
        ),
        (
            'name = "m"\n[features]\ncolour = "categorical"\n'
            '[monitoring.signals.colour]\ndetector = { name = "KSWIN" }',
            "monitoring.signals.colour.detector: KSWIN takes numbers and categorical values are categories",
        ),
    ],
)
def test_a_bad_spec_is_an_error_naming_the_field(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(str(path)) and says in str(info.value)
    assert ModelSpec(name="m").monitoring.warmup == 2000


def mixed_types(rng: random.Random, start: int, n: int, unknown: float) -> ColumnBatch:
    """Events whose ``age`` is a number or, in a share ``unknown`` of them, the text "unknown"; whose ``zip`` is
    one of 40 codes, sent as text, or in a tenth of the events as a number."""
    events = []
    for i in range(start, start + n):
        code = 10_000 + 37 * rng.randrange(40)
        features = {
            "age": "unknown" if rng.random() < unknown else rng.gauss(40, 10),
            "zip": code if rng.random() < 0.1 else str(code),
            "x": rng.gauss(0, 1),
        }
        events.append({"model": "m", "request_id": f"r{i}", "ts": 1_790_000_000 + i, "features": features,
                       "prediction": 1})  # fmt: skip
    return _decoded(events)


def test_a_feature_of_numbers_and_texts_is_watched_as_its_main_type(monitor: DriftMonitor) -> None:
    """A numeric feature with a text for "no value" ("unknown", "N/A") keeps its numbers' detectors, and its texts
    count as missing: a rise in their share is a drift of its null rate. A categorical feature sent now and then as a
    number takes the number as a category. Both stationary: no alert (before: the texts and numbers of the
    other type were not watched at all, and the rise went unseen)."""
    rng = random.Random(11)
    alerts = []
    for start in range(0, 60_000, 2_000):
        alerts += monitor.process_predictions(mixed_types(rng, start, 2_000, unknown=0.05))
    assert alerts == []
    state = monitor.models["m"]
    assert state.signals["age"].signal_type == "numeric" and state.signals["zip"].signal_type == "categorical"
    assert state.signals["zip"].seen == 60_000  # numbers among the codes are categories
    assert 0.04 < state.type_changes / 60_000 < 0.06  # the texts of age, counted as missing
    for start in range(60_000, 64_000, 2_000):
        alerts += monitor.process_predictions(mixed_types(rng, start, 2_000, unknown=0.2))
    assert [a.signal for a in alerts] == ["age:null_rate"]


def test_a_feature_declared_numeric_and_sent_as_text_is_watched_as_numbers(tmp_path: Path) -> None:
    """A CSV- or JavaScript-fed service may send every number as text ("12.50"): declared numeric in the model's
    spec, such a feature's texts are its values (its "N/A" missing), and a shift of its mean is caught."""
    (tmp_path / "m.toml").write_text('name = "m"\n[features]\namount = "numeric"\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng = random.Random(12)

    def batch(start: int, mean: float) -> ColumnBatch:
        events = [
            {"model": "m", "request_id": f"r{i}", "ts": 1_790_000_000 + i, "prediction": 1,
             "features": {"amount": "N/A" if rng.random() < 0.02 else f"{rng.gauss(mean, 10):.2f}"}}
            for i in range(start, start + 2_000)
        ]  # fmt: skip
        return _decoded(events)

    alerts = []
    for start in range(0, 40_000, 2_000):
        alerts += monitor.process_predictions(batch(start, 100.0))
    assert alerts == []
    state = monitor.models["m"]
    assert state.signals["amount"].signal_type == "numeric" and 0.01 < state.type_changes / 40_000 < 0.03
    for start in range(40_000, 44_000, 2_000):
        alerts += monitor.process_predictions(batch(start, 110.0))
    assert {a.signal for a in alerts} == {"amount"}


def test_skewed_categories_raise_no_alert_as_their_reference_grows(monitor: DriftMonitor) -> None:
    """Categorical features of 2, 10, 60 and 1,000 values, the larger ones Zipf-like (most values rare): as each
    reference grows to 32,000 values, its rare categories are pooled, else their terms outgrow the chi-square's
    tail (before pooling by expected counts: 5 false alarms in 1,000,000 events of such a model)."""
    rng = random.Random(21)
    alerts = []
    for start in range(0, 500_000, 5_000):
        events = [
            {"model": "m", "request_id": f"r{i}", "ts": 1_790_000_000 + i, "prediction": 1,
             "features": {"b": "yes" if rng.random() < 0.3 else "no", "ten": f"t{min(int(rng.expovariate(0.4)), 9)}",
                          "sixty": f"s{int(rng.paretovariate(1.2)) % 60}",
                          "wide": f"w{int(rng.paretovariate(0.7)) % 1000}"}}
            for i in range(start, start + 5_000)
        ]  # fmt: skip
        alerts += monitor.process_predictions(_decoded(events))
    assert alerts == []
    assert monitor.models["m"].signals["ten"].detector._reference_n == 32_000  # the reference grew


def test_a_feature_that_changes_type_is_not_fatal_for_the_batch(monitor: DriftMonitor) -> None:
    def batch(value: object, start: int) -> ColumnBatch:
        messages = [
            Incoming(
                json.dumps(
                    {
                        "model": m,
                        "request_id": f"r{start}-{m}",
                        "ts": 1_790_000_000 + start,
                        "features": {"x": value, "y": 1.0},
                        "prediction": 1,
                    }
                ).encode(),
                "predictions",
                0,
                start,
            )
            for m in ("flipper", "bystander")
        ]
        return decode_predictions(messages).rows

    monitor.process_predictions(batch(1.5, 0))  # x is numeric for both models
    monitor.process_predictions(batch("text", 1))  # ... now text: must not break the batch
    for model in ("flipper", "bystander"):
        state = monitor.models[model]
        assert state.events == 2  # every event of the batch was still monitored
        assert state.signals["x"].seen == 1 and state.signals["y"].seen == 2
        assert state.type_changes == 1


def numeric_batch(start: int, n: int, columns: dict[str, np.ndarray]) -> ColumnBatch:
    """Events ``start`` to ``start + n`` of model "m", each feature's values given whole."""
    events = [
        {"model": "m", "request_id": f"r{start + i}", "ts": 1_790_000_000 + start + i, "prediction": 1,
         "features": {name: float(values[start + i]) for name, values in columns.items()}}
        for i in range(n)
    ]  # fmt: skip
    return _decoded(events)


def test_values_a_chart_cannot_standardize_as_it_did_leave_the_model_detecting(monitor: DriftMonitor) -> None:
    """A sensor stuck at one value after an alarm (its new reference a constant whose mean rounds off it), a
    ratio computed two ways (0.3 and 0.1 + 0.2, one ulp apart), a 0/1 flag whose reference grew with a 2, values
    past 1e154 (squares past the largest float): each made a calibration or the joint fit raise, every batch
    after it, and the worker counted the model's every batch as an error (no detection, no alert, for good).
    Each is watched now: the stuck sensor is one alert, its return another, and the features beside it none."""
    rng = np.random.default_rng(8)
    n = 90_000
    stuck = rng.normal(size=n)
    stuck[30_000:60_000] = 0.7311
    ratio = np.where(rng.random(n) < 0.5, 0.3, 0.1 + 0.2)
    flag = (rng.random(n) < 0.3).astype(float)
    flag[20_000:] += rng.random(n - 20_000) < 0.01
    huge = rng.normal(size=n) * 1e300
    columns = {"stuck": stuck, "ratio": ratio, "flag": flag, "huge": huge, "y": rng.normal(size=n)}
    alerts = []
    for start in range(0, n, 5000):
        alerts += monitor.process_predictions(numeric_batch(start, 5000, columns))
    assert monitor.models["m"].events == n
    stuck_alerts = [int(a.request_id[1:]) for a in alerts if a.signal.startswith("stuck")]
    assert len(stuck_alerts) == 2 and 30_000 <= stuck_alerts[0] < 30_500 and 60_000 <= stuck_alerts[1] < 60_500
    assert not [a for a in alerts if a.signal.split(":")[0] in ("ratio", "huge", "y")]


def test_a_feature_named_as_a_signal_of_the_model_s_own_has_a_detector_of_its_own(monitor: DriftMonitor) -> None:
    """A feature named ``joint`` (a joint application), and ``amount:spread`` beside ``amount``: each shared a
    detector with the model's own signal of that name (the joint signal's, ``amount``'s spread), and their
    values together alarmed 21 times in 100,000 stationary events. Each is watched as ``feature:<name>`` now:
    quiet while stationary, and its own shift is its own alert."""
    rng = np.random.default_rng(3)
    n = 100_000
    joint = rng.normal(size=n) * 100 + 1000
    joint[70_000:] += 100  # a shift of one standard deviation of the feature named joint
    columns = {"joint": joint, "amount": rng.normal(size=n), "c": rng.normal(size=n)}
    columns["amount:spread"] = rng.normal(size=n) * 10 + 50
    alerts = []
    for start in range(0, n, 5000):
        alerts += monitor.process_predictions(numeric_batch(start, 5000, columns))
    assert {"joint", "feature:joint", "amount:spread", "feature:amount:spread"} <= set(monitor.models["m"].signals)
    ((signal, at),) = [(a.signal, int(a.request_id[1:])) for a in alerts]
    assert signal == "feature:joint" and 70_000 <= at < 70_500


def test_a_model_that_sent_one_event_holds_little(monitor: DriftMonitor) -> None:
    """Each detector held a ring of its last 2,000 values from its first: 586 KB a model that sent one event of
    ten features (tracemalloc), so a producer of 10,000 model names filled 6 GB of the detection process.
    The rings grow as values come: under 200 KB (117 KB measured)."""
    rng = np.random.default_rng(0)
    events = [
        {"model": f"m{m}", "request_id": f"r{m}", "ts": 1_790_000_000 + m, "prediction": 1, "score": 0.5,
         "features": {f"f{j}": float(rng.normal()) for j in range(10)}}
        for m in range(201)
    ]  # fmt: skip
    monitor.process_predictions(_decoded(events[:1]))  # what the first model loads once
    gc.collect()
    tracemalloc.start()
    try:
        monitor.process_predictions(_decoded(events[1:]))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(monitor.models) == 201 and held / 200 < 200 * 1024


def test_feature_names_beyond_the_limit_are_counted_not_watched(tmp_path: Path) -> None:
    (tmp_path / "wide.toml").write_text('name = "wide"\n[monitoring]\nmax_features = 5\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path))
    messages = [
        Incoming(
            json.dumps(
                {
                    "model": "wide",
                    "request_id": f"r{i}",
                    "ts": 1_790_000_000 + i,
                    "features": {f"f{i}-{k}": 1.0 for k in range(3)},
                    "prediction": 1,
                }
            ).encode(),
            "predictions",
            0,
            i,
        )
        for i in range(100)  # 300 distinct names, as a producer with random keys would send
    ]
    monitor.process_predictions(decode_predictions(messages).rows)
    state = monitor.models["wide"]
    assert len(state.features) == 5 and len(state.unwatched) == 295
    watched = {name.split(":")[0] for name in state.signals if output_version(name) is None}  # features only
    assert watched <= state.features  # no detector for an unwatched name: memory stays bounded


def test_warmup_zero_monitors_from_the_first_event(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text('name = "m"\n[monitoring]\nwarmup = 0\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    alerts = run(monitor, random.Random(2), 30_000, shift={"at": 20_000, "mean": 1.0})
    state = monitor.models["m"]
    assert state.events == 30_000 and state.signals["f0:spread"].seen == 30_000
    # the spread's centre is the first value (2.34 here): the shift moves the spread too, and it fired first
    first = next(a for a in alerts if a.kind == "data")
    assert feature_of(first.signal) == "f0" and 0 <= int(first.request_id[1:]) - 20_000 < 100


def _two_models(rng: random.Random, start: int, n: int, shift: dict) -> ColumnBatch:
    """One batch holding events of a model "broken" (stationary) and of "m" (``shift`` applied)."""
    messages = []
    for model, model_shift in (("broken", None), ("m", shift)):
        rows = predictions(rng, start, n, model_shift, model=model)
        events = [
            {
                "model": model,
                "request_id": rows["request_id"][i],
                "ts": rows["ts_ms"][i] / 1000,
                "features": dict(zip(rows["num.name"][i], rows["num.value"][i], strict=True)),
                "prediction": rows["prediction"][i],
                "score": rows["score"][i],
            }
            for i in range(len(rows))
        ]
        messages.append(Incoming(json.dumps({"events": events}).encode(), "p", 0, len(messages)))
    decoded = decode_predictions(messages)
    assert not decoded.dead
    return decoded.rows


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ('[monitoring]\nwarmup = "soon"', "monitoring.warmup"),
        # parameters a detector's class refuses when built, or when first fed: every batch raised in detection,
        # the other models' of the batch too
        (
            '[monitoring.signals.f0]\ndetector = { name = "KSWIN", params = { alpha = 2.0 } }',
            "monitoring.signals.f0.detector: KSWIN(alpha=2.0) cannot run: Alpha must be between 0 and 1",
        ),
        (
            '[monitoring.detectors]\nnumeric = { name = "CUSUM", params = { windw = 300 } }',
            "monitoring.detectors.numeric: CUSUM(windw=300) cannot run: ",
        ),
        (
            '[monitoring.detectors]\nscore = { name = "PageHinkley", params = { threshold = "high" } }',
            "monitoring.detectors.score: PageHinkley(threshold='high') cannot run: '>' not supported",
        ),
    ],
)
def test_a_broken_spec_affects_its_own_model_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str, says: str
) -> None:
    spec = tmp_path / "broken.toml"
    spec.write_text(f'name = "broken"\n{broken}\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng, alerts = random.Random(2), []
    with caplog.at_level("ERROR", logger="driftloop.drift"):
        for start in range(0, 24_000, 2000):
            alerts += monitor.process_predictions(_two_models(rng, start, 2000, {"at": 20_000, "mean": 1.0}))
    assert [(a.model, a.signal) for a in alerts] == [("m", "f0")]  # the other model's alert is not lost
    assert "broken" not in monitor.models
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # reported once, not once per batch
    assert str(spec) in errors[0].fields["error"] and says in errors[0].fields["error"]
    # labeled rows of the broken model are skipped too, and the file is read again once it is fixed
    assert monitor.process_labeled(labeled(rng, 0, 100, 0.1, 50, model="broken")) == []
    spec.write_text('name = "broken"\n')
    monitor.process_predictions(_two_models(rng, 24_000, 100, {"at": 20_000, "mean": 1.0}))
    assert monitor.models["broken"].events == 100


def test_a_detector_that_raises_starts_its_signal_again_and_every_other_signal_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A detector raising on values no check foresaw lost the detection of the whole batch: every other signal of
    its model, and every other model's in the batch (here "m", whose drift must still be caught where it is
    alone). Only the signal that raised starts again; its first failure is logged with the traceback, later ones
    counted."""
    (tmp_path / "broken.toml").write_text('name = "broken"\n[monitoring.detectors]\nnumeric = { name = "ADWIN" }\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng, alerts = random.Random(2), []

    def fail(values: object) -> list:
        raise ValueError("a value this detector cannot take")

    with caplog.at_level("ERROR", logger="driftloop.drift"):
        for start in range(0, 24_000, 2000):
            if start in (4000, 10_000):  # the signal's detector raises once; again after its restart
                monitor.models["broken"].signals["f2"].detector.update_many = fail
            alerts += monitor.process_predictions(_two_models(rng, start, 2000, {"at": 20_000, "mean": 1.0}))
    assert [(a.model, a.signal) for a in alerts] == [("m", "f0")]
    assert 20_000 <= int(alerts[0].request_id[1:]) < 20_500
    signals = monitor.models["broken"].signals
    assert signals["f1"].seen == 24_000 and signals["f3"].seen == 24_000  # its model's other signals went on
    assert signals["f2"].seen == 24_000 - 12_000  # started again after the batch of 10,000
    assert monitor.detector_failures == 2
    (logged,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert logged.fields == {"model": "broken", "signal": "f2", "detector": "ADWIN"}
    assert logged.exc_info is not None and "cannot take" in str(logged.exc_info[1])


def test_a_feature_sent_with_the_largest_float_as_its_sentinel_gives_an_alert_strict_json_reads(
    tmp_path: Path,
) -> None:
    """A feature whose missing values come as the largest float (a sentinel some C code and databases use): its
    squared deviations are past the largest float, which raised in a River detector's evidence (an
    ``OverflowError``: the whole batch's detection lost, every model's in it, at each detection). The alert holds
    finite numbers, and JSON a strict parser reads (none of Python's ``Infinity``)."""
    (tmp_path / "m.toml").write_text(
        'name = "m"\n[monitoring]\nwarmup = 500\n[monitoring.signals.f1]\ndetector = { name = "PageHinkley" }\n'
    )
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng = random.Random(5)
    events = prediction_events(rng, 0, 6000)
    for event in events[4000:]:
        if rng.random() < 0.02:
            event["features"]["f1"] = sys.float_info.max
    alerts = []
    for start in range(0, 6000, 1000):
        alerts += monitor.process_predictions(_decoded(events[start : start + 1000]))
    assert alerts and {a.signal for a in alerts} <= {"f1", "f1:spread"}
    assert 4000 <= int(alerts[0].request_id[1:]) < 4500
    for alert in alerts:
        wire = json.loads(json.dumps(alert.to_json(), allow_nan=False))
        assert wire["evidence"]["reference_std"] > 0 and wire["evidence"]["window_mean"] > 1e300
        assert math.isfinite(alert.statistic) and alert.statistic > 1e300
    assert monitor.detector_failures == 0


def test_a_detector_the_spec_gives_a_feature_of_another_kind_gives_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spec that gives KSWIN to ``colour`` without saying what ``colour`` is: its values are categories, which
    KSWIN cannot take (every batch raised). They are watched with CategoricalShift, the WARNING says so, and a
    change in them is still an alert; ``f0``'s override (a feature of numbers) is kept."""
    (tmp_path / "m.toml").write_text(
        'name = "m"\n[monitoring]\nwarmup = 500\n'
        '[monitoring.signals.colour]\ndetector = { name = "KSWIN", params = { alpha = 0.0001 } }\n'
        '[monitoring.signals.f0]\ndetector = { name = "ADWIN", params = { delta = 0.00001 } }\n'
    )
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    with caplog.at_level("WARNING", logger="driftloop.drift"):
        alerts = run(monitor, random.Random(3), 8000, {"at": 6000, "colour": "b"})
    signals = monitor.models["m"].signals
    assert signals["colour"].detector.name == "CategoricalShift" and signals["f0"].detector.name == "ADWIN"
    assert [a.signal for a in alerts] == ["colour"] and 6000 <= int(alerts[0].request_id[1:]) < 6500
    said = [r.fields for r in caplog.records if r.msg.startswith("the spec's detector cannot take")]
    assert said == [
        {
            "model": "m",
            "signal": "colour",
            "spec": "KSWIN",
            "why": "KSWIN takes numbers and categorical values are categories: use CategoricalShift",
            "watched_with": "CategoricalShift",
        }
    ]


def test_a_regression_s_errors_past_one_leave_a_detector_of_mistakes(tmp_path: Path) -> None:
    """A spec that gives the errors DDM (a detector of 0/1 mistakes) and names no task, of a model whose labeled
    errors are counts off by 0 or 1 at first, then by more: DDM raised on them (a math domain error, every batch
    after). The errors are watched with the default for numbers from then on, and their rise is an alert."""
    (tmp_path / "m.toml").write_text('name = "m"\n[monitoring.detectors]\nerror = { name = "DDM" }\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng, alerts = random.Random(4), []

    def errors(start: int, n: int, scale: float) -> ColumnBatch:
        rows = labeled(rng, start, n, 0.1, 0)
        rows.columns["error"] = [
            float(rng.random() < 0.3) if scale == 0 else abs(rng.gauss(0, scale)) for _ in rows["error"]
        ]
        return rows

    alerts += monitor.process_labeled(errors(0, 1000, 0))
    assert monitor.models["m"].signals["error@v0"].detector.name == "DDM"
    for start in range(1000, 20_000, 1000):
        alerts += monitor.process_labeled(errors(start, 1000, 1.0 if start < 15_000 else 2.0))
    assert monitor.models["m"].signals["error@v0"].detector.name == "CUSUM"
    assert [a.signal for a in alerts] == ["error"] and 15_000 <= int(alerts[0].request_id[1:]) < 15_500


def test_a_spec_edited_while_its_model_is_watched_is_taken_from_then_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The spec's owner, a signal turned off, another detector for a feature: taken at the model's next batch
    (the workers ran on the spec they first read until restarted). Only the signal whose detector changed starts
    again; an edit whose detectors cannot run is not taken, and the model goes on as it was."""
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\nowner = "risk-ml"\n[monitoring]\nwarmup = 500\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path, recheck_s=0.0), clock=lambda: 1.0)
    rng = random.Random(5)
    assert run(monitor, rng, 4000) == []
    before = dict(monitor.models["m"].signals)
    path.write_text(
        'name = "m"\nowner = "payments-oncall"\nrunbook = "https://wiki.example.com/m"\n[monitoring]\nwarmup = 500\n'
        "[monitoring.signals.colour]\nenabled = false\n"
        '[monitoring.signals.f1]\ndetector = { name = "ADWIN", params = { delta = 0.00001 } }\n'
    )
    alerts = []
    for start in range(4000, 8000, 1000):  # f0 and colour change at 6,000
        alerts += monitor.process_predictions(predictions(rng, start, 1000, {"at": 6000, "mean": 1.0, "colour": "b"}))
    signals = monitor.models["m"].signals
    assert [(a.signal, a.owner, a.runbook) for a in alerts] == [("f0", "payments-oncall", "https://wiki.example.com/m")]
    assert "colour" not in signals and "colour:null_rate" not in signals
    assert signals["f1"].detector.name == "ADWIN" and before["f1"].detector.name == "CUSUM"
    assert all(signals[name] is before[name] for name in ("f0", "f2", "f2:spread", "score@v0", "joint"))

    path.write_text(
        'name = "m"\nowner = "nobody"\n[monitoring.detectors]\nnumeric = { name = "KSWIN", params = { alpha = 2.0 } }\n'
    )
    with caplog.at_level("ERROR", logger="driftloop.drift"):
        run(monitor, rng, 3000, batch=1000)
    assert monitor.models["m"].spec.owner == "payments-oncall" and monitor.models["m"].signals["f2"] is before["f2"]
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "monitoring.detectors.numeric: KSWIN(alpha=2.0) cannot run" in error.fields["error"]


def outputs(rng: random.Random, start: int, n: int, served_by, score_of, feature_shift: float = 0.0) -> ColumnBatch:
    """``n`` events of stationary features (f0 shifted by ``feature_shift``); event i is served by version
    ``served_by(i)``, with a score from ``score_of(i)`` and the prediction it implies."""
    events = []
    for i in range(start, start + n):
        score = score_of(i)
        events.append(
            {
                "model": "m",
                "request_id": f"r{i}",
                "ts": 1_790_000_000 + i,
                "model_version": served_by(i),
                "features": {"f0": rng.gauss(feature_shift, 1), "f1": rng.gauss(0, 1)},
                "prediction": int(score > 0.5),
                "score": score,
            }
        )
    return decode_predictions([Incoming(json.dumps({"events": events}).encode(), "p", 0, 0)]).rows


def deploy(monitor: DriftMonitor, *, new_version: int, feature_shift: float = 0.0) -> list:
    """v1 serves alone, then a canary on a fifth of requests from event 8,000, then the new code serves every
    request from 12,000; its scores sit far higher than v1's. With ``new_version=1`` the new code is not
    announced as a new version (the same outputs change within one version)."""
    rng = random.Random(5)

    def new_code(i: int) -> bool:
        return i >= 12_000 or (i >= 8000 and i % 5 == 0)

    def served_by(i: int) -> int:
        return new_version if new_code(i) else 1

    def score_of(i: int) -> float:
        return rng.betavariate(5, 2) if new_code(i) else rng.betavariate(2, 5)

    alerts = []
    for start in range(0, 20_000, 1000):
        shift = feature_shift if start >= 12_000 else 0.0
        alerts += monitor.process_predictions(outputs(rng, start, 1000, served_by, score_of, shift))
    return alerts


def test_a_deployment_is_not_a_prediction_drift(monitor: DriftMonitor) -> None:
    assert deploy(monitor, new_version=2) == []
    names = set(monitor.models["m"].signals)
    assert {"score@v1", "score@v2", "prediction@v1", "prediction@v2"} <= names


def test_the_same_change_of_outputs_within_one_version_is_a_prediction_drift(monitor: DriftMonitor) -> None:
    alerts = deploy(monitor, new_version=1)
    assert {a.kind for a in alerts} == {"prediction"} and {a.signal for a in alerts} <= {"score", "prediction"}
    assert all(a.model_version == 1 for a in alerts)


def test_a_feature_shift_at_a_deployment_is_still_a_data_drift(monitor: DriftMonitor) -> None:
    alerts = deploy(monitor, new_version=2, feature_shift=1.0)
    assert [(a.kind, a.signal) for a in alerts] == [("data", "f0")]


def test_a_new_version_s_errors_start_their_own_reference(monitor: DriftMonitor) -> None:
    rng = random.Random(6)
    alerts = []
    for start in range(0, 16_000, 1000):
        rows = labeled(rng, start, 1000, error_after=0.3, at=8000)  # v2, from 8,000 on, errs more than v1 did
        rows.columns["model_version"] = [1 if i < 8000 else 2 for i in range(start, start + 1000)]
        alerts += monitor.process_labeled(rows)
    assert alerts == []  # judging a new version against its predecessor is the release gate's job
    for start in range(16_000, 30_000, 1000):  # v2 then degrades: that is a drift
        rows = labeled(rng, start, 1000, error_after=0.6, at=22_000)
        rows.columns["error"] = [
            e if i >= 22_000 else float(rng.random() < 0.3)
            for e, i in zip(rows.columns["error"], range(start, start + 1000), strict=True)
        ]
        rows.columns["model_version"] = [2] * 1000
        alerts += monitor.process_labeled(rows)
    ((kind, signal, version, at),) = [(a.kind, a.signal, a.model_version, int(a.request_id[1:])) for a in alerts]
    assert (kind, signal, version) == ("performance", "error", 2) and 22_000 <= at < 23_000


def test_only_the_outputs_of_the_most_recent_versions_are_kept(monitor: DriftMonitor) -> None:
    rng = random.Random(7)
    for version in range(1, 7):
        monitor.process_predictions(outputs(rng, version * 100, 100, lambda i, v=version: v, lambda i: 0.3))
    kept = {output_version(name) for name in monitor.models["m"].signals} - {None}
    assert kept == {4, 5, 6}


@pytest.mark.parametrize("span", [2000, 20_000, 100_000])
def test_a_slow_one_sigma_shift_is_caught_without_an_alert_before_it_begins(monitor: DriftMonitor, span: int) -> None:
    """1σ on one of ten features, spread evenly over ``span`` events from event 20,000 on. Found out: the
    detector did fire on these, but a fixed confirmation of 50 values could not confirm the few tenths of a σ
    a slow drift shows when first detected; the confirmation is now sized to the detected shift."""
    rng = random.Random(8)
    start = 20_000
    alerts = []
    for first in range(0, start + span, 2000):
        batch = predictions(rng, first, 2000)
        values = batch.columns["num.value"]
        assert isinstance(values, NumberRows)  # every event sends the same features: one matrix, f0 first
        values.matrix[:, 0] += np.clip((np.arange(first, first + 2000) - start) / span, 0.0, 1.0)
        alerts += monitor.process_predictions(batch)
    assert all(int(a.request_id[1:]) >= start for a in alerts), [(a.signal, a.request_id) for a in alerts]
    on_mean = [int(a.request_id[1:]) - start for a in alerts if a.signal == "f0"]
    assert on_mean and on_mean[0] < span / 2, on_mean  # the mean's detector, before the shift reaches half a sigma


def test_a_drop_of_a_classifier_s_confidence_is_reported_as_its_estimated_accuracy(monitor: DriftMonitor) -> None:
    rng = random.Random(9)
    alerts = []
    for start in range(0, 20_000, 1000):  # v1's scores fall from 0.71 to 0.6 on average at event 10,000
        alerts += monitor.process_predictions(
            outputs(
                rng, start, 1000, lambda i: 1, lambda i: rng.betavariate(5, 2) if i < 10_000 else rng.betavariate(3, 2)
            )
        )
    (alert,) = [a for a in alerts if a.signal == "score"]
    before, after = alert.evidence["estimated_accuracy_before"], alert.evidence["estimated_accuracy_after"]
    assert before == pytest.approx(5 / 7, abs=0.02) and after == pytest.approx(0.6, abs=0.05)
    assert "estimated accuracy (CBPE, before labels)" in alert.message


def test_a_regressor_s_score_shift_is_not_an_accuracy_estimate(monitor: DriftMonitor) -> None:
    rng = random.Random(10)
    alerts = []
    for start in range(0, 20_000, 1000):
        batch = outputs(
            rng, start, 1000, lambda i: 1, lambda i: rng.betavariate(5, 2) if i < 10_000 else rng.betavariate(3, 2)
        )
        batch.columns["prediction_num"] = [rng.gauss(0, 1) for _ in range(1000)]  # a value, not a class
        batch.columns["prediction"] = [repr(v) for v in batch.columns["prediction_num"]]
        alerts += monitor.process_predictions(batch)
    (alert,) = [a for a in alerts if a.signal == "score"]
    assert "estimated_accuracy_before" not in alert.evidence and "CBPE" not in alert.message


def test_a_regression_s_predictions_clipped_at_zero_stay_numbers(monitor: DriftMonitor) -> None:
    """A regression (its spec names no task) whose predictions are clipped at 0: a third of them exactly 0.0. A
    batch was read as classes unless every prediction in it was a fraction, so after a first batch without a
    0.0 every batch was a type change, skipped: the shift of its predictions (0.5 to 1.5) raised nothing."""
    rng = np.random.default_rng(11)
    alerts = []
    for start in range(0, 100_000, 5000):
        predicted = np.maximum(0.0, rng.normal(0.5 if start < 60_000 else 1.5, 1.0, 5000))
        if start == 0:
            predicted = np.abs(predicted) + 0.01  # a first batch without a 0.0
        events = [
            {"model": "m", "request_id": f"r{start + i}", "ts": 1_790_000_000 + start + i,
             "features": {"x": float(rng.normal())}, "prediction": float(predicted[i])}
            for i in range(5000)
        ]  # fmt: skip
        alerts += monitor.process_predictions(_decoded(events))
    assert monitor.models["m"].type_changes == 0
    assert monitor.models["m"].signals["prediction@v0"].signal_type == "score"
    (alert,) = alerts
    assert alert.signal == "prediction" and 60_000 <= int(alert.request_id[1:]) < 60_500


def correlated(rng: np.random.Generator, start: int, n: int, rho_of) -> ColumnBatch:
    """Ten N(0,1) features; f8 and f9 correlated by ``rho_of(i)`` (each one's distribution never changes)."""
    a, noise, rest = rng.normal(size=n), rng.normal(size=n), rng.normal(size=(n, 8))
    rho = np.array([rho_of(i) for i in range(start, start + n)])
    f9 = rho * a + np.sqrt(1 - rho**2) * noise
    events = [
        {
            "model": "m",
            "request_id": f"r{i}",
            "ts": 1_790_000_000 + i,
            "prediction": 0,
            "features": {**{f"f{j}": float(rest[k, j]) for j in range(8)}, "f8": float(a[k]), "f9": float(f9[k])},
        }
        for k, i in enumerate(range(start, start + n))
    ]
    return decode_predictions([Incoming(json.dumps({"events": events}).encode(), "p", 0, 0)]).rows


def test_a_correlation_that_flips_is_a_joint_drift_naming_its_features(monitor: DriftMonitor) -> None:
    rng = np.random.default_rng(11)
    alerts = []
    for start in range(0, 30_000, 2000):
        alerts += monitor.process_predictions(correlated(rng, start, 2000, lambda i: 0.8 if i < 20_000 else -0.8))
    (alert,) = alerts  # and no marginal signal: each feature's distribution stayed the same
    assert (alert.kind, alert.signal) == ("data", "joint")
    assert 0 <= int(alert.request_id[1:]) - 20_000 < 1000
    assert set(alert.evidence["features"][:2]) == {"f8", "f9"} and "f8" in alert.message
    saved = snapshot_model(monitor, "m")
    restored = DriftMonitor(monitor.specs, clock=lambda: 1.0)
    restore_model(restored, "m", json.loads(json.dumps(saved)))  # JSON, as it is stored
    joint = restored.models["m"].joint
    assert joint is not None and joint.fitted and joint.names == monitor.models["m"].joint.names


def test_the_model_run_length_is_shared_by_its_signals(monitor: DriftMonitor) -> None:
    """Default: 1e8 events for the model; each signal's rate is its share (the rates add up to the model's)."""
    run(monitor, random.Random(8), 3000)
    state = monitor.models["m"]
    shares = {name: s.detector.run_length for name, s in state.signals.items() if s.detector.name == "CUSUM"}
    assert shares and set(shares.values()) == {1e8 * state.expected_signals}
    colour = state.signals["colour"].detector
    assert colour.alpha == pytest.approx(colour.clock / (1e8 * state.expected_signals))  # type: ignore[attr-defined]


def test_a_run_length_in_hours_follows_the_model_event_rate(tmp_path: Path) -> None:
    """One event a second (the stream's event time): 24 hours is 86,400 events for the model."""
    (tmp_path / "m.toml").write_text('name = "m"\n[monitoring]\nexpected_run_length_hours = 24\n')
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    run(monitor, random.Random(9), 3000)
    state = monitor.models["m"]
    assert state.events_per_s == pytest.approx(1.0)
    signals = max(state.expected_signals, len(state.signals))
    assert state.signals["f0"].detector.run_length == pytest.approx(86_400 * signals)  # type: ignore[attr-defined]
    restarted = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    restore_model(restarted, "m", json.loads(json.dumps(snapshot_model(monitor, "m"))))
    assert restarted.models["m"].signals["f0"].detector.run_length == pytest.approx(86_400 * signals)  # type: ignore[attr-defined]


def test_a_detector_a_spec_names_keeps_its_own_rate(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(
        'name = "m"\n[monitoring.signals.f0]\ndetector = { name = "CUSUM", params = { run_length = 1e4 } }\n'
    )
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    run(monitor, random.Random(10), 3000)
    signals = monitor.models["m"].signals
    assert signals["f0"].detector.run_length == 1e4  # type: ignore[attr-defined]
    assert signals["f1"].detector.run_length == 1e8 * monitor.models["m"].expected_signals  # type: ignore[attr-defined]


def test_a_batch_longer_than_the_ring_places_its_alert_where_it_happened(tmp_path: Path) -> None:
    """A detection process that fell behind gets long batches: a shift inside one is still placed at its
    own event, not at the oldest event the ring of recent events kept."""
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng = random.Random(2)
    monitor.process_predictions(predictions(rng, 0, 10_000))
    alerts = monitor.process_predictions(predictions(rng, 10_000, 40_000, shift={"at": 20_000, "mean": 1.0}))
    (alert,) = [a for a in alerts if a.signal == "f0"]
    assert 20_000 <= int(alert.request_id[1:]) < 20_200
    assert abs(int(alert.change_point_request_id[1:]) - 20_000) <= 50


def test_a_fleet_s_batch_gives_each_model_the_alerts_and_state_it_gets_alone(tmp_path: Path) -> None:
    """Many models in one batch run their charts together (a round of each model's part at once): each model
    gets the alerts, at the same events, and the detector state, to the bit, that it gets fed alone, batch
    after batch of parts of any size (a part longer than half the ring: two rounds; a part of one event; a
    drift; a null rate that rises)."""
    shifts = {"m1": {"at": 11_000, "mean": 1.0}, "m3": {"at": 12_000, "null": True}}
    models = [f"m{i}" for i in range(5)]
    together = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    alone = {model: DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0) for model in models}
    rng, sizes = random.Random(8), random.Random(9)
    seen = dict.fromkeys(models, 0)
    by_model: dict[str, list] = {model: [] for model in models}
    expected: dict[str, list] = {model: [] for model in models}
    for round_ in range(14):
        events = []
        for model in models:
            n = 10_000 if round_ == 0 else 12_000 if (round_, model) == (3, "m2") else sizes.choice([1, 25, 300, 2000])
            part = prediction_events(rng, seen[model], n, shifts.get(model), model)
            seen[model] += n
            expected[model] += alone[model].process_predictions(_decoded(part))
            events += part
        for alert in together.process_predictions(_decoded(events)):
            by_model[alert.model].append(alert)
    assert {model for model, alerts in expected.items() if alerts} == {"m1", "m3"}  # the drifts were caught
    assert by_model == expected
    for model in models:
        assert state_text(snapshot_model(together, model)) == state_text(snapshot_model(alone[model], model))


def test_the_event_ring_holds_the_last_events_as_a_deque_of_pairs_would() -> None:
    """Parts of random sizes (empty ones too): every one of the last ``capacity`` events reads as a bounded
    deque of (ts_ms, request_id) reads it, from either end; older parts go once the rest hold ``capacity``."""
    rng = np.random.default_rng(5)
    for capacity in (1, 7, 100):
        ring, pairs, total = EventRing(capacity), deque(maxlen=capacity), 0
        for _ in range(300):
            size = int(rng.choice([0, 1, 3, capacity // 2 + 1, 2 * capacity]))
            ts = np.arange(total, total + size, dtype=np.int64) * 10
            ids = [f"r{i}" for i in range(total, total + size)]
            ring.extend(ts, ids)
            pairs.extend(zip(ts.tolist(), ids, strict=True))
            total += size
            if not total:
                continue
            assert capacity <= len(ring) or len(ring) == total
            for back in range(1, len(pairs) + 1):
                assert ring[len(ring) - back] == ring[-back] == pairs[-back]
            assert ring[0] == (10 * (total - len(ring)), f"r{total - len(ring)}")
            with pytest.raises(IndexError):
                ring[len(ring)]
    with pytest.raises(ValueError, match="2 times for 1 request ids"):
        EventRing().extend([1, 2], ["a"])


def test_the_joint_signals_running_mean_is_the_exponential_filter() -> None:
    """The running mean the joint signal centres rows on is ``m_t = d m_(t-1) + (1 - d) x_t``, as scipy's lfilter
    computes it, over runs shorter and longer than one closed-form span and far from zero."""
    from scipy.signal import lfilter

    decay = 0.5 ** (1 / HALF_LIFE)
    rng = np.random.default_rng(6)
    for count, centre in ((1, 0.0), (7, 0.0), (8 * HALF_LIFE, 5.0), (8 * HALF_LIFE + 1, -3.0), (20_000, 1e6)):
        rows, level = rng.normal(centre, 1.0, size=(count, 4)), rng.normal(centre, 1.0, size=4)
        expected = lfilter([1 - decay], [1, -decay], rows, axis=0, zi=(decay * level)[None, :])[0]
        np.testing.assert_allclose(running_mean(rows, level), expected, rtol=1e-13, atol=1e-13)


def test_a_wide_models_joint_state_saves_the_smaller_basis_and_restores_to_the_same_scores() -> None:
    """500 independent features keep some 380 components (90 % of their variance), saved at every offset
    commit as 4 MB of JSON text; their complement, packed, is under a fifth of that, and a restored detector
    scores every later row, and names the features that moved, as the original does. A state saved with the
    components as a JSON list (before) restores to the same scores."""
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(3000, 500))
    joint = JointDrift([f"f{i:03d}" for i in range(500)], reference_size=2000)
    assert joint.update(rows[:2000]) is None
    assert joint.components is not None
    saved = joint.snapshot()
    assert saved is not None and "complement" in saved and "components" not in saved
    assert len(state_text(saved)) < len(json.dumps(joint.components.tolist())) / 5
    twin = JointDrift.restore(json.loads(state_text(saved)))
    before = {key: value for key, value in saved.items() if key != "complement"}
    legacy = JointDrift.restore(json.loads(json.dumps({**before, "components": joint.components.tolist()})))
    later = rows[2000:] + np.where(np.arange(500) < 2, rng.normal(size=(1000, 1)) * 3, 0.0)  # two move together
    scores = joint.update(later)
    restored = twin.update(later)
    np.testing.assert_array_equal(restored, scores)
    assert twin.contributions() == joint.contributions()
    np.testing.assert_allclose(legacy.update(later), scores, rtol=1e-9)
    assert set(joint.contributions()[:2]) == {"f000", "f001"}


@pytest.mark.parametrize(("features", "correlation"), [(10, 0.0), (50, 0.0), (3, 0.9), (6, 0.99)])
def test_the_joint_signal_is_each_rows_squared_residual_off_the_components(features: int, correlation: float) -> None:
    """Whichever product is the smaller (the residual's part outside the components' span, or the row less
    its projection onto them), a row's score is its squared residual (the row held within the reference's
    range; below ``ROUNDING``, 0), and the same after a restore."""
    rng = np.random.default_rng(features)
    common = rng.normal(size=(6000, 1))
    rows = correlation * common + np.sqrt(1 - correlation**2) * rng.normal(size=(6000, features))
    joint = JointDrift([f"f{i}" for i in range(features)], reference_size=2000)
    assert joint.update(rows[:2000]) is None
    twin = JointDrift.restore(joint.snapshot(), reference_size=2000)  # type: ignore[arg-type]
    for part in (rows[2000:2001], rows[2001:6000]):
        expected = np.square(twin._residuals(twin._centre(np.clip(part, twin.low, twin.high)))).sum(axis=1)
        expected[expected < ROUNDING] = 0.0  # rounding, where fewer than two features vary
        np.testing.assert_allclose(joint.update(part), expected, rtol=1e-9, atol=1e-12)
