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
worker and by backtests alike); they return the alerts the policy let through. The parts: ``signals`` (the
state kept), ``extract`` (a batch to each signal's values), ``detectors`` (each detector and its settings),
``policy`` (confirmation, cooldowns), ``alert_message`` (a detection to an alert).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import operator
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from driftloop.infra.contract import Alert
from driftloop.infra.spec import (
    BINARY_DETECTORS,
    CATEGORY_SIGNALS,
    DetectorConfig,
    ModelSpec,
    SpecCatalog,
    SpecError,
    misfit,
)
from driftloop.streams.batch import ColumnBatch, served_only
from driftloop.streams.drift.alert_message import make_alert
from driftloop.streams.drift.cusum import CUSUM, update_together
from driftloop.streams.drift.detectors import build, check_detectors
from driftloop.streams.drift.extract import (
    SignalValues,
    Together,
    multivariate_rows,
    multivariate_signals,
    prediction_signals,
)
from driftloop.streams.drift.frame import ModelPredictions, PredictionFrame
from driftloop.streams.drift.multivariate import Seen
from driftloop.streams.drift.policy import NAMING, AlertPolicy, Confirmation, Detected, Verdict, confirmation_size
from driftloop.streams.drift.signal_names import (
    CORRELATION,
    FEATURE_SIGNALS,
    JOINT,
    MEAN_SHIFT,
    NULL_RATE,
    RUNNING,
    SHAPE,
    VERSION_MARK,
    alert_feature,
    feature_of,
    feature_signal,
    output_version,
)
from driftloop.streams.drift.signals import (
    JOINT_REFERENCE,
    MIN_REFERENCE,
    PER_FEATURE,
    RATE_PARAMS,
    RING,
    EventRing,
    HeldAlert,
    ModelState,
    SignalState,
    family,
    forget_old_versions,
    set_run_length,
)

__all__ = ["JOINT_REFERENCE", "DriftMonitor", "ModelState", "SignalState", "output_version"]

log = logging.getLogger("driftloop.drift")

#: A model's signals besides its features': score, prediction (and their shapes), error, joint, correlation,
#: mean_shift.
OWN_SIGNALS = 8
#: Events a mean shift's alert waits for the feature that seems to carry the shift to raise its own
#: (``streams.drift.mean_shift``): the time a feature's chart takes for a shift of 0.2 of a deviation.
HOLD_EVENTS = 2000
#: The model's signals of how its features vary together: an alert of one charts the other anew.
TOGETHER = frozenset({JOINT, CORRELATION})
#: How far (in correlation) another pair may have moved, when a correlation was detected, for its chart to chart
#: on against its reference once the pair it alarmed on is set aside (:func:`_set_the_pair_aside`): the largest
#: of a thousand pairs' noise over the 500 rows the moves are read on is some 0.2.
STEADY = 0.25
#: ... and no more than this share of the pair's own move: a factor that every feature came to share moved each
#: pair by 0.1, each under :data:`STEADY`, and the chart charting on alarmed on the others, three alerts.
SPREAD = 1 / 3
_ZERO_ONE = frozenset({0.0, 1.0})


class _Place(NamedTuple):
    """Where a signal's values fall among its model's events (or labeled rows): what its alerts are placed by."""

    model: str
    state: ModelState
    base: int  # the model's events before the values' batch
    ring: EventRing  # its recent events
    total: int  # its events, the batch's counted


class _Detection(NamedTuple):
    """A detection at the ``event_index``-th event of its model, and how to make the alerts that go out then: its
    own unless the policy holds it back or folds it, after those it held back before and lets out by then. A
    batch's detections go to the policy in event order (:func:`_in_event_order`). ``moved``: the feature whose
    values it says moved ("" for the other signals, and a feature's null rate)."""

    event_index: int
    make: Callable[[], list[Alert]]
    moved: str = ""


class _Taken(NamedTuple):
    """A model's part of a batch, counted in its state: the events before it, and each signal's values."""

    model: str
    state: ModelState
    base: int  # the model's events before the part
    signals: list[tuple[SignalState, SignalValues]]
    together: Together | None  # the correlation and mean-shift signals' input, scored once the moves are known


class DriftMonitor:
    """Detectors for every model seen; see the module docstring."""

    def __init__(self, specs: SpecCatalog, *, clock: Any = time.time) -> None:
        self.specs = specs
        self.clock = clock
        self.models: dict[str, ModelState] = {}
        self._broken_specs: dict[str, str] = {}  # model -> the spec error last reported
        self._refused_specs: dict[str, tuple[ModelSpec, SpecError]] = {}  # model -> a spec its detectors refused
        self.detector_failures = 0  # times a detector raised on its values (its signal started again)
        self._failed_signals: set[tuple[str, str]] = set()  # (model, signal) whose failure was logged

    # --- entry points --------------------------------------------------------------------------------------

    def process_predictions(self, rows: ColumnBatch | PredictionFrame) -> list[Alert]:
        """Every model's part of ``rows`` to its detectors. The models' numeric charts run together, so that a
        fleet's batch of many small parts costs its charts' runs once a round, not once a model
        (:func:`_update_charts_together`): round ``r`` takes each model's ``r``-th chunk, so that a model's
        chunks still come one after the other."""
        frame = rows if isinstance(rows, PredictionFrame) else PredictionFrame.from_columns(served_only(rows))
        alerts: list[Alert] = []
        # a run longer than half the ring would push its own events out before their alerts place them
        chunked = [whole.chunks(RING // 2) for whole in frame.models]
        for round_ in range(max(map(len, chunked), default=0)):
            parts = [self._take(chunks[round_]) for chunks in chunked if round_ < len(chunks)]
            taken = [part for part in parts if part is not None]
            fired = iter(_update_charts_together([(sig.detector, s.values) for p in taken for sig, s in p.signals]))
            detections: list[_Detection] = []
            moves: dict[str, list[tuple[int, str]]] = defaultdict(list)  # model -> (event index, feature moved)
            for p in taken:
                place = _Place(p.model, p.state, p.base, p.state.ring, p.state.events)
                for signal, s in p.signals:
                    found = self._feed(place, signal, s.positions, s.values, next(fired))
                    moves[p.model] += [(d.event_index, d.moved) for d in found if d.moved]
                    detections += found
            detections += self._feed_together(taken, moves)
            alerts += _in_event_order(detections)
            for p in taken:
                alerts += self._let_go(p.model, p.state)
        return alerts

    def release_quiet(self) -> list[Alert]:
        """The alerts held back (``ModelState.deferred``) that may go out now though their model sent nothing
        since: its event time is taken to have gone on with the clock since its last events came (a model that
        stopped sending held them until it sent again, for the night or for good). The worker asks at each
        save of the detectors' state (``detector_state_interval_s``), so a quiet model's held alert goes out
        within that interval of its cooldown's end."""
        alerts: list[Alert] = []
        clock = self.clock()
        for model, state in self.models.items():
            if not state.deferred:
                continue
            for performance, ring, came in (
                (False, state.ring, state.predictions_came),
                (True, state.labeled_ring, state.labels_came),
            ):
                if len(ring) and came:  # restored and nothing since: its quiet is counted from now on
                    alerts += self._release(
                        model, state, ring[-1][0] / 1000 + max(clock - came, 0.0), performance=performance
                    )
            if not state.predictions_came:
                state.predictions_came = clock
            if not state.labels_came:
                state.labels_came = clock
        return alerts

    def _let_go(self, model: str, state: ModelState) -> list[Alert]:
        """The model's alerts held back that may go out now, in event time: its held mean shift once it has
        waited :data:`HOLD_EVENTS` events (dropped where the feature that seemed to carry the shift has reported
        a shift of its own, before or meanwhile: a gradual drift's feature alerts first), and the alerts of its
        feature and output signals that the policy held back (``ModelState.deferred``) once their cooldown or
        the hourly limit lets them."""
        if not state.deferred and state.held_shift is None:  # most models, most batches
            return []
        now = state.ring[-1][0] / 1000 if len(state.ring) else None
        alerts = self._release(model, state, now, performance=False)
        held = state.held_shift
        if held is None or state.events < held.release_at:
            return alerts
        state.held_shift = None
        if held.feature in state.reported:
            return alerts
        waited = f"held {HOLD_EVENTS:,} events for {held.feature}'s own alert, which did not come"
        alert = dataclasses.replace(
            held.alert,
            message=f"{held.alert.message}; {waited}",
            evidence={**held.alert.evidence, "held_for": held.feature},
        )
        released = self._judged(model, state, alert, now)
        return alerts if released is None else [*alerts, released]

    def _release(self, model: str, state: ModelState, now: float | None, *, performance: bool) -> list[Alert]:
        """The alerts held back (``ModelState.deferred``) of performance drift (``performance``: labeled rows'
        event time) or of the others (predictions'), asked again by ``now`` (event time), earliest first: those
        the policy lets out by then, those it folds into an alert out meanwhile dropped, the rest held on.

        Each is asked at the moment the cooldown or the hourly limit let it out, where that is before ``now``
        (:meth:`.AlertPolicy.held_until`), not at ``now``: asked at the end of a batch whose events came faster
        than their event time (a backlog, events a second apart), a drift held back went out up to a batch
        later in event time than its cooldown's end (6,380 s of event time after its detection, a cooldown of
        900 s, in a benchmark run), and the cooldown of the alerts after it counted from there."""
        if not state.deferred or now is None:
            return []
        asked = sorted(
            (a for a in state.deferred.values() if (a.kind == "performance") == performance),
            key=lambda a: (a.event_ts, a.alert_id),
        )
        released = []
        for alert in asked:
            del state.deferred[alert.signal]
            at = state.policy.held_until(model, alert.kind, Detected.of(alert), now)
            if (out := self._judged(model, state, alert, at)) is not None:
                released.append(out)
        return released

    def _judged(self, model: str, state: ModelState, alert: Alert, now: float | None = None) -> Alert | None:
        """``alert`` as the model's policy judges it at ``now`` (event time; None: when it was detected):
        returned when it goes out (held back until ``now``: said in its message, and ``held_until_ts`` in its
        evidence, which the alert gate counts its cooldown from), kept in ``ModelState.deferred`` when the policy
        holds it back, None then and when it is folded into an alert out already."""
        detected = Detected.of(alert)
        verdict = state.policy.judge(model, alert.kind, detected, now=now)
        if verdict is Verdict.HOLD:
            state.deferred.setdefault(alert.signal, alert)  # a signal's first: the change as it was first found
        if verdict is not Verdict.PASS:
            return None
        if detected.feature:
            state.reported.add(detected.feature)  # a feature's null rate is reported as its own
        elif detected.signal in TOGETHER:
            _chart_the_other_again(state, detected.signal)
        elif detected.signal == MEAN_SHIFT:
            _chart_the_features_again(state)
        if now is None or now <= alert.event_ts:
            return alert
        message = alert.message
        if "held_for" not in alert.evidence:  # the mean shift's hold says why already
            message += (
                f"; held back {now - alert.event_ts:,.0f} s of event time by the cooldown of the model's earlier "
                f"{alert.kind} alerts or its hourly limit"
            )
        return dataclasses.replace(
            alert, detected_at=self.clock(), message=message, evidence={**alert.evidence, "held_until_ts": now}
        )

    def process_labeled(self, rows: ColumnBatch) -> list[Alert]:
        """Feed the performance detectors labeled rows as the outcome join hands them on: ``model``,
        ``request_id``, ``ts_ms`` and ``error``, and where given ``model_version``, ``served`` and ``features``
        (how many features the prediction sent: a model seen first here shares its false alarms among as many
        signals as it will have)."""
        rows = served_only(rows)
        alerts: list[Alert] = []
        runs = []
        for model, whole in _by_model(rows["model"]).items():
            whole.sort(key=rows["ts_ms"].__getitem__)  # labels arrive in any order; errors are told in event time
            runs += [(model, whole[start : start + RING // 2]) for start in range(0, len(whole), RING // 2)]
        features = rows.columns.get("features")  # how many its prediction sent (the join counts them)
        for model, index in runs:
            state = self._model(model, 0 if features is None else int(features[index[0]]))
            if state is None:
                continue
            base = state.labeled
            state.labeled_ring.extend([rows["ts_ms"][i] for i in index], [rows["request_id"][i] for i in index])
            state.labels_came = self.clock()
            state.labeled += len(index)
            versions = rows["model_version"] if "model_version" in rows.columns else [0] * len(rows)
            by_version: dict[int, list[int]] = defaultdict(list)
            for position, i in enumerate(index):
                by_version[int(versions[i])].append(position)
            detections: list[_Detection] = []
            for version, positions in sorted(by_version.items()):
                values = [float(rows["error"][index[p]]) for p in positions]
                binary = state.spec.task != "regression" and not set(values) - _ZERO_ONE  # a classifier's mistakes
                signal = self._signal(state, f"error{VERSION_MARK}{version}", "error", binary=binary)
                if signal is not None and values:
                    place = _Place(model, state, base, state.labeled_ring, state.labeled)
                    detections += self._feed(place, signal, positions, values)
            alerts += _in_event_order(detections)
            if state.deferred:
                alerts += self._release(model, state, state.labeled_ring[-1][0] / 1000, performance=True)
        return alerts

    def checked_spec(self, model: str) -> ModelSpec:
        """The spec of ``model``, its detectors built and fed once: a :class:`SpecError` naming the file and the
        field where the spec cannot be read or a detector's class refuses its parameters (then the file is read
        again when next asked for: it may be fixed by then)."""
        spec = self.specs.get(model)
        refused = self._refused_specs.get(model)
        if refused is not None and refused[0] == spec:  # read again, unchanged: not built and fed again each batch
            self.specs.forget(model)
            raise refused[1]
        try:
            check_detectors(spec, reference=max(spec.monitoring.warmup, MIN_REFERENCE))
        except ValueError as exc:
            self.specs.forget(model)
            error = SpecError(f"{self.specs.path(model)}: {exc}")
            self._refused_specs[model] = (spec, error)
            raise error from None
        self._refused_specs.pop(model, None)
        return spec

    def signal_states(self) -> Iterable[tuple[str, SignalState]]:
        for model, state in self.models.items():
            for signal in state.signals.values():
                yield model, signal

    # --- detection ------------------------------------------------------------------------------------------

    def _model(self, model: str, features: int) -> ModelState | None:
        """The model's state (``features``: how many its first event sent, for a model seen first).

        None while the model's spec file is broken: that model is not monitored (the ERROR names the file and
        the field), every other model is; the file is read again at the model's next batch.
        """
        state = self.models.get(model)
        if state is not None:
            try:
                spec = self.specs.get(model)  # the spec in force (an edit is taken; the catalog keeps the last good)
            except SpecError:  # not read since it was forgotten, and broken now: the model goes on as it was
                return state
            if spec is not state.spec and spec is not state.refused_spec:
                self._take_edit(state, spec)
        else:
            try:
                spec = self.checked_spec(model)
            except SpecError as exc:
                self._report_broken_spec(model, exc)
                return None
            self._broken_specs.pop(model, None)
            state = ModelState(spec, AlertPolicy(spec.monitoring))
            # the signals that share the model's false alarms: values, spread, outliers, shape and null rate per
            # feature, and the model's own (OWN_SIGNALS)
            state.expected_signals = max(PER_FEATURE * max(features, len(spec.features)) + OWN_SIGNALS, 1)
            self.models[model] = state
        return state

    def _take_edit(self, state: ModelState, spec: ModelSpec) -> None:
        """An edited spec of a model being watched: its policy and alerts follow it from now; a signal whose
        detector the edit changed (or that it turned off) starts again, with a new reference, and the others keep
        theirs, with the run length the edit gives them. An edit whose detectors cannot run is not taken (the
        ERROR says why; the model is watched as it was)."""
        old = state.spec
        try:
            check_detectors(spec, reference=max(spec.monitoring.warmup, MIN_REFERENCE))
        except ValueError as exc:
            state.refused_spec = spec
            log.error(
                "an edit of a model spec cannot run: the model is watched with the spec it had",
                extra={"fields": {"model": spec.name, "error": f"{self.specs.path(spec.name)}: {exc}"}},
            )
            return
        state.spec, state.policy.spec, state.refused_spec = spec, spec.monitoring, None
        state.expected_signals = max(state.expected_signals, PER_FEATURE * len(spec.features) + OWN_SIGNALS)
        restarted = [
            name
            for name, signal in state.signals.items()
            if _configured(old, name, signal.signal_type) != _configured(spec, name, signal.signal_type)
        ]
        for name in restarted:
            del state.signals[name]
        rate = ("expected_run_length", "expected_run_length_hours")
        if any(getattr(old.monitoring, k) != getattr(spec.monitoring, k) for k in rate):
            signals = max(state.expected_signals, len(state.signals))
            for signal in state.signals.values():
                set_run_length(signal, self._run_length(state) * signals)
        log.info(
            "model spec edited: watched with it from now",
            extra={"fields": {"model": spec.name, "signals_started_again": sorted(restarted)}},
        )

    def _take(self, part: ModelPredictions) -> _Taken | None:
        """A model's part counted in its state, and the values of each of its signals (None: not monitored)."""
        state = self._model(part.model, part.features.count)
        if state is None:
            return None
        base = state.events
        state.ring.extend(part.ts_ms, part.request_ids)
        state.predictions_came = self.clock()
        state.events += len(part)
        state.version = max(state.version, part.version)
        self._measure_rate(state)
        values, together = prediction_signals(state, part)
        signals = [(signal, s) for signal, s in self._watched(state, values) if len(s.values)]
        return _Taken(part.model, state, base, signals, together)

    def _feed_together(self, taken: list[_Taken], moves: dict[str, list[tuple[int, str]]]) -> list[_Detection]:
        """The ``correlation`` and ``mean_shift`` signals of each model's part, and their detections: a part in
        which features were detected to move (``moves``: each model's event indices and features) is scored in
        pieces, and before each piece that begins at a feature's detection that feature's columns are set aside
        and both charts start again from zero (:func:`_learn_columns_again`); the other models' charts run
        together.

        Set aside once the part's detections had been made, the feature's move stayed in the scores and charts
        of the rest of the part (up to 10,000 events of one model): a correlation that appeared there was an
        alarm of charts that then started again, dropped, and with the chart's reference learnt anew from it,
        never an alert (300 to 2,000 events after a feature's alert, in batches of 2,000 events)."""
        fed: list[tuple[_Place, SignalState, SignalValues]] = []
        found: list[_Detection] = []
        for p in taken:
            if p.together is None:
                continue
            place = _Place(p.model, p.state, p.base, p.state.ring, p.state.events)
            rows, positions = multivariate_rows(p.state, p.together)
            start = 0
            for event_index, feature in sorted(moves.get(p.model, [])):
                cut = max(event_index - p.base, 0)
                piece = (positions >= start) & (positions < cut)
                for signal, s in self._watched(p.state, multivariate_signals(p.state, rows[piece], positions[piece])):
                    found += self._feed(place, signal, s.positions, s.values)
                _learn_columns_again(p.state, feature)
                start = max(start, cut)
            if start:
                rows, positions = rows[positions >= start], positions[positions >= start]
            fed += [
                (place, signal, s)
                for signal, s in self._watched(p.state, multivariate_signals(p.state, rows, positions))
            ]
        fired = _update_charts_together([(signal.detector, s.values) for _, signal, s in fed])
        for (place, signal, s), row in zip(fed, fired, strict=True):
            found += self._feed(place, signal, s.positions, s.values, row)
        return found

    def _watched(self, state: ModelState, values: list[SignalValues]) -> list[tuple[SignalState, SignalValues]]:
        """Each signal's ``values`` with its state, of the signals watched (:meth:`_signal`)."""
        paired = [(self._signal(state, s.name, s.signal_type), s) for s in values]
        return [(signal, s) for signal, s in paired if signal is not None]

    def _report_broken_spec(self, model: str, error: SpecError) -> None:
        if self._broken_specs.get(model) != str(error):  # once per error, not once per batch
            self._broken_specs[model] = str(error)
            log.error(
                "model spec is broken: this model's events land but are not monitored until the file is fixed",
                extra={"fields": {"model": model, "error": str(error)}},
            )

    def _signal(self, state: ModelState, name: str, signal_type: str, *, binary: bool = True) -> SignalState | None:
        """The signal ``name`` of the model (made when first fed; None: not watched). ``binary``: whether the
        values about to be fed are 0/1 (a regression's errors are not; a detector of 0/1 values gives way)."""
        signal = state.signals.get(name)
        if signal is not None and not binary and signal.detector.name in BINARY_DETECTORS:
            # errors of 0/1 first (a regression's counts, off by one), any number now: a detector of 0/1 values
            # would raise on them; the signal starts again with one that takes numbers
            del state.signals[name]
            signal = None
        if signal is not None and family(signal.signal_type) != family(signal_type):
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
            version, base, feature = _names(name)
            if not state.spec.monitoring.enabled(base) or not state.spec.monitoring.enabled(feature):
                return None
            if version is not None:
                forget_old_versions(state, version)
            signals = max(state.expected_signals, len(state.signals) + 1)
            alpha = state.policy.signal_alpha(signals)
            config = state.spec.monitoring.detector_for(signal_type, feature, binary=binary)
            _say_if_override_misfits(state, base, feature, signal_type, config, binary=binary)
            detector = build(config, alpha=alpha, reference=max(state.spec.monitoring.warmup, MIN_REFERENCE))
            if isinstance(detector, CUSUM) and name in RUNNING:
                detector.search_reference = False  # its values are a running statistic's (cusum.reference_split)
            signal = SignalState(name, signal_type, detector, alpha, fixed=set(config.params) & RATE_PARAMS)
            set_run_length(signal, self._run_length(state) * signals)
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
            set_run_length(signal, self._run_length(state) * signals)

    def _feed(
        self,
        place: _Place,
        signal: SignalState,
        positions: list[int],
        values: Sequence[Any] | np.ndarray,
        fired: list[tuple[int, Any]] | None = None,
    ) -> list[_Detection]:
        """``values`` to ``signal``'s detector (or what it ``fired`` on them, when it has taken them), and its
        detections, for the policy to make alerts of (none where the detector raised: see
        :meth:`_detector_failed`)."""
        numeric = signal.signal_type not in CATEGORY_SIGNALS  # categories have no mean
        seen_before = signal.seen
        try:
            if fired is None:
                fired = signal.detector.update_many(values)
            signal.seen += len(values)
            signal.drifts += len(fired)
            alerts = (
                self._alerts(place, signal, positions, values, fired, seen_before, numeric)
                if fired or signal.pending is not None  # most batches of most signals: neither
                else []
            )
        except Exception:
            self._detector_failed(place, signal)
            return []
        if numeric:
            # np.add.reduce: values.mean()'s sum and division without its Python layers (5 µs a signal a batch)
            if isinstance(values, np.ndarray):
                with np.errstate(over="ignore"):  # values near the largest float: their sum is not, their mean is
                    total = float(np.add.reduce(values))
                finite = math.isfinite(total) or not np.isfinite(values).all()
                signal.last_mean = total / len(values) if finite else float(np.add.reduce(values / len(values)))
            else:
                signal.last_mean = sum(values) / len(values)
        return alerts

    def _detector_failed(self, place: _Place, signal: SignalState) -> None:
        """A detector raised on its values (values no check foresaw): its signal starts again, with a new detector
        and reference, at its next values; the batch's other signals, and every other model's, go on. A signal's
        first failure is logged with its traceback, the others counted (``driftloop_detector_failures``)."""
        self.detector_failures += 1
        place.state.signals.pop(signal.name, None)
        if (place.model, signal.name) not in self._failed_signals:
            self._failed_signals.add((place.model, signal.name))
            log.exception(
                "a detector failed on its values: its signal starts again, the others go on",
                extra={"fields": {"model": place.model, "signal": signal.name, "detector": signal.detector.name}},
            )

    def _alerts(
        self,
        place: _Place,
        signal: SignalState,
        positions: list[int],
        values: Sequence[Any] | np.ndarray,
        fired: list[tuple[int, Any]],
        seen_before: int,
        numeric: bool,
    ) -> list[_Detection]:
        """The detections of what ``signal``'s detector ``fired`` on ``values`` (and of the confirmation pending,
        which takes them), each with how to make its alert."""
        model, state, base, ring, total = place
        detections: list[_Detection] = []
        moved = _moved_feature(signal)
        calibrated = getattr(signal.detector, "calibrated", False)  # its run length bounds its false alarms
        needed = state.spec.monitoring.confirm_events if numeric and not calibrated else 0

        def alert(evidence: Any, event_index: int) -> None:
            """The detection, whose alert is made unless the policy holds it back (the spec was read already: the
            signal's detector was built from it)."""

            # what moved, as the multivariate signals say now (the pairs: over the rows scored up to the detection):
            # a feature detected to move later in the batch is set aside before the alert is made
            multivariate = state.multivariate if signal.name in NAMING else None
            seen = None if multivariate is None else multivariate.seen(before=max(total - 1 - event_index, 0))
            relearnt = signal.relearnt

            def make() -> list[Alert]:
                if signal.relearnt != relearnt:  # told to learn again at an earlier event of the batch: of that move
                    return []
                made = make_alert(
                    model, state, signal, evidence, event_index, ring, total, spec=self.specs.get(model),
                    detected_at=self.clock(), seen=seen,
                )  # fmt: skip
                # those held back that may go out by now go first: older, they were not folded into this one
                alerts = self._release(model, state, made.event_ts, performance=made.kind == "performance")
                if signal.name == MEAN_SHIFT and seen is not None and (carrier := seen.carrier) is not None:
                    if state.held_shift is None:  # the first one held places the change
                        state.held_shift = HeldAlert(made, carrier, state.events + HOLD_EVENTS)
                    return alerts
                judged = self._judged(model, state, made)
                if moved:  # whether its alert goes out or not (its columns were set aside where it was detected)
                    _chart_its_values_again(state, moved, signal.label)
                elif signal.name == CORRELATION and seen is not None and seen.pairs:
                    _set_the_pair_aside(state, seen)
                return alerts if judged is None else [*alerts, judged]

            detections.append(_Detection(event_index, make, moved))

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
                    alert(evidence, at)

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
                alert(evidence, event_index)
        return detections


def _names(signal: str) -> tuple[int | None, str, str]:
    """A signal's serving version (outputs only), its name without it, and the feature (or output) it watches."""
    version = output_version(signal)
    base = signal if version is None else signal.partition(VERSION_MARK)[0]
    return version, base, feature_of(base)


def _configured(spec: ModelSpec, signal: str, signal_type: str) -> DetectorConfig | None:
    """The detector ``spec`` gives ``signal`` (None: the spec turns it off)."""
    _, base, feature = _names(signal)
    monitoring = spec.monitoring
    if not (monitoring.enabled(base) and monitoring.enabled(feature)):
        return None
    return monitoring.detector_for(signal_type, feature)


def _say_if_override_misfits(
    state: ModelState, base: str, feature: str, signal_type: str, chosen: Any, *, binary: bool
) -> None:
    """A WARNING when the spec's detector for a feature (or output) cannot take its values, and another one
    watches them (the spec could not tell: it does not say the feature's type). Its null rate and spread may need
    another one without a word: the override is for its values."""
    override = state.spec.monitoring.signals.get(feature)
    if override is None or override.detector is None or chosen is override.detector:
        return
    if base in (feature, feature_signal(feature)):
        log.warning(
            "the spec's detector cannot take this signal's values; it is watched with another",
            extra={
                "fields": {
                    "model": state.spec.name,
                    "signal": base,
                    "spec": override.detector.name,
                    "why": misfit(override.detector.name, signal_type, binary=binary),
                    "watched_with": chosen.name,
                }
            },
        )


def _learn_columns_again(state: ModelState, feature: str) -> None:
    """After a feature's drift is detected (from its detection's event on: :meth:`DriftMonitor._feed_together`),
    the ``correlation`` and ``mean_shift`` signals learn its columns anew
    (:meth:`.MultivariateSignals.relearn`), and their charts start again from zero (the evidence they gathered
    holds the feature's move: left, a mean shift's chart alarmed 50 events after the feature's alert, its shift
    carried by another feature's noise). A feature that moved by a deviation and stayed there held the mean
    shift's running mean for good, every later shift looked like that feature's, and nineteen features moved
    0.1σ each after it went unseen by the mean shift. Where they are still learning their reference (which holds
    the move), they learn one anew."""
    multivariate = state.multivariate
    if multivariate is None or multivariate.off:
        return
    if not multivariate.fitted:
        state.multivariate = None
        for name in (CORRELATION, MEAN_SHIFT):
            state.signals.pop(name, None)
        return
    if not multivariate.relearn(feature):
        return
    for name in (CORRELATION, MEAN_SHIFT):
        if (signal := state.signals.get(name)) is None:
            continue
        signal.pending = None
        if isinstance(signal.detector, CUSUM):
            signal.detector.restart_charts()
        else:  # a detector the spec names: its window starts again
            del state.signals[name]


def _set_the_pair_aside(state: ModelState, seen: Seen) -> None:
    """After a ``correlation`` detection, the features of the pair that moved most are set aside and learnt anew, as
    a moved feature's are (:func:`_learn_columns_again`), and where no other pair had moved when it was detected
    (:data:`STEADY`, :data:`SPREAD`), the correlation's chart charts on against the reference it had
    (:meth:`.CUSUM.resume`), not one learnt from the next 2,000 scores: that one took in a correlation of another
    pair that appeared 400 events after the first's, never an alert. Where other pairs moved too (a factor that all
    the features came to share), the chart learns its reference anew, as before: charting on, it would alarm on each
    of them in turn."""
    for feature in dict.fromkeys(column.feature for column in seen.pairs[0].columns):
        _learn_columns_again(state, feature)
    signal, first = state.signals.get(CORRELATION), seen.pairs[0]
    if (
        signal is not None
        and isinstance(signal.detector, CUSUM)
        and seen.others < min(STEADY, SPREAD * abs(first.recent - first.reference))
    ):
        signal.detector.resume()


def _moved_feature(signal: SignalState) -> str:
    """The feature whose values a detection of ``signal`` says moved: its values', spread's, outliers' or shape's
    ("" for its null rate, and for the model's other signals)."""
    if signal.kind != "data" or signal.signal_type == "missing":
        return ""
    return alert_feature("data", signal.label)


def _chart_its_values_again(state: ModelState, feature: str, reported: str) -> None:
    """After one signal of a feature detects a drift, the charts of its other numeric signals (its values,
    spread, outliers, shape) and the ``joint`` chart learn their reference again, as after an alarm of their
    own: the values they chart moved. A feature whose spread tripled got its spread's alert within 20 events,
    and its values' chart, set for a spread of one, alarmed on the wider values 1,300 to 1,900 events later,
    past the cooldown, its change placed there: a second alert of one drift (three seeds of four, events a
    second apart)."""
    others = (feature + suffix for suffix in FEATURE_SIGNALS if suffix != NULL_RATE)  # its null rate is its own
    for name in (feature_signal(feature), *others, JOINT):
        if name != reported:
            _learn_again(state.signals.get(name))


def _chart_the_features_again(state: ModelState) -> None:
    """After a ``mean_shift`` alert, each numeric feature's values and shape charts learn their reference
    again, as after an alarm of their own (and searched for a change of its own as that one is): the features'
    means moved, each too little for its charts to have seen it yet. Ten features moved 0.3σ each got the mean
    shift's alert, then one or two features' own charts alarmed 900 to 5,000 events later, past the cooldown,
    their changes placed hundreds of events late: second alerts of one drift."""
    for feature in state.features:  # their detections of the batch are judged: each feature's, folded into it
        _learn_again(state.signals.get(feature_signal(feature)), drop=False)
        _learn_again(state.signals.get(feature + SHAPE), drop=False)


def _learn_again(signal: SignalState | None, *, drop: bool = True) -> None:
    """``signal``'s detector learns its reference again, where it can (CUSUM, CategoricalShift; not River's), and
    (``drop``) its detections at later events of the batch, made on values of the drift already detected, are
    dropped: a feature's shape, whose category detector tests a batch's last value, alarmed there on the
    feature's move, its change placed 2,000 values back (1,000 events after the move, batches of 4,000 events a
    second apart), a second alert of the move once its cooldown had ended."""
    learn_again = getattr(signal.detector, "learn_again", None) if signal is not None else None
    if signal is not None and learn_again is not None:
        signal.pending = None
        signal.relearnt += drop
        learn_again()


def _chart_the_other_again(state: ModelState, reported: str) -> None:
    """After a ``joint`` or ``correlation`` alert, the other of the two charts its score anew (its detector learns
    its reference again, as after an alarm of its own): both watch how the features vary together, and the other's
    score moved with the same change, by less. A correlation between two independent features that appeared
    moved the ``joint`` score a little too (its subspace leaves a direction out, which the pair's variance
    entered), and its chart, slow on so small a move, alarmed 2,500 to 11,000 events after the correlation's
    alert, its change placed thousands of events late: a second alert of one drift in five runs of eighteen
    (three seeds of correlations of 0.8 and 0.95)."""
    for name in TOGETHER - {reported}:
        _learn_again(state.signals.get(name))


def _in_event_order(detections: list[_Detection]) -> list[Alert]:
    """The alerts of a batch's detections, made in the order of their events: the policy's cooldown then keeps
    a model's first detection of a kind, not the one of the signal that happened to be fed first (a variance
    change: the spread fired 12 events after it, the values 304; fed first, the values' alert held the
    spread's back, an alert 292 events late)."""
    return [alert for detection in sorted(detections, key=_event_index) for alert in detection.make()]


_event_index = operator.attrgetter("event_index")


def _update_charts_together(fed: list[tuple[Any, Sequence[Any] | np.ndarray]]) -> list[list[tuple[int, Any]] | None]:
    """What each CUSUM detector fires on its values, the charts of the numeric signals of every model of a
    round run together (:func:`~driftloop.streams.drift.cusum.update_together`; a fleet's batch holds a few
    events of each model, and a run of charts costs some 20 µs before its first value); None for the other
    detectors, which take their values in :meth:`DriftMonitor._feed`."""
    fired: list[list[tuple[int, Any]] | None] = [None] * len(fed)
    charts = [
        i
        for i, (detector, values) in enumerate(fed)
        if isinstance(detector, CUSUM) and isinstance(values, np.ndarray) and values.dtype == np.float64
    ]
    rows = update_together([fed[i][0] for i in charts], [fed[i][1] for i in charts])
    for i, row in zip(charts, rows, strict=True):
        fired[i] = row
    return fired


def _by_model(models: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, model in enumerate(models):
        groups[model].append(i)
    return groups
