"""From a batch of one model's predictions to the values of each of its signals.

Every numeric feature (its values; with ``monitoring.spread`` its distance from the warm-up's centre; with
``monitoring.outliers`` the rate of its values far out of its reference's range, :func:`_outliers`; with
``monitoring.shape`` the bin of its reference's deciles each value falls in, :func:`_shape`), every
categorical feature, every feature's null rate, the ``joint`` signal of the numeric features together, the
``correlation`` and ``mean_shift`` signals of the features together, and the score and prediction of each
serving version (and a numeric one's shape). New feature names are admitted up to
``monitoring.max_features``; the rest are counted, not watched.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, NamedTuple

import numpy as np

from driftloop.streams.batch import CodedTexts
from driftloop.streams.drift.cusum import DECILES
from driftloop.streams.drift.frame import FeatureColumns, FeaturesByEvent, ModelPredictions
from driftloop.streams.drift.joint import JointDrift
from driftloop.streams.drift.multivariate import MultivariateSignals
from driftloop.streams.drift.signal_names import CORRELATION, JOINT, MEAN_SHIFT, SHAPE, VERSION_MARK, feature_signal
from driftloop.streams.drift.signals import JOINT_REFERENCE, MIN_REFERENCE, ModelState, family
from driftloop.streams.event_rules import number_in

log = logging.getLogger("driftloop.drift")


class SignalValues(NamedTuple):
    """One signal's values in a batch: its name and type, and the batch positions the values are at.

    Numbers come as a float array (a feature's column of the batch's matrix), categories as a list:
    the detectors take both (``streams.drift.detectors``), and a list of a 5,000-event batch's values cost
    more to make and to read back than the CUSUM charts cost to run over them."""

    name: str
    signal_type: str
    positions: list[int]
    values: np.ndarray | list[Any]


class Together(NamedTuple):
    """A batch's features as the ``correlation`` and ``mean_shift`` signals take them (:func:`multivariate_rows`),
    for the monitor to score once it knows which features the batch moved, and where (``streams.drift.monitor``)."""

    count: int
    numeric: dict[str, Any]
    categorical: dict[str, Any]


def prediction_signals(state: ModelState, part: ModelPredictions) -> tuple[list[SignalValues], Together | None]:
    """Every signal's values in ``part`` (watching the features it sends for the first time) but the
    ``correlation`` and ``mean_shift`` signals', and their input (None where the spec turns both off)."""
    spec = state.spec
    every = list(range(len(part)))
    nulls: dict[str, np.ndarray] = {}  # a feature's nulls, where the events sent it: 1.0 an event sent it null
    if isinstance(part.features, FeatureColumns):
        # the common case: one column per feature, and the watched features the events lack are absent
        # from every one of them (none of those is new)
        numeric, categorical, nulls = _pivot(state, part.features, every)
        absent = state.features - set(nulls)
        missing_rows: list[set[str]] = []
        sent: set[str] = set(nulls)
    else:
        numeric, categorical, missing_rows = _rows_one_by_one(state, part.features)
        absent = None
        sent = set(numeric) | set(categorical) | set().union(*missing_rows)
    new = sent - state.features
    if new:
        _admit(state, new, numeric, categorical, missing_rows)
    for name, positions in _one_type_each(state, numeric, categorical).items():
        if absent is None:
            for position in positions:
                missing_rows[position].add(name)
        else:
            nulls[name] = nulls[name].copy()
            nulls[name][positions] = 1.0
    signals: list[SignalValues] = []
    signals += [SignalValues(feature_signal(name), "numeric", p, v) for name, (p, v) in numeric.items()]
    if spec.monitoring.spread:
        signals += [
            SignalValues(f"{name}:spread", "numeric", p, _spread(state, name, v)) for name, (p, v) in numeric.items()
        ]
    if spec.monitoring.outliers:
        for name, (p, v) in numeric.items():
            far = _far(state, name)
            if far is not None:
                signals.append(SignalValues(f"{name}:outliers", "outliers", p, _outliers(v, far)))
    if spec.monitoring.shape:
        signals += _shapes(state, [(feature_signal(name), f"{name}{SHAPE}", p, v) for name, (p, v) in numeric.items()])
    signals += [SignalValues(feature_signal(name), "categorical", p, v) for name, (p, v) in categorical.items()]
    if isinstance(part.features, FeatureColumns) and spec.monitoring.enabled(JOINT):
        signals += _joint_signal(state, part.features, numeric)
    together = None
    if spec.monitoring.enabled(CORRELATION) or spec.monitoring.enabled(MEAN_SHIFT):
        together = Together(len(part), numeric, categorical)
    for name in sorted(state.features):
        if absent is None:
            rate = np.array([name in r for r in missing_rows], dtype=float)
        else:
            rate = nulls[name] if name in nulls else np.full(len(part), float(name in absent))
        signals.append(SignalValues(f"{name}:null_rate", "missing", every, rate))
    for version, rows in _by_version(part.versions):
        signals += _output_signals(state, part, version, every if rows is None else rows.tolist())
    return signals, together


