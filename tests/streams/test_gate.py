"""The alert gate: detections of one drift from several partitions make one alert (the policy, across them).

The gate is pure apart from its memory, which these tests hand it; the worker's gate against the real broker
and ClickHouse is tested in tests/reliability/test_hot_model.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from driftloop.infra.contract import Alert
from driftloop.infra.spec import SpecCatalog
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.drift.gate import AlertGate, GateKeeper, RecordedAlert, read_detections, released_at
from driftloop.streams.drift.silences import Silence

T0 = 1_790_000_000.0


def detection(
    n: int,
    *,
    at: float,
    kind: str = "data",
    model: str = "fraud",
    partition: int = 0,
    signal: str = "amount",
    change_at: float | None = None,
) -> Alert:
    """A detection at ``at`` (event time) of a change that began ``change_at`` (10 s before, unless given)."""
    return dataclasses.replace(
        Alert.example(), alert_id=f"d{n}", model=model, kind=kind, signal=signal, event_ts=at, request_id=f"r{n}",
        change_point_ts=at - 10 if change_at is None else change_at, evidence={"partition": partition},
    )  # fmt: skip


def recorded(alert: Alert) -> RecordedAlert:
    """``alert`` as the gate reads it back from ``drift_alerts``."""
    return RecordedAlert(
        alert.alert_id, alert.kind, alert.event_ts, alert.signal, released_at(alert), alert.change_point_ts
    )


@pytest.fixture()
def gate(tmp_path: Path) -> AlertGate:
    (tmp_path / "fraud.toml").write_text('name = "fraud"\n[monitoring]\ncooldown_s = 600\nmax_alerts_per_hour = 2\n')
    return AlertGate(SpecCatalog(tmp_path))


def ids(alerts: Sequence[Alert]) -> list[str]:
    return [a.alert_id for a in alerts]


def test_one_drift_seen_on_four_partitions_makes_one_alert_the_earliest(gate: AlertGate) -> None:
    gate.remember("fraud", [])
    seen = [detection(n, at=T0 + 30 - n, partition=n) for n in range(4)]  # d3 is the earliest in event time
    passed, folded = gate.decide(seen)
    assert ids(passed) == ["d3"] and sorted(ids(folded)) == ["d0", "d1", "d2"]


def test_each_kind_of_drift_has_its_own_cooldown_and_a_later_drift_passes(gate: AlertGate) -> None:
    gate.remember("fraud", [])
    passed, _ = gate.decide([detection(1, at=T0), detection(2, at=T0 + 5, kind="performance")])
    assert ids(passed) == ["d1", "d2"]
    gate.remember("fraud", [recorded(detection(1, at=T0))])  # only d1 (the hourly limit is 2)
    passed, folded = gate.decide([detection(3, at=T0 + 599), detection(4, at=T0 + 601)])
    assert ids(passed) == ["d4"] and ids(folded) == ["d3"]  # 600 s of event time after d1


def test_the_hourly_limit_holds_across_partitions(gate: AlertGate) -> None:
    gate.remember("fraud", [])
    kinds = ("data", "prediction", "performance")
    passed, folded = gate.decide([detection(n, at=T0 + n, kind=kinds[n], partition=n) for n in range(3)])
    assert ids(passed) == ["d0", "d1"] and ids(folded) == ["d2"]  # max_alerts_per_hour = 2


def test_the_memory_read_after_a_restart_keeps_the_cooldown_and_lets_a_repeat_through_once(gate: AlertGate) -> None:
    gate.remember("fraud", [recorded(detection(1, at=T0))])
    repeat, same_drift, next_drift = detection(1, at=T0), detection(2, at=T0 + 60), detection(3, at=T0 + 700)
    passed, folded = gate.decide([repeat, same_drift, next_drift])
    assert ids(passed) == ["d1", "d3"] and ids(folded) == ["d2"]  # d1 again: published again, not new
    gate.forget()
    assert not gate.knows("fraud")


def test_within_a_cooldown_a_drift_of_another_feature_that_began_later_passes_and_one_of_the_same_moment_folds(
    tmp_path: Path,
) -> None:
    """A second feature's shift 500 events after the first's was folded into the first's alert, and its chart
    took the shifted values for its next reference: never reported. Within the cooldown, a detection passes
    when its feature is none of the alerts' and its change began after theirs by more than its own detection
    took; the same feature, a feature moved at the same moment (caught later), the model's own signals, every
    detection after an alert of theirs (``joint``, ``mean_shift``: every feature's), and a second new drift in
    one cooldown fold, as every detection did before. The memory read back keeps it."""
    gate = AlertGate(SpecCatalog(tmp_path))  # the defaults: a cooldown of 900 s, six alerts an hour
    gate.remember("fraud", [])
    first = detection(1, at=T0, change_at=T0 - 10)
    later = detection(2, at=T0 + 60, signal="age", change_at=T0 + 55)
    same_feature = detection(3, at=T0 + 70, signal="age:spread", change_at=T0 + 56)
    same_moment = detection(4, at=T0 + 90, signal="tenure", change_at=T0 + 30)  # 30 s uncertain, began ≤ T0
    joint = detection(5, at=T0 + 200, signal="joint", change_at=T0 + 150)
    passed, folded = gate.decide([first, later, same_feature, same_moment, joint])
    assert ids(passed) == ["d1", "d2"] and ids(folded) == ["d3", "d4", "d5"]

    gate.remember("fraud", [recorded(first)])  # after a restart
    again = detection(6, at=T0 + 300, signal="amount:shape", change_at=T0 + 290)
    another = detection(7, at=T0 + 300, signal="income", change_at=T0 + 290)
    third = detection(10, at=T0 + 400, signal="tenure", change_at=T0 + 390)
    passed, folded = gate.decide([again, another, third])
    assert ids(passed) == ["d7"] and ids(folded) == ["d6", "d10"]  # a cooldown lets one new drift through

    gate.remember("fraud", [])  # River's centroids that keep moving: the mean shift's alert, then each feature's
    shift = detection(8, at=T0 + 5000, signal="mean_shift", change_at=T0 + 4990)
    each = detection(9, at=T0 + 5600, signal="age", change_at=T0 + 5500)
    passed, folded = gate.decide([shift, each])
    assert ids(passed) == ["d8"] and ids(folded) == ["d9"]  # the model's own signals watch every feature


def test_a_drift_the_monitor_held_back_is_judged_when_it_went_out_and_its_cooldown_counts_from_then(
    tmp_path: Path,
) -> None:
    """A second new drift within a cooldown is held back by the partition's monitor and sent when the cooldown
    allows, with its own detection's time and ``held_until_ts``: the gate judges it then (at its detection two
    alerts were within the cooldown), and after a restart its memory counts the cooldown from then too."""
    gate = AlertGate(SpecCatalog(tmp_path))  # the defaults: a cooldown of 900 s, six alerts an hour
    gate.remember("fraud", [])
    first = detection(1, at=T0, change_at=T0 - 10)
    second = detection(2, at=T0 + 300, signal="age", change_at=T0 + 290)
    third = detection(3, at=T0 + 600, signal="tenure", change_at=T0 + 590)
    passed, folded = gate.decide([first, second, third])
    assert ids(passed) == ["d1", "d2"] and ids(folded) == ["d3"]
    sent = dataclasses.replace(third, evidence={**third.evidence, "held_until_ts": T0 + 900})
    assert released_at(sent) == T0 + 900 and released_at(third) == T0 + 600
    gate.remember("fraud", [recorded(first), recorded(second)])
    passed, _ = gate.decide([sent])
    assert ids(passed) == ["d3"]

    gate.remember("fraud", [recorded(a) for a in (first, second, sent)])  # after a restart
    again = detection(4, at=T0 + 1550, signal="tenure", change_at=T0 + 1540)  # tenure moved again
    passed, folded = gate.decide([again])
    assert ids(folded) == ["d4"]  # within the cooldown of the alert that went out at T0 + 900


def test_unreadable_detection_records_are_skipped() -> None:
    good = detection(1, at=T0)
    values = [b"{not json", json.dumps(good.to_json()).encode(), b'{"model": "x"}']
    assert read_detections(values) == [good]


def test_the_keeper_publishes_what_passes_unless_silenced_and_records_each_alert_once(gate: AlertGate) -> None:
    published: list[str] = []
    written: list[ColumnBatch] = []
    read: list[str] = []

    async def recorded(query: Any) -> list[RecordedAlert]:
        read.append("drift_alerts")
        return []

    async def publish(alerts: Sequence[Alert]) -> None:
        published.extend(ids(alerts))

    async def write(rows: ColumnBatch) -> None:
        written.append(rows)

    async def silences(models: list[str], now: float) -> list[Silence]:
        return [Silence("s", "quiet", "", now - 1, now + 60, "", "")]

    keeper = GateKeeper(gate, recorded, publish, write, silences)
    seen = [detection(1, at=T0), detection(2, at=T0 + 1, partition=1), detection(3, at=T0, model="quiet")]
    alerts = asyncio.run(keeper.handle(seen))
    assert sorted(ids(alerts)) == ["d1", "d3"] and gate.folded == 1
    assert published == ["d1"]  # the silenced one is recorded, not published
    assert len(written) == 1 and sorted(written[0]["alert_id"]) == ["d1", "d3"]
    assert written[0]["silenced"][written[0]["alert_id"].index("d3")]
    assert read == ["drift_alerts", "drift_alerts"]  # each model's memory read once
    asyncio.run(keeper.handle([detection(4, at=T0 + 2, partition=3)]))
    assert read == ["drift_alerts", "drift_alerts"] and gate.folded == 2
