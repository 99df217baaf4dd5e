"""The drift monitor: turns prediction and labeled batches into detector updates, and detections into alerts.

Signals of a model, found from its events (no registration needed; a spec refines them):

- data drift: every numeric feature (its values), every categorical feature (its category frequencies),
  and every feature's null rate (1 when the event sent it as null or left it out);
- prediction drift: the ``score``, and the prediction (class frequencies, or values for regression);
- performance drift, on labeled rows: ``error`` (0/1 mistakes, or absolute error for regression).

Outputs (prediction, score, error) are watched per serving version (``score@v3``): a version that starts to
serve starts its own reference, so a deployment is not taken for a drift; its canary share warms it up before
it serves all traffic. Features are watched across versions: a deployment does not change them.

:meth:`DriftMonitor.process_predictions` / :meth:`process_labeled` are synchronous and pure (used by the
worker and by backtests alike); they return the alerts the policy let through.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.infra.contract import Alert
from driftloop.infra.spec import ModelSpec, SpecCatalog, SpecError
from driftloop.streams.batch import ColumnBatch, served_only
from driftloop.streams.drift.detectors import Detector, build
from driftloop.streams.drift.frame import FeaturesByEvent, ModelPredictions, PredictionFrame, SameFeatures
from driftloop.streams.drift.joint import JointDrift
from driftloop.streams.drift.policy import AlertPolicy, Confirmation, confirmation_size, severity

log = logging.getLogger("driftloop.drift")

RING = 20_000  # recent events per model, to place change points
#: A model's outputs (prediction, score, error) are watched per serving version, as ``score@v3``: a new
#: version starts its own reference, so a deployment is not a drift. Features are watched across versions.
VERSION_MARK = "@v"
VERSIONS_WATCHED = 3  # the output signals of this many most recent versions are kept
OUTPUTS = frozenset({"score", "prediction", "error"})
JOINT = "joint"  # the signal of how the numeric features move together
JOINT_REFERENCE = 2000  # events the joint signal's reference is learned from (at least the warm-up)
_KIND = {
    "numeric": "data",
    "categorical": "data",
    "missing": "data",
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

    @property
    def kind(self) -> str:
        return _KIND[self.signal_type]

    @property
    def label(self) -> str:
        """The signal's name in alerts: ``score`` for ``score@v3``."""
        return self.name if self.version is None else self.name.partition(VERSION_MARK)[0]

    @property
    def version(self) -> int | None:
        """The model version whose outputs this signal watches (None: a feature, watched across versions)."""
        return output_version(self.name)


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
    ring: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=RING))
    labeled_ring: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=RING))
    expected_signals: int = 0
    centres: dict[str, list[float]] = field(default_factory=dict)  # feature -> [sum, count] over the warm-up
    type_changes: int = 0  # values skipped because their feature was first seen as the other type
    unwatched: set[str] = field(default_factory=set)  # feature names beyond monitoring.max_features
    joint: JointDrift | None = None  # how the numeric features move together (the ``joint`` signal)
    events_per_s: float = 0.0  # the model's event rate over its warm-up, when its run length is in hours