def _one_type_each(state: ModelState, numeric: dict[str, Any], categorical: dict[str, Any]) -> dict[str, list[int]]:
    """Settle each feature sent both as numbers and as text (in this batch, or against the type its detector was
    made for) and each one its spec declares numeric: a numeric feature's texts that read as numbers ("12.50",
    as a CSV- or JavaScript-fed service sends them) are its values, and the rest ("unknown", "N/A") count as
    missing in its null rate, whose rise is then a drift; a categorical feature's numbers are categories (their
    text, as a spec's categorical feature has them). A feature neither declared nor watched yet is of the type
    of most of its values in the batch. Returns the positions of each numeric feature's missing texts."""
    as_missing: dict[str, list[int]] = {}
    declared = state.spec.features
    watched = state.signals
    for name in [
        n for n in categorical if n in numeric or feature_signal(n) in watched or declared.get(n) == "numeric"
    ]:
        if _watched_as_numbers(state, name, numeric, categorical):
            read, unread = _numbers_of(*categorical.pop(name))
            if read[0]:
                positions, values = _merged(numeric[name], read) if name in numeric else read
                numeric[name] = (positions, np.asarray(values, dtype=np.float64))
            if unread:
                as_missing[name] = unread
        elif name in numeric:
            positions, numbers = numeric.pop(name)
            categorical[name] = _merged(categorical[name], (positions, [str(v) for v in np.asarray(numbers).tolist()]))
    for name in [n for n in numeric if (s := watched.get(feature_signal(n))) and family(s.signal_type) != "numbers"]:
        positions, values = numeric.pop(name)
        categorical[name] = (positions, [str(v) for v in np.asarray(values).tolist()])
    if as_missing:
        if state.type_changes == 0:
            log.warning(
                "a numeric feature was sent as text that is no number: such values count as missing in its null rate",
                extra={"fields": {"model": state.spec.name, "features": sorted(as_missing)}},
            )
        state.type_changes += sum(map(len, as_missing.values()))
    return as_missing


def _watched_as_numbers(state: ModelState, name: str, numeric: dict[str, Any], categorical: dict[str, Any]) -> bool:
    """Whether a feature sent as text (and maybe as numbers) is watched as a numeric one."""
    declared = state.spec.features.get(name)
    if declared is not None:
        return declared == "numeric"
    signal = state.signals.get(feature_signal(name))
    if signal is not None:
        return family(signal.signal_type) == "numbers"
    return name in numeric and len(numeric[name][0]) >= len(categorical[name][0])


def _numbers_of(positions: list[int], texts: list[str]) -> tuple[tuple[list[int], list[float]], list[int]]:
    """The texts that read as finite numbers, with their positions; and the positions of the rest."""
    read: tuple[list[int], list[float]] = ([], [])
    unread: list[int] = []
    for position, text in zip(positions, texts, strict=True):
        number = number_in(text)
        if number is None:
            unread.append(position)
        else:
            read[0].append(position)
            read[1].append(number)
    return read, unread


