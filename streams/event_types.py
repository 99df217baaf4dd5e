"""The event contract as msgspec types: what a *valid* message looks like, parsed and type-checked in C.

The types are outside the garbage collector's watch (``gc=False``: they hold no cycles), so that a batch of
decoded events does not make every collection longer.

:mod:`streams.decode` tries these first. A message that fits them whole needs no per-field Python
checks but the few msgspec cannot express (feature names, timestamp range, RFC 3339 text); one that does
not fit (a bad event anywhere in an envelope, anything unusual) is parsed again by the decoder's field
rules, which say exactly what is wrong. So these types may be stricter than the contract, never looser.

The strictest, :class:`NumericPrediction` (the common event: epoch-seconds ``ts``, numeric features, a
numeric score or none), leaves nothing for Python to check but feature names, so that the decoder builds
its columns for many events at once. Model names are checked here too, but once per name: they repeat
endlessly, and a pattern matched per event costs a third of parsing it (:func:`valid_model_name`).

>>> common = b'{"model": "m", "request_id": "r1", "ts": 1700000000, "features": {"x": 1}, "prediction": 1}'
>>> parse_predictions(common)
[NumericPrediction(model='m', request_id='r1', ts=1700000000.0, features={'x': 1.0}, prediction=1.0, ...)]
>>> parse_predictions(common.replace(b'"x": 1', b'"x": null'))[0].features  # a null feature: the wider type
{'x': None}
>>> parse_predictions(b'{"events": [{"model": "m"}]}') is None  # "request_id" and more are missing
True
>>> parse_predictions(common.replace(b'"m"', b'"m?"')) is None  # not a model name
True
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import Annotated, Any

import msgspec
from msgspec import Meta

MAX_FEATURES = 2000
MAX_TEXT = 1024
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_EPOCH = 4_294_967_295  # ClickHouse DateTime ends in 2106
#: A number ``ts`` from here on is epoch milliseconds (1973-03-03 in them; in seconds, past 2106), from 1,000
#: times that on microseconds, and from a million times nanoseconds (each unit's 1973 is past 2106 in the one
#: before).
MILLISECONDS_FROM = 100_000_000_000
MICROSECONDS_FROM = 1_000 * MILLISECONDS_FROM
NANOSECONDS_FROM = 1_000_000 * MILLISECONDS_FROM

Model = str  # checked by valid_model_name, once per name
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
# JSON has no NaN, and msgspec refuses numbers beyond the float range: every float here is finite. A JSON true or
# false is a class (a category), as the text "true" or "false" (streams.event_rules.boolean_text).
Value = float | bool | Annotated[str, Meta(max_length=MAX_TEXT)]
EventId = Annotated[str, Meta(min_length=1, max_length=128)]
Version = Annotated[int, Meta(ge=0, lt=2**32)]


class NumericPrediction(msgspec.Struct, gc=False):
    """A prediction event of the common form: ``ts`` in epoch seconds within range, every feature a number
    (none null), ``score`` a number or absent. Nothing of it is left to check in Python but feature names
    (and a prediction of true or false, made a text)."""

    model: Model
    request_id: Text
    ts: Annotated[float, Meta(ge=0, lt=MAX_EPOCH)]
    features: Annotated[dict[str, float], Meta(max_length=MAX_FEATURES)]
    prediction: Value
    score: float | None = None
    model_version: Version | None = 0
    event_id: EventId | None = None
    served: bool = True
    latency_ms: Annotated[float, Meta(ge=0)] | None = None
    events: Any = msgspec.UNSET


class PredictionEvent(msgspec.Struct, gc=False):
    """One prediction event (docs/events.md); a JSON integer arrives as a float, as the decoder stores it."""

    model: Model
    request_id: Text
    ts: float | str
    features: Annotated[dict[str, Value | None], Meta(max_length=MAX_FEATURES)]
    prediction: Value
    score: float | dict[str, float] | None = None
    model_version: Version | None = 0
    event_id: EventId | None = None
    served: bool = True  # false: computed but not returned to the caller (a shadow version's)
    latency_ms: Annotated[float, Meta(ge=0)] | None = None  # the serving time of the batch it was part of
    events: Any = msgspec.UNSET  # present: the message is an envelope, not an event


class OutcomeEvent(msgspec.Struct, gc=False):
    """One outcome event (docs/events.md)."""

    model: Model
    request_id: Text
    ts: float | str
    label: Value
    event_id: EventId | None = None
    value: float | None = None  # the business value of the decision (revenue won, loss avoided, ...)
    events: Any = msgspec.UNSET


class PredictionEnvelope(msgspec.Struct, gc=False):
    events: list[PredictionEvent]


class OutcomeEnvelope(msgspec.Struct, gc=False):
    events: list[OutcomeEvent]


class NumericPredictionEnvelope(msgspec.Struct, gc=False):
    events: list[NumericPrediction]


# msgspec's errors (DecodeError, ValidationError), bytes that are not UTF-8 inside a string, nesting too deep
_UNFIT = (ValueError, RecursionError)
_Decoders = tuple[msgspec.json.Decoder, msgspec.json.Decoder]  # (envelope, single event)
_PREDICTIONS: tuple[_Decoders, ...] = (
    (msgspec.json.Decoder(NumericPredictionEnvelope), msgspec.json.Decoder(NumericPrediction)),
    (msgspec.json.Decoder(PredictionEnvelope), msgspec.json.Decoder(PredictionEvent)),
)
_PREDICTIONS_WIDER_FIRST = _PREDICTIONS[::-1]
_OUTCOMES: tuple[_Decoders, ...] = ((msgspec.json.Decoder(OutcomeEnvelope), msgspec.json.Decoder(OutcomeEvent)),)


def parse_predictions(
    value: bytes, *, numeric_first: bool = True
) -> list[NumericPrediction] | list[PredictionEvent] | None:
    """The prediction events of a message value that fits the types whole, else None: all of them
    :class:`NumericPrediction` when they all fit it, else all :class:`PredictionEvent`; or, not
    ``numeric_first``, all :class:`PredictionEvent` when they fit it (for messages unlikely to fit the
    numeric type, which costs a failed parse to find out: ``streams.decode_fast._parse_in_order``)."""
    return _parse(value, _PREDICTIONS if numeric_first else _PREDICTIONS_WIDER_FIRST)


def parse_outcomes(value: bytes) -> list[OutcomeEvent] | None:
    """The outcome events of a message value that fits the types whole, else None."""
    return _parse(value, _OUTCOMES)


_MODEL_NAME = re.compile(MODEL_NAME)
_valid_models: set[str] = set()
_model_of = attrgetter("model")


def valid_model_name(model: str) -> bool:
    """Whether ``model`` is a valid model name (``MODEL_NAME``); valid names are remembered."""
    if model in _valid_models:
        return True
    if not _MODEL_NAME.fullmatch(model):
        return False
    if len(_valid_models) < 100_000:
        _valid_models.add(model)
    return True


def parse_single_predictions(values: list[bytes]) -> list[NumericPrediction] | list[PredictionEvent] | None:
    """:func:`parse_predictions` of many messages of one event each, in one call: their events (one a value, in
    order) when each value is one event and all fit the types whole, else None (then each is parsed alone).

    >>> common = b'{"model": "m", "request_id": "r1", "ts": 1700000000, "features": {"x": 1}, "prediction": 1}'
    >>> [e.request_id for e in parse_single_predictions([common, common.replace(b'r1', b'r2')])]
    ['r1', 'r2']
    >>> parse_single_predictions([common, common + b' ' + common]) is None  # two events in the second value
    True
    """
    return _parse_single(values, _PREDICTIONS)


def parse_single_outcomes(values: list[bytes]) -> list[OutcomeEvent] | None:
    """:func:`parse_outcomes` of many messages of one event each, in one call (:func:`parse_single_predictions`)."""
    return _parse_single(values, _OUTCOMES)


def _parse(value: bytes, kinds: tuple[_Decoders, ...]) -> list[Any] | None:
    """The events of ``value`` as the first of ``kinds`` that fits them all, or None."""
    return _checked_models(_parse_types(value, kinds))


def _parse_single(values: list[bytes], kinds: tuple[_Decoders, ...]) -> list[Any] | None:
    """The events of ``values``, one event object each, as the first of ``kinds`` that fits them all, or None.

    Parsing a message costs msgspec's call more than its bytes: the values are joined by newlines and read
    as line-delimited JSON at once. Each value must hold no newline and start with ``{`` and end with ``}``
    (checked on the joined bytes: as many newlines as junctions, each between ``}`` and ``{``). Then no two
    values can read as one (``}`` then ``{`` is no JSON inside an object or an array, and a string holds no
    raw newline), so exactly as many events as values means one event each, in order."""
    joined = b"\n".join(values)
    junctions = len(values) - 1
    if (
        joined[:1] != b"{"
        or joined[-1:] != b"}"
        or joined.count(b"\n") != junctions
        or joined.count(b"}\n{") != junctions
        or b'"events"' in joined  # an envelope among them: each is parsed alone
        or not _readable(joined)
    ):
        return None
    for _, event_decoder in kinds:
        if events := _parse_lines(joined, event_decoder, len(values)):
            return _checked_models(events)
    return None


def _parse_lines(joined: bytes, decoder: msgspec.json.Decoder, count: int) -> list[Any] | None:
    try:
        events = decoder.decode_lines(joined)
    except _UNFIT:
        return None
    if len(events) != count or any(event.events is not msgspec.UNSET for event in events):
        return None  # an envelope's field spelled with escapes
    return events  # type: ignore[no-any-return]


def spells_surrogate(value: bytes) -> bool:
    """Whether the JSON ``value`` may spell a UTF-16 surrogate (``\\ud800``): a backslash is looked for
    first, as one byte is found an order of magnitude quicker than three (most messages escape nothing).

    >>> spells_surrogate(b'{"a": "\\\\uD83D"}'), spells_surrogate(b'{"a": "\\\\n"}')
    (True, False)
    """
    return b"\\" in value and (b"\\ud" in value or b"\\uD" in value)


def _readable(value: bytes) -> bool:
    """Whether msgspec reads ``value`` as the field rules do: UTF-8 that spells no UTF-16 surrogate (msgspec
    skips unknown fields unread; the field rules judge those, as rare as they are)."""
    if spells_surrogate(value):
        return False
    if not value.isascii():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _checked_models(events: list[Any] | None) -> list[Any] | None:
    """``events`` when every model name is valid, else None."""
    if events is None:
        return None
    models = set(map(_model_of, events))
    return events if _valid_models.issuperset(models) or all(map(valid_model_name, models)) else None


def _parse_types(value: bytes, kinds: tuple[_Decoders, ...]) -> list[Any] | None:
    if not _readable(value):
        return None
    if b'"events"' in value:  # an envelope, most likely: the envelope types first
        for envelope_decoder, _ in kinds:
            try:
                return envelope_decoder.decode(value).events  # type: ignore[no-any-return]
            except _UNFIT:
                pass  # perhaps an event that mentions "events" somewhere else
    for _, event_decoder in kinds:
        try:
            single = event_decoder.decode(value)
        except _UNFIT:
            continue
        if single.events is msgspec.UNSET:
            return [single]
    return None
