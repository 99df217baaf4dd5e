"""The typed fast path of decoding: the rows the field rules (:mod:`streams.event_rules`) give, for messages
whose events all fit the contract's msgspec types (:mod:`streams.event_types`, parsed and type-checked in
C) with the few checks left; None (or False) whenever a rule finds anything to say, and the caller then
applies the field rules, which say it. ``tests/streams/test_decode_fast_path.py`` holds both paths to the
same result.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from driftloop.infra.contract import EventError
from driftloop.streams.batch import Column, GappedNumberRows, GappedTextRows, NumberRows, TextRows
from driftloop.streams.event_rules import (
    OutcomeRow,
    PredictionRow,
    boolean_text,
    epoch_seconds,
    known_features,
    learn_names,
    number_text,
    outcome_id,
    outcome_ids,
    prediction_id,
    prediction_ids,
    shadow_key,
    text_epoch,
    value_text,
)
from driftloop.streams.event_types import (
    MAX_EPOCH,
    MICROSECONDS_FROM,
    MILLISECONDS_FROM,
    NANOSECONDS_FROM,
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


class Parsed(NamedTuple):
    """A message's events as the types parsed them (:mod:`streams.event_types`), before they join a batch."""

    events: list[Any]
    names: list[list[str]]  # each prediction's feature names (none for outcomes)
    shape: Hashable | None  # messages of one shape join a batch together (None: this one alone)

    def models(self) -> set[str]:
        """The models of its events."""
        return set(map(_model_of, self.events))


class AddEvents(Protocol):
    """Adds parsed events at their messages' positions to a batch, as columns (or, when ``rows``, as rows where
    they cannot be); False: none added."""

    def __call__(self, parsed: Parsed, positions: list[int], out: Columns, rows: bool = True) -> bool: ...


class FastPath(NamedTuple):
    """The fast path of one topic's messages."""

    # a message's events (given the batch's models to parse with the wider type first); None: the field rules take it
    parse: Callable[[bytes, dict[bytes, int]], Parsed | None]
    add: AddEvents
    add_single: Callable[[list[bytes], int, Columns], bool]  # messages of one event each, parsed at once


#: A model whose message did not fit the numeric type has its next this many messages of the batch parsed with the
#: wider type first, then tries the numeric one again (a model that sends a text feature never fits it; one whose
#: features are now and then null fits it some of the time).
WIDER_FIRST_FOR = 32


def _parse_in_order(
    value: bytes, wider_first: dict[bytes, int]
) -> list[NumericPrediction] | list[PredictionEvent] | None:
    """:func:`~streams.event_types.parse_predictions` of ``value``, with the type its model last fitted tried first.
    The numeric type (:class:`NumericPrediction`) fits the common event and makes the quickest columns, but finding
    that a message does not fit it costs a failed parse (msgspec's error and its text, some 3 µs): a fleet's
    envelopes of a few events with a text feature each paid it on every message, 0.6 µs an event. ``wider_first``
    (the batch's) counts, for each model whose message did not fit it, how many of its next messages are tried with
    the wider type first. The model is read from the message's bytes before it is parsed (:func:`_model_hint`, some
    0.4 µs, once a message of the batch has failed to fit): a hint only, as whichever type is tried first, a
    message fits the types or not the same way, and its events make the same rows."""
    model = _model_hint(value) if wider_first else None  # none read while every message fits the numeric type
    left = wider_first.get(model, 0) if model is not None else 0
    if left:
        wider_first[model] = left - 1  # type: ignore[index]  # a model: left is 0 without one
        return parse_predictions(value, numeric_first=False)
    events = parse_predictions(value)
    if events and type(events[0]) is PredictionEvent:
        model = _model_hint(value) if model is None else model
        if model is not None:
            wider_first[model] = WIDER_FIRST_FOR
    return events


def _model_hint(value: bytes) -> bytes | None:
    """The bytes of the text after the first ``"model"`` in a message's first bytes, or None.

    >>> _model_hint(b'{"events": [{"model": "fraud-v2", "request_id": "r1"}]}')
    b'fraud-v2'
    """
    at = value.find(b'"model"', 0, 512)
    start = value.find(b'"', at + 7, at + 32) if at >= 0 else -1
    end = value.find(b'"', start + 1, start + 130) if start >= 0 else -1
    return value[start + 1 : end] if end >= 0 else None


