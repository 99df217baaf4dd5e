"""The alert policy: when a detection becomes an alert.

A detection becomes an alert only when

1. its signal is past the **warm-up** (the reference has been learnt),
2. it has **minimum evidence** (enough events before the change to know what changed),
3. for a detector without a run length (River's, named in a spec: PageHinkley raised 123 false alarms in
   200,000 N(0,1) values on its own), it is **confirmed**: the ``confirm_events`` values after it still
   differ from the reference mean by more than chance allows at the signal's share of the
   ``false_alarm_budget`` (split Bonferroni-style among the signals),
4. the model is not in **cooldown** for that kind of drift (event time), unless it is a new drift: of a
   feature none of the cooldown's alerts was of (or a correlation or mean shift naming none of the features
   that moved), which began after they were detected (:func:`judge_within`); and it is under its hourly
   **rate limit**.

A detection that fails 4 is folded into the alert out already when it is the same drift (it began when that
alert was detected), and otherwise **held back**, not dropped: its detector has taken
the values after the change for its next reference and would not find it again, so the monitor asks again as
event time goes on and sends it when the cooldown or the hour allows (:class:`Verdict`).

The default detectors need no confirmation: ``CUSUM`` and ``CategoricalShift`` take their share of the
model's expected run length (``streams.drift.monitor``), which is their false-alarm rate.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from driftloop.infra.contract import Alert
from driftloop.infra.spec import CATEGORY_SIGNALS, MonitoringSpec
from driftloop.streams.drift.evidence import Evidence
from driftloop.streams.drift.signal_names import CORRELATION, MEAN_SHIFT, NULL_RATE, RUNNING, alert_feature


@dataclass
class Confirmation:
    """A detection waiting for the values after it to show the same shift.

    The values after a detection are judged in blocks of ``needed``: the detection is confirmed as soon as
    one block's mean differs from the reference by more than chance allows, and dropped when ``looks``
    blocks never did. More than one look matters when the change is gradual or when late labels mix old
    and new events: the first block after the detection may be only partly shifted. When a later block
    confirms, the change is placed at that block's start (``confirmed_at``), not at the detection, which
    may have been noise that the real change only happened to follow.

    >>> c = Confirmation(evidence=None, reference_mean=0.0, reference_std=1.0, needed=10, event_index=0)
    >>> c.add_many([0.0] * 10); c.verdict(alpha=1e-3) is None  # one look, not shifted: wait for more
    True
    >>> c.add_many([3.0] * 10); c.verdict(alpha=1e-3), c.confirmed_at  # the second block shows the shift
    (True, 20)
    """

    evidence: Evidence | None
    reference_mean: float
    reference_std: float
    needed: int
    event_index: int
    looks: int = 4
    values: list[float] = field(default_factory=list)
    confirmed_at: int = 0  # values after the detection up to the end of the block that confirmed it

    @property
    def room(self) -> int:
        return self.needed * self.looks - len(self.values)

    def add_many(self, values: Sequence[float] | np.ndarray) -> None:
        taken = values[: self.room]
        self.values.extend(taken.tolist() if isinstance(taken, np.ndarray) else taken)

    def verdict(self, alpha: float) -> bool | None:
        """True: confirmed; False: every look failed; None: wait for more values."""
        threshold = _upper_quantile(alpha / 2)
        spread = max(self.reference_std, 1e-9) / math.sqrt(self.needed)
        for end in range(self.needed, len(self.values) + 1, self.needed):
            block = self.values[end - self.needed : end]
            if abs(sum(block) / len(block) - self.reference_mean) / spread > threshold:
                self.confirmed_at = end
                return True
        return False if self.room <= 0 else None


_STANDARD_NORMAL = NormalDist()


def _upper_quantile(p: float) -> float:
    """The standard normal's ``z`` with ``P(Z > z) = p`` (scipy's ``norm.isf``; the standard library's, so that
    the alert gate in the Faust process does not load scipy.stats: a second of imports and 40 MiB)."""
    return -_STANDARD_NORMAL.inv_cdf(p)  # by symmetry: exact for the small p of a false-alarm level


#: The most values a confirmation waits for per look (a shift too small for it is left to grow).
MAX_CONFIRMATION = 2000


def confirmation_size(minimum: int, alpha: float, reference_std: float, shift: float, power: float = 0.9) -> int:
    """Values per look that confirm a shift of the size detected (``shift``, in the signal's units) with
    ``power`` at level ``alpha``; at least ``minimum``, at most :data:`MAX_CONFIRMATION`.

    A fixed block is blind to the shifts a slow drift shows when it is first detected (a few tenths of a
    standard deviation): sized to the detection, the confirmation keeps the same false-alarm level and
    confirms the real ones.

    >>> confirmation_size(50, 1e-4, 1.0, 1.0), confirmation_size(50, 1e-4, 1.0, 0.3)
    (50, 298)
    >>> confirmation_size(50, 1e-4, 1.0, 0.0), confirmation_size(50, 1e-4, 1.0, 0.01)
    (50, 2000)
    >>> confirmation_size(50, 1e-4, math.inf, 1e300), confirmation_size(50, 1e-4, 1e300, 1e-300)
    (2000, 2000)
    """
    if not minimum or not shift or not math.isfinite(shift) or not reference_std > 0:
        return minimum
    z = _upper_quantile(alpha / 2) + _upper_quantile(1 - power)
    ratio = z * reference_std / abs(shift)  # infinite for a spread past the largest float
    if not ratio < math.sqrt(MAX_CONFIRMATION):  # squared, it could be past the largest float too
        return MAX_CONFIRMATION
    return int(min(max(minimum, math.ceil(ratio**2)), MAX_CONFIRMATION))


#: The model's own signals whose alerts name the features that moved (a correlation's pairs, a mean shift's
#: largest moves: their evidence's ``features``).
NAMING = frozenset({CORRELATION, MEAN_SHIFT})


class Detected(NamedTuple):
    """A detection as the policy judges it: when it was detected (``event_ts``, event time), what it is about
    (``feature``: :func:`~driftloop.streams.drift.signal_names.alert_feature`'s, "" for the model's own signals),
    its ``signal`` (``amount``, ``amount:spread``; "" where not known), where its change began (``change_ts``;
    None: not known), and for a signal of :data:`NAMING` the features it names (``named``)."""

    event_ts: float
    feature: str = ""
    signal: str = ""
    change_ts: float | None = None
    named: tuple[str, ...] = ()

    def about(self) -> frozenset[str]:
        """The features it is about: its feature's, or the features it names (none: every feature, or none)."""
        return _about(self.feature, self.named)

    @classmethod
    def of(cls, alert: Alert) -> Detected:
        """What the policy reads of ``alert``."""
        named = tuple(map(str, alert.evidence.get("features", ()))) if alert.signal in NAMING else ()
        feature = alert_feature(alert.kind, alert.signal)
        return cls(alert.event_ts, feature, alert.signal, alert.change_point_ts, named)


class Passed(NamedTuple):
    """An alert the policy let through: when it was detected (``event_ts``), what it is about (:func:`judge_within`'s
    ``feature``; "" for the model's own signals, and where not known: a state saved before they were kept), when
    it went out (``at``: later than its detection where the policy held it back), which its cooldown counts
    from, when its change began (``change_ts``; its detection where not known), its signal (``amount``,
    ``amount:spread``; "" where not known), and the features it named (:class:`Detected`'s ``named``)."""

    event_ts: float
    feature: str
    at: float
    change_ts: float
    signal: str = ""
    named: tuple[str, ...] = ()

    def earliest(self) -> float:
        """The earliest its change may have begun (:func:`judge_within`)."""
        return _earliest(self.event_ts, self.change_ts)

    def about(self) -> frozenset[str]:
        """The features it is about (:meth:`Detected.about`); none for a mean shift, of every feature's values,
        though it names the largest moves (River's centroids that keep moving were a ``mean_shift`` alert, then
        features' own drifts, each a new drift of the features it did not name, had they not folded into it)."""
        return frozenset() if self.signal == MEAN_SHIFT else _about(self.feature, self.named)


class Verdict(enum.Enum):
    """What the policy makes of a detection (:meth:`AlertPolicy.judge`)."""

    PASS = "pass"  # an alert: it goes out now
    FOLD = "fold"  # a drift an alert out already stands for (the same moment, or the same feature's change)
    HOLD = "hold"  # a drift of its own that the cooldown or the hourly limit holds back: ask again later


#: New drifts a cooldown lets through at once (:func:`judge_within`); the others wait for the cooldown's end. A
#: feature's small shift is caught late, its change placed late, and the features of one small shift across
#: many (nineteen moved 0.1 of a deviation each, after another feature's alert) were new ones, five in an hour.
NEW_DRIFTS = 1
#: How long after its cooldown the policy remembers an alert: detections come out of event order by up to that
#: much, and the hourly limit counts the hour's alerts.
SLACK_S = 3600.0


class AlertPolicy:
    """Cooldown and rate limit per model (see the module docstring for the whole policy)."""

    def __init__(self, spec: MonitoringSpec) -> None:
        self.spec = spec
        self._passed: dict[tuple[str, str], deque[Passed]] = defaultdict(deque)
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        # (model, kind) -> feature -> the latest detection of it folded into an alert out of another feature's, or
        # of the model's own signals (their drift at the same moment): a later signal of it whose change began
        # before then is of the same drift
        self._folded: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        self.suppressed = 0

    def snapshot(self) -> dict[str, object]:
        return {
            # the latest alert of each kind, as the code before session 54 reads it
            "last": [[m, k, passed[-1].event_ts] for (m, k), passed in self._passed.items() if passed],
            "passed": [[m, k, *p] for (m, k), passed in self._passed.items() for p in passed],
            "recent": {m: list(q) for m, q in self._recent.items()},
            "folded": [
                [m, k, feature, at] for (m, k), folded in self._folded.items() for feature, at in folded.items()
            ],
            "suppressed": self.suppressed,
        }

    def restore(self, data: dict) -> None:  # type: ignore[type-arg]
        self._passed = defaultdict(deque)
        if "passed" in data:
            for m, k, event_ts, feature, *later in data["passed"]:  # saved before session 55: the first four
                at, change_ts, signal = [*later[:3], *[event_ts, event_ts, ""][len(later[:3]) :]]
                named = tuple(later[3]) if len(later) > 3 else ()  # none before session 57
                passed = Passed(float(event_ts), feature, float(at), float(change_ts), signal, named)
                self._passed[(m, k)].append(passed)
        else:  # saved before session 54: the latest alert of each kind, of every feature
            for m, k, t in data.get("last", []):
                self._passed[(m, k)].append(Passed(float(t), "", float(t), float(t)))
        self._recent = defaultdict(deque, {m: deque(map(float, q)) for m, q in data.get("recent", {}).items()})
        self._folded = defaultdict(dict)
        for m, k, feature, at in data.get("folded", []):  # none before session 56
            self._folded[(m, k)][feature] = float(at)
        self.suppressed = int(data.get("suppressed", 0))

    def signal_alpha(self, signals: int) -> float:
        """Each signal's share of the model's false-alarm budget."""
        return self.spec.false_alarm_budget / max(signals, 1)

    def admissible(self, evidence: Evidence, seen: int) -> bool:
        """Warm-up over and enough evidence before the change (the events after it are the confirmation's)."""
        return seen >= self.spec.warmup and evidence.reference_size >= self.spec.min_evidence

    def judge(self, model: str, kind: str, detected: Detected, *, now: float | None = None) -> Verdict:
        """What a detection of ``kind`` for ``model`` is at ``now`` (event time; by default when it was detected):
        an alert that goes out (recorded as gone out at ``now``), one folded into an alert out already, or one
        held back for now.

        A detection whose change began before an alert of its feature was detected is folded whenever it comes
        (another signal of the same drift: its shape, caught a thousand events after its values), and so is one
        whose change began before a detection of its feature folded into another alert (five features moved at
        once, one alert: a sixth's shape caught past the cooldown was an alert of its own), and so is a
        correlation or mean shift that names a feature that moved (:func:`_names_a_move`). Within the
        cooldown of the model's alerts of ``kind``, see :func:`judge_within`; past the hourly limit, it is held
        back."""
        now = detected.event_ts if now is None else now
        self._forget(model, kind, now)
        verdict = self._verdict(model, kind, detected, now)
        passed, folded = self._passed[(model, kind)], self._folded[(model, kind)]
        if (
            verdict is Verdict.FOLD
            and detected.feature
            and detected.change_ts is not None
            and not any(p.feature == detected.feature for p in passed)  # into another feature's alert, or the model's
        ):
            folded[detected.feature] = max(folded.get(detected.feature, -math.inf), detected.event_ts)
        if verdict is Verdict.PASS:
            self.record(model, kind, detected, at=now)
        else:
            self.suppressed += 1
        return verdict

    def held_until(self, model: str, kind: str, detected: Detected, until: float) -> float:
        """The earliest event time after ``detected`` was detected, and before ``until``, at which it is no longer
        held back (an alert's cooldown or an hour past the limit ended then, and :meth:`judge` would let it out or
        fold it); ``until`` where there is none. Nothing changes."""
        cooldown = self.spec.cooldown_s
        ends = {p.at + cooldown for p in self._passed[(model, kind)]} | {at + 3600 for at in self._recent[model]}
        for moment in sorted(t for t in ends if detected.event_ts < t < until):
            if self._verdict(model, kind, detected, moment) is not Verdict.HOLD:
                return moment
        return until

    def _verdict(self, model: str, kind: str, detected: Detected, now: float) -> Verdict:
        """:meth:`judge`'s verdict at ``now``, nothing recorded."""
        cooldown = self.spec.cooldown_s
        passed = [p for p in self._passed[(model, kind)] if now - p.at < cooldown + SLACK_S]
        folded = {f: at for f, at in self._folded[(model, kind)].items() if now - at < cooldown + SLACK_S}
        within = [p for p in passed if now - p.at < cooldown]
        verdict = judge_within(within, detected) if within else Verdict.PASS
        if verdict is Verdict.PASS and (_reported(passed, detected) or _folded(folded, detected)):
            verdict = Verdict.FOLD
        if verdict is not Verdict.FOLD and _names_a_move(passed, folded, detected, cooldown):
            verdict = Verdict.FOLD
        recent = sum(now - at < 3600 for at in self._recent[model])
        if verdict is Verdict.PASS and recent >= self.spec.max_alerts_per_hour:
            verdict = Verdict.HOLD
        return verdict

    def _forget(self, model: str, kind: str, now: float) -> None:
        """Forget the alerts, folds and the hour's alerts that no judgment from ``now`` on reads."""
        passed, folded, recent = self._passed[(model, kind)], self._folded[(model, kind)], self._recent[model]
        cooldown = self.spec.cooldown_s
        while passed and now - passed[0].at >= cooldown + SLACK_S:
            passed.popleft()
        for feature in [f for f, at in folded.items() if now - at >= cooldown + SLACK_S]:
            del folded[feature]
        while recent and now - recent[0] >= 3600:
            recent.popleft()

    def record(self, model: str, kind: str, detected: Detected, *, at: float | None = None) -> None:
        """Count an alert that went out at ``at`` (by default when it was detected: :meth:`judge`'s, or one
        recorded before a restart, read back)."""
        event_ts, feature, signal, change_ts, named = detected
        at = event_ts if at is None else at
        self._passed[(model, kind)].append(
            Passed(event_ts, feature, at, event_ts if change_ts is None else change_ts, signal, named)
        )
        self._recent[model].append(at)


def judge_within(within: Sequence[Passed], detected: Detected) -> Verdict:
    """A detection within the cooldown of the alerts ``within``.

    Folded where another feature's change began when one of them did (a change point is uncertain by about as
    much as its detection took: a feature that moved less than theirs at the same moment is caught later, its
    change placed later; and one held back may be older than the alerts out since); where it is another signal
    of a feature one of them was of (its spread's chart, slower than its values', placed the change of a shift
    100 events late), or the same signal's change begun before that alert was detected (its chart starts its
    next reference at the change it alarmed on: a later alarm of it is a later change, however late it is
    found); and where one of them is of every feature (``joint``, ``mean_shift``: River's centroids that keep
    moving made a ``mean_shift`` alert, then one a feature as each one's chart fired), or it is and names no
    feature (``joint``). A ``correlation`` is of the features it names, judged as a feature is (and a
    correlation or mean shift that names a feature that moved is folded by :meth:`AlertPolicy.judge`); a
    feature's signal whose change began before a correlation naming it was detected folds into it. Otherwise it
    is a drift of its own: a new drift goes out at once while the alerts within are no
    more than :data:`NEW_DRIFTS`; the others, and a later change of the signal of one of them (the feature moved
    again, or back: ``streams.drift.cusum`` finds it in the reference learnt after the alarm), are held back
    until the cooldown allows them. So is an output's later change (``error``, ``score``: a model's error that
    rose, then rose again 400 events later, is two drifts), where the alerts within are all that output's: the
    outputs and the model's own signals that name no feature fold into any other alert of the cooldown.

    A second feature's shift 500 events after the first's was never reported: its chart took the shifted values
    for its next reference while the cooldown held its alert back; a third one's, 400 events after the
    second's, the same until session 55.

    >>> first = [Passed(event_ts=100.0, feature="amount", at=100.0, change_ts=90.0, signal="amount")]
    >>> age, amount = Detected(160.0, "age", "age", 150.0), Detected(160.0, "amount", "amount", 150.0)
    >>> judge_within(first, age).name, judge_within(first, amount).name  # another feature's; amount again
    ('PASS', 'HOLD')
    >>> judge_within(first, amount._replace(signal="amount:spread")).name  # the same drift, seen later
    'FOLD'
    >>> judge_within(first, age._replace(change_ts=125.0)).name  # placed 25 s after it was found, 35 s uncertain
    'FOLD'
    >>> judge_within([Passed(100.0, "", 100.0, 90.0)], age).name  # after a mean_shift's alert
    'FOLD'
    >>> judge_within([*first, Passed(130.0, "age", 130.0, 120.0)], Detected(190.0, "city", "city", 180.0)).name
    'HOLD'
    >>> judge_within([Passed(190.0, "city", 200.0, 180.0, "city")], Detected(130.0, "age", "age", 120.0)).name
    'PASS'

    (A second new drift in one cooldown; and one held back, older than the alert out since.)

    >>> pair = [Passed(100.0, "", 100.0, 90.0, "correlation", ("f8", "f9"))]
    >>> judge_within(pair, age).name, judge_within(pair, Detected(160.0, "f8", "f8:shape", 95.0)).name
    ('PASS', 'FOLD')

    (Another feature's drift after a correlation's alert; and a signal of one of its pair, begun before it.)

    >>> error = [Passed(100.0, "", 100.0, 90.0, "error")]
    >>> judge_within(error, Detected(160.0, "", "error", 150.0)).name  # the error rose again
    'HOLD'
    >>> judge_within(error, Detected(160.0, "", "error", 95.0)).name, judge_within(error, Detected(160.0)).name
    ('FOLD', 'FOLD')
    """
    event_ts, feature, signal, change_ts, _ = detected
    if change_ts is None:
        return Verdict.FOLD  # where it began is not known: as likely the same drift
    about = detected.about()
    if not about:  # an output, or the model's own signal naming no feature: its later change is held, the rest fold
        output = bool(signal) and signal not in RUNNING
        again = output and all(p.signal == signal and change_ts > p.event_ts for p in within)
        return Verdict.HOLD if again else Verdict.FOLD
    earliest = _earliest(event_ts, change_ts)
    again = False
    for p in within:
        theirs = p.about()
        if not theirs:
            return Verdict.FOLD  # of every feature
        shared = not theirs.isdisjoint(about)
        if not shared and earliest <= p.event_ts and p.earliest() <= event_ts:
            return Verdict.FOLD  # other features moved at the same moment
        if shared and (change_ts <= p.event_ts or (feature and p.feature == feature and p.signal != signal)):
            return Verdict.FOLD  # its change began before that alert was found, or the feature's other signal
        again = again or shared
    return Verdict.HOLD if again or len(within) > NEW_DRIFTS else Verdict.PASS


def _earliest(event_ts: float, change_ts: float) -> float:
    """The earliest a change detected at ``event_ts`` and placed at ``change_ts`` may have begun: a change point
    is uncertain by about as much as its detection took."""
    change_ts = min(change_ts, event_ts)
    return change_ts - (event_ts - change_ts)


def _about(feature: str, named: tuple[str, ...]) -> frozenset[str]:
    """The features a detection of ``feature`` (or of the model's own signals, "", naming ``named``) is about."""
    return frozenset((feature,)) if feature else frozenset(named)


def _names_a_move(passed: Sequence[Passed], folded: dict[str, float], detected: Detected, cooldown: float) -> bool:
    """Whether a detection of :data:`NAMING` names a feature that moved within a cooldown before its change may
    have begun, or since (an alert of that feature ``passed``, or a detection of it ``folded`` into another's):
    the feature's move seen together with the others, not a drift of its own."""
    if not detected.named or detected.change_ts is None:
        return False
    since = _earliest(detected.event_ts, detected.change_ts) - cooldown
    moved = {p.feature for p in passed if p.event_ts >= since} | {f for f, at in folded.items() if at >= since}
    return not moved.isdisjoint(detected.named)


def _folded(folded: dict[str, float], detected: Detected) -> bool:
    """Whether a detection of ``detected``'s feature was folded into an alert (``folded``: when, the latest) after
    its change began, and before it was detected: the drift's other signal, caught later (not one held back
    since before that fold, which a slow signal's wide uncertainty folded: a feature's shape)."""
    at = folded.get(detected.feature)
    return at is not None and detected.change_ts is not None and detected.change_ts <= at < detected.event_ts


def _reported(passed: Sequence[Passed], detected: Detected) -> bool:
    """Whether an alert of ``detected``'s feature (or of a feature it names: a correlation's, a mean shift's; or
    of the model's own signals, "") ``passed`` was detected after the change began: the drift's other signal,
    not a change of its own. A ``mean_shift`` alert is of every feature's values: a feature's detection that
    may have begun before it was detected (:func:`_earliest`) is of its drift (ten features moved 0.3σ each:
    the mean shift's alert, then two features' own charts 900 events later, past the cooldown, their changes
    placed 250 and 400 events late)."""
    event_ts, feature, signal, change_ts, _ = detected
    if change_ts is None:
        return False
    values = bool(feature) and not signal.endswith(NULL_RATE)  # a feature's null rate is a drift of its own
    earliest = _earliest(event_ts, change_ts)
    about = detected.about()

    def same(p: Passed) -> bool:  # of the same features (both naming some), or of the same feature ("": the model)
        theirs = p.about()
        return not theirs.isdisjoint(about) if theirs and about else p.feature == feature

    return any(
        (same(p) and change_ts <= p.event_ts) or (values and p.signal == MEAN_SHIFT and earliest <= p.event_ts)
        for p in passed
    )


def severity(signal_type: str, evidence: Evidence, reference_std: float) -> str:
    """How bad it is: the size of the shift, in reference standard deviations or in share of traffic."""
    if signal_type in CATEGORY_SIGNALS and "shares_reference_vs_window" in evidence.details:
        shares = evidence.details["shares_reference_vs_window"].values()
        distance = sum(abs(a - b) for a, b in shares) / 2  # total variation distance
        return "critical" if distance >= 0.3 else "warning" if distance >= 0.1 else "info"
    shift = abs(evidence.window_mean - evidence.reference_mean)
    if signal_type in {"error", "missing", "outliers"}:  # rates: the shift itself is the share of events affected
        return "critical" if shift >= 0.1 else "warning" if shift >= 0.03 else "info"
    effect = shift / max(reference_std, 1e-12)
    return "critical" if effect >= 1.0 else "warning" if effect >= 0.5 else "info"


def correlation_severity(change: float) -> str:
    """How bad a correlation's change is, by how far the most moved pair's correlation went (``0.0 → 0.6``:
    critical; a change of 0.2 or more: warning)."""
    return "critical" if change >= 0.5 else "warning" if change >= 0.2 else "info"
