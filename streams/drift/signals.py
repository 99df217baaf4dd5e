"""A model's monitored signals and their state: what the monitor keeps per model and per signal.

Outputs (prediction, score, error) are watched per serving version (``score@v3``); features across versions.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from driftloop.infra.contract import Alert
from driftloop.infra.spec import CATEGORY_SIGNALS, ModelSpec
from driftloop.streams.drift.detectors import Detector
from driftloop.streams.drift.joint import JointDrift
from driftloop.streams.drift.multivariate import MultivariateSignals
from driftloop.streams.drift.policy import AlertPolicy, Confirmation
from driftloop.streams.drift.signal_names import VERSION_MARK, output_version

VERSIONS_WATCHED = 3  # the output signals of this many most recent versions are kept
RING = 20_000  # recent events per model (at least), to place change points
JOINT_REFERENCE = 2000  # events the joint and multivariate signals' references are learned from (at least the warm-up)
_KIND = {
    "numeric": "data",
    "categorical": "data",
    "missing": "data",
    "outliers": "data",
    "shape": "data",
    "correlation": "data",
    "mean_shift": "data",
    "score": "prediction",
    "prediction": "prediction",
    "error": "performance",
}


@dataclass
class SignalState:
    """One monitored signal of a model: its detector and what it has seen."""

    name: str
    signal_type: str
    detector: Detector
    alpha: float  # a detector without a run length (River's): its confidence and its confirmation's level
    fixed: set[str] = field(default_factory=set)  # the rate parameters the spec set itself (kept as they are)
    seen: int = 0
    pending: Confirmation | None = None
    last_mean: float = math.nan
    drifts: int = 0
    relearnt: int = 0  # times told to learn its reference again (its detections of that batch made since: dropped)

    @property
    def kind(self) -> str:
        """``data``, ``prediction`` or ``performance``: a shape is the data's, or an output's (its version's)."""
        return "prediction" if self.signal_type == "shape" and self.version is not None else _KIND[self.signal_type]

    @property
    def label(self) -> str:
        """The signal's name in alerts: ``score`` for ``score@v3``."""
        return self.name if self.version is None else self.name.partition(VERSION_MARK)[0]

    @property
    def version(self) -> int | None:
        """The model version whose outputs this signal watches (None: a feature, watched across versions)."""
        return output_version(self.name)


class EventRing:
    """A model's last ``capacity`` events at least (their times and request ids), to place an alert's change
    point: kept as the batches' own arrays and lists, a part a batch, and the oldest part dropped once the
    others hold ``capacity``. (A deque of an event's pair cost the detection process half a microsecond an
    event to fill; an alert reads two.)

    >>> ring = EventRing(capacity=3)
    >>> ring.extend(np.array([10, 20]), ["a", "b"]); ring.extend(np.array([30, 40]), ["c", "d"])
    >>> len(ring), ring[0], ring[-1]
    (4, (10, 'a'), (40, 'd'))
    >>> ring.extend(np.array([50]), ["e"]); len(ring), ring[0]
    (3, (30, 'c'))
    """

    def __init__(self, capacity: int = RING) -> None:
        self.capacity = capacity
        self._parts: deque[tuple[np.ndarray | Sequence[int], Sequence[str]]] = deque()
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def extend(self, ts_ms: np.ndarray | Sequence[int], request_ids: Sequence[str]) -> None:
        """Events after those held: their times (epoch ms) and request ids, kept as given (not copied)."""
        if len(ts_ms) != len(request_ids):
            raise ValueError(f"{len(ts_ms)} times for {len(request_ids)} request ids")
        if not len(ts_ms):
            return
        self._parts.append((ts_ms, request_ids))
        self._held += len(ts_ms)
        while self._held - len(self._parts[0][0]) >= self.capacity:
            self._held -= len(self._parts.popleft()[0])

    def span(self, start: int, stop: int) -> tuple[np.ndarray, list[str]]:
        """The times (epoch ms) and request ids of the events held at positions ``start`` to ``stop`` (0: the
        oldest held).

        >>> ring = EventRing(); ring.extend(np.array([10, 20]), ["a", "b"]); ring.extend([30, 40], ["c", "d"])
        >>> ring.span(1, 3)
        (array([20, 30]), ['b', 'c'])
        """
        times: list[np.ndarray] = []
        ids: list[str] = []
        offset = 0
        for ts_ms, request_ids in self._parts:
            lo, hi = max(start - offset, 0), min(stop - offset, len(ts_ms))
            if lo < hi:
                times.append(np.asarray(ts_ms[lo:hi], dtype=np.int64))
                ids += request_ids[lo:hi]
            offset += len(ts_ms)
        return (np.concatenate(times) if times else np.empty(0, dtype=np.int64)), ids

    def __getitem__(self, position: int) -> tuple[int, str]:
        """(ts_ms, request_id) of the ``position``-th event held (negative: from the newest)."""
        if not -self._held <= position < self._held:
            raise IndexError(f"event {position} of a ring holding {self._held}")
        position %= self._held
        for ts_ms, request_ids in self._parts:  # a part a batch: a few, and an alert reads two events
            if position < len(ts_ms):
                return int(ts_ms[position]), request_ids[position]
            position -= len(ts_ms)
        raise AssertionError("the parts hold fewer events than counted")


class HeldAlert(NamedTuple):
    """A mean shift's alert that one ``feature`` seems to carry, held for that feature's own alert until the model
    has seen ``release_at`` events (``streams.drift.monitor``)."""

    alert: Alert
    feature: str
    release_at: int


@dataclass
class ModelState:
    """A model's signals, policy, and recent events (for change points)."""

    spec: ModelSpec
    policy: AlertPolicy
    signals: dict[str, SignalState] = field(default_factory=dict)
    features: set[str] = field(default_factory=set)
    version: int = 0
    events: int = 0
    labeled: int = 0
    ring: EventRing = field(default_factory=EventRing)
    labeled_ring: EventRing = field(default_factory=EventRing)
    expected_signals: int = 0
    centres: dict[str, list[float]] = field(default_factory=dict)  # feature -> [sum, count] over the warm-up
    far: dict[str, tuple[float, float]] = field(default_factory=dict)  # feature -> where its outliers begin
    bins: dict[str, tuple[float, ...]] = field(default_factory=dict)  # shape signal -> its bins' edges
    # a shape signal's values its bins are taken from, where its values' detector's reference has no deciles (one
    # restored from a state saved before the shape signal); not saved: a restart gathers them again
    shape_reference: dict[str, list[float]] = field(default_factory=dict)
    type_changes: int = 0  # texts of numeric features, counted as missing (streams.drift.extract._one_type_each)
    unwatched: set[str] = field(default_factory=set)  # feature names beyond monitoring.max_features
    joint: JointDrift | None = None  # how the numeric features move together (the ``joint`` signal)
    # how pairs of features vary together (``correlation``), and their means (``mean_shift``)
    multivariate: MultivariateSignals | None = None
    events_per_s: float = 0.0  # the model's event rate over its warm-up, when its run length is in hours
    refused_spec: ModelSpec | None = None  # an edit of the spec whose detectors cannot run: not taken
    held_shift: HeldAlert | None = None  # a mean shift's alert waiting for one feature's own
    reported: set[str] = field(default_factory=set)  # what its features' alerts were about (alert_feature)
    # alerts of drifts of their own that the policy holds back for now (cooldown, hourly limit), by signal
    deferred: dict[str, Alert] = field(default_factory=dict)
    # the clock's time when its last predictions and labeled rows came (0: none since it started or was restored):
    # a quiet model's event time goes on with the clock for its held alerts (DriftMonitor.release_quiet)
    predictions_came: float = 0.0
    labels_came: float = 0.0


#: The fewest values a signal's reference is learnt from, whatever the warm-up.
MIN_REFERENCE = 200
#: Detector parameters that set its false-alarm rate: the monitor sets them from the model's run length
#: unless the spec did.
RATE_PARAMS = frozenset({"run_length", "alpha"})


def set_run_length(signal: SignalState, events: float) -> None:
    """Give ``signal``'s detector its share of the model's run length (``events``: the model's run length
    times its number of signals, the rates of the signals adding up to the model's), unless the spec fixed
    its rate; each detector takes it its own way (``set_run_length``)."""
    if not signal.fixed:
        signal.detector.set_run_length(events)


#: Signals a numeric feature has: its values, spread, outliers, shape and null rate (the share of the model's
#: false alarms each takes: ``streams.drift.monitor``).
PER_FEATURE = 5


def forget_old_versions(state: ModelState, version: int) -> None:
    """Keep the output signals of the ``VERSIONS_WATCHED`` most recent versions (``version`` among them)."""
    of = {name: output_version(name) for name in state.signals}
    keep = set(sorted({v for v in of.values() if v is not None} | {version})[-VERSIONS_WATCHED:])
    for name, v in of.items():
        if v is not None and v not in keep:
            del state.signals[name]
    for name in [n for n in state.bins if (v := output_version(n)) is not None and v not in keep]:
        del state.bins[name]  # an output's shape's bins


def family(signal_type: str) -> str:
    """Signal types whose detectors take the same values: numbers, or categories."""
    return "categories" if signal_type in CATEGORY_SIGNALS else "numbers"
