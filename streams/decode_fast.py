"""The typed fast path of decoding: the rows the field rules (:mod:`streams.event_rules`) give, for messages
whose events all fit the contract's msgspec types (:mod:`streams.event_types`, parsed and type-checked in
C) with the few checks left; None (or False) whenever a rule finds anything to say, and the caller then
applies the field rules, which say it. ``tests/streams/test_decode_fast_path.py`` holds both paths to the
same result.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.infra.contract import EventError
from driftloop.streams.batch import Column, NumberRows
from driftloop.streams.event_rules import (
    OutcomeRow,
    PredictionRow,
    known_features,
    learn_names,
    number_text,
    outcome_id,
    prediction_id,
    prediction_ids,
    rfc3339_epoch,
    shadow_key,
    value_text,
)
from driftloop.streams.event_types import (
    MAX_EPOCH,
    NumericPrediction,
    OutcomeEvent,
    PredictionEvent,
    parse_outcomes,
    parse_predictions,
    parse_single_outcomes,
    parse_single_predictions,
)

if TYPE_CHECKING:
    from driftloop.streams.decode import Columns

Row = PredictionRow | OutcomeRow


def fast_predictions(value: bytes, position: int, out: Columns) -> bool:
    """The rows of one message's prediction events into ``out``; False (nothing added) when they do not fit."""
    events = parse_predictions(value)
    return events is not None and _add_predictions(events, itertools.repeat(position, len(events)), out)


def fast_single_predictions(values: list[bytes], first_position: int, out: Columns) -> bool:
    """The rows of messages of one prediction event each (positions from ``first_position`` on) into ``out``,
    parsed at once; False (nothing added) unless every message fits."""
    events = parse_single_predictions(values)
    return events is not None and _add_predictions(events, range(first_position, first_position + len(values)), out)


def _add_predictions(
    events: list[NumericPrediction] | list[PredictionEvent], positions: Iterable[int], out: Columns
) -> bool:
    if events and type(events[0]) is NumericPrediction:
        names = _numeric_feature_names(events)  # type: ignore[arg-type]
        if names is None:
            return False
        out.add_numeric_predictions(events, names, list(positions))  # type: ignore[arg-type]
        return True
    shared: list[list[str]] = [[]]  # envelopes repeat one list of feature names: the rows share one copy

    def to_row(event: PredictionEvent, position: int) -> PredictionRow | None:
        return _typed_prediction_row(event, position, shared)

    rows = _typed_rows(events, positions, to_row)
    if rows is None:
        return False
    out.add_rows(rows)
    return True


def fast_outcomes(value: bytes, position: int, out: Columns) -> bool:
    """The rows of one message's outcome events into ``out``; False (nothing added) when they do not fit."""
    events = parse_outcomes(value)
    return events is not None and _add_outcomes(events, itertools.repeat(position, len(events)), out)


def fast_single_outcomes(values: list[bytes], first_position: int, out: Columns) -> bool:
    """:func:`fast_single_predictions` for outcomes."""
    events = parse_single_outcomes(values)
    return events is not None and _add_outcomes(events, range(first_position, first_position + len(values)), out)


def _add_outcomes(events: list[OutcomeEvent], positions: Iterable[int], out: Columns) -> bool:
    rows = _typed_rows(events, positions, _typed_outcome_row)
    if rows is None:
        return False
    out.add_rows(rows)
    return True


def _typed_rows(
    events: list[Any], positions: Iterable[int], to_row: Callable[[Any, int], Row | None]
) -> list[Row] | None:
    """Every event's row (each at its message's position), or None as soon as one has anything for the field
    rules to say (a rule raising ``EventError`` included: the field rules say it again, with the event's place)."""
    rows = []
    for event, position in zip(events, positions, strict=True):
        try:
            row = to_row(event, position)
        except EventError:
            return None
        if row is None:
            return None
        rows.append(row)
    return rows


def _typed_prediction_row(event: PredictionEvent, position: int, shared: list[list[str]]) -> PredictionRow | None:
    """``event`` as a row, or None when the field rules have something to say; ``shared[0]``: the feature names
    of the event before, which this one's take when they are the same."""
    epoch = _typed_epoch(event.ts)
    if epoch is None:
        return None
    model, request_id = event.model, event.request_id
    features = event.features
    names = list(features)
    if names == shared[0]:
        names = shared[0]
    else:
        if not known_features.issuperset(names):
            learn_names(names)
        shared[0] = names
    values = list(features.values())
    if _FLOAT.issuperset(map(type, values)):
        num_names, num_values, cat_names, cat_values, missing = names, values, [], [], []
    else:
        num_names, num_values, cat_names, cat_values, missing = _typed_features(names, values)
    prediction_text, prediction_num = value_text(event.prediction, "prediction")
    score, labels, probabilities = _typed_score(event.score, prediction_text)
    ts_ms = round(epoch * 1000)
    return PredictionRow(
        prediction_id(event.event_id, model, request_id, ts_ms, shadow_key(event.served, event.model_version)),
        model,
        event.model_version or 0,
        request_id,
        int(epoch),
        ts_ms,
        num_names,
        num_values,
        cat_names,
        cat_values,
        missing,
        prediction_text,
        prediction_num,
        score,
        labels,
        probabilities,
        int(event.served),
        math.nan if event.latency_ms is None else event.latency_ms,
        position,
    )


Split = tuple[Callable[[list[Any]], list[Any]], Callable[[list[Any]], list[Any]], Callable[[list[Any]], list[Any]]]
_splits: dict[tuple[type, ...], Split] = {}