def parsed_predictions(value: bytes, wider_first: dict[bytes, int]) -> Parsed | None:
    """The prediction events of one message, or None when they do not fit the types (or a feature name breaks
    the contract); ``wider_first``: the batch's models to parse with the wider type first (:func:`_parse_in_order`).
    A message of :class:`PredictionEvent` has a shape, its models: the batch's messages of the same models
    become columns at once, which cost some 50 µs of numpy calls however many events (made a message at a time,
    envelopes of a few events took ten times as long as big ones). Numeric events need none: the batch gathers
    them itself (:meth:`Columns.add_numeric_predictions`)."""
    events = _parse_in_order(value, wider_first)
    if not events:  # not of the types, or an envelope of none (the field rules find nothing in it)
        return None
    names = _feature_names(events)
    if names is None:
        return None
    return Parsed(events, names, frozenset(map(_model_of, events)) if type(events[0]) is PredictionEvent else None)


def add_predictions(parsed: Parsed, positions: list[int], out: Columns, rows: bool = True) -> bool:
    """Prediction events into ``out``, as columns when they share a shape, else (when ``rows``) as rows; False
    (nothing added) when they cannot be, or one has something for the field rules to say."""
    events, names = parsed.events, parsed.names
    if type(events[0]) is NumericPrediction:
        out.add_numeric_predictions(events, names, positions)
        return True
    columns = prediction_columns(events, names, positions, out.interned)
    if columns is not None:  # the events share one shape (the common case): built a column at a time
        out.add_columns(columns)
        return True
    if not rows:
        return False
    shared: list[list[str]] = [[]]  # envelopes repeat one list of feature names: the rows share one copy

    def to_row(event: PredictionEvent, position: int) -> PredictionRow | None:
        return _typed_prediction_row(event, position, shared)

    typed = _typed_rows(events, positions, to_row)
    if typed is None:
        return False
    out.add_rows(typed)
    return True


def add_single_predictions(values: list[bytes], first_position: int, out: Columns) -> bool:
    """The rows of messages of one prediction event each (positions from ``first_position`` on) into ``out``,
    parsed at once; False (nothing added) unless every message fits."""
    events = parse_single_predictions(values)
    if events is None:
        return False
    names = _feature_names(events)
    positions = list(range(first_position, first_position + len(values)))
    return names is not None and add_predictions(Parsed(events, names, None), positions, out)


def parsed_outcomes(value: bytes, wider_first: dict[bytes, int]) -> Parsed | None:
    """The outcome events of one message, or None when they do not fit the types (one type: ``wider_first`` is
    not read). Any outcomes may join a batch together: one shape."""
    events = parse_outcomes(value)
    return Parsed(events, [], OutcomeEvent) if events else None


def add_outcomes(parsed: Parsed, positions: list[int], out: Columns, rows: bool = True) -> bool:
    """Outcome events into ``out``, as columns when their times and labels allow, else (when ``rows``) as rows;
    False (nothing added) when they cannot be, or one has something for the field rules to say."""
    events = parsed.events
    columns = _outcome_columns(events, positions)
    if columns is not None:
        out.add_columns(columns)
        return True
    if not rows:
        return False
    typed = _typed_rows(events, positions, _typed_outcome_row)  # times in RFC 3339, a label of another kind, ...
    if typed is None:
        return False
    out.add_rows(typed)
    return True


def add_single_outcomes(values: list[bytes], first_position: int, out: Columns) -> bool:
    """:func:`add_single_predictions` for outcomes."""
    events = parse_single_outcomes(values)
    positions = list(range(first_position, first_position + len(values)))
    return events is not None and add_outcomes(Parsed(events, [], None), positions, out)


PREDICTIONS = FastPath(parsed_predictions, add_predictions, add_single_predictions)
OUTCOMES = FastPath(parsed_outcomes, add_outcomes, add_single_outcomes)