class DriftMonitor:
    """Detectors for every model seen; see the module docstring."""

    def __init__(self, specs: SpecCatalog, *, clock: Any = time.time) -> None:
        self.specs = specs
        self.clock = clock
        self.models: dict[str, ModelState] = {}
        self._broken_specs: dict[str, str] = {}  # model -> the spec error last reported

    # --- entry points --------------------------------------------------------------------------------------

    def process_predictions(self, rows: ColumnBatch | PredictionFrame) -> list[Alert]:
        frame = rows if isinstance(rows, PredictionFrame) else PredictionFrame.from_columns(served_only(rows))
        alerts: list[Alert] = []
        # a run longer than half the ring would push its own events out before their alerts place them
        for part in (chunk for whole in frame.models for chunk in whole.chunks(RING // 2)):
            state = self._model(part.model, part.features.count)
            if state is None:
                continue
            base = state.events
            state.ring.extend(zip(part.ts_ms.tolist(), part.request_ids, strict=True))
            state.events += len(part)
            state.version = max(state.version, part.version)
            self._measure_rate(state)
            for signal, signal_type, positions, values in self._prediction_signals(state, part):
                alerts += self._feed(
                    part.model, state, signal, signal_type, positions, values, base, state.ring, state.events
                )
        return alerts

    def process_labeled(self, rows: ColumnBatch) -> list[Alert]:
        rows = served_only(rows)
        alerts: list[Alert] = []
        runs = []
        for model, whole in _by_model(rows["model"]).items():
            whole.sort(key=rows["ts_ms"].__getitem__)  # labels arrive in any order; errors are told in event time
            runs += [(model, whole[start : start + RING // 2]) for start in range(0, len(whole), RING // 2)]
        for model, index in runs:
            sent = ("num.name", "cat.name", "missing")
            state = self._model(model, sum(len(rows[name][index[0]]) for name in sent if name in rows.columns))
            if state is None:
                continue
            base = state.labeled
            state.labeled_ring.extend((rows["ts_ms"][i], rows["request_id"][i]) for i in index)
            state.labeled += len(index)
            versions = rows["model_version"] if "model_version" in rows.columns else [0] * len(rows)
            by_version: dict[int, list[int]] = defaultdict(list)
            for position, i in enumerate(index):
                by_version[int(versions[i])].append(position)
            for version, positions in sorted(by_version.items()):
                values = [float(rows["error"][index[p]]) for p in positions]
                name = f"error{VERSION_MARK}{version}"
                alerts += self._feed(
                    model, state, name, "error", positions, values, base, state.labeled_ring, state.labeled
                )
        return alerts

    def signal_states(self) -> Iterable[tuple[str, SignalState]]:
        for model, state in self.models.items():
            for signal in state.signals.values():
                yield model, signal

    # --- signals --------------------------------------------------------------------------------------------

    def _prediction_signals(
        self, state: ModelState, part: ModelPredictions
    ) -> list[tuple[str, str, list[int], list[Any]]]:
        spec = state.spec
        every = list(range(len(part)))
        if isinstance(part.features, SameFeatures):
            # the common case: one column per feature, and the watched features the events lack are absent
            # from every one of them (none of those is new)
            numeric, categorical = self._pivot(state, part.features, every)
            absent = state.features - set(numeric) - set(categorical)
            missing_rows: list[set[str]] = []
        else:
            numeric, categorical, missing_rows = self._rows_one_by_one(state, part.features)
            absent = None
        new = (set(numeric) | set(categorical) | set().union(*missing_rows)) - state.features
        if new:
            self._admit(state, new, numeric, categorical, missing_rows)
        signals: list[tuple[str, str, list[int], list[Any]]] = []
        signals += [(name, "numeric", p, v) for name, (p, v) in numeric.items()]
        if spec.monitoring.spread:
            signals += [
                (f"{name}:spread", "numeric", p, self._spread(state, name, v)) for name, (p, v) in numeric.items()
            ]
        signals += [(name, "categorical", p, v) for name, (p, v) in categorical.items()]
        if isinstance(part.features, SameFeatures) and spec.monitoring.enabled(JOINT):
            signals += self._joint_signal(state, part.features, numeric)
        for name in sorted(state.features):
            rate = [float(name in r) for r in missing_rows] if absent is None else [float(name in absent)] * len(part)
            signals.append((f"{name}:null_rate", "missing", every, rate))
        for version, rows in _by_version(part.versions):
            signals += self._output_signals(state, part, version, every if rows is None else rows.tolist())
        return signals

    @staticmethod
    def _joint_signal(
        state: ModelState, features: SameFeatures, numeric: dict[str, Any]
    ) -> list[tuple[str, str, list[int], list[Any]]]:
        """The ``joint`` signal: each event's PCA reconstruction error over the watched numeric features, once
        their reference is complete (``streams.drift.joint``)."""
        if state.joint is None:
            names = sorted(n for n in features.numeric_names if n in numeric)
            if len(names) < 2:
                return []
            state.joint = JointDrift(names, reference_size=max(state.spec.monitoring.warmup, JOINT_REFERENCE))
        column = {name: i for i, name in enumerate(features.numeric_names)}
        if not all(name in column for name in state.joint.names):
            return []  # events without every feature of the reference are not scored
        errors = state.joint.update(features.numeric[:, [column[name] for name in state.joint.names]])
        if errors is None:
            return []
        first = len(features.numeric) - len(errors)
        return [(JOINT, "numeric", list(range(first, len(features.numeric))), errors.tolist())]

    @staticmethod
    def _output_signals(
        state: ModelState, part: ModelPredictions, version: int, rows: list[int]
    ) -> list[tuple[str, str, list[int], list[Any]]]:
        """The score and prediction signals of the events ``version`` served (positions ``rows`` of ``part``)."""
        signals: list[tuple[str, str, list[int], list[Any]]] = []
        every = len(rows) == len(part)
        scores = part.score if every else part.score[rows]
        sent = ~np.isnan(scores)
        if sent.all():
            signals.append((f"score{VERSION_MARK}{version}", "score", rows, scores.tolist()))
        elif sent.any():
            scored = np.flatnonzero(sent)
            positions = scored.tolist() if every else [rows[i] for i in scored.tolist()]
            signals.append((f"score{VERSION_MARK}{version}", "score", positions, scores[scored].tolist()))
        numbers = part.prediction_num if every else part.prediction_num[rows]
        fractional = ~np.isnan(numbers) & ((numbers != np.trunc(numbers)) | np.isinf(numbers))
        name = f"prediction{VERSION_MARK}{version}"
        if state.spec.task == "regression" or fractional.all():
            signals.append((name, "score", rows, numbers.tolist()))
        else:
            signals.append((name, "prediction", rows, part.prediction if every else [part.prediction[i] for i in rows]))
        return signals

    @staticmethod
    def _pivot(state: ModelState, features: SameFeatures, every: list[int]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Signals of events that all sent the same features: a feature's column is its values."""
        numeric: dict[str, tuple[list[int], list[Any]]] = {}
        categorical: dict[str, tuple[list[int], list[Any]]] = {}
        for name, column in zip(features.numeric_names, features.numeric.T.tolist(), strict=True):
            if state.spec.features.get(name) == "categorical":
                categorical[name] = (every, [str(v) for v in column])
            else:
                numeric[name] = (every, column)
        for name, values in zip(features.categorical_names, features.categorical, strict=True):
            categorical[name] = (every, values)
        return numeric, categorical

    @staticmethod
    def _rows_one_by_one(
        state: ModelState, features: FeaturesByEvent
    ) -> tuple[dict[str, Any], dict[str, Any], list[set[str]]]:
        """Signals of events that sent different features (or nulls): event by event."""
        spec = state.spec
        numeric: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        categorical: dict[str, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
        missing_rows: list[set[str]] = []
        rows = zip(
            features.num_name, features.num_value, features.cat_name, features.cat_value, features.missing, strict=True
        )
        for pos, (num_names, num_values, cat_names, cat_values, missing) in enumerate(rows):
            for name, value in zip(num_names, num_values, strict=True):
                if spec.features.get(name) == "categorical":
                    entry = categorical[name]
                    entry[0].append(pos)
                    entry[1].append(str(value))
                else:
                    entry_n = numeric[name]
                    entry_n[0].append(pos)
                    entry_n[1].append(value)
            for name, value in zip(cat_names, cat_values, strict=True):
                entry = categorical[name]
                entry[0].append(pos)
                entry[1].append(value)
            missing_rows.append(set(missing) | (state.features - set(num_names) - set(cat_names)))
        return numeric, categorical, missing_rows

    @staticmethod
    def _admit(
        state: ModelState,
        new: set[str],
        numeric: dict[str, Any],
        categorical: dict[str, Any],
        missing_rows: list[set[str]],
    ) -> None:
        """Watch new feature names up to ``max_features``; the rest are dropped from this batch's signals."""
        room = state.spec.monitoring.max_features - len(state.features)
        admitted = sorted(new)[: max(room, 0)]
        state.features.update(admitted)
        rejected = new.difference(admitted)
        if not rejected:
            return
        for name in rejected:
            numeric.pop(name, None)
            categorical.pop(name, None)
        for row in missing_rows:
            row.difference_update(rejected)
        if not state.unwatched:
            log.warning(
                "too many feature names: new ones are counted, not watched (monitoring.max_features)",
                extra={"fields": {"model": state.spec.name, "max_features": state.spec.monitoring.max_features}},
            )
        if len(state.unwatched) < 100_000:
            state.unwatched.update(rejected)

    @staticmethod
    def _spread(state: ModelState, name: str, values: list[float]) -> list[float]:
        """|x - centre|, the centre being the mean of the feature's warm-up: its mean catches variance changes."""
        centre = state.centres.setdefault(name, [0.0, 0.0])
        warmup = max(state.spec.monitoring.warmup, 1)  # warmup 0: the centre is the first value
        if centre[1] < warmup:
            take = values[: int(warmup - centre[1])]
            centre[0] += sum(take)
            centre[1] += len(take)
        mean = centre[0] / centre[1]
        return np.abs(np.asarray(values, dtype=float) - mean).tolist()  # type: ignore[no-any-return]

    # --- detection ------------------------------------------------------------------------------------------

    def _model(self, model: str, features: int) -> ModelState | None:
        """The model's state (``features``: how many its first event sent, for a model seen first).

        None while the model's spec file is broken: that model is not monitored (the ERROR names the file and
        the field), every other model is; the file is read again at the model's next batch.
        """
        state = self.models.get(model)
        if state is None:
            try:
                spec = self.specs.get(model)
            except SpecError as exc:
                self._report_broken_spec(model, exc)
                return None
            self._broken_specs.pop(model, None)
            state = ModelState(spec, AlertPolicy(spec.monitoring))
            # the signals that share the model's false alarms: values, spread and null rate per feature, score,
            # prediction, error, joint
            state.expected_signals = max(3 * max(features, len(spec.features)) + 4, 1)
            self.models[model] = state
        return state

    def _report_broken_spec(self, model: str, error: SpecError) -> None:
        if self._broken_specs.get(model) != str(error):  # once per error, not once per batch
            self._broken_specs[model] = str(error)
            log.error(
                "model spec is broken: this model's events land but are not monitored until the file is fixed",
                extra={"fields": {"model": model, "error": str(error)}},
            )

    def _signal(self, state: ModelState, name: str, signal_type: str) -> SignalState | None:
        signal = state.signals.get(name)
        if signal is not None and _family(signal.signal_type) != _family(signal_type):
            # a feature sent as a number and later as text (or back): its detector keeps the first type
            state.type_changes += 1
            if state.type_changes == 1 or state.type_changes % 10_000 == 0:
                log.warning(
                    "a feature changed type; its values of the new type are not monitored",
                    extra={
                        "fields": {
                            "signal": name,
                            "first_seen_as": signal.signal_type,
                            "now": signal_type,
                            "skipped_batches": state.type_changes,
                        }
                    },
                )
            return None
        if signal is None:
            version = output_version(name)
            base = name if version is None else name.partition(VERSION_MARK)[0]
            feature = base.removesuffix(":null_rate").removesuffix(":spread")
            if not state.spec.monitoring.enabled(base) or not state.spec.monitoring.enabled(feature):
                return None
            if version is not None:
                _forget_old_versions(state, version)
            signals = max(state.expected_signals, len(state.signals) + 1)
            alpha = state.policy.signal_alpha(signals)
            config = state.spec.monitoring.detector_for(signal_type, feature)
            detector = build(config, alpha=alpha, reference=max(state.spec.monitoring.warmup, MIN_REFERENCE))
            signal = SignalState(name, signal_type, detector, alpha, fixed=set(config.params) & RATE_PARAMS)
            _set_run_length(signal, self._run_length(state) * signals)
            state.signals[name] = signal
        return signal

    @staticmethod
    def _run_length(state: ModelState) -> float:
        """The model's expected run length between false alarms, in events (from hours at its event rate
        once the warm-up has measured the rate)."""
        monitoring = state.spec.monitoring
        if monitoring.expected_run_length_hours is not None and state.events_per_s:
            return max(monitoring.expected_run_length_hours * 3600 * state.events_per_s, 2.0)
        return monitoring.expected_run_length

    def _measure_rate(self, state: ModelState) -> None:
        """Once the warm-up is past, a model whose run length is in hours gets its event rate measured
        (event time, over the events of the ring) and its signals' run lengths set from it."""
        monitoring = state.spec.monitoring
        if monitoring.expected_run_length_hours is None or state.events_per_s or state.events < monitoring.warmup:
            return
        span_s = (state.ring[-1][0] - state.ring[0][0]) / 1000 if len(state.ring) > 1 else 0.0
        if span_s <= 0:
            return
        state.events_per_s = (len(state.ring) - 1) / span_s
        signals = max(state.expected_signals, len(state.signals))
        for signal in state.signals.values():
            _set_run_length(signal, self._run_length(state) * signals)

    def _feed(
        self,
        model: str,
        state: ModelState,
        name: str,
        signal_type: str,
        positions: list[int],
        values: list[Any],
        base: int,
        ring: deque[tuple[int, str]],
        total: int,
    ) -> list[Alert]:
        signal = self._signal(state, name, signal_type)
        if signal is None or not values:
            return []
        alerts: list[Alert] = []
        numeric = signal_type not in {"categorical", "prediction"}
        calibrated = getattr(signal.detector, "calibrated", False)  # its run length bounds its false alarms
        needed = state.spec.monitoring.confirm_events if numeric and not calibrated else 0
        seen_before = signal.seen
        fired = signal.detector.update_many(values)
        signal.seen += len(values)
        signal.drifts += len(fired)

        def confirm(pending: Confirmation, start: int) -> None:
            """Give ``pending`` the values from position ``start`` on, and settle it once it can be."""
            pending.add_many(values[start:])
            verdict = pending.verdict(signal.alpha)
            if verdict is not None:
                signal.pending = None
                if verdict:
                    evidence, at = pending.evidence, pending.event_index
                    if pending.confirmed_at > pending.needed:  # a later block: the change starts there
                        at += pending.confirmed_at
                        evidence = dataclasses.replace(evidence, change_offset=pending.needed)
                    alert = self._alert(model, state, signal, evidence, at, ring, total)
                    alerts.extend([alert] if alert else [])

        if signal.pending is not None:
            confirm(signal.pending, 0)
        for position, evidence in fired:
            if signal.pending is not None or not state.policy.admissible(evidence, seen_before + position + 1):
                continue  # a detection inside a confirmation window adds nothing
            event_index = base + positions[position]
            if needed:
                reference_std = evidence.details.get("reference_std", math.nan)
                std = 1.0 if math.isnan(reference_std) else reference_std
                shift = evidence.window_mean - evidence.reference_mean
                signal.pending = Confirmation(
                    evidence,
                    evidence.reference_mean,
                    std,
                    confirmation_size(needed, signal.alpha, std, shift),
                    event_index,
                )
                confirm(signal.pending, position + 1)
            else:
                alert = self._alert(model, state, signal, evidence, event_index, ring, total)
                alerts.extend([alert] if alert else [])
        if numeric:
            signal.last_mean = sum(values) / len(values)
        return alerts

    def _alert(
        self,
        model: str,
        state: ModelState,
        signal: SignalState,
        evidence: Any,
        event_index: int,
        ring: deque[tuple[int, str]],
        total: int,
    ) -> Alert | None:
        ts_ms, request_id = _at(ring, total, event_index)
        if not state.policy.allow(model, signal.kind, ts_ms / 1000):
            return None
        cp_ts_ms, cp_request = _at(ring, total, event_index - evidence.change_offset)
        version = signal.version if signal.version is not None else state.version
        reference_std = evidence.details.get("reference_std", math.nan)
        level = severity(signal.signal_type, evidence, reference_std)
        detail = {k: v for k, v in evidence.details.items() if k != "reference_std"}
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
        estimate = _estimated_accuracy(state, signal, evidence)
        if estimate is not None:
            message += f"; estimated accuracy (CBPE, before labels) {estimate[0]:.3f} → {estimate[1]:.3f}"
        spec = self.specs.get(model)  # read already: the model's detectors were built from it
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
            detected_at=self.clock(),
            statistic=evidence.statistic,
            threshold=evidence.threshold,
            reference_size=evidence.reference_size,
            window_size=evidence.window_size,
            change_point_ts=cp_ts_ms / 1000,
            change_point_request_id=cp_request,
            evidence={
                "reference_mean": _finite(evidence.reference_mean),
                "window_mean": _finite(evidence.window_mean),
                "reference_std": _finite(reference_std),
                "signal_type": signal.signal_type,
                "events_seen": signal.seen,
                **signal.detector.alert_level(signal.alpha),
                **detail,
                **(
                    {"estimated_accuracy_before": estimate[0], "estimated_accuracy_after": estimate[1]}
                    if estimate
                    else {}
                ),
            },
            message=message,
            owner=spec.owner,
            runbook=spec.runbook,
        )


#: The fewest values a signal's reference is learnt from, whatever the warm-up.
MIN_REFERENCE = 200
#: Detector parameters that set its false-alarm rate: the monitor sets them from the model's run length
#: unless the spec did.
RATE_PARAMS = frozenset({"run_length", "alpha"})


def _set_run_length(signal: SignalState, events: float) -> None:
    """Give ``signal``'s detector its share of the model's run length (``events``: the model's run length
    times its number of signals, the rates of the signals adding up to the model's), unless the spec fixed
    its rate; each detector takes it its own way (``set_run_length``)."""
    if not signal.fixed:
        signal.detector.set_run_length(events)


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


def _by_version(versions: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
    """Each serving version's event positions (``None``: every event), versions in ascending order."""
    first = int(versions[0]) if len(versions) else 0
    if not len(versions) or (versions == first).all():
        return [(first, None)]
    return [(int(v), np.flatnonzero(versions == v)) for v in np.unique(versions)]


def output_version(name: str) -> int | None:
    """The version of an output signal's name (``score@v3`` → 3), None for any other signal.

    >>> output_version("score@v3"), output_version("error@v0"), output_version("amount@v3"), output_version("score")
    (3, 0, None, None)
    """
    base, mark, version = name.partition(VERSION_MARK)
    return int(version) if mark and base in OUTPUTS and version.isdigit() else None


def _forget_old_versions(state: ModelState, version: int) -> None:
    """Keep the output signals of the ``VERSIONS_WATCHED`` most recent versions (``version`` among them)."""
    of = {name: output_version(name) for name in state.signals}
    keep = set(sorted({v for v in of.values() if v is not None} | {version})[-VERSIONS_WATCHED:])
    for name, v in of.items():
        if v is not None and v not in keep:
            del state.signals[name]


def _by_model(models: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, model in enumerate(models):
        groups[model].append(i)
    return groups


def _family(signal_type: str) -> str:
    """Signal types whose detectors take the same values: numbers, or categories."""
    return "categories" if signal_type in {"categorical", "prediction"} else "numbers"


def _at(ring: deque[tuple[int, str]], total: int, event_index: int) -> tuple[int, str]:
    """(ts_ms, request_id) of the model's event number ``event_index`` (clipped to what the ring holds)."""
    oldest = total - len(ring)
    position = min(max(event_index - oldest, 0), len(ring) - 1)
    return ring[position]


def _finite(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
