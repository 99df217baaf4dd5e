"""A model's detection state as JSON-ready data, and back: what ``detector_state`` holds, so that a restarted
worker, or the next owner of a partition, resumes where the last one stopped.

Signals whose detector changed in the spec since the save start afresh; the rest resume with their
reference windows, counts and policy clocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftloop.infra.contract import Alert
from driftloop.streams.drift.joint import JointDrift
from driftloop.streams.drift.monitor import JOINT_REFERENCE, DriftMonitor, ModelState
from driftloop.streams.drift.multivariate import MultivariateSignals
from driftloop.streams.drift.policy import AlertPolicy
from driftloop.streams.drift.signal_names import CORRELATION, MEAN_SHIFT
from driftloop.streams.drift.signals import EventRing, HeldAlert


def snapshot_model(monitor: DriftMonitor, model: str) -> dict[str, Any]:
    """Everything needed to resume ``model``'s detection elsewhere, as JSON-ready data."""
    state = monitor.models[model]
    return {
        "version": state.version,
        "events": state.events,
        "labeled": state.labeled,
        "expected_signals": state.expected_signals,
        "events_per_s": state.events_per_s,
        "features": sorted(state.features),
        "centres": state.centres,
        "far": {name: list(bounds) for name, bounds in state.far.items()},
        "bins": {name: list(edges) for name, edges in state.bins.items()},
        "policy": state.policy.snapshot(),
        "reported": sorted(state.reported),
        "held_shift": None if (held := state.held_shift) is None else {**held._asdict(), "alert": held.alert.to_json()},
        "deferred": [alert.to_json() for alert in state.deferred.values()],
        # the last event of each ring: where the model's event time stood (a quiet model's held alerts go out
        # from there, DriftMonitor.release_quiet)
        "last_event": _last(state.ring),
        "last_labeled": _last(state.labeled_ring),
        "joint": state.joint.snapshot() if state.joint is not None else None,
        "multivariate": state.multivariate.snapshot() if state.multivariate is not None else None,
        "signals": {
            name: {
                "type": s.signal_type,
                "seen": s.seen,
                "drifts": s.drifts,
                "alpha": s.alpha,
                "detector": s.detector.name,
                "state": s.detector.snapshot(),
            }
            for name, s in state.signals.items()
        },
    }


def restore_model(monitor: DriftMonitor, model: str, data: dict[str, Any]) -> None:
    """Resume ``model`` from :func:`snapshot_model` data (signals whose detector changed start afresh). A spec
    the monitor cannot run is a :class:`~driftloop.infra.spec.SpecError`, before anything is restored (the
    state stays saved until the file is fixed)."""
    spec = monitor.checked_spec(model)
    state = ModelState(spec, AlertPolicy(spec.monitoring))
    state.version = int(data.get("version", 0))
    state.events = int(data.get("events", 0))
    state.labeled = int(data.get("labeled", 0))
    state.expected_signals = int(data.get("expected_signals", 0))
    state.events_per_s = float(data.get("events_per_s", 0.0))
    state.features = set(data.get("features", []))
    state.centres = {name: [float(a), float(b)] for name, (a, b) in data.get("centres", {}).items()}
    state.far = {name: (float(low), float(high)) for name, (low, high) in data.get("far", {}).items()}
    state.bins = {name: tuple(map(float, edges)) for name, edges in data.get("bins", {}).items()}
    state.policy.restore(data.get("policy", {}))
    state.reported = set(data.get("reported", []))
    if (held := data.get("held_shift")) is not None:
        state.held_shift = HeldAlert(Alert.from_json(held["alert"]), held["feature"], int(held["release_at"]))
    state.deferred = {alert.signal: alert for alert in map(Alert.from_json, data.get("deferred", []))}
    for ring, last in ((state.ring, data.get("last_event")), (state.labeled_ring, data.get("last_labeled"))):
        if last is not None:  # the ring's newest event is the model's last (its count is the state's)
            ring.extend(np.array([int(last[0])]), [str(last[1])])
    reference = max(spec.monitoring.warmup, JOINT_REFERENCE)
    if data.get("joint"):
        state.joint = JointDrift.restore(data["joint"], reference_size=reference)
    if data.get("multivariate"):  # else (gathering its reference, or saved before session 52) it learns one anew
        state.multivariate = MultivariateSignals.restore(data["multivariate"], reference_size=reference)
    monitor.models[model] = state
    for name, saved in data.get("signals", {}).items():
        if name in (CORRELATION, MEAN_SHIFT) and saved["type"] != name:
            continue  # saved before the signal: a feature named so, whose values are watched as feature:<name>
        signal = monitor._signal(state, name, saved["type"])  # the monitor's own way to make a signal
        if signal is None or signal.detector.name != saved["detector"]:
            continue
        signal.detector.restore(saved["state"])
        signal.seen, signal.drifts = int(saved["seen"]), int(saved["drifts"])


def _last(ring: EventRing) -> list[Any] | None:
    """A ring's newest event (its time in epoch ms, its request id), JSON-ready; None when empty."""
    if not len(ring):
        return None
    ts_ms, request_id = ring[-1]
    return [int(ts_ms), request_id]