def _outcome_columns(events: list[OutcomeEvent], positions: list[int]) -> list[Column] | None:
    """The columns of outcome events whose times are epoch seconds and whose labels are all numbers or all texts,
    as :func:`_typed_outcome_row` makes each row (the message position last); else None."""
    times = list(map(_ts_of, events))
    if _STR & set(map(type, times)):
        return None
    epochs = _in_range(np.array(times, dtype=np.float64))
    if epochs is None:
        return None
    labels = list(map(_label_of, events))
    kinds = set(map(type, labels))
    if kinds == _STR:
        texts, numbers = labels, [math.nan] * len(labels)
    elif kinds == _BOOL:
        texts, numbers = list(map(boolean_text, labels)), [math.nan] * len(labels)
    elif kinds == _FLOAT and np.isfinite(np.array(labels, dtype=np.float64)).all():
        text_of = {label: number_text(label) for label in set(labels)}  # a few labels: each printed once
        texts, numbers = list(map(text_of.__getitem__, labels)), labels
    else:
        return None
    models, request_ids = list(map(_model_of, events)), list(map(_request_id_of, events))
    ts_ms = np.rint(epochs * 1000).astype(np.int64).tolist()  # round(): to the nearest, halves to even
    event_ids = outcome_ids(list(map(_event_id_of, events)), models, request_ids, ts_ms, texts)
    values = [math.nan if value is None else value for value in map(_value_of, events)]
    seconds = epochs.astype(np.int64).tolist()  # int(): toward zero, and no time is negative
    return [event_ids, models, request_ids, seconds, ts_ms, texts, numbers, values, positions]


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
    ``MAX_TEXT`` characters, a boolean or None): split by the pattern of their types, which an envelope's events
    repeat."""
    kinds = tuple(map(type, values))
    if bool in kinds:  # a true or false feature is a category
        values = [boolean_text(v) if type(v) is bool else v for v in values]
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
        epoch = text_epoch(ts) if type(ts) is str else epoch_seconds(ts)
    except EventError:
        return None
    return epoch if 0 <= epoch < MAX_EPOCH else None


_FLOAT = frozenset({float})
_STR = frozenset({str})
_BOOL = frozenset({bool})
_ts_of = operator.attrgetter("ts")
_label_of = operator.attrgetter("label")
_model_of = operator.attrgetter("model")
_request_id_of = operator.attrgetter("request_id")
_event_id_of = operator.attrgetter("event_id")
_value_of = operator.attrgetter("value")
_DICT = frozenset({dict})
_FLOAT_OR_NONE = frozenset({float, type(None)})
_features_of = operator.attrgetter("features")


def _feature_names(events: list[NumericPrediction] | list[PredictionEvent]) -> list[list[str]] | None:
    """Each event's feature names (events that send the same names share one list), or None when a name breaks
    the contract (the field rules say which). Optional features make many runs of a few lists: each list is
    made once, and the batch's columns are then placed a list at a time, not a run at a time."""
    names: list[list[str]] = []
    shared: list[str] = []
    lists: dict[tuple[str, ...], list[str]] | None = None  # made once the names change within the message
    for event in events:
        current = list(event.features)
        if current != shared:
            if names:
                lists = lists if lists is not None else {tuple(shared): shared}
                current = lists.setdefault(tuple(current), current)
            if not known_features.issuperset(current):
                try:
                    learn_names(current)
                except EventError:
                    return None
            shared = current
        names.append(shared)
    return names


def _numeric_feature_values(events: list[NumericPrediction], names: list[list[str]]) -> NumberRows | list[list[float]]:
    """The events' feature values: one matrix when every event sent the same names (in the same order), of no
    columns when they sent none."""
    if names and names.count(names[0]) == len(names):  # rows share one list of names: compared at once
        width = len(names[0])
        values = itertools.chain.from_iterable(map(dict.values, map(_features_of, events)))
        return NumberRows(np.fromiter(values, np.float64, width * len(events)).reshape(len(events), width))
    return [list(e.features.values()) for e in events]


