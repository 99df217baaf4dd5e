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
from driftloop.streams.drift.gate import AlertGate, GateKeeper, RecordedAlert, read_detections
from driftloop.streams.drift.silences import Silence

T0 = 1_790_000_000.0


def detection(n: int, *, at: float, kind: str = "data", model: str = "fraud", partition: int = 0) -> Alert:
    return dataclasses.replace(
        Alert.example(), alert_id=f"d{n}", model=model, kind=kind, event_ts=at, request_id=f"r{n}",
        evidence={"partition": partition},
    )  # fmt: skip


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
    gate.remember("fraud", [RecordedAlert("d1", "data", T0)])  # only d1 (the hourly limit is 2)
    passed, folded = gate.decide([detection(3, at=T0 + 599), detection(4, at=T0 + 601)])
    assert ids(passed) == ["d4"] and ids(folded) == ["d3"]  # 600 s of event time after d1


def test_the_hourly_limit_holds_across_partitions(gate: AlertGate) -> None:
    gate.remember("fraud", [])
    kinds = ("data", "prediction", "performance")
    passed, folded = gate.decide([detection(n, at=T0 + n, kind=kinds[n], partition=n) for n in range(3)])
    assert ids(passed) == ["d0", "d1"] and ids(folded) == ["d2"]  # max_alerts_per_hour = 2


def test_the_memory_read_after_a_restart_keeps_the_cooldown_and_lets_a_repeat_through_once(gate: AlertGate) -> None:
    gate.remember("fraud", [RecordedAlert("d1", "data", T0)])
    repeat, same_drift, next_drift = detection(1, at=T0), detection(2, at=T0 + 60), detection(3, at=T0 + 700)
    passed, folded = gate.decide([repeat, same_drift, next_drift])
    assert ids(passed) == ["d1", "d3"] and ids(folded) == ["d2"]  # d1 again: published again, not new
    gate.forget()
    assert not gate.knows("fraud")


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
