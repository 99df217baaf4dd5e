"""Drift detectors on River's interface, with evidence and with state that survives a restart.

Every detector here has River's contract (``update(x) -> self``, a read-only ``drift_detected``) plus
``evidence()`` (what the alert says: statistic, threshold, window sizes, where the change began) and
``snapshot()`` / ``restore()``. State is saved as the last values seen, not pickled: a restored
detector replays them into a fresh instance, so the reference window comes back and old data does not
re-alert. Build detectors by name with :func:`build` (the names a model spec uses): River's, and
driftloop's own ``CUSUM`` (the default for numbers: a false-alarm rate in events, ``streams.drift.cusum``)
and ``CategoricalShift``.

>>> import random
>>> rng = random.Random(1)
>>> detector = build(DetectorConfig(name="ADWIN", params={"delta": 1e-5}))
>>> for i in range(4000):
...     if detector.update(rng.gauss(0 if i < 3000 else 1, 1)).drift_detected:
...         break
>>> evidence = detector.evidence()
>>> 3000 <= i < 3200, 3000 - 50 <= i - evidence.change_offset <= 3000 + 50, round(evidence.window_mean)
(True, True, 1)
"""

from __future__ import annotations

import importlib
import math
from collections import deque
from collections.abc import Sequence
from itertools import compress, count, repeat
from typing import Any, Protocol

import numpy as np

from driftloop.infra.spec import CATEGORY_DETECTORS, DetectorConfig, ModelSpec
from driftloop.streams.compat.river import mark_detected, start_after_detection, window_update
from driftloop.streams.drift.categorical import CategoricalShift
from driftloop.streams.drift.cusum import CUSUM
from driftloop.streams.drift.evidence import Evidence


class Detector(Protocol):
    """What the monitor needs from a detector."""

    name: str

    def update(self, x: Any) -> Detector: ...

    def update_many(self, values: Sequence[Any] | np.ndarray) -> list[tuple[int, Evidence]]:
        """Feed ``values`` in order (a list, or numbers as a float array); the positions where the detector
        fired, with its evidence then."""
        ...

    @property
    def drift_detected(self) -> bool: ...

    def evidence(self) -> Evidence: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def set_run_length(self, events: float) -> None:
        """Take the expected run length between false alarms (in events) the monitor gives this signal."""
        ...

    def alert_level(self, budget: float) -> dict[str, float]:
        """What an alert says of the detector's level (``budget``: the signal's share of the false-alarm rate)."""
        ...


