"""An alert from a detection: where it happened (the change point, from the model's ring of recent events), what
changed, how severe, and a message a person reads (the model's owner and runbook included)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from driftloop.infra.contract import Alert, finite_json
from driftloop.infra.spec import ModelSpec
from driftloop.streams.drift.multivariate import Seen
from driftloop.streams.drift.policy import correlation_severity, severity
from driftloop.streams.drift.signal_names import CORRELATION, JOINT, MEAN_SHIFT, VERSION_MARK
from driftloop.streams.drift.signals import EventRing, ModelState, SignalState

#: Events before a detector's window that tell whether its first rows came late (:func:`_change_point`).
CONTEXT = 1000


def make_alert(
    model: str,
    state: ModelState,
    signal: SignalState,
    evidence: Any,
    event_index: int,
    ring: EventRing,
    total: int,
    *,
    spec: ModelSpec,
    detected_at: float,
    seen: Seen | None = None,
) -> Alert:
    """The alert of ``signal``'s detection at the ``event_index``-th event (of ``total``, the last ones in
    ``ring``), whether or not the model's policy lets it out (``streams.drift.monitor`` asks it); ``seen``:
    what the ``correlation`` and ``mean_shift`` signals said moved when it was detected."""
    ts_ms, request_id = _at(ring, total, event_index)
    cp_ts_ms, cp_request = _change_point(ring, total, event_index, evidence.change_offset)
    version = signal.version if signal.version is not None else state.version
    reference_std = evidence.details.get("reference_std", math.nan)
    detail = {k: v for k, v in evidence.details.items() if k != "reference_std"}
    pairs = seen.pairs if signal.name == CORRELATION and seen is not None else []
    if pairs:  # a correlation's change says how bad it is; the score's shift in its deviations understates it
        level = correlation_severity(max(abs(p.recent - p.reference) for p in pairs))
    else:
        level = severity(signal.signal_type, evidence, reference_std)
    change = (
        f"mean {evidence.reference_mean:.4g} → {evidence.window_mean:.4g}"
        if not math.isnan(evidence.reference_mean)
        else f"statistic {evidence.statistic:.4g} > {evidence.threshold:.4g}"
    )
    message = (
        f"[{level}] {model} v{version}: {signal.kind} drift on {signal.label} "
        f"({signal.detector.name}, {change}, since request {cp_request})"
    )
    if signal.name == JOINT and state.joint is not None:
        detail["features"] = state.joint.contributions()
        message += f"; the features whose joint behaviour changed most: {', '.join(detail['features'])}"
    if pairs:  # a category's indicator is named by its feature, the category beside it
        # the features first: the alert gate reads them back from drift_alerts (visitParamExtractRaw: the first)
        detail["features"] = list(dict.fromkeys(c.feature for p in pairs for c in p.columns))
        detail["pairs"] = [
            {"features": [c.feature for c in p.columns], "categories": [c.category for c in p.columns],
             "reference": p.reference, "recent": p.recent}
            for p in pairs
        ]  # fmt: skip
        moves = ", ".join(f"{p.labels[0]} & {p.labels[1]} ({p.reference:+.2f} → {p.recent:+.2f})" for p in pairs)
        message += f"; the pairs of features whose correlation moved most: {moves}"
    if signal.name == MEAN_SHIFT and seen is not None:
        moved = seen.moved
        detail["shifts"] = [
            {"feature": m.column.feature, "category": m.column.category, "reference": m.reference,
             "recent": m.recent, "sigmas": m.sigmas}
            for m in moved
        ]  # fmt: skip
        detail["features"] = list(dict.fromkeys(m.column.feature for m in moved))
        means = ", ".join(f"{m.column.label} ({m.reference:.4g} → {m.recent:.4g}, {m.sigmas:+.2f}σ)" for m in moved)
        message += f"; the features whose means moved most: {means}"
    if signal.signal_type == "shape":
        detail["bins"] = _bins_moved(state.bins.get(signal.name, ()), evidence)
        moves = sorted(detail["bins"], key=lambda b: -abs(b["recent"] - b["reference"]))[:3]
        message += f"; the bins of its reference's deciles whose shares moved most: {', '.join(map(_bin_move, moves))}"
    estimate = _estimated_accuracy(state, signal, evidence)
    if estimate is not None:
        message += f"; estimated accuracy (CBPE, before labels) {estimate[0]:.3f} → {estimate[1]:.3f}"
    if spec.owner:
        message += f"; owner {spec.owner}"
    if spec.runbook:
        message += f"; runbook {spec.runbook}"
    return Alert(
        alert_id=Alert.make_id(model, signal.label, signal.detector.name, ts_ms, request_id),
        model=model,
        model_version=version,
        kind=signal.kind,
        signal=signal.label,  # type: ignore[arg-type]
        detector=signal.detector.name,
        severity=level,
        event_ts=ts_ms / 1000,
        request_id=request_id,  # type: ignore[arg-type]
        detected_at=detected_at,
        statistic=evidence.statistic,
        threshold=evidence.threshold,
        reference_size=evidence.reference_size,
        window_size=evidence.window_size,
        change_point_ts=cp_ts_ms / 1000,
        change_point_request_id=cp_request,
        evidence={
            "reference_mean": finite_json(evidence.reference_mean),
            "window_mean": finite_json(evidence.window_mean),
            "reference_std": finite_json(reference_std),
            "signal_type": signal.signal_type,
            "events_seen": signal.seen,
            **signal.detector.alert_level(signal.alpha),
            **detail,
            **({"estimated_accuracy_before": estimate[0], "estimated_accuracy_after": estimate[1]} if estimate else {}),
        },
        message=message,
        owner=spec.owner,
        runbook=spec.runbook,
    )


def _bins_moved(edges: tuple[float, ...], evidence: Any) -> list[dict[str, Any]]:
    """Each bin of a shape signal (``streams.drift.extract._shape``): its range (``low`` None: from the lowest
    value; ``high`` None: to the highest) and its shares of the reference and of the window.

    >>> evidence = type("E", (), {"details": {"shares_reference_vs_window": {"0": (0.5, 0.2), "1": (0.5, 0.8)}}})
    >>> first, second = _bins_moved((1.5,), evidence)
    >>> first
    {'low': None, 'high': 1.5, 'reference': 0.5, 'recent': 0.2}
    >>> second
    {'low': 1.5, 'high': None, 'reference': 0.5, 'recent': 0.8}
    """
    shares = evidence.details.get("shares_reference_vs_window", {})
    bounds = [None, *edges, None]
    moved = [(low, high, *shares.get(str(b), (0.0, 0.0))) for b, (low, high) in enumerate(itertools.pairwise(bounds))]
    return [{"low": low, "high": high, "reference": before, "recent": after} for low, high, before, after in moved]


def _bin_move(moved: dict[str, Any]) -> str:
    """``(-0.84, -0.52] 10.0 % → 4.1 %``."""
    low, high = moved["low"], moved["high"]
    where = f"≤ {high:.4g}" if low is None else f"> {low:.4g}" if high is None else f"({low:.4g}, {high:.4g}]"
    return f"{where} {100 * moved['reference']:.1f} % → {100 * moved['recent']:.1f} %"


def _estimated_accuracy(state: ModelState, signal: SignalState, evidence: Any) -> tuple[float, float] | None:
    """For a classifier's score signal (the probability of the predicted class), the accuracy the scores
    promise before and after the change (CBPE): None for any other signal, or scores that are no
    probabilities. It is only as good as the scores' calibration (the ``estimated_performance`` view shows it)."""
    if signal.label != "score" or signal.version is None:
        return None
    predicted = state.signals.get(f"prediction{VERSION_MARK}{signal.version}")
    before, after = evidence.reference_mean, evidence.window_mean
    if predicted is None or predicted.signal_type != "prediction" or not (0 <= before <= 1 and 0 <= after <= 1):
        return None
    return float(before), float(after)