@dataclass
class Interned:
    """What the rows of one batch share instead of each holding its own: the list of every row without
    items (a column of one list over and over is written and read at once, compared by identity), the
    object of each text of a category or a class, the list of each run of names (a pattern of nulls).
    Made while the parsed events are still in the cache, they spare the batch's later passes (the
    detectors' coding, the insert, pickling) an object a value scattered over memory."""

    empty: list[Any] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    lists: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def names(self, names: list[str]) -> list[str]:
        """``names`` as the batch's one list of them (the empty list for none)."""
        return self.lists.setdefault(tuple(names), names) if names else self.empty


def prediction_columns(
    events: list[NumericPrediction] | list[PredictionEvent],
    names: list[list[str]],
    positions: list[int],
    interned: Interned,
) -> list[Column] | None:
    """The ``predictions`` columns (and message positions) of events, built a column at a time: the same
    values as :func:`prediction_row` gives event by event. None when they do not share one shape (each
    feature a number or null in every event, or a text or null) or one has something for the field rules
    to say; a list of :class:`NumericPrediction` events always gives columns. Rows without items, texts of
    categories and classes, and runs of names are the batch's (``interned``)."""
    count = len(events)
    empty, texts = interned.empty, interned.texts
    epochs = _epochs([e.ts for e in events])
    features = (
        _numeric_features(events, names, interned)  # type: ignore[arg-type]
        if type(events[0]) is NumericPrediction
        else _shared_features(events, names, interned)  # type: ignore[arg-type]
    )
    if epochs is None or features is None:
        return None
    models = [e.model for e in events]
    request_ids = [e.request_id for e in events]
    ts_ms = np.rint(epochs * 1000).astype(np.int64).tolist()  # round() to even, as the field rules do
    prediction_texts, prediction_nums = _prediction_texts([e.prediction for e in events], texts)
    scores, labels, probabilities = _scores([e.score for e in events], prediction_texts, empty)
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
        *features,
        prediction_texts,
        prediction_nums,
        scores,
        labels,
        probabilities,
        [1] * count if everyone else list(map(int, served)),
        latencies,
        positions,
    ]


def _epochs(stamps: list[float | str]) -> np.ndarray | None:
    """Epoch seconds of each ``ts``, or None when the field rules would refuse one (they say why)."""
    if _FLOAT.issuperset(map(type, stamps)):
        return _in_range(np.array(stamps, dtype=np.float64)) if stamps else None
    converted = list(map(_typed_epoch, stamps))
    return None if None in converted else np.array(converted, dtype=np.float64)


_UNITS_FROM = np.array([MILLISECONDS_FROM, MICROSECONDS_FROM, NANOSECONDS_FROM], dtype=np.float64)
_PER_SECOND = np.array([1.0, 1e3, 1e6, 1e9])


def _in_range(epochs: np.ndarray) -> np.ndarray | None:
    """Numbers of ``ts`` as epoch seconds (:func:`epoch_seconds`: milli-, micro- and nanoseconds divided), or
    None when one is out of range (the field rules say which)."""
    if not len(epochs):
        return epochs
    if epochs.max() >= MILLISECONDS_FROM:
        units = np.searchsorted(_UNITS_FROM, epochs, side="right")
        epochs = epochs / _PER_SECOND[units]
    return epochs if epochs.min() >= 0 and epochs.max() < MAX_EPOCH else None


def _numeric_features(
    events: list[NumericPrediction], names: list[list[str]], interned: Interned
) -> tuple[Column, ...]:
    """The feature columns of numeric events: no categorical features and no nulls. Features left out of some
    events are gaps in one matrix (:func:`_places`), where the events keep one order of names."""
    count, empty = len(events), interned.empty
    found = _places(names) if names and names.count(names[0]) != count else None
    if found is None:
        return names, _numeric_feature_values(events, names), [empty] * count, [empty] * count, [empty] * count
    union, spots = found
    grid = np.full(count * len(union), np.nan)
    grid[spots] = np.fromiter(itertools.chain.from_iterable(map(dict.values, map(_features_of, events))), np.float64)
    values = GappedNumberRows(grid.reshape(count, len(union)), union)
    return names, values, [empty] * count, [empty] * count, [empty] * count