def _merged(first: tuple[list[int], Any], second: tuple[list[int], Any]) -> tuple[list[int], list[Any]]:
    """Two parts of one feature's values (positions, values), as one in the order of their positions."""
    positions = list(first[0]) + list(second[0])
    values = [*np.asarray(first[1], dtype=object).tolist(), *np.asarray(second[1], dtype=object).tolist()]
    order = np.argsort(positions, kind="stable").tolist()
    return [positions[i] for i in order], [values[i] for i in order]


def _joint_signal(state: ModelState, features: FeatureColumns, numeric: dict[str, Any]) -> list[SignalValues]:
    """The ``joint`` signal, each event's PCA reconstruction error over the watched numeric features, once
    their reference is complete (``streams.drift.joint``)."""
    if state.joint is None:
        names = sorted(n for n in features.numeric_names if n in numeric)
        if len(names) < 2:
            return []
        state.joint = JointDrift(names, reference_size=max(state.spec.monitoring.warmup, JOINT_REFERENCE))
    column = {name: i for i, name in enumerate(features.numeric_names)}
    if not all(name in column for name in state.joint.names):
        return []  # events without every feature of the reference are not scored
    rows = features.numeric[:, [column[name] for name in state.joint.names]]
    complete = ~np.isnan(rows).any(axis=1)  # an event with a null among them is not scored
    scored = np.arange(len(rows)) if complete.all() else np.flatnonzero(complete)
    if len(scored) < len(rows):
        rows = rows[scored]
    errors = state.joint.update(rows) if len(rows) else None
    if errors is None:
        return []
    return [SignalValues(JOINT, "numeric", scored[-len(errors) :].tolist(), errors)]


