"""The alert gate: the detections of every partition become one alert per drift.

Detection runs per Kafka partition (``streams.drift.observer``): a model whose events are spread over several
partitions is watched on each, possibly by several workers, and one drift is detected on each of them. Every
detection goes to the detections topic, keyed by model, so that all of a model's detections reach one gate
(the worker that owns that partition of the topic). The gate applies the model's alert policy across them —
its cooldown per kind of drift and its hourly limit, in event time (``streams.drift.policy``) — lets the
first through and folds the rest into it (logged and counted, not recorded). What it lets through is
marked silenced where a silence covers it, published on the alerts topic (unless silenced), and recorded
in ``drift_alerts``.

The gate's memory is ``drift_alerts`` itself: the first detection of a model that a gate sees (after a start
or a rebalance) reads the model's alerts of the last hour of event time, and replays them into the policy.
A model whose monitoring was started over (``DetectorStateStore.forget``: each demo run does it) remembers
only the alerts detected since: the alerts of the monitoring before hold back none of the new one's.
A detection read again after a crash whose alert is recorded already is published again (at-least-once,
the same ``alert_id``) and not recorded twice.

>>> import dataclasses, tempfile
>>> from pathlib import Path
>>> gate = AlertGate(SpecCatalog(Path(tempfile.mkdtemp())))  # no specs: every model's defaults
>>> gate.remember("m", [])
>>> first = Alert.example()
>>> same_drift = dataclasses.replace(first, alert_id="b", request_id="r2", event_ts=first.event_ts + 2)
>>> hour = {"event_ts": first.event_ts + 3600, "change_point_ts": first.change_point_ts + 3600}
>>> later = dataclasses.replace(first, alert_id="c", **hour)
>>> passed, folded = gate.decide([dataclasses.replace(d, model="m") for d in (first, same_drift, later)])
>>> [a.alert_id for a in passed] == [first.alert_id, "c"], [a.alert_id for a in folded]
(True, ['b'])
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from driftloop.infra.contract import ALERT_COLUMNS, Alert
from driftloop.infra.spec import ModelSpec, SpecCatalog, SpecError
from driftloop.streams.batch import ColumnBatch, NoEvent
from driftloop.streams.drift.monitoring_start import monitoring_began
from driftloop.streams.drift.policy import NAMING, AlertPolicy, Detected, Verdict
from driftloop.streams.drift.signal_names import alert_feature
from driftloop.streams.drift.silences import Silence, mark_silenced

log = logging.getLogger("driftloop.alerts")

#: How far back in event time a gate reads a model's recorded alerts: the hourly limit's window (a cooldown
#: longer than it is taken from the model's latest alert, which is always read).
MEMORY_S = 3600.0
#: The alerts of the model's monitoring since it last started over (wall clock, as the start over's time).
_SINCE_BEGAN = "toUInt32(detected_at) >= %(began)s"


@dataclass(frozen=True, slots=True)
class RecordedAlert:
    """An alert in ``drift_alerts``, as the gate remembers it."""

    alert_id: str
    kind: str
    event_ts: float
    signal: str
    at: float  # when it went out: its evidence's ``held_until_ts`` where the monitor held it back, else event_ts
    change_ts: float
    named: tuple[str, ...] = ()  # the features a correlation's or a mean shift's alert names (its evidence's)


class AlertGate:
    """Decides which detections become alerts (see the module docstring); pure, apart from its memory."""

    def __init__(self, specs: SpecCatalog) -> None:
        self.specs = specs
        self._policies: dict[str, AlertPolicy] = {}
        self._recorded: dict[str, set[str]] = {}  # model -> ids of its alerts recorded (or let through)
        self.alerts_by_kind: Counter[str] = Counter()
        self.folded = 0

    def knows(self, model: str) -> bool:
        return model in self._policies

    def remember(self, model: str, recorded: Sequence[RecordedAlert]) -> None:
        """Start ``model``'s memory from its recorded alerts (oldest first)."""
        try:
            monitoring = self.specs.get(model).monitoring
        except SpecError:  # the monitor reported it; its detections pass on the defaults
            monitoring = ModelSpec(name=model).monitoring
        policy = AlertPolicy(monitoring)
        for alert in sorted(recorded, key=lambda a: a.at):
            feature = alert_feature(alert.kind, alert.signal)
            detected = Detected(alert.event_ts, feature, alert.signal, alert.change_ts, alert.named)
            policy.record(model, alert.kind, detected, at=alert.at)
        self._policies[model] = policy
        self._recorded[model] = {a.alert_id for a in recorded}

    def decide(self, detections: Sequence[Alert]) -> tuple[list[Alert], list[Alert]]:
        """(the detections that become alerts, those folded into an alert of the same drift), earliest
        first; every model must be remembered first."""
        passed: list[Alert] = []
        folded: list[Alert] = []
        for detection in sorted(detections, key=lambda d: (released_at(d), d.alert_id)):
            recorded = self._recorded[detection.model]
            if detection.alert_id in recorded:  # read again after a crash: published again, recorded once
                passed.append(detection)
            elif (
                self._policies[detection.model].judge(
                    detection.model, detection.kind, Detected.of(detection), now=released_at(detection)
                )
                is Verdict.PASS
            ):
                recorded.add(detection.alert_id)
                passed.append(detection)
            else:
                folded.append(detection)
        return passed, folded

    def forget(self) -> None:
        """Forget every model (their gate may move to another worker): the next detection reads them again."""
        self._policies.clear()
        self._recorded.clear()