def _shared_features(
    events: list[PredictionEvent], names: list[list[str]], interned: Interned
) -> tuple[Column, ...] | None:
    """The feature columns (``num.name``, ``num.value``, ``cat.name``, ``cat.value``, ``missing``) of events
    that all sent the same names, each feature a number (or null) in every event, or a text or a boolean (or
    null); or of events that left some of them out (:func:`_features_left_out`); else None."""
    shared, count, empty = names[0], len(events), interned.empty
    if names.count(shared) != count:  # rows share one list of names: compared at once
        return _features_left_out(events, names, interned)
    width = len(shared)
    flat = list(itertools.chain.from_iterable(map(dict.values, map(_features_of, events))))
    columns = [flat[j::width] for j in range(width)]
    types = list(map(type, flat))  # each feature's kind the first event's, in every event (compared in C)
    kinds = types[:width]
    if any(types[j::width].count(kind) != count for j, kind in enumerate(kinds)):
        return _features_with_nulls(shared, columns, types, interned)
    numeric = [j for j, kind in enumerate(kinds) if kind is float]
    categorical = [j for j, kind in enumerate(kinds) if kind is str or kind is bool]
    for j, kind in enumerate(kinds):
        if kind is bool:  # a true or false feature is a category
            columns[j] = list(map(boolean_text, columns[j]))
    null = [shared[j] for j, kind in enumerate(kinds) if kind is type(None)] or empty
    num_names = shared if len(numeric) == width else [shared[j] for j in numeric] or empty
    if numeric:
        matrix = np.empty((count, len(numeric)))
        for place, j in enumerate(numeric):
            matrix[:, place] = columns[j]
    cat_names = [shared[j] for j in categorical] or empty
    known = interned.texts.setdefault  # each text as the batch's one object of it
    return (
        [num_names] * count,
        NumberRows(matrix) if numeric else [empty] * count,
        [cat_names] * count,
        TextRows([list(map(known, columns[j], columns[j])) for j in categorical]) if categorical else [empty] * count,
        [null] * count,
    )


#: Events with nulls become columns an envelope of at least this many at a time: the columns cost some 100 µs
#: of numpy calls an envelope, the typed rows about 3 µs an event more (they cross at 10 to 20 events).
FEWEST_WITH_NULLS = 16
_NULL = type(None)
_is_null_kind = functools.partial(operator.is_, _NULL)


def _features_left_out(
    events: list[PredictionEvent], names: list[list[str]], interned: Interned
) -> tuple[Column, ...] | None:
    """The feature columns of events that did not all send the same names: each feature left out of some of
    them (optional features, sent when known). A left-out feature is a gap in its column, as a null is, but not
    in the row's ``missing``. None where :func:`_places` finds no grid, or :func:`_features_with_nulls` no
    columns."""
    found = _places(names)
    if found is None:
        return None
    union, spots = found
    count, width = len(events), len(union)
    grid = np.full(count * width, None, dtype=object)
    grid[spots] = list(itertools.chain.from_iterable(map(dict.values, map(_features_of, events))))
    left_out = np.ones(count * width, dtype=bool)
    left_out[spots] = False
    flat = grid.tolist()
    columns = [flat[j::width] for j in range(width)]
    return _features_with_nulls(union, columns, list(map(type, flat)), interned, left_out.reshape(count, width))


def _places(names: list[list[str]]) -> tuple[list[str], np.ndarray] | None:
    """For events that sent ``names`` (not all the same): every name, in an order each event keeps, and the place
    of each value sent in the (events × names) grid, row after row; None where two events order their names
    differently, or where gaps would be most of the grid (each event a few of many names)."""
    distinct = list({id(row): row for row in names}.values())  # envelopes' events repeat one list of names
    union = _merged_order(distinct)
    count, width = len(names), len(union) if union else 0
    lengths = np.fromiter(map(len, names), np.intp, count)
    if not width or int(lengths.sum()) * _DENSEST_GAPS < count * width:
        return None
    place = {name: j for j, name in enumerate(union)}  # type: ignore[union-attr]
    places = {id(row): [place[name] for name in row] for row in distinct}
    spots = np.repeat(np.arange(count, dtype=np.intp) * width, lengths)
    spots += np.fromiter(itertools.chain.from_iterable(map(places.__getitem__, map(id, names))), np.intp, len(spots))
    return union, spots  # type: ignore[return-value]