def multivariate_rows(state: ModelState, together: Together) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the ``correlation`` and ``mean_shift`` signals in a batch (the numeric features and the
    categorical ones' main categories together, ``streams.drift.multivariate``), and their positions in it:
    none while their reference is gathered."""
    if state.multivariate is None:
        state.multivariate = MultivariateSignals(reference_size=max(state.spec.monitoring.warmup, JOINT_REFERENCE))
    return state.multivariate.rows(*together)


def multivariate_signals(state: ModelState, rows: np.ndarray, positions: np.ndarray) -> list[SignalValues]:
    """The ``correlation`` and ``mean_shift`` signals (those the spec leaves on) of ``rows`` (at ``positions``,
    :func:`multivariate_rows`), once their directions settled."""
    scored = state.multivariate.score(rows, positions) if state.multivariate is not None else None
    if scored is None or not len(scored.positions):
        return []
    scored_at = scored.positions.tolist()
    return [
        SignalValues(name, name, scored_at, scores)
        for name, scores in ((CORRELATION, scored.correlation), (MEAN_SHIFT, scored.mean_shift))
        if state.spec.monitoring.enabled(name)
    ]


def _output_signals(state: ModelState, part: ModelPredictions, version: int, rows: list[int]) -> list[SignalValues]:
    """The score and prediction signals of the events ``version`` served (positions ``rows`` of ``part``)."""
    signals: list[SignalValues] = []
    every = len(rows) == len(part)
    scores = part.score if every else part.score[rows]
    sent = ~np.isnan(scores)
    if sent.all():
        signals.append(SignalValues(f"score{VERSION_MARK}{version}", "score", rows, scores))
    elif sent.any():
        scored = np.flatnonzero(sent)
        positions = scored.tolist() if every else [rows[i] for i in scored.tolist()]
        signals.append(SignalValues(f"score{VERSION_MARK}{version}", "score", positions, scores[scored]))
    numbers = part.prediction_num if every else part.prediction_num[rows]
    fractional = ~np.isnan(numbers) & ((numbers != np.trunc(numbers)) | np.isinf(numbers))
    name = f"prediction{VERSION_MARK}{version}"
    watched = state.signals.get(name)
    # numbers: a regression's (by its spec, by a fraction among them, or as they were first watched), whose
    # whole values (a 0.0 clipped at the floor) stay numbers; "all fractional" made a batch with one 0.0 a batch
    # of classes, skipped as a type change: a regression's prediction drift went unwatched
    if state.spec.task == "regression" or (watched.signal_type == "score" if watched is not None else fractional.any()):
        signals.append(SignalValues(name, "score", rows, numbers))
    else:
        signals.append(
            SignalValues(name, "prediction", rows, part.prediction if every else [part.prediction[i] for i in rows])
        )
    if state.spec.monitoring.shape:  # a numeric output's shape: score:shape@v3 beside score@v3
        numeric = [s for s in signals if s.signal_type == "score"]
        signals += _shapes(state, [(s.name, _shape_of_output(s.name), s.positions, s.values) for s in numeric])
    return signals


def _shape_of_output(name: str) -> str:
    """``score@v3`` → ``score:shape@v3``."""
    base, mark, version = name.partition(VERSION_MARK)
    return f"{base}{SHAPE}{mark}{version}"


def _pivot(
    state: ModelState, features: FeatureColumns, every: list[int]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Signals of a feature's column: its values (where the events sent one), and its nulls (1.0 where an
    event sent it null, or left it out)."""
    numeric: dict[str, tuple[list[int], Any]] = {}
    categorical: dict[str, tuple[list[int], Any]] = {}
    nulls: dict[str, np.ndarray] = {}
    count = len(every)
    for name, column in zip(features.numeric_names, np.ascontiguousarray(features.numeric.T), strict=True):
        null = np.isnan(column)
        nulls[name] = null.astype(float)
        positions, values = every, column
        if null.any():
            held = np.flatnonzero(~null)
            if not len(held):
                continue
            positions, values = held.tolist(), column[held]
        if state.spec.features.get(name) == "categorical":
            categorical[name] = (positions, [str(v) for v in values.tolist()])
        else:
            numeric[name] = (positions, values)
    for name, texts in zip(features.categorical_names, features.categorical, strict=True):
        null, sent = texts.without_nulls()
        nulls[name] = null.astype(float)
        if len(sent):
            categorical[name] = (every if sent is texts else np.flatnonzero(~null).tolist(), sent)
    for name in features.null_names:
        nulls[name] = np.ones(count)
    return numeric, categorical, nulls


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


def _spread(state: ModelState, name: str, values: Any) -> np.ndarray:
    """|x - centre|, the centre being the mean of the feature's warm-up: its mean catches variance changes."""
    values = np.asarray(values, dtype=float)
    centre = state.centres.setdefault(name, [0.0, 0.0])
    warmup = max(state.spec.monitoring.warmup, 1)  # warmup 0: the centre is the first value
    if centre[1] < warmup:
        take = values[: int(warmup - centre[1])]
        centre[0] += sum(take.tolist())
        centre[1] += len(take)
    mean = centre[0] / centre[1]
    return np.abs(values - mean)


def _far(state: ModelState, name: str) -> tuple[float, float] | None:
    """Where a numeric feature's outliers begin: a whole width of its reference's range (its 1st to 99th
    percentiles, as its detector holds it) below and above that range; None until its detector has learnt it
    (or when it holds none: a 0/1 feature, a constant, a detector of River's). Taken once, as the spread's
    centre is: the detector's next references, after an alarm, do not move it."""
    far = state.far.get(name)
    if far is None:
        calibration = _calibration(state, feature_signal(name))
        if calibration is None or not getattr(calibration, "bounded", False):
            return None
        width = calibration.high - calibration.low
        far = state.far[name] = (calibration.low - width, calibration.high + width)
    return far


def _shapes(state: ModelState, numbers: list[tuple[str, str, list[int], Any]]) -> list[SignalValues]:
    """The shape signals of numeric signals (``(watched, shape, positions, values)``: the signal whose values'
    detector gives the bins, and the shape signal's name), each once its bins are known."""
    signals = []
    for watched, shape, positions, values in numbers:
        edges = _bins(state, watched, shape, values)
        if edges is not None:
            signals.append(SignalValues(shape, "shape", positions, _shape(values, edges)))
    return signals


def _bins(state: ModelState, watched: str, shape: str, values: Any) -> np.ndarray | None:
    """The edges of the bins of ``shape`` (a feature's, or a numeric output's): the distinct deciles of the
    reference of ``watched``'s values, as its detector learnt them (taken once, as a feature's outliers' range
    is; a detector's reference restored from a state saved before the shape signal has none, and they are taken
    from the next values). None until they are known, for a detector of River's, and for values of fewer than
    :data:`MIN_EDGES` distinct deciles (a 0/1 flag, a count mostly 0): the shares of so few bins are the mean's,
    which the values' own chart watches."""
    edges = state.bins.get(shape)
    if edges is None:
        calibration = _calibration(state, watched)
        if calibration is None or not getattr(calibration, "bounded", False):
            return None  # not learnt yet, River's, or a rate or a constant (no deciles)
        deciles = getattr(calibration, "deciles", ()) or _deciles_of_next(state, shape, values)
        if not deciles:
            return None
        edges = state.bins[shape] = tuple(sorted(set(deciles)))
    return np.asarray(edges) if len(edges) >= MIN_EDGES else None


def _deciles_of_next(state: ModelState, shape: str, values: Any) -> tuple[float, ...]:
    """The deciles of a shape signal's values from now, once a warm-up of them has come (none before)."""
    size = max(state.spec.monitoring.warmup, MIN_REFERENCE)
    gathered = state.shape_reference.setdefault(shape, [])
    gathered += np.asarray(values, dtype=float)[: size - len(gathered)].tolist()
    if len(gathered) < size:
        return ()
    del state.shape_reference[shape]
    return tuple(np.quantile(gathered, DECILES).tolist())


#: The fewest distinct deciles (bin edges) a feature's shape signal takes: three, four bins.
MIN_EDGES = 3
#: The shape signal's categories: a bin's number, as text (the alert names its range).
BIN_TEXTS = [str(b) for b in range(10)]


def _shape(values: Any, edges: np.ndarray) -> CodedTexts:
    """The bin each value falls in: bin ``b`` holds the values above edge ``b - 1`` up to edge ``b``, the first
    those up to the first edge and the last those above the last. A stationary feature's values fall about a
    tenth in each bin (more where deciles coincide); a change of shape that keeps the mean and the spread (a
    Gaussian feature turned uniform, rounded to whole numbers, or split into two modes) moves the shares, which
    the category detector tests.

    >>> _shape(np.array([-2.0, -1.0, 0.5, 3.0]), np.array([-1.0, 0.0, 1.0])).codes.tolist()
    [0, 0, 2, 3]
    """
    codes = np.searchsorted(edges, np.asarray(values, dtype=float), side="left")
    return CodedTexts(BIN_TEXTS[: len(edges) + 1], codes)


def _calibration(state: ModelState, name: str) -> Any:
    """The calibration of the detector of the numeric signal ``name`` (None before it has learnt one, or for a
    detector that has none: River's)."""
    signal = state.signals.get(name)
    return getattr(signal.detector, "calibration", None) if signal is not None else None


def _outliers(values: Any, far: tuple[float, float]) -> np.ndarray:
    """1.0 where a value lies beyond ``far`` (NaN, a null, is not), else 0.0.

    The detector holds a feature's values within its reference's range, so that a heavy tail's rare huge
    value is not a drift (``streams.drift.cusum``, point 5); values far past that range in number are what
    this rate catches: one event in a hundred sent in other units (a thousand times the value) is a data
    drift within a few hundred events, where the held values would never show it. A Gaussian feature's far
    range lies 7 standard deviations out: its rate is 0 and a run of zeros costs its detector nothing.

    >>> _outliers(np.array([0.5, 9.0, -5.0, np.nan]), (-4.0, 5.0)).tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    values = np.asarray(values, dtype=float)
    return ((values < far[0]) | (values > far[1])).astype(float)


def _by_version(versions: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
    """Each serving version's event positions (``None``: every event), versions in ascending order."""
    first = int(versions[0]) if len(versions) else 0
    if not len(versions) or (versions == first).all():
        return [(first, None)]
    return [(int(v), np.flatnonzero(versions == v)) for v in np.unique(versions)]