def _typed_features(
    names: list[str], values: list[Any]
) -> tuple[list[str], list[float], list[str], list[str], list[str]]:
    """:func:`features_one_by_one` of values msgspec has checked (each a finite float, a string of at most
    ``MAX_TEXT`` characters, or None): split by the pattern of their types, which an envelope's events repeat."""
    kinds = tuple(map(type, values))
    split = _splits.get(kinds)
    if split is None:
        split = tuple(_picker([k for k, kind in enumerate(kinds) if kind is want]) for want in (float, str, type(None)))
        if len(_splits) < 10_000:
            _splits[kinds] = split  # type: ignore[assignment]
    numeric, categorical, null = split  # type: ignore[misc]
    return numeric(names), numeric(values), categorical(names), categorical(values), null(names)


def _picker(places: list[int]) -> Callable[[list[Any]], list[Any]]:
    """A function that takes the items at ``places`` of a list, as a list (in C but for the last step)."""
    if not places:
        return lambda _: []
    if len(places) == 1:
        (place,) = places
        return lambda items: [items[place]]
    get = operator.itemgetter(*places)
    return lambda items: list(get(items))


def _typed_score(value: float | dict[str, float] | None, prediction: str) -> tuple[float, list[str], list[float]]:
    """:func:`score_of` of a score msgspec has checked (finite numbers)."""
    if value is None:
        return math.nan, [], []
    if type(value) is dict:
        probabilities = list(value.values())
        score = value.get(prediction)
        return (score if score is not None else max(probabilities, default=math.nan)), list(value), probabilities
    return value, [], []  # type: ignore[return-value]


def _typed_outcome_row(event: OutcomeEvent, position: int) -> OutcomeRow | None:
    epoch = _typed_epoch(event.ts)
    if epoch is None:
        return None
    model, request_id = event.model, event.request_id
    label_text, label_num = value_text(event.label, "label")
    ts_ms = round(epoch * 1000)
    event_id = outcome_id(event.event_id, model, request_id, ts_ms, label_text)
    value = math.nan if event.value is None else event.value
    return OutcomeRow(event_id, model, request_id, int(epoch), ts_ms, label_text, label_num, value, position)


def _typed_epoch(ts: float | str) -> float | None:
    """Epoch seconds of ``ts`` when the field rules would take it, else None (they say why)."""
    try:
        epoch = rfc3339_epoch(ts) if type(ts) is str else ts
    except EventError:
        return None
    return epoch if 0 <= epoch < MAX_EPOCH else None


_FLOAT = frozenset({float})
_features_of = operator.attrgetter("features")


def _numeric_feature_names(events: list[NumericPrediction]) -> list[list[str]] | None:
    """Each event's feature names (events that repeat the names before share one list), or None when a
    name breaks the contract (the field rules say which)."""
    names: list[list[str]] = []
    shared: list[str] = []
    for event in events:
        current = list(event.features)
        if current != shared:
            if not known_features.issuperset(current):
                try:
                    learn_names(current)
                except EventError:
                    return None
            shared = current
        names.append(shared)
    return names


def _numeric_feature_values(events: list[NumericPrediction], names: list[list[str]]) -> NumberRows | list[list[float]]:
    """The events' feature values: one matrix when every event sent the same names (in the same order)."""
    width = len(names[0]) if names else 0
    if width and names.count(names[0]) == len(names):  # rows share one list of names: compared at once
        values = itertools.chain.from_iterable(map(dict.values, map(_features_of, events)))
        return NumberRows(np.fromiter(values, np.float64, width * len(events)).reshape(len(events), width))
    return [list(e.features.values()) for e in events]


def numeric_prediction_columns(
    events: list[NumericPrediction], names: list[list[str]], positions: list[int]
) -> list[Column]:
    """The ``predictions`` columns (and message positions) of :class:`NumericPrediction` events, built a
    column at a time: the same values as :func:`prediction_row` gives event by event."""
    count = len(events)
    models = [e.model for e in events]
    request_ids = [e.request_id for e in events]
    epochs = np.array([e.ts for e in events])
    ts_ms = np.rint(epochs * 1000).astype(np.int64).tolist()  # round() to even, as the field rules do
    predictions = [e.prediction for e in events]
    if _FLOAT.issuperset(map(type, predictions)):
        numbers = np.array(predictions)
        if np.all((numbers == np.trunc(numbers)) & (np.abs(numbers) < 1e15)):
            texts = list(map(str, numbers.astype(np.int64).tolist()))
        else:
            texts = list(map(number_text, predictions))
        prediction_nums = predictions
    else:
        texts, prediction_nums = (
            list(c) for c in zip(*(value_text(p, "prediction") for p in predictions), strict=True)
        )
    scores = [e.score for e in events]
    if None in scores:
        scores = [math.nan if s is None else s for s in scores]
    none: list[Any] = []  # every row's (empty) categorical features, nulls and class probabilities
    served = [e.served for e in events]
    everyone = all(served)  # the common case: no shadow among them
    latencies = [e.latency_ms for e in events]
    if None in latencies:
        latencies = [math.nan if ms is None else ms for ms in latencies]
    return [
        prediction_ids(
            [e.event_id for e in events],
            models,
            request_ids,
            ts_ms,
            [""] * count if everyone else [shadow_key(e.served, e.model_version) for e in events],
        ),
        models,
        [e.model_version or 0 for e in events],
        request_ids,
        epochs.astype(np.int64).tolist(),
        ts_ms,
        names,
        _numeric_feature_values(events, names),
        [none] * count,
        [none] * count,
        [none] * count,
        texts,
        prediction_nums,
        scores,
        [none] * count,
        [none] * count,
        [1] * count if everyone else list(map(int, served)),
        latencies,
        positions,
    ]
