"""Decode and validate Kafka messages into column batches, in one pass per batch of messages.

A message value is UTF-8 JSON: one event object, or an envelope ``{"events": [...]}``. Good events become
rows; a message or event that breaks the contract (docs/events.md) becomes a :class:`DeadLetter` with a
reason, and decoding goes on: a bad record never stops a worker.

Two paths give the same result (``tests/streams/test_decode_fast_path.py`` holds them to it): a message
that fits the contract's msgspec types whole (:mod:`streams.event_types`, parsed and type-checked in C) is
turned into rows with the few checks left; any other message is judged event by event by the field rules
below, which say what is wrong.

>>> msgs = [Incoming(b'{"model": "m", "request_id": "r1", "ts": 1700000000, "features": {"x": 1.5}, '
...                  b'"prediction": 1}', "p", 0, 7), Incoming(b'{"model": "m"', "p", 0, 8)]
>>> decoded = decode_predictions(msgs)
>>> decoded.rows["num.value"], decoded.rows["prediction"]
([[1.5]], ['1'])
>>> decoded.dead[0].reason, decoded.dead[0].offset
("malformed JSON: Expecting ',' delimiter: line 1 column 14 (char 13)", 8)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np

from driftloop.infra.contract import EventError
from driftloop.streams.batch import Column, ColumnBatch, DeadLetter, Decoded, NumberRows, UnreadableRecords
from driftloop.streams.event_types import (
    MAX_EPOCH,
    MAX_FEATURES,
    MAX_TEXT,
    MODEL_NAME,
    NumericPrediction,
    OutcomeEvent,
    PredictionEvent,
    parse_outcomes,
    parse_predictions,
    valid_model_name,
)

MAX_MESSAGE_BYTES = 1 << 20
_FEATURE_NAME = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,126}[^\x00-\x1f\x7f\s])?$")

PREDICTION_COLUMNS = (
    "event_id",
    "model",
    "model_version",
    "request_id",
    "ts",
    "ts_ms",
    "num.name",
    "num.value",
    "cat.name",
    "cat.value",
    "missing",
    "prediction",
    "prediction_num",
    "score",
    "scores.label",
    "scores.probability",
    "served",
    "latency_ms",
)
OUTCOME_COLUMNS = ("event_id", "model", "request_id", "ts", "ts_ms", "label", "label_num", "value")


class Incoming(NamedTuple):
    """One Kafka message as the decoder needs it."""

    value: bytes
    topic: str
    partition: int
    offset: int


def decode_predictions(messages: Iterable[Incoming], *, max_bytes: int = MAX_MESSAGE_BYTES) -> Decoded:
    """Prediction events of ``messages`` as a ``predictions`` batch, and dead letters for the rest."""
    return _decode(messages, "predictions", PREDICTION_COLUMNS, _fast_predictions, _prediction_row, max_bytes)


def decode_outcomes(messages: Iterable[Incoming], *, max_bytes: int = MAX_MESSAGE_BYTES) -> Decoded:
    """Outcome events of ``messages`` as an ``outcomes`` batch, and dead letters for the rest."""
    return _decode(messages, "outcomes", OUTCOME_COLUMNS, _fast_outcomes, _outcome_row, max_bytes)


def event_sources(message: Incoming, table: str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[int, bytes]]:
    """For each row that ``message`` decodes to (in order), where it came from: its index in the envelope (-1
    for a message of one event) and the event's bytes. ``table``: ``predictions`` or ``outcomes``.

    For the rare row that ClickHouse refuses: its dead letter names the one event, not the whole envelope.

    >>> envelope = b'{"events": [{"model": "m"}, {"model": "m", "request_id": "r", "ts": 1, "label": 0}]}'
    >>> event_sources(Incoming(envelope, "o", 0, 0), "outcomes")
    [(1, b'{"model": "m", "request_id": "r", "ts": 1, "label": 0}')]
    """
    to_row = {"predictions": _prediction_row, "outcomes": _outcome_row}[table]
    sources: list[tuple[int, bytes]] = []
    for index, event, problem in _events(message.value, max_bytes):
        if problem is not None:
            continue
        try:
            to_row(event)
        except EventError:
            continue
        sources.append((index, message.value if index < 0 else _reencode(event)))
    return sources


def _decode(
    messages: Iterable[Incoming],
    table: str,
    names: tuple[str, ...],
    fast: Callable[[bytes, int, _Columns], bool],
    to_row: Callable[[dict[str, Any]], tuple[Any, ...]],
    max_bytes: int,
) -> Decoded:
    """Each message through the typed fast path (:mod:`streams.event_types`) when it fits it whole, else
    event by event through the field rules below, which name what is wrong."""
    out = _Columns(len(names) + 1)  # the table's columns and each row's message position
    dead: list[DeadLetter] = []
    unreadable: UnreadableRecords | None = None
    for position, message in enumerate(messages):
        value = message.value
        if value is not None and len(value) <= max_bytes and fast(value, position, out):
            continue
        if type(value) is UnreadableRecords:  # an offset of a record batch the consumer could not read
            if value is not unreadable:  # the batch's offsets share one value: one dead letter for them
                unreadable = value
                dead.append(value.dead_letter())
            continue
        for index, event, problem in _events(value, max_bytes):
            if problem is None:
                try:
                    out.add_row((*to_row(event), position))
                    continue
                except EventError as exc:
                    problem = str(exc)
            original = message.value if index < 0 else _reencode(event)
            dead.append(DeadLetter(problem, original, message.topic, message.partition, message.offset, index))
    columns = out.finish()
    origins = columns.pop()
    return Decoded(ColumnBatch(table, dict(zip(names, columns, strict=True))), dead, origins)


class _Columns:
    """A batch's columns, gathered in message order from rows (tuples) and from runs of
    :class:`NumericPrediction` events, which become columns many events at a time."""

    def __init__(self, width: int) -> None:
        self.parts: list[list[Column]] = []
        self.width = width
        self.rows: list[tuple[Any, ...]] = []
        self.events: list[NumericPrediction] = []
        self.names: list[list[str]] = []
        self.positions: list[int] = []

    def add_row(self, row: tuple[Any, ...]) -> None:
        if self.events:
            self._close_events()
        self.rows.append(row)

    def add_rows(self, rows: list[tuple[Any, ...]]) -> None:
        if self.events:
            self._close_events()
        self.rows += rows

    def add_numeric_predictions(self, events: list[NumericPrediction], names: list[list[str]], position: int) -> None:
        if self.rows:
            self._close_rows()
        self.events += events
        self.names += names
        self.positions += [position] * len(events)

    def finish(self) -> list[Column]:
        """Each column (the last: each row's message position)."""
        if self.rows:
            self._close_rows()
        if self.events:
            self._close_events()
        if len(self.parts) == 1:
            return self.parts[0]
        return [_concatenate([part[k] for part in self.parts]) for k in range(self.width)]

    def _close_rows(self) -> None:
        self.parts.append([list(column) for column in zip(*self.rows, strict=True)])
        self.rows = []

    def _close_events(self) -> None:
        self.parts.append(_numeric_prediction_columns(self.events, self.names, self.positions))
        self.events, self.names, self.positions = [], [], []


def _concatenate(parts: list[Column]) -> Column:
    """One column of consecutive parts: a matrix still where every part is one, of one width."""
    if all(isinstance(part, NumberRows) for part in parts) and len({part.matrix.shape[1] for part in parts}) == 1:
        return NumberRows(np.concatenate([part.matrix for part in parts]))  # type: ignore[union-attr]
    return list(itertools.chain.from_iterable(parts))


def _events(value: bytes | None, max_bytes: int) -> Iterator[tuple[int, Any, str | None]]:
    """(index in envelope or -1, event, problem) for every event of one message value."""
    if value is None:
        yield -1, None, "empty message (no value)"
        return
    if len(value) > max_bytes:
        yield -1, None, f"message of {len(value):,} bytes is over the {max_bytes:,}-byte limit"
        return
    try:
        doc = json.loads(value.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        yield -1, None, f"not UTF-8: {exc.reason} at byte {exc.start}"
        return
    except json.JSONDecodeError as exc:
        yield -1, None, f"malformed JSON: {exc}"
        return
    except EventError as exc:
        yield -1, None, f"malformed JSON: {exc}"
        return
    except RecursionError:
        yield -1, None, "malformed JSON: nested too deeply"
        return
    # JSON may spell a lone UTF-16 surrogate (\\ud800) that no UTF-8 column can store: find those events.
    surrogates = b"\\ud" in value or b"\\uD" in value
    if not isinstance(doc, dict):
        yield -1, None, f'expected a JSON object (an event or {{"events": [...]}}), got {_kind(doc)}'
        return
    if "events" not in doc:
        yield -1, doc, _surrogate_problem(doc) if surrogates else None
        return
    events = doc["events"]
    if not isinstance(events, list):
        yield -1, None, f'envelope field "events" must be a list, got {_kind(events)}'
        return
    for index, event in enumerate(events):
        if isinstance(event, dict):
            yield index, event, _surrogate_problem(event) if surrogates else None
        else:
            yield index, event, f"envelope item must be an event object, got {_kind(event)}"


def _surrogate_problem(event: dict[str, Any]) -> str | None:
    try:
        json.dumps(event, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not valid text"
    return None


def _reject_constant(name: str) -> float:
    raise EventError(f"{name} is not a JSON number")


def _reencode(event: Any) -> bytes:
    try:
        return json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):
        return repr(event).encode("utf-8", "replace")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


# --- field rules ------------------------------------------------------------------------------------------

_known_features: set[str] = set()


def _model(event: dict[str, Any]) -> str:
    model = event.get("model")
    if type(model) is not str:
        raise EventError(_missing_or_type("model", model, "a string"))
    if not valid_model_name(model):
        raise EventError(f'"model" {model[:80]!r} must match {MODEL_NAME} (letters, digits, . _ -)')
    return model


def _text(event: dict[str, Any], field: str) -> str:
    value = event.get(field)
    if type(value) is not str:
        raise EventError(_missing_or_type(field, value, "a string"))
    if not value or len(value) > MAX_TEXT:
        raise EventError(f'"{field}" must be 1 to {MAX_TEXT} characters (got {len(value)})')
    return value


def _missing_or_type(field: str, value: Any, expected: str) -> str:
    if value is None:
        return f'missing required field "{field}"'
    return f'"{field}" must be {expected}, got {_kind(value)}'


def _number(value: Any, what: str) -> float:
    kind = type(value)
    if kind is float:
        if value - value != 0.0:  # NaN or ±inf
            raise EventError(f"{what} must be a finite number, got {value}")
        return value  # type: ignore[no-any-return]
    if kind is int:
        try:
            number = float(value)
        except OverflowError:
            raise EventError(f"{what} is too large ({len(str(value))} digits)") from None
        return number
    raise EventError(f"{what} must be a number, got {_kind(value)}")


def _timestamp(event: dict[str, Any]) -> tuple[int, int]:
    """(epoch seconds, epoch milliseconds) of ``ts``: RFC 3339 text or epoch seconds."""
    value = event.get("ts")
    if type(value) is str:
        epoch = _rfc3339_epoch(value)
    elif value is None:
        raise EventError('missing required field "ts"')
    else:
        try:
            epoch = _number(value, '"ts"')
        except EventError:
            raise EventError(f'"ts" must be an RFC 3339 string or epoch seconds, got {_kind(value)}') from None
    if not 0 <= epoch < MAX_EPOCH:
        raise EventError(f'"ts" {value!r} is outside 1970-01-01 .. 2106-02-07')
    return int(epoch), round(epoch * 1000)


def _rfc3339_epoch(value: str) -> float:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise EventError(f'"ts" {value[:40]!r} is not an RFC 3339 time (2026-11-23T08:00:00Z)') from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _value_text(value: Any, field: str) -> tuple[str, float]:
    """A prediction or label as (canonical text, number or NaN): 1, 1.0 and "1" compare equal as text."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_TEXT:
            raise EventError(f'"{field}" is longer than {MAX_TEXT} characters')
        return value, math.nan
    if value is None:
        raise EventError(f'missing required field "{field}"')
    number = _number(value, f'"{field}"')
    return _number_text(number), number


def _number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def _prediction_id(given: Any, model: str, request_id: str, ts_ms: int, shadow: str = "") -> str:
    """The given id, else one derived from the event (``shadow``: :func:`_shadow_key` of an unserved one)."""
    return _event_id(given, f"p\x1f{model}\x1f{request_id}\x1f{ts_ms}{shadow}")


def _shadow_key(served: bool, version: int | None) -> str:
    """What sets a shadow's prediction apart from the served one of the same request and time (whose derived
    id stays what it always was)."""
    return "" if served else f"\x1fshadow\x1f{version or 0}"


def _prediction_ids(
    given: list[str | None], models: list[str], request_ids: list[str], ts_ms: list[int], shadows: list[str]
) -> list[str]:
    """:func:`_prediction_id` of many events (checked types: a given id is valid), hashed in one loop."""
    rows = zip(models, request_ids, ts_ms, shadows, strict=True)
    keys = [f"p\x1f{model}\x1f{request_id}\x1f{ts}{shadow}" for model, request_id, ts, shadow in rows]
    if given.count(None) != len(given):
        return list(map(_event_id, given, keys))
    return [_blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for key in keys]


def _outcome_id(given: Any, model: str, request_id: str, ts_ms: int, label: str) -> str:
    return _event_id(given, f"o\x1f{model}\x1f{request_id}\x1f{ts_ms}\x1f{label}")


_blake2b = hashlib.blake2b


def _event_id(given: Any, key: str) -> str:
    if given is None:
        # Deterministic: the same event re-sent gets the same id, so ClickHouse keeps it once.
        return _blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    if type(given) is not str or not 0 < len(given) <= 128:
        raise EventError('"event_id" must be a string of 1 to 128 characters')
    return given  # type: ignore[no-any-return]


def _features(event: dict[str, Any]) -> tuple[list[str], list[float], list[str], list[str], list[str]]:
    features = event.get("features")
    if type(features) is not dict:
        raise EventError(_missing_or_type("features", features, "an object of name → number, string or null"))
    if len(features) > MAX_FEATURES:
        raise EventError(f'"features" has {len(features)} entries; at most {MAX_FEATURES} are accepted')
    names = list(features)
    if not _known_features.issuperset(names):
        _learn_names(names)
    values = list(features.values())
    if _NUMERIC.issuperset(map(type, values)):  # the common case, checked in C: every value a number
        try:
            numbers = [float(v) for v in values]
        except OverflowError:
            numbers = []  # an integer too large for a float: the slow path names it
        # a plain sum: finite values can overflow it (math.fsum would raise), and then each one is judged
        if len(numbers) == len(values) and math.isfinite(sum(numbers)):
            return names, numbers, [], [], []
    return _features_one_by_one(features)


_NUMERIC = frozenset({float, int})


def _learn_names(names: list[str]) -> None:
    for name in names:
        if name not in _known_features:
            if not _FEATURE_NAME.fullmatch(name):
                raise EventError(f"feature name {name[:80]!r} must be 1-128 printable characters")
            if len(_known_features) < 100_000:
                _known_features.add(name)


def _features_one_by_one(
    features: dict[str, Any],
) -> tuple[list[str], list[float], list[str], list[str], list[str]]:
    num_names: list[str] = []
    num_values: list[float] = []
    cat_names: list[str] = []
    cat_values: list[str] = []
    missing: list[str] = []
    for name, value in features.items():
        kind = type(value)
        if kind is float or kind is int:
            num_names.append(name)
            num_values.append(_number(value, f"feature {name!r}"))
        elif kind is str:
            if len(value) > MAX_TEXT:
                raise EventError(f"feature {name!r} is longer than {MAX_TEXT} characters")
            cat_names.append(name)
            cat_values.append(value)
        elif value is None:
            missing.append(name)
        else:
            raise EventError(f"feature {name!r} must be a number, string or null, got {_kind(value)}")
    return num_names, num_values, cat_names, cat_values, missing


def _score(value: Any, prediction: str) -> tuple[float, list[str], list[float]]:
    if value is None:
        return math.nan, [], []
    if type(value) is dict:
        labels = list(value)
        probabilities = [_number(p, f'"score" of class {c!r}') for c, p in value.items()]
        score = value.get(prediction)
        return (
            (float(score) if score is not None else max(probabilities, default=math.nan)),
            labels,
            probabilities,
        )
    return _number(value, '"score"'), [], []


def validate_prediction(event: dict[str, Any]) -> str:
    """Check a prediction event against the contract (``EventError`` says what is wrong); its event_id."""
    return str(_prediction_row(event)[0])


def validate_outcome(event: dict[str, Any]) -> str:
    """Check an outcome event against the contract (``EventError`` says what is wrong); its event_id."""
    return str(_outcome_row(event)[0])


def _prediction_row(event: dict[str, Any]) -> tuple[Any, ...]:
    model = _model(event)
    request_id = _text(event, "request_id")
    ts, ts_ms = _timestamp(event)
    num_names, num_values, cat_names, cat_values, missing = _features(event)
    prediction, prediction_num = _value_text(event.get("prediction"), "prediction")
    score, labels, probabilities = _score(event.get("score"), prediction)
    version = event.get("model_version", 0)
    if version is None:
        version = 0
    if type(version) is not int or not 0 <= version < 2**32:
        raise EventError('"model_version" must be a non-negative integer')
    served = event.get("served", True)
    if served is None:
        served = True
    if type(served) is not bool:
        raise EventError(f'"served" must be true or false, got {_kind(served)}')
    event_id = _prediction_id(event.get("event_id"), model, request_id, ts_ms, _shadow_key(served, version))
    latency_ms = _optional_number(event.get("latency_ms"), '"latency_ms"')
    if latency_ms < 0:
        raise EventError(f'"latency_ms" must not be negative, got {latency_ms}')
    return (
        event_id,
        model,
        version,
        request_id,
        ts,
        ts_ms,
        num_names,
        num_values,
        cat_names,
        cat_values,
        missing,
        prediction,
        prediction_num,
        score,
        labels,
        probabilities,
        int(served),
        latency_ms,
    )


def _outcome_row(event: dict[str, Any]) -> tuple[Any, ...]:
    model = _model(event)
    request_id = _text(event, "request_id")
    ts, ts_ms = _timestamp(event)
    label, label_num = _value_text(event.get("label"), "label")
    value = _optional_number(event.get("value"), '"value"')
    event_id = _outcome_id(event.get("event_id"), model, request_id, ts_ms, label)
    return event_id, model, request_id, ts, ts_ms, label, label_num, value


def _optional_number(value: Any, what: str) -> float:
    """A finite number, or NaN for an absent (null) one."""
    return math.nan if value is None else _number(value, what)


# --- the typed fast path ------------------------------------------------------------------------------------
# The same rows as the field rules above give, for messages whose events all fit streams.event_types; None
# whenever a rule finds anything to say (the caller then applies the field rules, which say it).


def _fast_predictions(value: bytes, position: int, out: _Columns) -> bool:
    events = parse_predictions(value)
    if events is None:
        return False
    if events and type(events[0]) is NumericPrediction:
        names = _numeric_feature_names(events)  # type: ignore[arg-type]
        if names is None:
            return False
        out.add_numeric_predictions(events, names, position)  # type: ignore[arg-type]
        return True
    rows = _typed_rows(events, position, _typed_prediction_row)
    if rows is None:
        return False
    _share_feature_names(rows)
    out.add_rows(rows)
    return True


def _fast_outcomes(value: bytes, position: int, out: _Columns) -> bool:
    rows = _typed_rows(parse_outcomes(value), position, _typed_outcome_row)
    if rows is None:
        return False
    out.add_rows(rows)
    return True


def _typed_rows(
    events: list[Any] | None, position: int, to_row: Callable[[Any, int], tuple[Any, ...] | None]
) -> list[tuple[Any, ...]] | None:
    """Every event's row, or None as soon as one has anything for the field rules to say (a rule raising
    ``EventError`` included: the field rules say it again, with the event's place)."""
    if events is None:
        return None
    rows = []
    for event in events:
        try:
            row = to_row(event, position)
        except EventError:
            return None
        if row is None:
            return None
        rows.append(row)
    return rows


_NUM_NAME = PREDICTION_COLUMNS.index("num.name")  # where a row (a tuple in the columns' order) holds them


def _share_feature_names(rows: list[tuple[Any, ...]]) -> None:
    """Envelopes repeat one list of feature names: let the rows that repeat it hold one copy."""
    shared: list[str] = []
    for i, row in enumerate(rows):
        if row[_NUM_NAME] == shared:
            rows[i] = (*row[:_NUM_NAME], shared, *row[_NUM_NAME + 1 :])
        else:
            shared = row[_NUM_NAME]


def _typed_prediction_row(event: PredictionEvent, position: int) -> tuple[Any, ...] | None:
    epoch = _typed_epoch(event.ts)
    if epoch is None:
        return None
    model, request_id = event.model, event.request_id
    features = event.features
    names = list(features)
    if not _known_features.issuperset(names):
        _learn_names(names)
    values = list(features.values())
    if _FLOAT.issuperset(map(type, values)):
        num_names, num_values, cat_names, cat_values, missing = names, values, [], [], []
    else:
        num_names, num_values, cat_names, cat_values, missing = _typed_features(names, values)
    prediction_text, prediction_num = _value_text(event.prediction, "prediction")
    score, labels, probabilities = _typed_score(event.score, prediction_text)
    ts_ms = round(epoch * 1000)
    return (
        _prediction_id(event.event_id, model, request_id, ts_ms, _shadow_key(event.served, event.model_version)),
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
    """:func:`_features_one_by_one` of values msgspec has checked (each a finite float, a string of at most
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
    """:func:`_score` of a score msgspec has checked (finite numbers)."""
    if value is None:
        return math.nan, [], []
    if type(value) is dict:
        probabilities = list(value.values())
        score = value.get(prediction)
        return (score if score is not None else max(probabilities, default=math.nan)), list(value), probabilities
    return value, [], []  # type: ignore[return-value]


def _typed_outcome_row(event: OutcomeEvent, position: int) -> tuple[Any, ...] | None:
    epoch = _typed_epoch(event.ts)
    if epoch is None:
        return None
    model, request_id = event.model, event.request_id
    label_text, label_num = _value_text(event.label, "label")
    ts_ms = round(epoch * 1000)
    event_id = _outcome_id(event.event_id, model, request_id, ts_ms, label_text)
    value = math.nan if event.value is None else event.value
    return event_id, model, request_id, int(epoch), ts_ms, label_text, label_num, value, position


def _typed_epoch(ts: float | str) -> float | None:
    """Epoch seconds of ``ts`` when the field rules would take it, else None (they say why)."""
    try:
        epoch = _rfc3339_epoch(ts) if type(ts) is str else ts
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
            if not _known_features.issuperset(current):
                try:
                    _learn_names(current)
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


def _numeric_prediction_columns(
    events: list[NumericPrediction], names: list[list[str]], positions: list[int]
) -> list[Column]:
    """The ``predictions`` columns (and message positions) of :class:`NumericPrediction` events, built a
    column at a time: the same values as :func:`_prediction_row` gives event by event."""
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
            texts = list(map(_number_text, predictions))
        prediction_nums = predictions
    else:
        texts, prediction_nums = (
            list(c) for c in zip(*(_value_text(p, "prediction") for p in predictions), strict=True)
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
        _prediction_ids(
            [e.event_id for e in events],
            models,
            request_ids,
            ts_ms,
            [""] * count if everyone else [_shadow_key(e.served, e.model_version) for e in events],
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