class RiverDetector:
    """A River detector (PageHinkley, KSWIN, DDM, EDDM, HDDM_A/W, FHDDM) with evidence and replay state: the
    statistic is the mean of the recent values against the mean before them (ADWIN: :class:`AdwinDetector`)."""

    @classmethod
    def default_params(cls, *, alpha: float, reference: int) -> dict[str, Any]:
        """Parameters the monitor gives a new detector unless the spec sets them (River's defaults)."""
        return {}

    @classmethod
    def from_config(cls, config: DetectorConfig) -> RiverDetector:
        return cls(config)

    def __init__(self, config: DetectorConfig, *, replay: int = 2000) -> None:
        self.name = config.name
        self.config = config
        self._factory = _river_class(config.name)
        self._detector = self._factory(**config.params)
        self._recent: deque[float] = deque(maxlen=replay)
        self._replay = replay
        self._evidence = Evidence(math.nan, math.nan, 0, 0, 0)
        self.n = 0

    def update(self, x: float) -> RiverDetector:
        self.update_many((x,))
        return self

    def update_many(self, values: Sequence[float] | np.ndarray) -> list[tuple[int, Evidence]]:
        values = _as_list(values)
        detector = self._detector
        update = detector.update if self.name not in _COUNTS_SUCCESSES else lambda x: detector.update(1.0 - x)
        fired: list[tuple[int, Evidence]] = []
        done = 0
        for i, x in enumerate(values):
            update(x)
            if detector.drift_detected:
                self._recent.extend(values[done : i + 1])
                done = i + 1
                evidence = self._window_evidence()
                fired.append((i, evidence))
                self._evidence = evidence
        self._recent.extend(values[done:])
        self.n += len(values)
        return fired

    @property
    def drift_detected(self) -> bool:
        return bool(self._detector.drift_detected)

    def evidence(self) -> Evidence:
        return self._evidence

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n, "values": list(self._recent)}

    def set_run_length(self, events: float) -> None:
        """River's detectors have no run length: their confidence is the budget's."""

    def alert_level(self, budget: float) -> dict[str, float]:
        return {"alpha": budget}

    def restore(self, state: dict[str, Any]) -> None:
        self._detector = self._factory(**self.config.params)
        self._recent.clear()
        values = [float(v) for v in state.get("values", [])]
        self._replay_values(values)
        self.n = int(state.get("n", len(values)))

    def _replay_values(self, values: list[float]) -> None:
        """Feed a snapshot's values as new ones would be (no alerts)."""
        feed = (lambda x: 1.0 - x) if self.name in _COUNTS_SUCCESSES else float
        for value in values:
            self._detector.update(feed(value))
        self._recent.extend(values)

    def _window_evidence(self) -> Evidence:
        values = list(self._recent)
        half = max(len(values) // 2, 1)
        reference, window = values[:half], values[half:] or values[-1:]
        ref_mean, win_mean = _mean(reference), _mean(window)
        return Evidence(
            statistic=abs(win_mean - ref_mean),
            threshold=math.nan,
            reference_size=len(reference),
            window_size=len(window),
            change_offset=0,
            reference_mean=ref_mean,
            window_mean=win_mean,
            details={"reference_std": _std(reference)},
        )


class AdwinDetector(RiverDetector):
    """River's ADWIN, fed straight into its Rust window between detections, with exact evidence: the window
    it dropped (the reference) and the one it kept (since the change), their means, and the cut it had to beat.
    """

    @classmethod
    def default_params(cls, *, alpha: float, reference: int) -> dict[str, Any]:
        """ADWIN's confidence is the signal's share of the false-alarm budget."""
        return {"delta": alpha}

    def __init__(self, config: DetectorConfig, *, replay: int = 2000) -> None:
        super().__init__(config, replay=replay)
        self._width = 0  # the window's width after its last cut (or at the start of the current batch) ...
        self._since_cut = 0  # ... and the position in the batch it counts from
        self._zeros_held: int | None = 0  # zeros not yet fed, while nothing else came (None: since then)

    def update_many(self, values: Sequence[float] | np.ndarray) -> list[tuple[int, Evidence]]:
        """ADWIN's own update, run by C and Rust between detections: River's ``ADWIN.update`` is a
        Python method around the Rust window (reset after a detection, then one ``_helper.update``);
        here the window is fed straight from ``map`` until it reports a change, which is where the
        Python work of a detection (its evidence) happens.

        Zeros that come before any other value are held back and fed when another value first comes:
        a window of zeros alone has no change to find (both sides' means are 0, and ADWIN's cut is
        positive), so the detections are the same. The null rate of a feature never sent as null is
        such a signal: a third of a model's signals cost nothing until the first null.
        """
        values = _as_list(values)
        detector = self._detector
        if self._zeros_held is not None:
            if values and values[0] == 0.0 and values.count(0.0) == len(values):
                self._zeros_held += len(values)
                self._recent.extend(values[-self._replay :])
                self._width += len(values)
                self.n += len(values)
                return []
            deque(map(window_update(detector), repeat(0.0, self._zeros_held)), maxlen=0)
            self._zeros_held = None
        fired: list[tuple[int, Evidence]] = []
        start = 0
        while start < len(values):
            start_after_detection(detector)
            hits = compress(count(start), map(window_update(detector), values[start:]))
            i = next(hits, -1)
            if i < 0:
                break
            mark_detected(detector)
            self._recent.extend(values[start : i + 1])
            # ADWIN's width grows by one an update between cuts: the width before this one follows
            width_before = self._width + (i + 1 - self._since_cut) - 1
            evidence = self._adwin_evidence(width_before)
            fired.append((i, evidence))
            self._evidence = evidence
            self._width, self._since_cut = int(detector.width), i + 1
            start = i + 1
        self._recent.extend(values[start:])
        self._width += len(values) - self._since_cut
        self._since_cut = 0
        self.n += len(values)
        return fired

    def restore(self, state: dict[str, Any]) -> None:
        self._width = self._since_cut = 0
        self._zeros_held = 0
        super().restore(state)

    def _replay_values(self, values: list[float]) -> None:
        self.update_many(values)  # the replayed values feed the window as new ones would (no alerts)

    def _adwin_evidence(self, width_before: int) -> Evidence:
        """ADWIN cuts its window at bucket boundaries; the change point is refined within the values kept."""
        width_before += 1
        kept = int(self._detector.width)
        values = np.asarray(self._recent, dtype=float)
        search = values[-min(len(values), 4 * kept + 64) :]
        offset = _split_offset(search)
        reference, window = values[: len(values) - offset], values[len(values) - offset :]
        variance = float(np.var(values[-width_before:])) if width_before > 1 else 0.0
        delta = float(self.config.params.get("delta", 0.002))
        n0, n1 = max(width_before - offset, 1), max(offset, 1)
        m = 1.0 / (1.0 / n0 + 1.0 / n1)
        log_term = math.log(2.0 * math.log(max(width_before, 2)) / delta)
        cut = math.sqrt(2.0 / m * variance * log_term) + 2.0 / (3.0 * m) * log_term
        return Evidence(
            statistic=abs(float(window.mean()) - float(reference.mean())),
            threshold=cut,
            reference_size=n0,
            window_size=n1,
            change_offset=offset,
            reference_mean=float(reference.mean()),
            window_mean=float(window.mean()),
            details={"reference_std": _std(reference[-2000:].tolist()), "adwin_width_kept": kept},
        )


def _split_offset(values: np.ndarray) -> int:
    """Where a mean shift most likely began: the split maximising the two-sample z statistic (from the end)."""
    n = len(values)
    if n < 4:
        return max(n // 2, 1)
    cumulative = np.cumsum(values)
    k = np.arange(1, n)  # split after k values
    before = cumulative[:-1] / k
    after = (cumulative[-1] - cumulative[:-1]) / (n - k)
    score = np.abs(after - before) * np.sqrt(k * (n - k) / n)
    return int(n - (int(np.argmax(score)) + 1))


def _mean(values: list[float]) -> float:
    """The mean, also of values whose sum is past the largest float (1e308 and 1e308: 1e308, not infinity)."""
    mean = sum(values) / len(values)
    if math.isinf(mean) and all(map(math.isfinite, values)):
        mean = sum(v / len(values) for v in values)
    return mean


def _std(values: list[float]) -> float:
    """The sample standard deviation, also of values whose squared deviations are past the largest float (Python
    raises on those): the deviations are scaled down by the largest; infinite where a deviation is itself past it.

    >>> _std([1.0, 3.0]), _std([1e200, 3e200]) / 1e200, _std([-1e308, 1e308]), _std([-1.7e308, 1.7e308, 1.7e308])
    (1.4142135623730951, 1.4142135623730951, 1.4142135623730951e+308, inf)
    """
    if len(values) < 2:
        return math.nan
    mean = _mean(values)
    try:
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    except OverflowError:
        scale = max(abs(v - mean) for v in values)
        if math.isinf(scale):
            return math.inf
        return scale * math.sqrt(sum(((v - mean) / scale) ** 2 for v in values) / (len(values) - 1))


#: River's detectors by the name a spec gives (module, class): imported the first time a spec names one
#: (``river.drift`` loads all of River's detectors and scipy.stats, a second of the detection process's
#: start, and the default detectors are driftloop's own).
_RIVER: dict[str, tuple[str, str]] = {
    "ADWIN": ("river.drift", "ADWIN"),
    "PageHinkley": ("river.drift", "PageHinkley"),
    "KSWIN": ("river.drift", "KSWIN"),
    "DDM": ("river.drift.binary", "DDM"),
    "EDDM": ("river.drift.binary", "EDDM"),
    "HDDM_A": ("river.drift.binary", "HDDMA"),
    "HDDM_W": ("river.drift.binary", "HDDMW"),
    "FHDDM": ("river.drift.binary", "FHDDM"),
}
CATEGORICAL = {"CategoricalShift": CategoricalShift}
#: driftloop's own detectors (they keep their state themselves), by name.
OWN: dict[str, Any] = {"CUSUM": CUSUM, **CATEGORICAL}
DETECTORS = frozenset(_RIVER) | frozenset(OWN)
#: River's FHDDM counts correct predictions (1: correct): it is fed 1 - mistake.
_COUNTS_SUCCESSES = frozenset({"FHDDM"})


def _river_class(name: str) -> Any:
    """River's class for the detector ``name`` (its module imported now, if it was not)."""
    module, attribute = _RIVER[name]
    return getattr(importlib.import_module(module), attribute)


def _as_list(values: Sequence[float] | np.ndarray) -> list[float]:
    """Values as a list: River's detectors take one Python float at a time."""
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


#: Each detector's class, by name: it owns its defaults (``default_params``), how it takes a run length and
#: what its alerts say of its level.
KINDS: dict[str, Any] = {**dict.fromkeys(_RIVER, RiverDetector), "ADWIN": AdwinDetector, **OWN}


def build(config: DetectorConfig, *, alpha: float | None = None, reference: int = 0) -> Detector:
    """A fresh detector from its configuration (``name`` and its class's keyword arguments). With ``alpha``
    (the signal's share of the false-alarm budget) and ``reference`` (values to learn from), the class's own
    defaults fill the parameters the configuration leaves out."""
    kind = KINDS[config.name]
    if alpha is not None:
        params = {**kind.default_params(alpha=alpha, reference=reference), **config.params}
        config = config.model_copy(update={"params": params})
    return kind.from_config(config)  # type: ignore[no-any-return]


def check_detectors(spec: ModelSpec, *, reference: int = 2000) -> None:
    """Build every detector ``spec`` configures and feed it a value of its kind: a :class:`ValueError` naming the
    field and what the detector's class said, for parameters it refuses (an unknown name, an alpha past 1, a
    text where a number goes). River's classes check their parameters only when built or first fed, after the
    spec was read: without this, a model's every batch raised in detection."""
    monitoring = spec.monitoring
    configured = [(f"monitoring.detectors.{kind}", config) for kind, config in monitoring.detectors.items()]
    configured += [(f"monitoring.signals.{name}.detector", o.detector) for name, o in monitoring.signals.items()]
    for field, config in configured:
        if config is None:
            continue
        samples: list[Any] = ["a", "b"] if config.name in CATEGORY_DETECTORS else [0.0, 1.0]
        try:  # past River's first checks (PageHinkley compares its threshold after 30 values)
            build(config, alpha=monitoring.false_alarm_budget, reference=reference).update_many(samples * 100)
        except Exception as exc:  # whatever the class raises on a parameter it refuses
            params = ", ".join(f"{k}={v!r}" for k, v in config.params.items())
            raise ValueError(f"{field}: {config.name}({params}) cannot run: {exc}") from None