def _merged_order(rows: list[list[str]]) -> list[str] | None:
    """One order of every name of ``rows`` that each of them keeps (each a part of it, in order), or None.

    >>> _merged_order([["a", "c"], ["a", "b", "c"], ["b", "d"]]), _merged_order([["a", "b"], ["b", "a"]])
    (['a', 'b', 'd', 'c'], None)
    """
    order = list(max(rows, key=len))
    place = {name: j for j, name in enumerate(order)}
    for row in rows:
        if place.keys() >= set(row):
            continue  # the common case: nothing to add
        previous = -1
        for name in row:
            if name not in place:
                order.insert(previous + 1, name)  # right after the name before it in this row
                place = {name: j for j, name in enumerate(order)}
            previous = place[name]
    for row in rows:
        places = [place[name] for name in row]
        if any(later <= earlier for earlier, later in itertools.pairwise(places)):
            return None
    return order


#: Events that left features out become columns while they sent at least one in this many of the places.
_DENSEST_GAPS = 4


def _features_with_nulls(
    shared: list[str],
    columns: list[list[Any]],
    types: list[type],
    interned: Interned,
    left_out: np.ndarray | None = None,
) -> tuple[Column, ...] | None:
    """The feature columns of events that sent the same names, some features null in some events and a
    number (or a text) in the others: the values as one matrix with NaN for a null (a list a place with
    ``None`` for texts), each row's names and nulls one list a pattern of nulls. ``left_out`` (events ×
    places): the events that did not send a feature at all, a gap as a null is, but not among the row's
    nulls. None when a feature is a number in one event and a text in another, or for fewer than
    :data:`FEWEST_WITH_NULLS` events (the typed rows take them, event by event)."""
    width, count = len(shared), len(columns[0])
    if count < FEWEST_WITH_NULLS:
        return None
    kinds = [set(types[j::width]) for j in range(width)]
    if any(len(k - {_NULL}) > 1 for k in kinds):
        return None
    numeric = [j for j, k in enumerate(kinds) if float in k]
    categorical = [j for j, k in enumerate(kinds) if str in k or bool in k]
    for j, k in enumerate(kinds):
        if bool in k:  # a true or false feature is a category (a null stays None)
            columns[j] = [None if v is None else boolean_text(v) for v in columns[j]]
    gaps = np.fromiter(map(_is_null_kind, types), bool, len(types)).reshape(count, width)
    nulls = gaps if left_out is None else gaps & ~left_out
    patterns, row_pattern = _null_patterns(nulls if left_out is None else np.hstack([nulls, left_out]))
    names = interned.names
    shapes = [  # each pattern's num.name, cat.name and missing, one list of each a batch
        (
            names([shared[j] for j in numeric if not gap[j]]),
            names([shared[j] for j in categorical if not gap[j]]),
            names([shared[j] for j in range(width) if null[j]]),
        )
        for null, gap in (_nulls_and_gaps(row, width) for row in patterns.tolist())
    ]
    empty = interned.empty
    pick = row_pattern.reshape(-1).tolist()
    num_names, cat_names, missing = ([shape[k] for shape in shapes] for k in range(3))
    num_value: Column = [empty] * count
    if numeric:
        matrix = np.empty((count, len(numeric)))
        for place, j in enumerate(numeric):
            matrix[:, place] = columns[j]  # a null is NaN
        numeric_names = [shared[j] for j in numeric]
        gapped = gaps[:, numeric].any()
        num_value = GappedNumberRows(matrix, numeric_names) if gapped else NumberRows(matrix)
    cat_value: Column = [empty] * count
    if categorical:
        known = interned.texts.setdefault  # each text as the batch's one object of it (None: a null, kept)
        by_place = [list(map(known, columns[j], columns[j])) for j in categorical]
        gapped = gaps[:, categorical].any()
        cat_value = GappedTextRows(by_place, [shared[j] for j in categorical]) if gapped else TextRows(by_place)
    return (
        [num_names[p] for p in pick],
        num_value,
        [cat_names[p] for p in pick],
        cat_value,
        [missing[p] for p in pick],
    )