def recorded_alerts(client: Any, model: str) -> list[RecordedAlert]:
    """``model``'s alerts in ``drift_alerts`` within ``MEMORY_S`` of event time before its latest one, of those
    detected since its monitoring last started over (``client``: a clickhouse-driver client)."""
    began = monitoring_began(client, model)
    latest = client.execute(
        f"SELECT max(event_ts_ms), count() FROM drift_alerts WHERE model = %(m)s AND {_SINCE_BEGAN}",
        {"m": model, "began": began},
    )
    if not latest or not latest[0][1]:
        return []
    rows = client.execute(
        "SELECT DISTINCT alert_id, toString(kind), event_ts_ms, signal, "
        "visitParamExtractFloat(evidence, 'held_until_ts'), toUInt32(change_point_ts), "
        "visitParamExtractRaw(evidence, 'features') FROM drift_alerts "
        f"WHERE model = %(m)s AND event_ts_ms >= %(since)s AND {_SINCE_BEGAN}",
        {"m": model, "since": int(latest[0][0]) - int(MEMORY_S * 1000), "began": began},
    )
    return [
        RecordedAlert(
            alert_id, kind, ts_ms / 1000, signal, max(ts_ms / 1000, held_until), change_ts, _named(signal, features)
        )
        for alert_id, kind, ts_ms, signal, held_until, change_ts, features in rows
    ]


def _named(signal: str, features: str) -> tuple[str, ...]:
    """The features a recorded alert of ``signal`` names (``features``: its evidence's, as JSON text)."""
    if signal not in NAMING or not features:
        return ()
    try:
        named = json.loads(features)
    except ValueError:
        return ()
    return tuple(map(str, named)) if isinstance(named, list) else ()


def released_at(alert: Alert) -> float:
    """When ``alert`` went out, in event time: when it was detected, or, where the monitor held it back for its
    policy's cooldown or hourly limit, the event time it was let out at (its evidence's ``held_until_ts``)."""
    held_until = alert.evidence.get("held_until_ts")
    return alert.event_ts if held_until is None else max(alert.event_ts, float(held_until))


def read_detections(values: Sequence[bytes]) -> list[Alert]:
    """The detections in ``values`` (records of the detections topic); an unreadable one is logged and skipped."""
    detections = []
    for value in values:
        if type(value) is NoEvent:  # a transaction's marker (the worker never writes one, another client might)
            continue
        try:
            detections.append(Alert.from_json(json.loads(value)))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("skipped an unreadable detection record", extra={"fields": {"error": str(exc)}})
    return detections


@dataclass
class GateKeeper:
    """Runs the gate on the worker: reads its memory and the silences, publishes and records what passes.

    ``read`` runs a blocking ClickHouse read in a thread; ``publish`` sends alerts to the alerts topic;
    ``write`` records rows (``drift_alerts``) durably.
    """

    gate: AlertGate
    read: Callable[[Callable[[Any], Any]], Awaitable[Any]]
    publish: Callable[[Sequence[Alert]], Awaitable[None]]
    write: Callable[[ColumnBatch], Awaitable[None]]
    silences: Callable[[list[str], float], Awaitable[list[Silence]]]

    async def handle(self, detections: Sequence[Alert]) -> list[Alert]:
        """Let ``detections`` through the gate; returns the alerts (silenced ones included)."""
        if not detections:
            return []
        # a rebalance may make the gate forget while it reads: read until none is missing, then decide at once
        while missing := sorted({d.model for d in detections if not self.gate.knows(d.model)}):
            for model in missing:
                self.gate.remember(model, await self.read(lambda client, m=model: recorded_alerts(client, m)))
        passed, folded = self.gate.decide(detections)
        for detection in folded:
            self.gate.folded += 1
            log.info(
                "detection folded into an alert of the same drift",
                extra={"fields": {"alert_id": detection.alert_id, "model": detection.model, "kind": detection.kind}},
            )
        if not passed:
            return []
        now = time.time()
        alerts = mark_silenced(passed, await self.silences(sorted({a.model for a in passed}), now), now)
        told = [a for a in alerts if not a.silenced]  # a silenced alert is recorded, not published
        if told:
            await self.publish(told)
        rows = [a.to_row() for a in alerts]
        await self.write(
            ColumnBatch("drift_alerts", {name: [row[i] for row in rows] for i, name in enumerate(ALERT_COLUMNS)})
        )
        for alert in alerts:
            self.gate.alerts_by_kind[alert.kind] += 1
            log.warning(
                ("[silenced] " if alert.silenced else "") + alert.message,
                extra={"fields": {"alert_id": alert.alert_id, "partition": alert.evidence.get("partition")}},
            )
        return alerts
