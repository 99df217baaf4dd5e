"""The alert gate's memory, read from the real ClickHouse: a model's recorded alerts keep its cooldown, and a
start over of its monitoring (each demo run makes one) leaves the alerts before it behind."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from driftloop.infra.contract import ALERT_COLUMNS, Alert
from driftloop.infra.spec import SpecCatalog
from driftloop.streams.drift.gate import AlertGate, recorded_alerts
from driftloop.streams.drift.monitoring_start import monitoring_began
from driftloop.streams.drift.observer import DetectorStateStore
from driftloop.streams.sink import ClickHouseSink
from tests.infra.test_sql_engines import migrated_chdb
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration

KINDS = ("data", "performance")


def alert(model: str, alert_id: str, kind: str, *, event_ts: float, detected_at: float) -> Alert:
    return dataclasses.replace(
        Alert.example(), alert_id=alert_id, model=model, kind=kind, event_ts=event_ts, detected_at=detected_at
    )


def record(client: Any, alerts: list[Alert]) -> None:
    client.execute(f"INSERT INTO drift_alerts ({', '.join(ALERT_COLUMNS)}) VALUES", [a.to_row() for a in alerts])


def passes(tmp_path: Path, client: Any, detection: Alert) -> bool:
    """Whether a gate that has just read ``detection``'s model's memory (a worker's first) lets it through."""
    gate = AlertGate(SpecCatalog(tmp_path))  # no spec: the defaults, a cooldown of 900 s per kind
    gate.remember(detection.model, recorded_alerts(client, detection.model))
    passed, _ = gate.decide([detection])
    return passed == [detection]


def test_a_model_started_over_remembers_only_the_alerts_detected_since(
    stack: PrivateStack, clickhouse: Any, tmp_path: Path
) -> None:
    model, now = f"gate-{uuid.uuid4().hex[:8]}", time.time()
    record(clickhouse, [alert(model, f"old-{k}", k, event_ts=now - 120, detected_at=now - 60) for k in KINDS])
    drift = alert(model, "new", "performance", event_ts=now + 60, detected_at=now + 60)
    assert sorted(a.alert_id for a in recorded_alerts(clickhouse, model)) == ["old-data", "old-performance"]
    assert not passes(tmp_path, clickhouse, drift)  # within the cooldown of the alert 3 minutes before

    sink = ClickHouseSink(stack.settings.clickhouse)
    store = DetectorStateStore(stack.settings.clickhouse, sink)
    try:
        store.forget(model)  # a demo run begins
        began = monitoring_began(clickhouse, model)
        assert began >= int(now)
        assert recorded_alerts(clickhouse, model) == []
        assert passes(tmp_path, clickhouse, drift)

        # the new monitoring's own alerts count, and its start stays known once its states are saved and merged
        record(clickhouse, [alert(model, "since", "performance", event_ts=now + 30, detected_at=began + 1)])
        asyncio.run(store.save({(model, 0): {"events": 10}, (model, 3): {"events": 20}}))
        clickhouse.execute("OPTIMIZE TABLE detector_state FINAL")
        assert monitoring_began(clickhouse, model) == began
        assert [a.alert_id for a in recorded_alerts(clickhouse, model)] == ["since"]
        assert not passes(tmp_path, clickhouse, drift)
    finally:
        store.close()
        sink.close()


def test_the_memory_knows_what_each_alert_was_about_so_a_new_drift_passes_its_cooldown(
    clickhouse: Any, tmp_path: Path
) -> None:
    """Read back from ``drift_alerts``, an alert of ``amount`` holds back ``amount``'s other signals within its
    cooldown, and lets another feature's drift that began after it through."""
    model, now = f"gate-{uuid.uuid4().hex[:8]}", time.time()
    record(clickhouse, [alert(model, "amount", "data", event_ts=now - 120, detected_at=now - 60)])
    assert [a.signal for a in recorded_alerts(clickhouse, model)] == ["amount"]

    def later(signal: str) -> Alert:
        detection = alert(model, signal, "data", event_ts=now, detected_at=now)
        return dataclasses.replace(detection, signal=signal, change_point_ts=now - 10)

    assert not passes(tmp_path, clickhouse, later("amount:shape"))
    assert passes(tmp_path, clickhouse, later("age"))


def test_the_memory_counts_the_cooldown_of_an_alert_held_back_from_when_it_went_out(
    clickhouse: Any, tmp_path: Path
) -> None:
    """An alert the monitor held back for the policy records when it went out (its evidence's ``held_until_ts``):
    read back, its cooldown counts from then, not from its detection; and its change point is read with it."""
    model, now = f"gate-{uuid.uuid4().hex[:8]}", float(int(time.time()))
    held = dataclasses.replace(
        alert(model, "held", "data", event_ts=now - 1000, detected_at=now - 60),
        signal="tenure", change_point_ts=now - 1010, evidence={"held_until_ts": now - 300},
    )  # fmt: skip
    record(clickhouse, [held])
    (read,) = recorded_alerts(clickhouse, model)
    assert (read.event_ts, read.at, read.change_ts) == (now - 1000, now - 300, now - 1010)
    again = dataclasses.replace(
        alert(model, "again", "data", event_ts=now, detected_at=now), signal="tenure", change_point_ts=now - 10
    )
    assert not passes(tmp_path, clickhouse, again)  # 300 s after it went out, 1,000 s after its detection


def test_the_memory_knows_the_features_a_correlation_named_so_another_feature_s_drift_passes(
    clickhouse: Any, tmp_path: Path
) -> None:
    """A ``correlation`` alert read back names its features (its evidence's, the first of its keys named so): a
    drift of another feature that began after it passes its cooldown, another correlation of its pair begun
    before it is folded, and one that names other features begun after it passes."""
    model, now = f"gate-{uuid.uuid4().hex[:8]}", float(int(time.time()))
    pairs = [{"features": ["f8", "f9"], "categories": [None, None], "reference": 0.0, "recent": 0.8}]
    correlation = dataclasses.replace(
        alert(model, "pair", "data", event_ts=now - 300, detected_at=now - 60), signal="correlation",
        change_point_ts=now - 400, evidence={"features": ["f8", "f9", "f4", "f5"], "pairs": pairs},
    )  # fmt: skip
    record(clickhouse, [correlation])
    (read,) = recorded_alerts(clickhouse, model)
    assert read.named == ("f8", "f9", "f4", "f5")

    def later(signal: str, change_ts: float, named: list[str] | None = None) -> Alert:
        detection = alert(model, f"{signal}-{change_ts}", "data", event_ts=now, detected_at=now)
        evidence = {} if named is None else {"features": named}
        return dataclasses.replace(detection, signal=signal, change_point_ts=change_ts, evidence=evidence)

    assert passes(tmp_path, clickhouse, later("f0", now - 100))
    assert not passes(tmp_path, clickhouse, later("correlation", now - 410, ["f8", "f9"]))
    assert passes(tmp_path, clickhouse, later("correlation", now - 100, ["f2", "f3"]))


def test_the_gate_s_memory_queries_run_on_current_clickhouse(tmp_path: Path) -> None:
    """The same reads on current ClickHouse (chdb); the 18.16 server runs them in the test above."""
    with migrated_chdb(tmp_path) as (db, runner):
        assert monitoring_began(runner, "m") == 0
        old = alert("m", "old", "data", event_ts=1_790_000_000, detected_at=1_790_000_010)
        since = alert("m", "since", "data", event_ts=1_790_000_100, detected_at=1_790_000_100)
        since = dataclasses.replace(since, evidence={"held_until_ts": 1_790_000_150})  # held back by the monitor
        for a in (old, since):
            db.query(f"INSERT INTO drift_alerts ({', '.join(ALERT_COLUMNS)}) VALUES {_literal(a.to_row())}")
        assert sorted(a.alert_id for a in recorded_alerts(runner, "m")) == ["old", "since"]
        assert {a.at for a in recorded_alerts(runner, "m")} == {1_790_000_000, 1_790_000_150}
        pair = dataclasses.replace(
            alert("m", "pair", "data", event_ts=1_790_000_020, detected_at=1_790_000_020), signal="correlation",
            evidence={"features": ["f8", "f9"], "pairs": [{"features": ["f8", "f9"]}]},
        )  # fmt: skip
        db.query(f"INSERT INTO drift_alerts ({', '.join(ALERT_COLUMNS)}) VALUES {_literal(pair.to_row())}")
        assert {a.alert_id: a.named for a in recorded_alerts(runner, "m")}["pair"] == ("f8", "f9")
        db.query(
            "INSERT INTO detector_state (model, partition, state, events, saved_at, revision) "
            "VALUES ('m', -1, 'null', 0, 1790000050, 1)"
        )
        assert monitoring_began(runner, "m") == 1_790_000_050
        assert [a.alert_id for a in recorded_alerts(runner, "m")] == ["since"]


def _literal(row: tuple[Any, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in row) + ")"