def _at(ring: EventRing, total: int, event_index: int) -> tuple[int, str]:
    """(ts_ms, request_id) of the model's event number ``event_index`` (clipped to what the ring holds)."""
    return ring[_position(ring, total, event_index)]


def _position(ring: EventRing, total: int, event_index: int) -> int:
    """Where the model's event number ``event_index`` (of ``total``) is in ``ring``, clipped to what it holds."""
    return min(max(event_index - (total - len(ring)), 0), len(ring) - 1)


def _change_point(ring: EventRing, total: int, event_index: int, offset: int) -> tuple[int, str]:
    """(ts_ms, request_id) of the event where the change began: the first of the detector's window, ``offset``
    events before the alarm's, that came in time order.

    Labeled rows come in the order their labels do, not their predictions: rows from before the change whose
    labels came late can open the window, and would place the change seconds (or, with labels days apart,
    days) before it began, and a retraining would learn from rows of the old world. A row came late when an
    event before it (among the :data:`CONTEXT` before the window, or in it) is later in time: the change
    point is the window's first row that did not; in a window of late rows only, its first quartile in
    time. An estimate that errs later, never earlier. Events in time order (predictions) are unaffected.
    """
    first, last = _position(ring, total, event_index - offset), _position(ring, total, event_index)
    before, _ = ring.span(max(first - CONTEXT, 0), first)
    times, request_ids = ring.span(first, last + 1)
    # the latest time of the events before each row of the window
    latest_before = np.maximum.accumulate(np.concatenate([[before.max(initial=np.iinfo(np.int64).min)], times]))
    in_order = np.flatnonzero(times >= latest_before[:-1])
    if len(in_order):
        return int(times[in_order[0]]), request_ids[in_order[0]]
    quartile = int(np.argsort(times, kind="stable")[len(times) // 4])
    return int(times[quartile]), request_ids[quartile]