def _nulls_and_gaps(pattern: list[bool], width: int) -> tuple[list[bool], list[bool]]:
    """A pattern's nulls, and its gaps (its nulls and the features left out, which follow them in it)."""
    nulls = pattern[:width]
    if len(pattern) == width:
        return nulls, nulls
    return nulls, [null or left for null, left in zip(nulls, pattern[width:], strict=True)]


def _null_patterns(nulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``nulls`` (events × features) and each event's row among them (as ``np.unique``
    along rows gives them, each row read as one number where it fits: four times quicker)."""
    width = nulls.shape[1]
    if width > 62:
        return np.unique(nulls, axis=0, return_inverse=True)  # type: ignore[no-any-return]
    codes = nulls.astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))
    distinct, row_pattern = np.unique(codes, return_inverse=True)
    patterns = ((distinct[:, None] >> np.arange(width, dtype=np.int64)) & 1).astype(bool)
    return patterns, row_pattern


def _prediction_texts(predictions: list[float | str], texts: dict[str, str]) -> tuple[list[str], list[float]]:
    """Each prediction's canonical text and number (NaN for a text), as :func:`value_text` gives them. A
    class (a text, or a whole number) is taken from ``texts``, the batch's one object of each text (a
    classifier's few classes then cross to the detection process and are coded there at once)."""
    kinds = set(map(type, predictions))
    if kinds == _FLOAT:
        numbers = np.array(predictions)
        if np.all((numbers == np.trunc(numbers)) & (np.abs(numbers) < 1e15)):
            classes = list(map(str, numbers.astype(np.int64).tolist()))
            return list(map(texts.setdefault, classes, classes)), predictions  # type: ignore[return-value]
        return list(map(number_text, predictions)), predictions  # type: ignore[arg-type,return-value]
    if kinds == _STR:
        return list(map(texts.setdefault, predictions, predictions)), [math.nan] * len(predictions)  # type: ignore[arg-type]
    if kinds == _BOOL:
        return list(map(boolean_text, predictions)), [math.nan] * len(predictions)  # type: ignore[arg-type]
    canonical, numbers = zip(*(value_text(p, "prediction") for p in predictions), strict=True)  # classes and values
    return list(map(texts.setdefault, canonical, canonical)), list(numbers)


def _scores(values: list[Any], texts: list[str], empty: list[Any]) -> tuple[list[float], list[list[str]], Column]:
    """The ``score``, class labels and probabilities of each event, as :func:`_typed_score` gives them."""
    count = len(values)
    kinds = set(map(type, values))
    if kinds <= _FLOAT_OR_NONE:
        scores = [math.nan if s is None else s for s in values] if None in values else values
        return scores, [empty] * count, [empty] * count  # no class labels nor probabilities
    if kinds == _DICT:
        scores = list(map(dict.get, values, texts))
        classes = list(values[0])
        if classes and all(map(classes.__eq__, map(list, values))):  # the same classes (the common case)
            flat = itertools.chain.from_iterable(map(dict.values, values))
            matrix = np.fromiter(flat, np.float64, count * len(classes)).reshape(count, len(classes))
            if None in scores:  # the prediction is not among the classes: the highest probability
                scores = [max(values[i].values()) if s is None else s for i, s in enumerate(scores)]
            return scores, [classes] * count, NumberRows(matrix)  # no list an event: nothing for the collector
        probabilities = list(map(list, map(dict.values, values)))
        if None in scores:
            scores = [max(p, default=math.nan) if s is None else s for s, p in zip(scores, probabilities, strict=True)]
        return scores, list(map(list, values)), probabilities
    scores, labels, probabilities = zip(*map(_typed_score, values, texts), strict=True)
    return list(scores), list(labels), list(probabilities)
